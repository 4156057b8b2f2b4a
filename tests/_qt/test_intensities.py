"""The model is never silently fed a nearly black image: the widget says what it sees."""

import numpy as np
import pytest

from napari_sam2.layers.propagation import LayerPropagation

from .driving import settle, start


@pytest.fixture
def saturated_stack() -> np.ndarray:
    """A 16-bit z-stack whose cells sit at 2000-9000 with one saturated and one zero pixel,
    so napari's default contrast limits are the whole 0-65535 range."""
    rng = np.random.default_rng(2)
    stack = (rng.random((4, 48, 64)) * 500 + 2000).astype(np.uint16)
    stack[:, 12:30, 16:40] += 7000
    stack[0, 0, 0], stack[0, 0, 1] = 65535, 0
    return stack


def test_full_range_limits_give_stack_percentiles_and_the_widget_says_so(
    viewer_widget, saturated_stack, qtbot
):
    viewer, widget = viewer_widget
    layer = viewer.add_image(saturated_stack)
    assert tuple(layer.contrast_limits) == (0, 65535)
    session = start(widget, layer)
    text = widget.intensities.value
    assert "percentiles of the stack" in text and "whole uint16 range" in text
    low, high = session.intensities().limits
    assert 1900 < low < 2100 and 8500 < high < 9600  # fitted to the cells, stack-wide
    viewer.dims.set_current_step(0, 1)
    session.points_layer.add([[1, 20, 28]])
    settle(widget, qtbot)
    frame = session.segmenter.current_frame()
    assert np.percentile(frame, 99) > 0.8  # the cells are bright to the model, not 0.14

    # The same choice for propagation along z.
    propagation = LayerPropagation(session, 0)
    assert propagation.session.source.normalization == session.intensities().normalization
    propagation.close()


def test_from_layer_uses_the_contrast_limits_and_limits_a_user_set_are_kept(
    viewer_widget, saturated_stack
):
    viewer, widget = viewer_widget
    layer = viewer.add_image(saturated_stack)
    session = start(widget, layer)
    widget.intensity_mode.value = "from layer"
    assert session.intensities().limits == (0, 65535)
    assert widget.intensities.value.startswith("0–65535: the layer's contrast limits")

    widget.intensity_mode.value = "auto"
    layer.contrast_limits = (1500, 12000)  # fitted by the user: auto keeps them
    assert session.intensities().limits == (1500, 12000)
    assert "the layer's contrast limits" in widget.intensities.value
