"""The packaged micro model really segments: clicks, boxes and negative clicks on synthetic
cells it never saw (seeds outside its training recipe)."""

import numpy as np
import pytest

from napari_sam2 import Segmenter
from napari_sam2.engine.synthetic import synthetic_cells


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def micro():
    return Segmenter("sam2.1_hiera_micro", device="cpu")


@pytest.fixture(scope="module")
def cells():
    return synthetic_cells(shape=(384, 384), n_cells=8, seed=4242)


def centre(truth, k):
    """A pixel of cell k near its centroid (inside even for a bent cell)."""
    pixels = np.argwhere(truth == k)
    return tuple(pixels[np.argmin(((pixels - pixels.mean(0)) ** 2).sum(1))])


def test_one_click_gives_the_cell(micro, cells):
    image, truth = cells
    micro.set_image(image)
    scores = [iou(micro.predict(points=[centre(truth, k)]), truth == k) for k in range(1, 9)]
    assert np.mean(scores) > 0.8, scores


def test_a_box_gives_the_object_in_it(micro, cells):
    image, truth = cells
    micro.set_image(image)
    scores = []
    for k in range(1, 9):
        rows, cols = np.nonzero(truth == k)
        box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        scores.append(iou(micro.predict(box=box), truth == k))
    assert np.mean(scores) > 0.85, scores


def test_a_negative_click_removes_a_touching_neighbour(micro):
    """Click cell A; where its mask leaks into touching cell B, a negative click on B cuts it.

    Summed over every touching pair of four images: one image alone has too few pairs.
    """
    leak_before = leak_after = pairs_seen = 0
    for seed in (99, 5, 6, 7):
        image, truth = synthetic_cells(shape=(256, 256), n_cells=6, seed=seed, touching=True)
        micro.set_image(image)
        for a in range(1, truth.max() + 1):
            for b in range(a + 1, truth.max() + 1):
                if not _touching(truth == a, truth == b):
                    continue
                clicked = micro.predict(points=[centre(truth, a)])
                separated = micro.predict(
                    points=[centre(truth, a), centre(truth, b)], point_labels=[1, 0]
                )
                leak_before += (clicked & (truth == b)).sum()
                leak_after += (separated & (truth == b)).sum()
                pairs_seen += 1
                assert iou(separated, truth == a) > 0.7, (seed, a, b)
    assert pairs_seen >= 6, "the generator made too few touching pairs"
    assert leak_after < leak_before / 3, (leak_before, leak_after)


def _touching(a, b) -> bool:
    grown = a.copy()
    grown[1:] |= a[:-1]
    grown[:-1] |= a[1:]
    grown[:, 1:] |= a[:, :-1]
    grown[:, :-1] |= a[:, 1:]
    return bool((grown & b).any())


def _box(truth, *ids):
    rows, cols = np.nonzero(np.isin(truth, ids))
    return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
