"""Intensities the model sees for an image layer, chosen without a viewer."""

import numpy as np
from napari.layers import Image

from napari_sam2.layers.intensities import IntensityChooser


def test_limits_far_wider_than_the_data_give_percentiles():
    data = np.random.default_rng(0).random((3, 40, 40)).astype(np.float32)
    layer = Image(data, contrast_limits=(0, 100))
    chosen = IntensityChooser().choose(layer)
    low, high = chosen.limits
    assert low < 0.02 and 0.98 < high <= 1 and "wider than the data" in chosen.source


def test_fitted_limits_and_8bit_rgb_are_used_as_they_are():
    gray = Image(np.linspace(0, 1000, 400).reshape(20, 20), contrast_limits=(100, 900))
    assert IntensityChooser().choose(gray).limits == (100, 900)
    rgb = Image(np.random.default_rng(1).integers(0, 256, (20, 20, 3), np.uint8), rgb=True)
    assert IntensityChooser().choose(rgb).limits == (0, 255)


def test_default_limits_stretched_by_a_few_bright_pixels_give_percentiles():
    rng = np.random.default_rng(2)
    data = (rng.random((4, 64, 64)) * 7000 + 2000).astype(np.uint16)
    data[0, :2, :2] = 59513  # a few saturated pixels, below the dtype's maximum
    layer = Image(data)  # napari's default limits: the data's min and max
    assert layer.contrast_limits[1] == 59513
    chosen = IntensityChooser().choose(layer)
    assert chosen.limits[1] < 9100 and "wider than the data" in chosen.source
