"""Writing one object's mask into a labels plane: replace, keep others, undo in one step."""

import numpy as np
import pytest
from napari.layers import Labels

from napari_sam2.layers.labels import write_object


def _mask(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


@pytest.mark.parametrize("overwrite", [False, True])
def test_write_replace_and_remove_on_a_plane_of_a_stack(overwrite):
    data = np.zeros((3, 64, 80), np.int32)
    data[1, 30:40, 30:40] = 5  # another object
    data[1, 0, 0] = 9  # far outside every box
    labels = Labels(data)
    index = (1, slice(None), slice(None))
    first = _mask((64, 80), slice(10, 35), slice(10, 35))
    overlap = first & (data[1] == 5)
    written = write_object(labels, index, 2, first, None, overwrite)
    np.testing.assert_array_equal(written.full((64, 80)), first if overwrite else first & ~overlap)
    np.testing.assert_array_equal(labels.data[1] == 2, written.full((64, 80)))
    after_first = labels.data.copy()
    second = _mask((64, 80), slice(50, 60), slice(60, 70))
    written = write_object(labels, index, 2, second, written, overwrite)
    np.testing.assert_array_equal(labels.data[1] == 2, second)
    assert (labels.data[1, 30:40, 30:40] == 5).sum() == (100 - overlap.sum() if overwrite else 100)
    assert labels.data[1, 0, 0] == 9 and not labels.data[[0, 2]].any()
    after_second = labels.data.copy()
    write_object(labels, index, 2, None, written, overwrite)
    assert not (labels.data == 2).any()
    # Each write (removing the old pixels and adding the new ones) is one Ctrl-Z.
    labels.undo()
    np.testing.assert_array_equal(labels.data, after_second)
    labels.undo()
    np.testing.assert_array_equal(labels.data, after_first)
    labels.undo()
    assert not (labels.data == 2).any() and (labels.data[1, 30:40, 30:40] == 5).all()
