"""Mistakes get a notification and leave the user's labels byte-identical."""

import time

import numpy as np

from .driving import settle, start


def _user_labels(shape):
    labels = np.zeros(shape, np.int32)
    labels[2:6, 2:6] = 4
    return labels


def test_point_outside_the_image(viewer_widget, cells_image, qtbot, notifications):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    labels = viewer.add_labels(_user_labels(cells_image.shape))
    before = labels.data.copy()
    session = start(widget, layer, labels)
    session.points_layer.add([[200, 300]])
    qtbot.waitUntil(lambda: any("outside" in m for m in notifications), timeout=30_000)
    np.testing.assert_array_equal(labels.data, before)
    # Said once, not pending: a click elsewhere segments without repeating the warning.
    settle(widget, qtbot)
    widget.object_button.native.click()
    session.points_layer.add([[30, 35]])
    settle(widget, qtbot)
    assert sum("outside" in m for m in notifications) == 1
    assert (labels.data == session.object_id).any()


def test_degenerate_rectangle(viewer_widget, cells_image, qtbot, notifications):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    session = start(widget, layer)
    session.shapes_layer.add_rectangles([[10, 10], [10, 30]])
    qtbot.waitUntil(lambda: any("pixel" in m for m in notifications), timeout=30_000)
    assert not session.labels_layer.data.any()


def test_labels_layer_of_another_shape(viewer_widget, cells_image, notifications):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    other = viewer.add_labels(_user_labels((10, 10)))
    before = other.data.copy()
    start(widget, layer, other)
    assert any("has shape" in m for m in notifications)
    assert widget.session.image_layer is None
    np.testing.assert_array_equal(other.data, before)


def test_five_dimensional_layer(viewer_widget, qtbot, notifications):
    viewer, widget = viewer_widget
    layer = viewer.add_image(np.zeros((2, 2, 2, 8, 8), np.uint16))
    session = start(widget, layer)
    session.points_layer.add([[0, 0, 0, 4, 4]])
    qtbot.waitUntil(lambda: any("dimensions" in m for m in notifications), timeout=30_000)
    assert not session.labels_layer.data.any()


def test_nan_and_inf_pixels(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    image[:5] = np.nan
    image[5:8] = np.inf
    layer = viewer.add_image(image, contrast_limits=(0, 1))
    session = start(widget, layer)
    session.points_layer.add([[20, 20]])
    settle(widget, qtbot)
    assert session.labels_layer.data.shape == (32, 32)


def test_layer_removed_while_segmenting(
    viewer_widget, cells_image, qtbot, notifications, monkeypatch
):
    from napari_sam2.layers import segmentation

    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    session = start(widget, layer)
    labels = session.labels_layer
    started = []
    compute = segmentation.compute

    def slow_compute(segmenter, request):
        started.append(True)
        time.sleep(1.0)
        return compute(segmenter, request)

    monkeypatch.setattr(segmentation, "compute", slow_compute)
    session.points_layer.add([[30, 35]])
    qtbot.waitUntil(lambda: bool(started), timeout=10_000)
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: any("removed" in m for m in notifications), timeout=30_000)
    assert not labels.data.any()


def test_deleting_every_prompt_removes_only_that_mask(viewer_widget, cells_image, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    labels = viewer.add_labels(_user_labels(cells_image.shape))
    session = start(widget, layer, labels)
    session.points_layer.add([[30, 35]])
    qtbot.waitUntil(lambda: (labels.data == session.object_id).any(), timeout=30_000)
    session.points_layer.data = np.empty((0, 2))
    settle(widget, qtbot)
    np.testing.assert_array_equal(labels.data, _user_labels(cells_image.shape))


def test_corrupt_checkpoint_chosen_in_the_widget(
    make_napari_viewer, tmp_path, qtbot, notifications
):
    from .driving import WIDGET

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    widget.checkpoint.value = broken
    widget.load_model()
    qtbot.waitUntil(lambda: any("broken.pt" in m for m in notifications), timeout=30_000)
    qtbot.waitUntil(lambda: widget.load_button.enabled, timeout=5_000)
    assert widget.session.segmenter is None and widget.model_info.value == "no model"
