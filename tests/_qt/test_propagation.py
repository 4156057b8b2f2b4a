"""Propagate from the dock widget: frames fill in, cancel keeps the rest, corrections re-run
only up to the next prompted frame, exports. Random weights: wiring is compared exactly with
the engine, never judged on quality."""

import numpy as np
import pytest

from napari_sam2.engine.video.stream import write_labels

from .driving import calls_of, propagate_and_wait, settle, start


@pytest.mark.parametrize("storage", ["numpy", "zarr"])
def test_propagate_fills_the_frames_like_the_engine(viewer_widget, stack, qtbot, storage):
    """Into the plugin's own Labels layer, or into the user's, backed by a zarr array (for
    stacks larger than memory): the same labels as the engine's."""
    viewer, widget = viewer_widget
    layer = viewer.add_image(stack)
    labels = None
    if storage == "zarr":
        import zarr

        store = zarr.zeros(stack.shape, chunks=(1, 32, 32), dtype=np.int32)
        labels = viewer.add_labels(store, name="on disk")
    session = start(widget, layer, labels)
    assert widget.propagation.frame_axis.value == 0
    assert (widget.propagation.first.value, widget.propagation.last.value) == (0, 5)
    viewer.dims.set_current_step(0, 2)
    session.points_layer.add([[2, 15, 16]])
    settle(widget, qtbot)
    propagate_and_wait(widget, qtbot)

    want = np.zeros(stack.shape, np.int32)
    seg = session.segmenter
    prompts = {2: {1: dict(points=[(15, 16)], point_labels=[1])}}
    stream = seg.propagate(stack, prompts, "both", contrast_limits=layer.contrast_limits)
    list(write_labels(stream, want, overwrite=False))
    assert (want == 1).any(axis=(1, 2)).sum() > 1  # the comparison covers several frames
    assert session.labels_layer is labels or storage == "numpy"
    np.testing.assert_array_equal(np.asarray(session.labels_layer.data[:]), want)


def test_cancel_keeps_done_frames_and_leaves_the_rest(viewer_widget, stack, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(stack)
    user = np.zeros(stack.shape, np.int32)
    user[:, :3, :3] = 7
    labels = viewer.add_labels(user.copy())
    session = start(widget, layer, labels)
    session.set_object(1)
    session.points_layer.add([[0, 15, 16]])
    settle(widget, qtbot)
    widget.propagation.direction.value = "forward"
    written = []
    controls = widget.propagation
    controls.propagate_button.native.click()
    controls.worker.yielded.connect(lambda result: written.append(result[0]))
    controls.worker.yielded.connect(lambda _: len(written) == 2 and controls.cancel())
    qtbot.waitUntil(lambda: controls.worker is None, timeout=120_000)
    done = sorted(set(written))
    assert done[:2] == [0, 1] and len(done) < 6
    for t in range(6):
        if t not in done:
            np.testing.assert_array_equal(labels.data[t], user[t])
    assert (labels.data[:, :3, :3] == 7).all()  # never overwritten
    # The session is free again: a new run goes through.
    propagate_and_wait(widget, qtbot)


def test_a_correction_reruns_only_up_to_the_next_prompted_frame(viewer_widget, stack, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(stack)
    session = start(widget, layer)
    widget.propagation.direction.value = "forward"
    session.points_layer.add([[0, 15, 16], [4, 14, 15]])
    propagate_and_wait(widget, qtbot)
    before = session.labels_layer.data.copy()

    session.points_layer.add([[2, 12, 18]])  # a correction click on frame 2
    settle(widget, qtbot)
    steps, stream = widget.propagation.propagation.start("forward")
    stream.close()
    assert [step.frame for step in steps] == [2, 3]
    np.testing.assert_array_equal(session.labels_layer.data[[0, 1, 4, 5]], before[[0, 1, 4, 5]])


def test_propagate_without_prompts_or_on_a_2d_image(viewer_widget, stack, notifications):
    viewer, widget = viewer_widget
    start(widget, viewer.add_image(stack))
    widget.propagation.propagate_button.native.click()
    assert any("No prompts" in m for m in notifications)
    start(widget, viewer.add_image(stack[0]))
    widget.propagation.propagate_button.native.click()
    assert any("2D" in m for m in notifications)


def test_layer_removed_while_propagating(viewer_widget, stack, qtbot, notifications):
    viewer, widget = viewer_widget
    layer = viewer.add_image(stack)
    session = start(widget, layer)
    session.points_layer.add([[0, 15, 16]])
    settle(widget, qtbot)
    controls = widget.propagation
    controls.propagate_button.native.click()
    controls.worker.yielded.connect(
        lambda _: layer in viewer.layers and viewer.layers.remove(layer)
    )
    qtbot.waitUntil(lambda: controls.worker is None, timeout=120_000)
    assert any("removed while propagating" in m for m in notifications)


def test_exports_tracks_table_and_labels(viewer_widget, stack, qtbot, tmp_path):
    viewer, widget = viewer_widget
    layer = viewer.add_image(stack)
    session = start(widget, layer)
    session.points_layer.add([[0, 15, 16]])
    settle(widget, qtbot)
    propagate_and_wait(widget, qtbot)
    controls = widget.export
    controls.tracks_button.native.click()
    tracks = viewer.layers["SAM2 tracks"].data
    frames_with_object = [t for t in range(6) if (session.labels_layer.data[t] == 1).any()]
    assert sorted(tracks[tracks[:, 0] == 1, 1].astype(int)) == frames_with_object

    csv = tmp_path / "objects.csv"
    controls.path.value = csv
    controls.export_button.native.click()
    lines = csv.read_text().splitlines()
    assert "area" in lines[0] and len(lines) == 1 + len(frames_with_object)
    header = lines[0].split(",")
    confidence = [float(line.split(",")[header.index("confidence")]) for line in lines[1:]]
    assert all(0 <= c <= 1 for c in confidence)  # each tracked row says how sure it is
    assert {line.split(",")[header.index("parent")] for line in lines[1:]} == {"0"}

    controls.ctc_folder.line_edit.value = str(tmp_path / "ctc")
    controls.ctc_button.native.click()
    man_track = (tmp_path / "ctc" / "man_track.txt").read_text().split()
    assert man_track[:2] == ["1", str(frames_with_object[0])]

    tif = tmp_path / "labels.tif"
    controls.path.value = tif
    controls.export_button.native.click()
    import tifffile

    saved = tifffile.imread(tif)
    assert saved.dtype == np.uint8
    np.testing.assert_array_equal(saved, session.labels_layer.data)


def test_progress_estimate_and_follow_in_the_tab(viewer_widget, stack, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(stack)
    viewer.dims.axis_labels = ("z", "y", "x")
    session = start(widget, layer)
    controls = widget.propagation
    assert controls.frame_axis.current_choice == "z (6 slices)"
    assert controls.first.label == "First slice"
    viewer.dims.set_current_step(0, 2)
    session.points_layer.add([[2, 15, 16]])
    settle(widget, qtbot)
    assert controls.estimate.value.startswith("6 slices × 1 object")
    controls.follow.value = True
    shown = []
    controls.propagate_button.native.click()
    controls.worker.yielded.connect(lambda result: shown.append(viewer.dims.current_step[0]))
    controls.worker.yielded.connect(lambda result: shown.append(result[0]))
    qtbot.waitUntil(lambda: controls.worker is None, timeout=120_000)
    assert controls.progress.value == controls.progress.max == 6
    assert controls.progress_text.value == "finished: 6 of 6 written"
    # Each finished slice was on screen when the next result came in (follow).
    assert viewer.dims.current_step[0] == shown[-1]
    assert "about" in controls.estimate.value  # measured now


def test_the_estimate_follows_what_a_frame_of_many_objects_cost(viewer_widget, stack, qtbot):
    """Objects share one tracking step a frame. With one run measured, more objects are scaled
    from it as an upper bound; with runs of 1 and 8 objects (recorded: 10 and 17 s a frame,
    as on a GPU, where 8 objects cost far less than 8 × one), 3 objects are read off the
    measured line, not 3 × the one-object frame."""
    viewer, widget = viewer_widget
    layer = viewer.add_image(stack)
    viewer.dims.axis_labels = ("t", "y", "x")
    session = start(widget, layer)
    for object_id, (y, x) in enumerate([(5, 5), (15, 16), (26, 26)], start=1):
        session.set_object(object_id)
        session.points_layer.add([[0, y, x]])
        settle(widget, qtbot)
    controls = widget.propagation
    controls.run_times().add(frames=6, object_frames=6, seconds=60)  # 1 object
    controls.update_estimate()
    assert controls.estimate.value.startswith("6 frames × 3 objects: at most 3 min")
    controls.run_times().add(frames=6, object_frames=48, seconds=102)  # 8 objects
    controls.update_estimate()
    assert controls.estimate.value.startswith("6 frames × 3 objects: about 72 s")


def test_2d_export_and_messages_a_user_can_get(
    viewer_widget, cells_image, qtbot, tmp_path, notifications
):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    session = start(widget, layer)
    assert widget.labels.value == session.labels_layer  # not "-----" (== : napari proxies)
    session.points_layer.add([[30, 35]])
    settle(widget, qtbot)
    controls = widget.export
    controls.path.value = tmp_path / "plane.csv"
    controls.export_button.native.click()
    lines = (tmp_path / "plane.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("0,1,")  # frame 0, label 1
    controls.path.value = tmp_path / "plane.tif"
    controls.export_button.native.click()
    import tifffile

    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "plane.tif"), session.labels_layer.data
    )

    controls.path.line_edit.value = ""  # the user clears the path
    controls.export_button.native.click()
    assert "Choose a file to export to" in notifications[-1]
    controls.path.value = tmp_path / "missing" / "plane.tif"
    controls.export_button.native.click()
    assert "does not exist" in notifications[-1]
    controls.tracks_button.native.click()
    assert "2D" in notifications[-1]


def test_second_propagate_while_running_and_data_replaced(
    viewer_widget, stack, qtbot, notifications
):
    viewer, widget = viewer_widget
    layer = viewer.add_image(stack)
    session = start(widget, layer)
    session.points_layer.add([[0, 15, 16]])
    settle(widget, qtbot)
    controls = widget.propagation
    controls.propagate_button.native.click()
    running = controls.worker
    controls.propagate()  # a second press (e.g. from the console) while the first runs
    assert controls.worker is running
    assert any("already running" in m for m in notifications)

    def replace_data(_):
        if layer.data is stack:
            layer.data = stack.copy()

    running.yielded.connect(replace_data)
    qtbot.waitUntil(lambda: controls.worker is None, timeout=120_000)
    assert any("image data changed" in m for m in notifications)
    written = [t for t in range(6) if session.labels_layer.data[t].any()]
    assert len(written) < 6  # the run stopped; nothing was written after the change


def test_loading_another_model_starts_a_new_propagation(viewer_widget, stack, qtbot):
    viewer, widget = viewer_widget
    session = start(widget, viewer.add_image(stack))
    session.points_layer.add([[0, 15, 16]])
    settle(widget, qtbot)
    propagate_and_wait(widget, qtbot)
    first = widget.propagation.propagation
    old = session.segmenter
    widget.load_model()
    qtbot.waitUntil(lambda: session.segmenter is not old, timeout=60_000)
    propagate_and_wait(widget, qtbot)
    assert widget.propagation.propagation is not first
    assert widget.propagation.propagation.segmenter is session.segmenter


def test_pressing_propagate_leaves_the_model_to_the_worker(viewer_widget, stack, qtbot):
    """The prompted frame is encoded when the run starts, in the worker: pressing Propagate
    never makes napari wait for the model (seconds per frame on a CPU with a larger model)."""
    import threading

    viewer, widget = viewer_widget
    session = start(widget, viewer.add_image(stack))
    session.points_layer.add([[0, 15, 16]])
    settle(widget, qtbot)

    def in_gui_thread():
        return threading.current_thread() is threading.main_thread()

    with calls_of(session.segmenter.model, "forward_image", in_gui_thread) as encoded_in:
        propagate_and_wait(widget, qtbot)
    assert encoded_in and not any(encoded_in)


def test_only_the_shown_frame_is_redrawn_while_propagating(viewer_widget, stack, qtbot):
    """Frames written off screen are not redrawn (each redraw stalls napari), yet moving to
    them shows what was written, and the shown frame is redrawn as it is written."""
    viewer, widget = viewer_widget
    session = start(widget, viewer.add_image(stack))
    prompts = {2: {1: dict(points=[(15, 16)], point_labels=[1])}}
    seg = session.segmenter
    want = np.zeros(stack.shape, np.int32)
    list(write_labels(seg.propagate(stack, prompts, "both"), want, overwrite=False))
    shown = next(t for t in (4, 5, 3, 1, 0) if (want[t] == 1).any())  # a frame that changes
    viewer.dims.set_current_step(0, 2)
    session.points_layer.add([[2, 15, 16]])
    settle(widget, qtbot)
    viewer.dims.set_current_step(0, shown)
    labels = session.labels_layer
    with calls_of(labels, "refresh", lambda: viewer.dims.current_step[0]) as redrawn_at:
        propagate_and_wait(widget, qtbot)
    assert redrawn_at == [shown]  # 6 frames written, one of them on screen
    for t in range(len(stack)):
        viewer.dims.set_current_step(0, t)
        np.testing.assert_array_equal(labels._slice.image.raw, labels.data[t])


def test_a_shown_frame_that_does_not_change_is_not_redrawn(viewer_widget, stack, qtbot):
    viewer, widget = viewer_widget
    session = start(widget, viewer.add_image(stack))
    viewer.dims.set_current_step(0, 3)
    session.points_layer.add([[3, 15, 16]])
    settle(widget, qtbot)
    propagation = widget.propagation.current()
    labels = session.labels_layer
    mask = np.zeros((1, 32, 32), bool)
    mask[0, 5:9, 5:9] = True
    with calls_of(labels, "refresh", lambda: 3) as redraws:
        propagation.write(3, [7], mask)  # new pixels on the shown frame: redrawn
        propagation.write(3, [7], mask)  # the same again: nothing to redraw
    assert len(redraws) == 1
    assert (labels._slice.image.raw[5:9, 5:9] == 7).all()
