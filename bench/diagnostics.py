"""The one-off checks behind the explanations in docs/performance.md (plain text, not JSON).

* ``threads``: a tiny click in the main thread with torch's two threads, in a Python worker
  thread, and in the main thread with one thread (wall-clock and process CPU time), to show
  how a loaded machine inflates main-thread timings;
* ``viewer``: moving a mask in a Labels layer of a hidden and of a shown viewer, at 1024² and
  4096² (a hidden viewer re-slices the whole layer on every edit);
* ``write``: the cost of ``write_object`` against mask size at 1024² and 4096², and of its
  whole-plane numpy part alone;
* ``propagation``: where a tracked frame's time goes, in this engine and in the official
  predictor (sam2.1 tiny, random weights, one object): wall-clock time per step of the
  engine, then torch's profiler over a stretch of frames of each (host time per operator,
  and how much of the wall-clock time the GPU is busy);
* ``pipeline``: the engine's frames/s with one frame reader instead of four, or a shorter
  thread switch interval, against the official loop, in one process. (At commit 8a0d26b it
  also measured encoding the next batch in a background thread: no gain, since removed.)
* ``objects``: where the time of a frame with many objects goes (packaged micro, a crowded
  synthetic clip, N cells clicked): the time to give the prompts and to the first mask, then
  torch's profiler over a stretch of frames, by operator on the host and on the GPU;
* ``first-runs``: the wall time of every frame of a fresh process's first two runs over one
  crowded synthetic clip (random weights), listing the frames over three times the median;
* ``encoder``: the image encoder alone (random weights, bfloat16 autocast as the engine runs
  it) per frame, eager and ``torch.compile``'d (inductor's default mode, static shapes), for
  one image and for a batch of 8, with the time each shape takes to compile.

    xvfb-run -a -s "-screen 0 1920x1080x24" python bench/diagnostics.py viewer
    python bench/diagnostics.py threads
    python bench/diagnostics.py propagation --device cuda --frames 200
    python bench/diagnostics.py pipeline --device cuda --frames 300
    python bench/diagnostics.py objects --device cuda --objects 64
    python bench/diagnostics.py first-runs --device cuda --model sam2.1_hiera_tiny --objects 32
    python bench/diagnostics.py encoder --model sam2.1_hiera_tiny
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
from _common import checkpoint_for
from gpu_profiles import encoder, first_runs, objects, pipeline, propagation


def threads() -> None:
    import torch

    from napari_sam2.engine.segmenter import Segmenter
    from napari_sam2.engine.synthetic import synthetic_cells

    image, _ = synthetic_cells((1024, 1024), n_cells=24, seed=1)
    with checkpoint_for("sam2.1_hiera_tiny") as (path, _weights):
        seg = Segmenter("sam2.1_hiera_tiny", device="cpu", checkpoint=path)
    seg.set_image(image)

    def clicks(where: str) -> None:
        seg.predict(points=[(500, 500)])
        wall, cpu = [], []
        for i in range(6):
            start, cpu_start = time.perf_counter(), time.process_time()
            seg.predict(points=[(400 + 20 * i, 500)])
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu_start)
        print(
            f"{where}, torch threads {torch.get_num_threads()}: wall median "
            f"{np.median(wall) * 1000:.0f} ms (min {min(wall) * 1000:.0f}), CPU median "
            f"{np.median(cpu) * 1000:.0f} ms",
            flush=True,
        )

    clicks("main thread")
    worker = threading.Thread(target=clicks, args=("worker thread",))
    worker.start()
    worker.join()
    torch.set_num_threads(1)
    clicks("main thread")


def _square(side: int, share: float) -> np.ndarray:
    mask = np.zeros((side, side), bool)
    n = int(side * np.sqrt(share))
    mask[:n, :n] = True
    return mask


def viewer() -> None:
    from _common import open_viewer
    from qtpy.QtWidgets import QApplication

    import napari_sam2._qt.workers  # noqa: F401  (triton guard before any canvas)
    from napari_sam2.layers.labels import write_object

    for hidden in (True, False):
        view = open_viewer(hidden)
        app = QApplication.instance()
        for side in (1024, 4096):
            labels = view.add_labels(np.zeros((side, side), np.int32))
            for _ in range(5):
                app.processEvents()
                time.sleep(0.05)
            plane = (slice(None), slice(None))
            mask = _square(side, 0.01)
            written = write_object(labels, plane, 1, mask, None, False)
            app.processEvents()
            edits, draws = [], []
            for k in range(3):
                moved = np.roll(mask, 7 * (k + 1), axis=1)
                start = time.perf_counter()
                written = write_object(labels, plane, 1, moved, written, False)
                edits.append(time.perf_counter() - start)
                start = time.perf_counter()
                app.processEvents()
                draws.append(time.perf_counter() - start)
            print(
                f"{'hidden' if hidden else 'shown'} viewer, {side}²: edit "
                f"{[round(t * 1000) for t in edits]} ms, events after "
                f"{[round(t * 1000) for t in draws]} ms",
                flush=True,
            )
            view.layers.clear()
        view.close()


def write() -> None:
    from _common import open_viewer

    import napari_sam2._qt.workers  # noqa: F401
    from napari_sam2.layers.labels import write_object

    view = open_viewer(hidden=False)
    plane = (slice(None), slice(None))
    for side in (1024, 4096):
        labels = view.add_labels(np.zeros((side, side), np.int32))
        for share in (0.01, 0.2, 0.98):
            mask = _square(side, share)
            moved = np.roll(mask, 7, axis=1)
            start = time.perf_counter()
            written = write_object(labels, plane, 1, mask, None, False)
            first = time.perf_counter() - start
            start = time.perf_counter()
            write_object(labels, plane, 1, moved, written, False)
            replace = time.perf_counter() - start
            current = np.asarray(labels.data)
            start = time.perf_counter()
            changed = (moved & (current == 1) & ~mask) | (mask & (current == 0))
            np.nonzero(changed)
            numpy_part = time.perf_counter() - start
            print(
                f"{side}², mask {share:.0%}: first write {first * 1000:.0f} ms, replace "
                f"{replace * 1000:.0f} ms, whole-plane numpy alone {numpy_part * 1000:.0f} ms",
                flush=True,
            )
            labels.data[:] = 0
        view.layers.clear()
    view.close()


def main() -> None:
    checks = {
        "threads": threads,
        "viewer": viewer,
        "write": write,
        "propagation": propagation,
        "pipeline": pipeline,
        "encoder": encoder,
        "objects": objects,
        "first-runs": first_runs,
    }
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=tuple(checks))
    check = parser.parse_known_args()[0].check
    checks[check]()


if __name__ == "__main__":
    main()
