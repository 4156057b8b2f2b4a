"""Marking a division in the widget: two clicks on the daughters, lineage in the exports."""

from .driving import propagate_and_wait, settle, start


def test_a_division_ends_the_mother_and_tracks_two_new_ids(
    viewer_widget,
    stack,
    qtbot,
    tmp_path,
):
    viewer, widget = viewer_widget
    layer = viewer.add_image(stack)
    session = start(widget, layer)
    controls = widget.propagation
    controls.direction.value = "forward"
    viewer.dims.set_current_step(0, 0)
    session.points_layer.add([[0, 15, 16]])
    settle(widget, qtbot)
    propagate_and_wait(widget, qtbot)
    assert (session.labels_layer.data[:3] == 1).any()

    viewer.dims.set_current_step(0, 3)
    session.set_object(1)
    controls.divide_button.native.click()
    assert "daughters of object 1" in controls.divide_button.text
    session.points_layer.add([[3, 12, 14]])
    session.points_layer.add([[3, 18, 20]])
    qtbot.waitUntil(lambda: controls.worker is None, timeout=120_000)
    settle(widget, qtbot)

    labels = session.labels_layer.data
    assert not (labels[3:] == 1).any()  # the mother's track ends on frame 2
    assert list(session.points_layer.features["object_id"]) == [1, 2, 3]
    assert controls.propagation.session.parents == {2: 1, 3: 1}
    assert controls.progress_text.value == "finished: 3 of 3 written"  # frames 3, 4, 5

    export = widget.export
    export.tracks_button.native.click()
    graph = viewer.layers["SAM2 tracks"].graph
    daughters = [d for d in (2, 3) if (labels == d).any()]
    assert {d: graph[d] for d in daughters} == {d: [1] for d in daughters}
