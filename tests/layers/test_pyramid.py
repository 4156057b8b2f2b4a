"""Which level of a multiscale layer a zoomed-out click reads, and the plane it reads there."""

import numpy as np
import pytest
from napari.layers import Image

from napari_sam2.engine.errors import SAM2Error
from napari_sam2.layers.plane import Plane, coarsest_level


def _stack(shape):
    """A (z, y, x) stack whose slice z holds the value z, at level 0's z."""
    z = np.linspace(0, 40, shape[0], endpoint=False, dtype=np.float32)
    return np.broadcast_to(z[:, None, None], shape)


def test_the_coarsest_level_showing_the_view_at_the_model_input_is_read_at_the_same_z():
    """Levels that halve z, y and x (rounded up): a view of 3000 × 5001 pixels of level 0 is
    still 1251 pixels wide on level 2, only 626 on level 3."""
    shapes = [(40, 3000, 5001), (20, 1500, 2501), (10, 750, 1251), (5, 375, 626)]
    layer = Image([_stack(s) for s in shapes], multiscale=True)
    plane = Plane((37, None, None), 1, 2, None)
    level = coarsest_level(layer, plane, (3000, 5001), 1024)
    assert level.index == 2
    np.testing.assert_allclose(level.factors, (4, 5001 / 1251))
    assert np.asarray(level.plane.view(level.data))[0, 0] == 36  # slice 9 of 10: z 36-39
    assert coarsest_level(layer, plane, (900, 900), 1024) is None  # level 0 is the coarsest


def test_levels_that_grow_are_refused_saying_so():
    layer = Image([np.zeros((500, 500)), np.zeros((1000, 1000))], multiscale=True)
    with pytest.raises(SAM2Error, match="disagree: level 1 has shape"):
        coarsest_level(layer, Plane((None, None), 0, 1, None), (1000, 1000), 256)
