"""Segment everything from the dock widget, with the packaged micro model."""

import numpy as np
import pytest

from napari_sam2.engine.synthetic import synthetic_cells

from .driving import WIDGET, settle, start


@pytest.fixture
def micro_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    image, truth = synthetic_cells(shape=(256, 256), n_cells=5, seed=321)
    session = start(widget, viewer.add_image(image))
    qtbot.waitUntil(lambda: session.segmenter is not None, timeout=60_000)
    widget.automatic.points_per_side.value = 12
    return viewer, widget, truth


def run(widget, qtbot):
    widget.automatic.run_button.native.click()
    qtbot.waitUntil(lambda: widget.automatic.worker is None, timeout=300_000)


def matched(labels: np.ndarray, truth: np.ndarray) -> dict[int, int]:
    """True cell → label id covering it with IoU > 0.7."""
    found = {}
    for k in range(1, truth.max() + 1):
        cell = truth == k
        for lab in np.unique(labels[cell]):
            if lab and (cell & (labels == lab)).sum() / (cell | (labels == lab)).sum() > 0.7:
                found[k] = int(lab)
    return found


def test_segment_everything_finds_each_cell_once(micro_widget, qtbot, notifications):
    viewer, widget, truth = micro_widget
    run(widget, qtbot)
    labels = widget.session.labels_layer.data
    found = matched(labels, truth)
    assert len(found) >= truth.max() - 1, found
    assert len(set(found.values())) == len(found)  # one id per cell
    assert any("new objects" in m for m in notifications)
    widget.session.labels_layer.undo()  # one edit: one undo removes it all
    assert not widget.session.labels_layer.data.any()


def test_only_new_objects_are_added_next_to_existing_labels(micro_widget, qtbot):
    viewer, widget, truth = micro_widget
    session = widget.session
    pixels = np.argwhere(truth == 1)
    session.points_layer.add([pixels[np.argmin(((pixels - pixels.mean(0)) ** 2).sum(1))]])
    settle(widget, qtbot)
    first = session.labels_layer.data == session.object_id
    assert first.any()
    run(widget, qtbot)
    labels = session.labels_layer.data
    np.testing.assert_array_equal(labels == 1, first)  # the clicked cell keeps its id/pixels
    found = matched(labels, truth)
    assert found.get(1) == 1 and len(set(found.values())) == len(found)


def test_cancel_writes_nothing(micro_widget, qtbot):
    viewer, widget, truth = micro_widget
    widget.automatic.points_per_side.value = 64
    widget.automatic.run_button.native.click()
    widget.automatic.worker.yielded.connect(lambda _: widget.automatic.cancel())
    qtbot.waitUntil(lambda: widget.automatic.worker is None, timeout=300_000)
    assert not widget.session.labels_layer.data.any()
