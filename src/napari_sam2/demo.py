"""Open napari with the plugin docked, sample cells loaded and the micro model ready.

``python -m napari_sam2.demo`` opens the viewer; ``--screenshot out.png`` instead clicks the
first cell, waits for its mask and saves a picture of the whole window (works headless under
a virtual display).
"""

from __future__ import annotations

import argparse

import numpy as np

from .engine.models import MICRO_MODEL
from .engine.synthetic import synthetic_cells
from .sample_data import CELLS, cells


def wait_until(condition, timeout_s: float) -> bool:
    """Run the Qt event loop until ``condition()`` holds or ``timeout_s`` passes."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: condition() and loop.quit())
    timer.start(50)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    timer.stop()
    return condition()


def open_viewer_with_widget(image, model: str = MICRO_MODEL, **image_kwargs):
    """A napari window with ``image``, the dock widget attached to it and ``model`` loaded."""
    import napari

    from ._qt import workers  # noqa: F401  (model imports before the canvas draws)

    viewer = napari.Viewer(title="napari-sam2")
    viewer.window.resize(1500, 950)
    layer = viewer.add_image(image, **image_kwargs)
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2", "Segment with SAM2")
    widget.model.value = model
    widget.image.value = layer
    widget.start()
    if not wait_until(lambda: widget.session.segmenter is not None, 600):
        raise SystemExit("The model did not load; see the notifications above.")
    return viewer, widget


def cell_centres(n: int) -> list[tuple[float, float]]:
    """(row, col) centres of the first ``n`` cells of the sample image, where a user clicks."""
    _, truth = synthetic_cells(**CELLS)
    return [tuple(np.argwhere(truth == i).mean(axis=0)) for i in range(1, n + 1)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m napari_sam2.demo", description=__doc__)
    parser.add_argument("--screenshot", help="click a cell, save a PNG of the window, exit")
    parser.add_argument("--model", default=MICRO_MODEL, help="model name (default: micro)")
    args = parser.parse_args(argv)

    import napari

    viewer, widget = open_viewer_with_widget(cells()[0][0], args.model, name="synthetic cells")
    if args.screenshot is None:
        napari.run()
        return
    widget.session.points_layer.add([cell_centres(1)[0]])
    labels = widget.session.labels_layer
    if not wait_until(lambda: bool((labels.data == 1).any()), 120):
        raise SystemExit("No mask appeared for the click.")
    viewer.screenshot(args.screenshot, canvas_only=False)
    print(f"saved {args.screenshot}")
    viewer.close()


if __name__ == "__main__":
    main()
