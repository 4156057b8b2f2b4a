"""Batch segmentation: formats, resumability, bad input, Dask, CSV prompts, post-processing.

Wiring tests use the random-weight micro model with point prompts (masks of no meaning, but
the same masks whichever way they are computed); the quality test needs the trained micro model.
"""

import json
import time

import numpy as np
import pytest
import tifffile

from napari_sam2 import SAM2Error
from napari_sam2.batch import (
    BatchJob,
    PostProcessing,
    PromptTable,
    iter_batch,
    read_image,
    rle_decode,
    rle_encode,
    run_batch,
)
from napari_sam2.batch.files import coco_annotations
from napari_sam2.batch.segment import segment_array
from napari_sam2.engine.models import MICRO_MODEL


def _blobs(shape, seed, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    image = rng.normal(300, 20, shape)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    for r, c in [(20, 20), (40, 50)]:
        image[(rows - r) ** 2 + (cols - c) ** 2 < 64] += 2000
    return np.clip(image, 0, np.iinfo(dtype).max).astype(dtype)


@pytest.fixture
def folder(tmp_path):
    """Five small images of mixed sizes and dtypes, and a napari points CSV (two objects)."""
    images = tmp_path / "images"
    images.mkdir()
    for i, shape in enumerate([(64, 80), (64, 80), (72, 64), (64, 96), (60, 70)]):
        tifffile.imwrite(images / f"img{i}.tif", _blobs(shape, i, (np.uint16, np.uint8)[i % 2]))
    csv = tmp_path / "points.csv"
    csv.write_text("index,axis-0,axis-1\n0,20.0,20.0\n1,40.0,50.0\n")
    return images, csv


@pytest.fixture
def batch_args(random_checkpoint, random_segmenter, folder):
    """Arguments of a prompted batch; in-process runs reuse the session's model (and its
    embedding cache), Dask workers load the same checkpoint themselves."""
    images, csv = folder
    return dict(
        model=MICRO_MODEL,
        checkpoint=random_checkpoint,
        device="cpu",
        points=csv,
        segmenter=random_segmenter,
    )


def _outputs(out):
    return sorted(p.name for p in out.iterdir())


def _load(path, fmt):
    if fmt == "tif":
        return tifffile.imread(path)
    if fmt == "png":
        import imageio.v3 as iio

        return iio.imread(path)
    if fmt == "npy":
        return np.load(path)
    import zarr

    return zarr.open_array(str(path), mode="r")[...]


def test_each_format_writes_five_label_files_and_coco_json(
    tmp_path, folder, batch_args, random_segmenter
):
    images, csv = folder
    job = BatchJob(tmp_path, points=str(csv))
    expected = {
        f"img{i}": segment_array(
            random_segmenter, read_image(images / f"img{i}.tif"), job, job.prompts_for(images)
        )
        for i in range(5)
    }
    for fmt in ("tif", "png", "npy", "zarr"):
        out = tmp_path / f"out-{fmt}"
        results = run_batch(images, out, fmt=fmt, workers=0, **batch_args)
        assert [r.status for r in results] == ["done"] * 5
        assert _outputs(out) == sorted(
            [f"img{i}.{fmt}" for i in range(5)] + [f"img{i}.json" for i in range(5)]
        )
        for stem, labels in expected.items():
            written = _load(out / f"{stem}.{fmt}", fmt)
            assert np.array_equal(written, labels), (fmt, stem)
            coco = json.loads((out / f"{stem}.json").read_text())
            decoded = np.zeros_like(labels)
            for ann in coco["annotations"]:
                decoded[rle_decode(ann["segmentation"])] = ann["label"]
            assert np.array_equal(decoded, labels)


def test_rerun_skips_complete_outputs_and_redoes_missing_ones(tmp_path, folder, batch_args):
    images, _ = folder
    out = tmp_path / "out"
    first = run_batch(images, out, workers=0, **batch_args)
    assert {r.status for r in first} == {"done"}
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "img3.json").unlink()  # as if the run had stopped between the two outputs
    (out / ".~napari-sam2-0badf00d-img4.tif").write_bytes(b"half")  # a crash's leftover
    again = run_batch(images, out, workers=0, **batch_args)
    assert sorted(r.status for r in again) == ["done"] + ["skipped"] * 4
    assert [r.source for r in again if r.status == "done"][0].endswith("img3.tif")
    for name, stamp in stamps.items():
        if not name.startswith("img3"):
            assert (out / name).stat().st_mtime_ns == stamp


def test_corrupt_file_is_reported_and_the_rest_completes(tmp_path, folder, batch_args):
    images, _ = folder
    (images / "broken.tif").write_bytes(b"II*\x00" + b"\x07" * 40)
    results = run_batch(images, tmp_path / "out", workers=0, **batch_args)
    failed = [r for r in results if r.status == "failed"]
    assert len(failed) == 1 and failed[0].source.endswith("broken.tif")
    assert "Cannot read broken.tif" in failed[0].error
    assert sum(r.status == "done" for r in results) == 5
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith("broken")]


def test_cancelled_batch_leaves_only_complete_outputs(tmp_path, folder, batch_args):
    images, _ = folder
    out = tmp_path / "out"
    work = iter_batch(images, out, workers=0, **batch_args)
    assert next(work).result.status == "done"
    work.close()
    assert _outputs(out) == ["img0.json", "img0.tif"]


def test_unwritable_output_folder_is_a_clear_error(tmp_path, folder, batch_args):
    images, _ = folder
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SAM2Error, match="not writable"):
        run_batch(images, blocker / "out", workers=0, **batch_args)


def test_bad_inputs_are_clear_errors(tmp_path, batch_args):
    with pytest.raises(SAM2Error, match="No file matches"):
        run_batch(tmp_path / "nothing*.tif", tmp_path / "out", workers=0, **batch_args)
    with pytest.raises(SAM2Error, match="not available here"):
        elsewhere = batch_args | {"device": "mps", "segmenter": None}
        run_batch(tmp_path, tmp_path / "out", workers=2, **elsewhere)
    with pytest.raises(SAM2Error, match="Unknown output format"):
        run_batch(tmp_path, tmp_path / "out", fmt="gif", workers=0, **batch_args)


def test_unanswering_scheduler_fails_fast(tmp_path, folder, batch_args):
    images, _ = folder
    start = time.perf_counter()
    with pytest.raises(SAM2Error, match="did not answer"):
        run_batch(images, tmp_path / "out", scheduler="tcp://127.0.0.1:9", **batch_args)
    assert time.perf_counter() - start < 30


def test_two_worker_local_cluster_gives_the_loop_labels(tmp_path, folder, batch_args):
    images, _ = folder
    loop = run_batch(images, tmp_path / "loop", workers=0, **batch_args)
    dask = run_batch(images, tmp_path / "dask", workers=2, processes=False, **batch_args)
    assert {r.status for r in loop} == {r.status for r in dask} == {"done"}
    for i in range(5):
        a = tifffile.imread(tmp_path / "loop" / f"img{i}.tif")
        b = tifffile.imread(tmp_path / "dask" / f"img{i}.tif")
        assert np.array_equal(a, b)


def test_automatic_masks_on_a_stack_an_ome_zarr_and_a_jpeg(tmp_path, random_checkpoint):
    import imageio.v3 as iio
    import zarr

    images = tmp_path / "images"
    images.mkdir()
    stack = np.stack([_blobs((48, 64), s) for s in range(3)])
    tifffile.imwrite(images / "stack.tif", stack)
    group = zarr.open_group(str(images / "plane.ome.zarr"), mode="w")
    group.create_array("0", data=_blobs((48, 64), 9)[None, None])
    group.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "0"}]}]
    assert read_image(images / "plane.ome.zarr").shape == (48, 64)
    rgb = np.stack([_blobs((40, 52), s, np.uint8) for s in range(3)], axis=-1)
    iio.imwrite(images / "photo.jpg", rgb)
    loose = dict(points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0, min_area=0)
    results = run_batch(
        images,
        tmp_path / "out",
        model=MICRO_MODEL,
        checkpoint=random_checkpoint,
        device="cpu",
        workers=0,
        automatic=loose,
    )
    assert {r.status for r in results} == {"done"}, results
    assert tifffile.imread(tmp_path / "out" / "stack.tif").shape == (3, 48, 64)
    assert tifffile.imread(tmp_path / "out" / "plane.tif").shape == (48, 64)
    assert tifffile.imread(tmp_path / "out" / "photo.tif").shape == (40, 52)
    coco = json.loads((tmp_path / "out" / "stack.json").read_text())
    assert [im["frame"] for im in coco["images"]] == [0, 1, 2]


def test_postprocessing_steps():
    labels = np.zeros((20, 20), np.int32)
    labels[2:8, 2:8] = 3  # ring with a hole
    labels[4:6, 4:6] = 0
    labels[0:3, 15:18] = 5  # touches the border
    labels[12:14, 12:14] = 7  # 4 pixels
    labels[10:18, 2:9] = 9
    filled = PostProcessing(fill_holes=True).apply(labels)
    assert (filled[4:6, 4:6] == 3).all()
    assert not (PostProcessing(min_size=5).apply(labels) == 7).any()
    assert not (PostProcessing(remove_border=True).apply(labels) == 5).any()
    relabelled = PostProcessing(relabel=True).apply(labels)
    assert sorted(np.unique(relabelled)) == [0, 1, 2, 3, 4]


def test_rle_matches_coco_convention_and_round_trips():
    mask = np.array([[0, 1], [1, 1]], bool)  # column-major: 0, 1, 1, 1
    assert rle_encode(mask) == {"size": [2, 2], "counts": [1, 3]}
    assert rle_encode(np.ones((2, 3), bool))["counts"] == [0, 6]
    assert rle_encode(np.zeros((2, 3), bool))["counts"] == [6]
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((13, 17)) > 0.6
        assert np.array_equal(rle_decode(rle_encode(mask)), mask)
    labels = np.zeros((6, 7), np.int32)
    labels[1:3, 2:6] = 4
    (ann,) = coco_annotations(labels, "x.tif")["annotations"]
    assert ann["bbox"] == [2, 1, 4, 2] and ann["area"] == 8 and ann["label"] == 4


def test_prompt_tables_from_napari_csv_writers(tmp_path):
    from napari_builtins.io._write import napari_write_points, napari_write_shapes

    points = np.array([[1, 10, 12], [1, 11, 13], [1, 30, 30], [2, 5, 5]], float)
    features = {"object_id": np.array([1, 1, 1, 2]), "positive": np.array([1, 1, 0, 1])}
    napari_write_points(str(tmp_path / "p.csv"), points, {"properties": features})
    box = np.array([[0, 2, 3], [0, 2, 9], [0, 8, 9], [0, 8, 3]], float)
    napari_write_shapes(str(tmp_path / "s.csv"), [box], {"shape_type": ["rectangle"]})
    table = PromptTable.from_csv(tmp_path / "p.csv", tmp_path / "s.csv")
    on_one = table.objects(1)
    assert list(on_one) == [1]
    assert on_one[1]["points"].tolist() == [[10, 12], [11, 13], [30, 30]]
    assert on_one[1]["point_labels"].tolist() == [1, 1, 0]
    assert list(table.objects(0)) == [3]
    assert table.objects(0)[3]["box"].tolist() == [2, 3, 8, 9]
    assert list(table.objects(2)) == [2]


def _micro_model_ready() -> bool:
    import importlib.util
    from importlib.resources import files

    weights = files("napari_sam2.engine").joinpath("weights", "sam2.1_hiera_micro.pt")
    synthetic = importlib.util.find_spec("napari_sam2.engine.synthetic") is not None
    return weights.is_file() and synthetic


@pytest.mark.skipif(
    not _micro_model_ready(),
    reason="needs the trained micro model (engine/weights/sam2.1_hiera_micro.pt) and "
    "engine/synthetic.py, which land with the micro-model issue",
)
def test_batch_of_synthetic_cells_finds_the_cells(tmp_path):
    from napari_sam2.engine.synthetic import synthetic_cells
    from tests.engine.test_automatic import assert_each_cell_found_once

    images = tmp_path / "images"
    images.mkdir()
    truths = {}
    for seed in range(5):
        image, truth = synthetic_cells(shape=(192, 192), n_cells=5, seed=seed)
        tifffile.imwrite(images / f"cells{seed}.tif", image)
        truths[f"cells{seed}"] = truth
    options = {"points_per_side": 12, "larger_first": False, "min_area": 64}
    results = run_batch(
        images, tmp_path / "out", model=MICRO_MODEL, device="cpu", workers=0, automatic=options
    )
    assert [r.status for r in results] == ["done"] * 5
    for stem, truth in truths.items():
        labels = tifffile.imread(tmp_path / "out" / f"{stem}.tif")
        assert_each_cell_found_once(labels, truth)
