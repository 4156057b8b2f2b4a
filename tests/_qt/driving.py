"""Steps a user takes with the widget, shared by the widget tests."""

import contextlib

import numpy as np

WIDGET = ("napari-sam2", "Segment with SAM2")


def start(widget, image_layer, labels_layer=None):
    widget.image.value = image_layer
    if labels_layer is not None:
        widget.labels.value = labels_layer
    widget.start()
    return widget.session


def expected_mask(widget, plane, layer, **prompt) -> np.ndarray:
    """What the engine predicts for ``prompt`` on ``plane`` with the intensities the widget
    chose for ``layer`` (its contrast limits where they fit the data)."""
    seg = widget.session.segmenter
    assert widget.session.image_layer is layer
    seg.set_image(plane, contrast_limits=widget.session.intensities().limits)
    return seg.predict(**prompt)


def settle(widget, qtbot, timeout: int = 30_000) -> None:
    """Wait until every prompt change has been segmented and written."""
    qtbot.waitUntil(lambda: not widget._busy and widget.session.request() is None, timeout=timeout)


@contextlib.contextmanager
def calls_of(obj, name: str, note):
    """While inside, each call of ``obj.<name>`` first appends ``note()`` to the yielded list."""
    original = getattr(obj, name)
    seen: list = []

    def recording(*args, **kwargs):
        seen.append(note())
        return original(*args, **kwargs)

    setattr(obj, name, recording)
    try:
        yield seen
    finally:
        delattr(obj, name)


def click(viewer, qtbot, layer, data_point, modifier=None) -> None:
    """A left click on the canvas, as the user makes it, at ``data_point`` of ``layer``.

    ``modifier`` is a Qt keyboard modifier (e.g. ``Qt.KeyboardModifier.ControlModifier``).
    """
    from qtpy.QtCore import QPoint, Qt

    canvas = viewer.window._qt_viewer.canvas
    world = np.asarray(layer.data_to_world(data_point))
    displayed = list(viewer.dims.displayed)
    view = canvas.view
    x, y = (view.transform * view.scene.transform).map(list(world[displayed][::-1]))[:2]
    qtbot.mouseClick(
        canvas.native,
        Qt.MouseButton.LeftButton,
        modifier or Qt.KeyboardModifier.NoModifier,
        QPoint(int(round(x)), int(round(y))),
    )


def propagate_and_wait(widget, qtbot) -> None:
    """Press Propagate and wait until the run has finished."""
    widget.propagation.propagate_button.native.click()
    qtbot.waitUntil(lambda: widget.propagation.worker is None, timeout=120_000)
