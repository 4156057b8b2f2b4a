"""The synthetic data generator: shapes, dtypes, determinism and labels that match the image."""

import numpy as np
import pytest

from napari_sam2.engine.synthetic import synthetic_cells, synthetic_clip


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_cells_shape_dtype_and_ids(dtype):
    image, labels = synthetic_cells((200, 300), n_cells=6, dtype=dtype, seed=3)
    assert image.shape == labels.shape == (200, 300)
    assert image.dtype == dtype
    assert labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 0
    assert list(ids[1:]) == list(range(1, len(ids)))
    assert 4 <= len(ids) - 1 <= 6


def test_cells_deterministic_by_seed():
    a = synthetic_cells(seed=5)
    b = synthetic_cells(seed=5)
    c = synthetic_cells(seed=6)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("seed", range(4))
def test_labels_are_the_bright_objects(seed):
    image, labels = synthetic_cells((256, 256), n_cells=8, seed=seed)
    img = image.astype(np.float64)
    background = np.median(img[labels == 0])
    for k in range(1, labels.max() + 1):
        assert np.median(img[labels == k]) > background * 1.3
    # Thresholding halfway between the levels mostly recovers the labelled foreground.
    level = 0.5 * (background + np.median(img[labels > 0]))
    fg = img > level
    fg_true = labels > 0
    iou = (fg & fg_true).sum() / (fg | fg_true).sum()
    assert iou > 0.5


def test_uint16_is_not_scaled_to_full_range():
    image, _ = synthetic_cells(seed=1, dtype=np.uint16)
    assert image.max() < 60000 and image.min() > 0


def test_touching_pairs_share_a_border():
    _, labels = synthetic_cells((256, 256), n_cells=9, seed=2, touching=True)
    right = (labels[:, :-1] > 0) & (labels[:, 1:] > 0) & (labels[:, :-1] != labels[:, 1:])
    down = (labels[:-1] > 0) & (labels[1:] > 0) & (labels[:-1] != labels[1:])
    assert right.sum() + down.sum() > 5


def test_clip_shapes_ids_and_determinism():
    frames, labels = synthetic_clip(n_frames=12, shape=(128, 160), n_cells=3, seed=1)
    assert frames.shape == labels.shape == (12, 128, 160)
    assert frames.dtype == np.uint16 and labels.dtype == np.int32
    for t in range(12):
        assert set(np.unique(labels[t])) <= {0, 1, 2, 3}
        assert (labels[t] == 1).sum() > 50
    again = synthetic_clip(n_frames=12, shape=(128, 160), n_cells=3, seed=1)
    assert np.array_equal(frames, again[0]) and np.array_equal(labels, again[1])


def test_clip_smooth_motion_moves_cells_a_little():
    _, labels = synthetic_clip(n_frames=20, seed=0, motion="smooth")
    centroids = np.array([np.argwhere(labels[t] == 1).mean(0) for t in range(20)])
    steps = np.linalg.norm(np.diff(centroids, axis=0), axis=1)
    assert steps.max() < 8  # smooth: no jumps
    assert np.linalg.norm(centroids[-1] - centroids[0]) > 3  # but it does move
    iou = ((labels[0] == 1) & (labels[1] == 1)).sum() / ((labels[0] == 1) | (labels[1] == 1)).sum()
    assert iou > 0.6


def test_clip_absence_is_really_absent():
    frames, labels = synthetic_clip(n_frames=15, seed=2, absent=(5, 8))
    present = [(labels[t] == 1).sum() > 0 for t in range(15)]
    assert present == [True] * 5 + [False] * 3 + [True] * 7
    # No bright object left where cell 1 was: its former region looks like background.
    region = labels[4] == 1
    bg = np.median(frames[6][labels[6] == 0].astype(float))
    assert np.median(frames[6][region].astype(float)) < bg * 1.25
    assert np.median(frames[4][region].astype(float)) > bg * 1.3


def test_clip_zstack_grows_then_shrinks():
    _, labels = synthetic_clip(n_frames=21, seed=3, motion="zstack")
    area = np.array([(labels[t] == 1).sum() for t in range(21)])
    mid = int(np.argmax(area))
    assert 7 <= mid <= 13
    assert area[0] < 0.7 * area[mid] and area[-1] < 0.7 * area[mid]
    assert np.all(np.diff(area[: mid - 1]) >= -5) and np.all(np.diff(area[mid + 1 :]) <= 5)


def _summary(image, labels) -> tuple[list[int], float]:
    """Pixels per label and mean intensity: what a change to the generator changes, robust
    to the last-bit differences of float kernels between CPUs (which an exact hash is not)."""
    return np.bincount(labels.ravel()).tolist(), float(image.mean())


def test_same_seed_gives_the_pinned_output():
    """Training and the tests' fixtures depend on these images: a change to them shows."""
    pinned = {
        "cells": ([9556, 611, 748, 422, 343, 608], 86.503),
        "smooth": ([108449, 3601, 6941, 3889], 10448.283),
        "static": ([108090, 5120, 6140, 3530], 10476.403),
        "zstack": ([112485, 3974, 3699, 2722], 9593.548),
    }
    made = {"cells": synthetic_cells((96, 128), n_cells=5, dtype=np.uint8, seed=4, touching=True)}
    for motion in ("smooth", "static", "zstack"):
        absent = (3, 6) if motion == "smooth" else None
        made[motion] = synthetic_clip(
            10, (96, 128), n_cells=3, seed=4, motion=motion, absent=absent
        )
    for name, (areas, mean) in pinned.items():
        got_areas, got_mean = _summary(*made[name])
        np.testing.assert_allclose(got_areas, areas, atol=3, err_msg=name)
        assert abs(got_mean - mean) < 1e-3 * mean, name


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        synthetic_cells(dtype=np.float32)
    with pytest.raises(ValueError):
        synthetic_clip(motion="teleport")
