"""Fixtures for widget tests: the dock widget opened from the plugin menu, a model loaded."""

import numpy as np
import pytest

import napari_sam2._qt.workers  # noqa: F401  (applies the CPU triton guard before any canvas)

from .driving import WIDGET


@pytest.fixture
def notifications():
    """Messages shown to the user during the test."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def record(notification):
        seen.append(str(notification.message))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def _open_widget(make_napari_viewer, checkpoint, qtbot, show: bool = False):
    viewer = make_napari_viewer(show=show)
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    if checkpoint is not None:
        widget.checkpoint.value = checkpoint
    widget.load_model()
    qtbot.waitUntil(lambda: widget.session.segmenter is not None, timeout=60_000)
    return viewer, widget


@pytest.fixture
def viewer_widget(make_napari_viewer, random_checkpoint, qtbot):
    """A viewer with the dock widget open and the random-weight micro model loaded."""
    return _open_widget(make_napari_viewer, random_checkpoint, qtbot)


@pytest.fixture
def cells_image() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = (rng.random((64, 80)) * 300 + 200).astype(np.uint16)
    image[20:40, 25:45] += 3000
    return image


@pytest.fixture
def shown_viewer_widget(make_napari_viewer, random_checkpoint, qtbot):
    """``viewer_widget`` in a window on screen, for tests that click on the canvas."""
    return _open_widget(make_napari_viewer, random_checkpoint, qtbot, show=True)


@pytest.fixture
def two_cells_image() -> np.ndarray:
    """Two touching bright cells on a dim, noisy background (uint16)."""
    rng = np.random.default_rng(5)
    image = (rng.random((64, 96)) * 300 + 200).astype(np.uint16)
    image[16:48, 14:46] += 3000
    image[16:48, 46:80] += 2500
    return image


@pytest.fixture
def micro_viewer_widget(make_napari_viewer, qtbot):
    """``viewer_widget`` with the packaged micro model, for tests of what it finds."""
    return _open_widget(make_napari_viewer, None, qtbot)


@pytest.fixture
def shown_micro_viewer_widget(make_napari_viewer, qtbot):
    """``micro_viewer_widget`` in a window on screen, for tests of what it finds in the view."""
    return _open_widget(make_napari_viewer, None, qtbot, show=True)


@pytest.fixture
def stack():
    """A small 16-bit (t, y, x) stack with one bright square."""
    rng = np.random.default_rng(0)
    frames = (rng.random((6, 32, 32)) * 300).astype(np.uint16)
    frames[:, 10:20, 12:22] += 2000
    return frames
