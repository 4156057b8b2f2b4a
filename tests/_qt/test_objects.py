"""Choosing the object a prompt belongs to, and seeing which object each prompt is for."""

import numpy as np
from qtpy.QtCore import Qt

from .driving import click, expected_mask, settle, start

CTRL = Qt.KeyboardModifier.ControlModifier


def _two_objects(viewer, widget, image, qtbot):
    """Object 1 clicked on the left cell, object 2 on the right one, as a user does it."""
    layer = viewer.add_image(image)
    session = start(widget, layer)
    qtbot.wait(100)  # the canvas has drawn the new layers
    click(viewer, qtbot, session.points_layer, (30, 28))
    settle(widget, qtbot)
    widget.object_button.native.click()
    click(viewer, qtbot, session.points_layer, (30, 64))
    settle(widget, qtbot)
    return layer, session


def test_ctrl_click_picks_an_earlier_object_and_a_negative_click_corrects_it(
    shown_viewer_widget, two_cells_image, qtbot
):
    viewer, widget = shown_viewer_widget
    layer, session = _two_objects(viewer, widget, two_cells_image, qtbot)
    labels = session.labels_layer
    assert list(session.points_layer.features["object_id"]) == [1, 2]
    np.testing.assert_allclose(session.points_layer.data, [[30, 28], [30, 64]], atol=0.6)
    assert session.object_id == 2 and (labels.data == 1).any() and (labels.data == 2).any()
    object2 = labels.data == 2

    # Ctrl-click on object 1's label: object 1 is current again and no point is added.
    pixel = tuple(np.argwhere(labels.data == 1)[0])
    click(viewer, qtbot, session.points_layer, pixel, CTRL)
    assert session.object_id == 1 and widget.object_id.value == 1
    assert labels.selected_label == 1
    assert len(session.points_layer.data) == 2

    # A negative click now goes to object 1 and changes only object 1.
    widget.polarity_button.native.click()
    click(viewer, qtbot, session.points_layer, (20, 40))
    settle(widget, qtbot)
    assert list(session.points_layer.features["object_id"]) == [1, 2, 1]
    assert list(session.points_layer.features["positive"]) == [True, True, False]
    points = session.points_layer.data[[0, 2]]
    want = expected_mask(widget, two_cells_image, layer, points=points, point_labels=[1, 0])
    np.testing.assert_array_equal(labels.data == 2, object2)
    np.testing.assert_array_equal(labels.data == 1, want & ~object2)


def test_ctrl_click_on_background_keeps_the_object_and_adds_nothing(
    shown_viewer_widget, two_cells_image, qtbot
):
    viewer, widget = shown_viewer_widget
    _, session = _two_objects(viewer, widget, two_cells_image, qtbot)
    background = tuple(np.argwhere(session.labels_layer.data == 0)[0])
    click(viewer, qtbot, session.points_layer, background, CTRL)
    assert session.object_id == 2 and len(session.points_layer.data) == 2


def test_prompts_are_drawn_in_their_objects_label_colour(viewer_widget, two_cells_image, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(two_cells_image)
    session = start(widget, layer)
    labels = session.labels_layer
    session.points_layer.add([[30, 28]])
    widget.object_id.value = 2  # typed into the spin box
    assert session.object_id == 2
    widget.polarity_button.native.click()
    session.points_layer.add([[30, 64]])
    session.shapes_layer.add_rectangles([[16, 46], [48, 80]])
    settle(widget, qtbot)
    points = session.points_layer
    for n, object_id in enumerate([1, 2]):
        np.testing.assert_allclose(points.face_color[n], labels.colormap.map(object_id))
    assert list(points.symbol) != [points.symbol[0]] * 2  # a negative click looks different
    np.testing.assert_allclose(session.shapes_layer.edge_color[0], labels.colormap.map(2))
    assert list(session.shapes_layer.features["object_id"]) == [2]


def test_picking_a_label_in_the_labels_layer_picks_the_object(viewer_widget, cells_image):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    session = start(widget, layer)
    session.labels_layer.selected_label = 7
    assert session.object_id == 7 and widget.object_id.value == 7
    session.points_layer.add([[30, 35]])
    assert list(session.points_layer.features["object_id"]) == [7]
