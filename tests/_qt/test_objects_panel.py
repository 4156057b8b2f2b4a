"""The objects panel: every object listed with its frames; pick, rename, merge, delete."""

import numpy as np
import pytest

from .driving import settle, start


@pytest.fixture
def two_objects(viewer_widget, qtbot):
    """Object 1 clicked on slice 1 of a stack, object 2 on slice 3; the Objects tab open."""
    viewer, widget = viewer_widget
    rng = np.random.default_rng(4)
    stack = (rng.random((5, 40, 48)) * 300 + 200).astype(np.uint16)
    stack[:, 8:20, 8:20] += 3000
    stack[:, 24:36, 28:44] += 3000
    layer = viewer.add_image(stack)
    session = start(widget, layer)
    for object_id, (z, row, col) in enumerate([(1, 14, 14), (3, 30, 36)], start=1):
        session.set_object(object_id)
        viewer.dims.set_current_step(0, z)
        session.points_layer.add([[z, row, col]])
        settle(widget, qtbot)
    widget.tabs.setCurrentWidget(widget.objects.native)
    return viewer, widget, session


def test_objects_are_listed_and_selecting_one_shows_it(two_objects):
    viewer, widget, session = two_objects
    panel = widget.objects
    assert [row.object_id for row in panel.rows] == [1, 2]
    assert [row.prompted for row in panel.rows] == [(1,), (3,)]
    assert [row.frames for row in panel.rows] == [(1,), (3,)]
    assert panel.table.item(1, 3).text() == "3"
    np.testing.assert_allclose(
        panel.rows[0].color, session.labels_layer.colormap.map(1), atol=1e-6
    )
    panel.table.selectRow(0)
    assert session.object_id == 1 and viewer.dims.current_step[0] == 1
    panel.table.item(0, 2).setText("mother cell")  # typed in the name column
    assert session.names == {1: "mother cell"}


def test_merge_and_delete_are_single_undoable_edits(two_objects, qtbot):
    viewer, widget, session = two_objects
    labels = session.labels_layer
    panel = widget.objects
    both = (labels.data == 1) | (labels.data == 2)
    panel.table.selectRow(0)
    panel.merge_from.value = 2
    panel.merge_button.native.click()
    np.testing.assert_array_equal(labels.data == 1, both)
    assert list(session.points_layer.features["object_id"]) == [1, 1]
    assert [row.object_id for row in panel.rows] == [1]
    labels.undo()  # the whole merge comes back in one step
    assert (labels.data == 2).any()
    labels.redo()

    panel.table.selectRow(0)
    panel.delete_button.native.click()
    settle(widget, qtbot)
    assert not labels.data.any() and len(session.points_layer.data) == 0
    assert panel.rows == []
    labels.undo()
    np.testing.assert_array_equal(labels.data == 1, both)


def test_hiding_an_object_makes_only_its_labels_transparent(two_objects):
    viewer, widget, session = two_objects
    labels, panel = session.labels_layer, widget.objects
    original = labels.colormap
    colour_1 = original.map(np.array([1]))[0].copy()
    colour_2 = original.map(np.array([2]))[0].copy()
    panel.table.selectRow(1)
    panel.hide_button.native.click()
    assert labels.colormap.map(np.array([2]))[0][3] == 0  # object 2 hidden
    np.testing.assert_allclose(labels.colormap.map(np.array([1]))[0], colour_1)
    assert panel.table.item(1, 1).text() == "2 (hidden)"
    assert (labels.data == 2).any()  # hidden, not deleted
    panel.table.selectRow(1)
    panel.hide_button.native.click()
    assert type(labels.colormap) is type(original)  # napari's own colours are back
    np.testing.assert_allclose(labels.colormap.map(np.array([2]))[0], colour_2)
