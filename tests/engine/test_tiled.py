"""Segment everything on a plane larger than the model input: tiles, interiors, stitching."""

import numpy as np
import pytest

from napari_sam2 import Segmenter
from napari_sam2.engine.mosaic import f1_at_half, make_mosaic
from napari_sam2.engine.synthetic import synthetic_cells
from napari_sam2.engine.tiled import interior, tile_grid
from napari_sam2.engine.window import base_side
from tests.engine.masks import DISKS, disk_mask, iou, wide_disks
from tests.engine.test_automatic import _drain

# A point every 26 px of the packaged micro's 256 px tile: enough for these cells, and two
# decoder batches a tile.
OPTIONS = dict(points_per_side=10)


@pytest.mark.parametrize("shape", [(1280, 1280), (1, 20_000), (5000, 700)])
def test_tile_interiors_partition_the_plane(shape):
    tiles = tile_grid(shape, 384)
    rows = np.linspace(0, shape[0] - 1, 30)
    cols = np.linspace(0, shape[1] - 1, 30)
    for r in rows:
        for c in cols:
            owning = [t for t in tiles if _inside(interior(t, tiles), r, c)]
            assert len(owning) == 1, (r, c)
            rs, cs = owning[0].slices
            assert rs.start <= r < rs.stop and cs.start <= c < cs.stop


def _inside(box, r, c) -> bool:
    return box[0] <= r < box[2] and box[1] <= c < box[3]


def test_segment_everything_on_a_mosaic_matches_its_native_tiles():
    """A 1280 × 256 column of 256² synthetic images (seven overlapping 256 px tiles): F1 at IoU
    0.5 of the tiled segmentation at least 0.9 × the F1 of segmenting each image alone."""
    seg = Segmenter("sam2.1_hiera_micro", device="cpu")
    cells = [synthetic_cells((256, 256), n_cells=6, seed=seed) for seed in range(6)]
    images, labels = (np.stack(parts) for parts in zip(*cells, strict=True))
    mosaic = make_mosaic(images, labels, grid=5, seed=3)
    column, truth = mosaic.image[:, :256], mosaic.truth()[:, :256]
    limits = tuple(np.percentile(images[:, ::4, ::4], [0.5, 99.8]))
    seg.set_image(column, contrast_limits=limits)
    steps, tiled = _drain(seg.iter_segment_everything(**OPTIONS))
    assert [s.done for s in steps] == list(range(len(steps))) and steps[-1].done == steps[0].total
    on_mosaic = f1_at_half(tiled, truth, mosaic.cut_ids(truth))
    native = []
    for k in (0, 10, 20):
        seg.set_image(mosaic.tile_image(*divmod(k, 5)), contrast_limits=limits)
        small = seg.segment_everything(**OPTIONS)
        r0, c0 = mosaic.origin(*divmod(k, 5))
        here = truth[r0 : r0 + 256, c0 : c0 + 256]
        native.append(f1_at_half(small, here, mosaic.cut_ids(here)))
    print(f"F1 mosaic {on_mosaic:.3f}, native {np.mean(native):.3f}")
    assert np.mean(native) > 0.6, native
    assert on_mosaic >= 0.9 * np.mean(native), (on_mosaic, native)


def test_closing_the_tiled_generator_cancels(random_segmenter):
    """Progress counts one batch a tile (25 tiles at a 1024 input), and closing stops it."""
    random_segmenter.set_image(np.zeros((1500, 1500), np.uint8), contrast_limits=(0, 255))
    tiles = len(tile_grid((1500, 1500), base_side(random_segmenter.model.image_size)))
    work = random_segmenter.iter_segment_everything(points_per_side=2)
    first, second = next(work), next(work)
    assert first.done == 0 and second.done == 1 and first.total == tiles > 1
    work.close()
    assert random_segmenter.predict(points=[(10, 10)]).shape == (1500, 1500)


def test_an_object_wider_than_the_overlap_comes_out_once_and_whole(micro_segmenter):
    """A disk 150 px across centred on the line between two tiles' interiors: each of the two
    tiles cuts it (the overlap is 64 px), so neither keeps it; it comes out as one label
    covering it, and the three small disks around it as theirs."""
    micro_segmenter.set_image(wide_disks(), contrast_limits=(150, 1800))
    labels = micro_segmenter.segment_everything(points_per_side=8)
    for disk in DISKS:
        assert_one_label_covers(labels, disk_mask(labels.shape, disk))


def assert_one_label_covers(labels: np.ndarray, mask: np.ndarray) -> None:
    """One label matches ``mask`` at IoU > 0.8, and no other lies mostly inside it."""
    ids, counts = np.unique(labels[mask], return_counts=True)
    best = ids[np.argmax(counts)]
    assert best and iou(labels == best, mask) > 0.8, (ids, counts)
    inside = [i for i in ids if i and (labels[mask] == i).sum() > 0.5 * (labels == i).sum()]
    assert inside == [best], (ids, counts)
