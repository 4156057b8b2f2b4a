"""Save an annotation from the widget, reopen it on a fresh start, and go on correcting."""

import numpy as np

from .driving import propagate_and_wait, settle, start


def test_saved_annotation_reopens_with_labels_prompts_and_corrects_only_its_part(
    viewer_widget,
    stack,
    qtbot,
    tmp_path,
    notifications,
    monkeypatch,
):
    viewer, widget = viewer_widget
    layer = viewer.add_image(stack)
    session = start(widget, layer)
    widget.propagation.direction.value = "forward"
    viewer.dims.set_current_step(0, 1)
    session.points_layer.add([[1, 15, 16]])
    session.set_object(2)
    session.shapes_layer.add_rectangles([[1, 2, 2], [1, 2, 12], [1, 12, 12], [1, 12, 2]])
    settle(widget, qtbot)
    propagate_and_wait(widget, qtbot)
    labels_before = session.labels_layer.data.copy()
    points_before = session.points_layer.data.copy()
    assert (labels_before == 1).any()  # (random weights: object 2 may find no free pixel)

    resume = widget.resume
    resume.folder.line_edit.value = str(tmp_path / "day1")
    resume.save_button.native.click()
    assert (tmp_path / "day1" / "annotation.json").exists()
    from qtpy.QtWidgets import QMessageBox

    asked = []
    for answer in (QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes):
        monkeypatch.setattr(QMessageBox, "question", lambda *a, _=answer: asked.append(a) or _)
        stamp = (tmp_path / "day1" / "annotation.json").stat().st_mtime_ns
        resume.save_button.native.click()  # never overwritten silently: the user is asked
        replaced = (tmp_path / "day1" / "annotation.json").stat().st_mtime_ns != stamp
        assert replaced == (answer == QMessageBox.StandardButton.Yes)
    assert len(asked) == 2

    # Tomorrow: the prompts and labels are gone; open the folder.
    for name in ("SAM2 points", "SAM2 boxes", "SAM2 labels"):
        viewer.layers.remove(name)
    session = start(widget, layer)
    assert not session.labels_layer.data.any()
    resume.open_button.native.click()
    settle(widget, qtbot)
    np.testing.assert_array_equal(session.labels_layer.data, labels_before)
    np.testing.assert_allclose(session.points_layer.data, points_before, atol=1e-6)
    assert list(session.shapes_layer.features["object_id"]) == [2]
    controls = widget.propagation
    assert (controls.first.value, controls.last.value) == (0, 5)
    assert np.isfinite(controls.strip.confidence[1][1:]).all()  # the strip came back too

    # Nothing to re-run; a correction on frame 3 re-runs object 1 from 3 to the end only.
    controls.propagate_button.native.click()
    assert "Nothing changed" in notifications[-1]
    viewer.dims.set_current_step(0, 3)
    session.set_object(1)
    session.points_layer.add([[3, 14, 18]])
    settle(widget, qtbot)
    steps, stream = controls.propagation.start("forward")
    stream.close()
    assert [(step.frame, step.object_ids) for step in steps] == [(3, (1,)), (4, (1,)), (5, (1,))]
