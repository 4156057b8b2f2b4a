"""Writing a propagation stream of many objects into labels: one write per frame, ids right."""

import numpy as np
import pytest

from napari_sam2.engine.video.stream import paint_objects, write_labels


class CountingWrites:
    """A labels array (as zarr is to numpy) that counts the writes it gets."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim
        self.writes = 0

    def __getitem__(self, key):
        return self.array[key]

    def __setitem__(self, key, value):
        self.writes += 1
        self.array[key] = value


def crowded_frame(rng, n: int, shape=(96, 104)) -> np.ndarray:
    """``n`` small square masks at random places (some overlap, some touch the border)."""
    masks = np.zeros((n, *shape), bool)
    for k in range(n):
        r, c = rng.integers(-2, shape[0] - 2), rng.integers(-2, shape[1] - 2)
        size = rng.integers(1, 7)
        masks[k, max(r, 0) : r + size, max(c, 0) : c + size] = True
    return masks


def painted_one_by_one(plane, ids, masks) -> np.ndarray:
    """What the objects look like painted one after another, the later on top."""
    plane = plane.copy()
    plane[np.isin(plane, ids)] = 0
    for object_id, mask in zip(ids, masks, strict=True):
        plane[mask] = object_id
    return plane


@pytest.mark.parametrize("width", [104, 99])  # whole 8-pixel words per row, and not
def test_hundreds_of_objects_are_written_once_per_frame_with_their_ids(width):
    rng = np.random.default_rng(0)
    ids = list(range(1, 301))
    frames = [crowded_frame(rng, len(ids), (96, width)) for _ in range(3)]
    old = np.zeros((3, 96, width), np.uint16)
    old[:, :10, :10] = 999  # another object, not in the stream
    old[:, 50:60, 50:60] = 7  # one of the stream's, somewhere else before
    labels = CountingWrites(old.copy())
    stream = iter([(f, ids, masks) for f, masks in enumerate(frames)])
    assert list(write_labels(stream, labels)) == [0, 1, 2]
    assert labels.writes == 3
    for f, masks in enumerate(frames):
        np.testing.assert_array_equal(labels.array[f], painted_one_by_one(old[f], ids, masks))


def test_without_overwrite_other_objects_keep_their_pixels():
    plane = np.zeros((16, 16), np.uint16)
    plane[:8] = 5  # not listed
    plane[12:, :4] = 2  # listed: its old pixels go
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 4:12, 4:12] = True
    masks[1, 6:14, 6:14] = True
    painted = paint_objects(plane, [1, 2], masks, overwrite=False)
    assert (painted[:8] == 5).all()  # never painted over
    assert (painted[8:12, 4:12] == 1).all()  # where both masks are, the first listed keeps it
    assert (painted[12:14, 6:14] == 2).all() and not (painted[12:, :4] == 2).any()
