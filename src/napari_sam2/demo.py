"""Open napari with the plugin docked, sample cells loaded and the micro model ready.

``python -m napari_sam2.demo`` opens the viewer; ``--screenshot out.png`` instead clicks the
first cell, waits for its mask and saves a picture of the whole window (works headless under
a virtual display).
"""

from __future__ import annotations

import argparse

import numpy as np

from .engine.models import MICRO_MODEL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m napari_sam2.demo", description=__doc__)
    parser.add_argument("--screenshot", help="click a cell, save a PNG of the window, exit")
    parser.add_argument("--model", default=MICRO_MODEL, help="model name (default: micro)")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from .engine.synthetic import synthetic_cells
    from .sample_data import cells

    viewer = napari.Viewer(title="napari-sam2 demo")
    viewer.window.resize(1500, 950)
    image = viewer.add_image(cells()[0][0], name="synthetic cells")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2", "Segment with SAM2")
    widget.model.value = args.model
    widget.image.value = image
    widget.start()

    def wait_until(condition, timeout_s: float) -> bool:
        loop, timer = QEventLoop(), QTimer()
        timer.timeout.connect(lambda: condition() and loop.quit())
        timer.start(50)
        QTimer.singleShot(int(timeout_s * 1000), loop.quit)
        loop.exec()
        timer.stop()
        return condition()

    if not wait_until(lambda: widget.session.segmenter is not None, 600):
        raise SystemExit("The model did not load; see the notifications above.")
    if args.screenshot is None:
        napari.run()
        return
    # The sample is made from seed 7: click the centre of its first cell, as a user would.
    _, truth = synthetic_cells(shape=(512, 512), n_cells=12, seed=7)
    row, col = np.argwhere(truth == 1).mean(axis=0)
    widget.session.points_layer.add([[row, col]])
    labels = widget.session.labels_layer
    if not wait_until(lambda: bool((labels.data == 1).any()), 120):
        raise SystemExit("No mask appeared for the click.")
    viewer.screenshot(args.screenshot, canvas_only=False)
    print(f"saved {args.screenshot}")
    viewer.close()


if __name__ == "__main__":
    main()
