"""The confocal nuclei generator: what a model trained on it must see in real stacks."""

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from napari_sam2.engine import synthetic_nuclei as synthetic_nuclei_module
from napari_sam2.engine.synthetic_nuclei import synthetic_nuclei, synthetic_nuclei_stack


def _touching_share(labels: np.ndarray) -> float:
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        sel = (a > 0) & (b > 0) & (a != b)
        pairs |= {int(v) for v in a[sel]} | {int(v) for v in b[sel]}
    return len(pairs) / labels.max()


def _normalised(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float, float]:
    img = image.astype(np.float64)
    inside = distance_transform_edt(labels > 0) >= 4
    outside = distance_transform_edt(labels == 0) >= 8
    return img, float(np.median(img[outside])), float(np.median(img[inside]))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_shape_dtype_ids_and_determinism(dtype):
    image, labels = synthetic_nuclei((200, 240), n_cells=20, dtype=dtype, seed=4)
    assert image.shape == labels.shape == (200, 240) and image.dtype == dtype
    ids = np.unique(labels)
    assert list(ids) == list(range(len(ids))) and len(ids) > 8
    again = synthetic_nuclei((200, 240), n_cells=20, dtype=dtype, seed=4)
    assert np.array_equal(image, again[0]) and np.array_equal(labels, again[1])


def test_boundary_is_drawn_at_half_height_inside_the_blur():
    """An annotator's edge: bright just inside, half-way at the edge, a halo beyond it."""
    rings = {d: [] for d in (-1, 1, 3)}
    for seed in range(4):
        image, labels = synthetic_nuclei((256, 256), n_cells=25, radius=16, seed=seed)
        img, bg, fg = _normalised(image, labels)
        sd = np.rint(distance_transform_edt(labels == 0) - distance_transform_edt(labels > 0))
        for d in rings:
            rings[d].append((np.mean(img[sd == d]) - bg) / (fg - bg))
    inner, outer, halo = (float(np.mean(rings[d])) for d in (-1, 1, 3))
    assert inner > 0.5 > outer
    assert 0.05 < halo < outer  # light beyond the label: the label is not the blur's outer edge


def test_a_third_or_more_of_the_nuclei_touch():
    shares = [_touching_share(synthetic_nuclei((256, 256), 30, seed=s)[1]) for s in range(4)]
    assert np.mean(shares) >= 1 / 3


@pytest.mark.parametrize("radius", [4.0, 25.0, 150.0])
def test_sizes_follow_the_radius_asked_for(radius):
    side = int(max(256, 8 * radius))
    _, labels = synthetic_nuclei((side, side), n_cells=12, radius=radius, seed=1)
    areas = np.bincount(labels.ravel())[1:]
    equivalent = np.sqrt(np.median(areas) / np.pi)
    assert radius / 2 < equivalent < radius * 1.5


def test_dim_and_saturated_nuclei_occur():
    ratios, saturated = [], 0
    for seed in range(8):
        image, labels = synthetic_nuclei((256, 256), 25, dtype=np.uint8, seed=seed)
        medians = [np.median(image[labels == k]) for k in range(1, labels.max() + 1)]
        ratios.append(max(medians) / max(min(medians), 1))
        saturated += bool((image == 255).sum() > 200)
    assert np.median(ratios) > 2  # dim nuclei beside bright ones
    assert 1 <= saturated <= 6  # some fields saturate, not all


def test_out_of_focus_neighbours_are_visible_but_not_labelled():
    image, labels = synthetic_nuclei((256, 256), 30, seed=2, out_of_focus=0.6, touching=0.0)
    img, bg, fg = _normalised(image, labels)
    far = distance_transform_edt(labels == 0) >= 8
    assert np.percentile(img[far], 99) - bg > 0.1 * (fg - bg)


def test_stack_keeps_ids_and_nucleus_1_peaks_at_its_centre():
    frames, labels = synthetic_nuclei_stack(15, (160, 160), 12, seed=3, radius=14, z_step=2.0)
    assert frames.shape == labels.shape == (15, 160, 160)
    area = (labels == 1).sum((1, 2))
    assert abs(int(np.argmax(area)) - 7) <= 1
    assert area[0] < 0.6 * area.max() and area[-1] < 0.6 * area.max()
    first = synthetic_nuclei_stack(8, (160, 160), 12, seed=3, radius=14, z_step=2.0, centre=0)
    assert np.argmax((first[1] == 1).sum((1, 2))) == 0


def test_light_ends_within_a_few_slices_of_a_nucleus_top_and_bottom():
    """As in the real stack (0.16-0.22 of the centre's light two slices beyond a nucleus' last
    labelled slice): optical sectioning, so the small end sections are not drowned in glow."""
    beyond = []
    for seed in range(6):
        frames, labels = synthetic_nuclei_stack(41, (160, 160), 10, seed=seed, radius=16)
        frames = frames.astype(np.float64)
        bg = np.median(frames[:, labels.max(0) == 0])
        for k in range(1, labels.max() + 1):
            area = (labels == k).sum((1, 2))
            zs = np.nonzero(area)[0]
            if zs[0] < 2 or zs[-1] > 38:
                continue
            foot = labels[np.argmax(area)] == k
            centre = frames[np.argmax(area)][foot].mean() - bg
            beyond += [(frames[z][foot].mean() - bg) / centre for z in (zs[0] - 2, zs[-1] + 2)]
    assert 0.03 < np.median(beyond) < 0.25


def test_condensed_nuclei_are_bright_clumps_labelled_as_one(monkeypatch):
    """A dividing nucleus (the real stack's nucleus 4): dark gaps between bright chromatin,
    inside one label. Its darkest twentieth lies at 0.16 of its brightest twentieth (above
    background), against 0.25-0.38 for the other real nuclei."""

    def gap_depth(condensed: float) -> float:
        monkeypatch.setattr(synthetic_nuclei_module, "CONDENSED", condensed)
        depths = []
        for seed in range(3):
            image, labels = synthetic_nuclei(
                (256, 256), 10, seed=seed, radius=20, touching=0.0, out_of_focus=0.0
            )
            img = image.astype(np.float64)
            bg = np.median(img[labels == 0])
            for k in range(1, labels.max() + 1):
                inner = distance_transform_edt(labels == k) >= 3
                if inner.sum() >= 100:
                    p5, p95 = np.percentile(img[inner] - bg, [5, 95])
                    depths.append(p5 / p95)
        return float(np.median(depths))

    assert gap_depth(1.0) < 0.5 * gap_depth(0.0)
