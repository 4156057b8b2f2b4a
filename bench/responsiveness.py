"""Does napari stay responsive? The Qt event loop's longest stall during the plugin's long jobs.

A 5 ms ``QTimer`` probe runs in the GUI thread of a viewer (shown; on Xvfb where there is no
display) with the dock widget open; every gap between two ticks is time the event loop could
not serve the user. The longest gap is reported for each phase:

* ``idle``: nothing runs; the baseline set by drawing and by other processes on the machine;
* ``load``: the widget loads a model (its worker builds it and reads the checkpoint);
* ``first_click``: the first click on a large image (default 4096², uint16): the worker hashes,
  normalises, shrinks and embeds the plane, then the mask is written into the Labels layer;
* ``clicks``: repeated clicks on the cached embedding (the click moves each time);
* ``propagation`` (with ``--propagate-frames N``): a stack of N frames (the image drifting
  sideways) is opened, one cell clicked on frame 0, and the widget's Propagate runs forward
  through it, writing each frame into the Labels layer as it arrives, the viewer standing on
  frame ``--watch-frame`` (default 0, the prompted frame).

The time the GUI thread spends in ``AnnotationSession.apply`` (writing a mask into the Labels
layer, the only model-related step that has to run there) is reported too, since it is what
such a stall is made of, as is drawing (software OpenGL on Xvfb: slower than a GPU's).
Target: every stall under 50 ms. Needs napari and a display (``xvfb-run`` on a machine
without one). Models use random weights unless ``--micro-checkpoint`` is given.

Example::

    xvfb-run -a -s "-screen 0 1920x1080x24" \\
        python bench/responsiveness.py --device cpu --model tiny --size 4096
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _common import (
    MODEL_NAMES,
    Recorder,
    base_parser,
    checkpoint_for,
    environment,
    open_viewer,
)

PROBE_MS = 5
TARGET_MS = 50
SAMPLE_MS = 10
SAMPLE_AFTER_MS = 30


class StallProbe:
    """A fast QTimer in the GUI thread recording the gaps between its ticks.

    While a gap is under way past ``SAMPLE_AFTER_MS``, a thread samples the GUI thread's Python
    stack every ``SAMPLE_MS``: the most frequent stacks say what the stalls were made of.
    """

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.stacks: collections.Counter = collections.Counter()
        self.timer = QTimer()
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self._gui = threading.get_ident()
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self) -> None:
        self.ticks = [time.perf_counter()]
        self.stacks.clear()
        self.timer.start()
        self._stop.clear()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def stop(self) -> np.ndarray:
        """Gaps in ms between consecutive ticks since ``start`` (the last one up to now)."""
        self.timer.stop()
        self._stop.set()
        self._sampler.join()
        ticks = np.array([*self.ticks, time.perf_counter()])
        return np.diff(ticks) * 1000

    def top_stacks(self, n: int = 3) -> list[list]:
        """[samples, stack] of the ``n`` most sampled stacks (one sample ≈ SAMPLE_MS)."""
        return [[count, stack] for stack, count in self.stacks.most_common(n)]

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_MS / 1000):
            if (time.perf_counter() - self.ticks[-1]) * 1000 < SAMPLE_AFTER_MS:
                continue
            frame = sys._current_frames().get(self._gui)
            calls = []
            while frame is not None and len(calls) < 5:
                code = frame.f_code
                calls.append(f"{Path(code.co_filename).name}:{code.co_name}:{frame.f_lineno}")
                frame = frame.f_back
            self.stacks[" < ".join(calls) or "(outside Python: Qt, drawing)"] += 1


def wait_for(condition, timeout_s: float = 600, fail: bool = True) -> None:
    """Serve the event loop (as napari's would) until ``condition()`` holds."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    check = QTimer()
    check.setInterval(10)
    check.timeout.connect(lambda: condition() and loop.quit())
    check.start()
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    if not condition():
        loop.exec()
    check.stop()
    if fail and not condition():
        raise RuntimeError(f"gave up waiting after {timeout_s} s")


def report(record, phase: str, probe: StallProbe, **fields) -> None:
    gaps = probe.stop()
    record(
        "event_loop_max_stall",
        round(float(gaps.max()), 1),
        "ms",
        phase=phase,
        p99=round(float(np.percentile(gaps, 99)), 1),
        stalls_over_target=int((gaps > TARGET_MS).sum()),
        ticks=len(gaps),
        duration_s=round(float(gaps.sum()) / 1000, 2),
        target_ms=TARGET_MS,
        stall_stacks=probe.top_stacks(),
        **fields,
    )


def main(argv=None) -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--model", choices=list(MODEL_NAMES), default="tiny")
    parser.add_argument("--size", type=int, default=4096, help="side of the square image")
    parser.add_argument("--clicks", type=int, default=None)
    parser.add_argument("--idle-s", type=float, default=3.0, help="baseline probe length")
    parser.add_argument(
        "--propagate-frames", type=int, default=0, help="also time a propagation (0: skip)"
    )
    parser.add_argument(
        "--watch-frame",
        type=int,
        default=0,
        help="the frame the viewer shows while propagating (0: the prompted frame)",
    )
    args = parser.parse_args(argv)
    clicks_n = args.clicks or (5 if args.quick else 20)

    import napari_sam2._qt.workers  # noqa: F401  (triton guard before any canvas)
    from napari_sam2.engine.models import select_device
    from napari_sam2.engine.synthetic import synthetic_cells

    device = select_device(args.device)
    record = Recorder("responsiveness", environment(device), args.out)
    name = MODEL_NAMES[args.model]
    tile, cell_labels = synthetic_cells((1024, 1024), n_cells=24, dtype=np.uint16, seed=1)
    reps = -(-args.size // 1024)
    image = np.tile(tile, (reps, reps))[: args.size, : args.size]
    centres = [
        tuple(int(np.median(a)) for a in np.nonzero(cell_labels == obj))
        for obj in np.unique(cell_labels)[1:]
    ]

    viewer = open_viewer(args.hidden)
    probe = StallProbe()
    try:
        _, widget = viewer.window.add_plugin_dock_widget("napari-sam2", "Segment with SAM2")
        layer = viewer.add_image(image)
        widget.model.value = name
        widget.device.value = device.type
        apply_ms: list[float] = []
        original_apply = widget.session.apply

        def timed_apply(request, results):
            start = time.perf_counter()
            out = original_apply(request, results)
            apply_ms.append((time.perf_counter() - start) * 1000)
            return out

        widget.session.apply = timed_apply
        # Baseline: the same probe while nothing runs (drawing and other processes' load).
        probe.start()
        wait_for(lambda: False, timeout_s=args.idle_s, fail=False)
        report(record, "idle", probe, model=name, device=device.type, size=args.size)
        with checkpoint_for(name, args.micro_checkpoint) as (path, weights):
            fields = dict(model=name, device=device.type, size=args.size, weights=weights)
            widget.checkpoint.value = path
            probe.start()
            widget.load_model()
            wait_for(lambda: widget.session.segmenter is not None)
            report(record, "load", probe, **fields)

        widget.image.value = layer
        widget.start()
        session = widget.session

        def click(i: int, *leading: int) -> None:
            row, col = centres[i % len(centres)]
            done = len(apply_ms)
            session.points_layer.data = np.array([[*leading, row, col]], float)
            wait_for(lambda: len(apply_ms) > done and not widget._busy)

        probe.start()
        click(0)
        report(record, "first_click", probe, **fields)
        first_apply = apply_ms[-1]

        probe.start()
        for i in range(1, clicks_n + 1):
            click(i)
        report(record, "clicks", probe, clicks=clicks_n, **fields)
        record("gui_thread_apply", round(first_apply, 1), "ms", phase="first_click", **fields)
        record(
            "gui_thread_apply",
            round(float(np.median(apply_ms[1:])), 1),
            "ms",
            phase="clicks",
            max=round(float(np.max(apply_ms[1:])), 1),
            **fields,
        )
        record(
            "mask_fraction",
            round(float((session.labels_layer.data > 0).mean()), 4),
            "1",
            phase="clicks",
            **fields,
        )
        if args.propagate_frames:
            n = args.propagate_frames
            stack = np.stack([np.roll(image, 4 * t, axis=1) for t in range(n)])
            widget.image.value = viewer.add_image(stack, name="drifting stack")
            viewer.dims.set_current_step(0, 0)
            widget.start()
            click(0, 0)
            controls = widget.propagation
            controls.refresh()
            controls.direction.value = "forward"
            viewer.dims.set_current_step(0, args.watch_frame)
            probe.start()
            controls.propagate()
            wait_for(lambda: controls.worker is None)
            report(record, "propagation", probe, frames=n, watched=args.watch_frame, **fields)
    finally:
        viewer.close()


if __name__ == "__main__":
    main()
