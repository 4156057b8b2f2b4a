"""The batch on planes larger than the model input: one Dask task per tile, stitched as the
engine stitches them, labels written without a plane-sized array in memory."""

import json

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_sam2 import SAM2Error
from napari_sam2.batch import PostProcessing, iter_batch, rle_decode, tiles
from napari_sam2.engine.models import MICRO_MODEL
from napari_sam2.engine.plane import LazyPlane
from napari_sam2.engine.tiled import tile_grid
from napari_sam2.engine.window import base_side
from tests.engine.masks import DISKS, disk_mask, wide_disks
from tests.engine.test_tiled import assert_one_label_covers

OPTIONS = dict(points_per_side=8)


@pytest.fixture(scope="module")
def wide(micro_segmenter):
    """A 256 × 1100 plane of disks (six 256 px tiles at the packaged micro's 512 input, one
    disk cut by two of them), its labels segmented in one process, with the normalisation the
    batch computes (patches of the lazily read plane), and the progress the batch reports,
    (tile, tiles), for the tiles of the model's input size."""
    image = wide_disks()
    micro_segmenter.set_plane(image, LazyPlane(da.from_array(image)).normalization())
    labels = micro_segmenter.segment_everything(**OPTIONS)
    for disk in DISKS:
        assert_one_label_covers(labels, disk_mask(labels.shape, disk))
    count = len(tile_grid(image.shape, base_side(micro_segmenter.model.image_size)))
    assert count > 1
    return image, labels, [(k, count) for k in range(1, count + 1)]


def test_tiles_of_a_large_plane_spread_over_two_workers_give_the_in_process_labels(
    tmp_path, wide, monkeypatch
):
    """On a two-worker cluster each tile is a task, and so is the disk they cut; the labels
    (painted into a memory map, as for a plane too large for memory) equal those of
    segmenting the plane in one process."""
    from distributed import Client, LocalCluster, get_task_stream

    image, expected, tiles_done = wide
    tifffile.imwrite(tmp_path / "wide.tif", image, tile=(128, 128))  # read a tile at a time

    monkeypatch.setattr(tiles, "LABELS_IN_MEMORY_BYTES", 0)
    out = tmp_path / "out"
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with cluster, Client(cluster) as client, get_task_stream(client) as stream:
        work = iter_batch(
            tmp_path / "wide.tif",
            out,
            model=MICRO_MODEL,
            device="cpu",
            automatic=OPTIONS,
            scheduler=cluster.scheduler_address,
        )
        progress = list(work)
    assert [p.tile[1:] for p in progress[:-1]] == tiles_done
    assert progress[-1].result.status == "done", progress[-1].result
    ran = [task for task in stream.data if str(task["key"]).startswith("tile_on_worker")]
    assert len(ran) == len(tiles_done) and len({task["worker"] for task in ran}) == 2
    assert [t for t in stream.data if str(t["key"]).startswith("cut_on_worker")]
    labels = tifffile.imread(out / "wide.tif")
    assert np.array_equal(labels, expected)
    coco = json.loads((out / "wide.json").read_text())
    assert len(coco["annotations"]) == len(np.unique(expected)) - 1
    for annotation in coco["annotations"][:3]:
        assert np.array_equal(
            rle_decode(annotation["segmentation"]), labels == annotation["label"]
        )
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no scratch left


def test_a_large_plane_in_process_reads_it_tile_by_tile(tmp_path, wide, micro_segmenter):
    image, expected, tiles_done = wide
    np.save(tmp_path / "wide.npy", image)
    work = iter_batch(
        tmp_path / "wide.npy",
        tmp_path / "out",
        fmt="zarr",
        workers=0,
        automatic=OPTIONS,
        segmenter=micro_segmenter,
    )
    progress = list(work)
    assert [p.tile[1:] for p in progress[:-1]] == tiles_done
    result = progress[-1].result
    assert result.status == "done" and result.objects == len(np.unique(expected)) - 1
    import zarr

    assert np.array_equal(zarr.open_array(str(tmp_path / "out" / "wide.zarr"))[...], expected)


def test_post_processing_of_labels_too_large_for_memory_is_refused_before_any_work(
    tmp_path, monkeypatch
):
    np.save(tmp_path / "wide.npy", wide_disks())
    monkeypatch.setattr(tiles, "LABELS_IN_MEMORY_BYTES", 0)
    with pytest.raises(SAM2Error, match="post-processing needs them"):
        next(
            iter_batch(
                tmp_path / "wide.npy",
                tmp_path / "out",
                workers=0,
                model=MICRO_MODEL,
                device="cpu",
                postprocessing=PostProcessing(fill_holes=True),
            )
        )
