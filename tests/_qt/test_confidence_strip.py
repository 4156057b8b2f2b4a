"""The confidence strip shows where tracking is doubtful; clicking it goes there."""

import numpy as np
from qtpy.QtCore import QPoint, Qt

from napari_sam2.engine.synthetic import synthetic_clip

from .driving import settle, start


def test_strip_marks_the_frames_a_cell_was_away_and_takes_the_user_there(
    micro_viewer_widget, qtbot
):
    viewer, widget = micro_viewer_widget
    frames, truth = synthetic_clip(12, (256, 256), n_cells=2, seed=3, absent=(5, 8))
    layer = viewer.add_image(frames)
    session = start(widget, layer)
    viewer.dims.set_current_step(0, 0)
    session.points_layer.add([[0, *np.argwhere(truth[0] == 1).mean(axis=0)]])
    settle(widget, qtbot)
    controls = widget.propagation
    controls.direction.value = "forward"
    controls.propagate_button.native.click()
    qtbot.waitUntil(lambda: controls.worker is None, timeout=300_000)

    strip = controls.strip
    confidence = strip.confidence[1]
    assert (confidence[[5, 6, 7]] < 0.2).all() and (confidence[[0, 1, 2, 3, 4, 9]] > 0.8).all()

    # A click on the strip's cell for frame 6 shows frame 6 with object 1 current.
    session.set_object(2)
    cell = strip.width() / 12
    qtbot.mouseClick(strip, Qt.MouseButton.LeftButton, pos=QPoint(int(6.5 * cell), 5))
    assert viewer.dims.current_step[0] == 6 and session.object_id == 1

    # Next doubtful frame, from frame 9: wraps round to frame 5.
    viewer.dims.set_current_step(0, 9)
    controls.doubtful_button.native.click()
    assert viewer.dims.current_step[0] == 5

    # The objects panel lists the tracked cell with its last confidence.
    widget.tabs.setCurrentWidget(widget.objects.native)
    assert widget.objects.table.item(0, 5).text() == f"{confidence[11]:.2f} (frame 11)"
