"""Interactive speed: embedding a 1024² image, and click → mask on the cached embedding.

For each model and precision, in one process and interleaved so that both see the same machine
load, this measures

* ``load``: building the model from its config and loading a checkpoint onto the device;
* ``embed``: ``Segmenter.set_image`` of a new 1024² uint16 image (content hash, percentiles,
  normalisation and resize on the device, image encoder), against the official
  ``SAM2ImagePredictor.set_image`` of the same pixels already normalised to float RGB;
* ``click``: ``Segmenter.predict`` of one click on the cached embedding, against the official
  ``SAM2ImagePredictor.predict`` of the same click (three masks, the best kept by both);
* with napari installed (``--napari``, the default where it is): click → Labels layer updated
  in a viewer (shown, on Xvfb where there is no display), first driving
  ``AnnotationSession.request/compute/apply`` in the GUI thread step by step (then also the
  redraw that follows), then through the dock widget and its worker thread (what a user
  waits for, up to the Labels data changing).

Models use random weights (``"weights": "random"``) unless ``--micro-checkpoint`` gives the
trained micro model: speed does not depend on the weights. bfloat16 is CUDA autocast, as
sam2's own examples use it; float32 on CUDA switches the engine's autocast off for the run.

Examples::

    python bench/interactive.py --device cuda --out results.jsonl
    xvfb-run -a -s "-screen 0 1920x1080x24" python bench/interactive.py --device cpu --quick
"""

from __future__ import annotations

import contextlib
import gc
import time

import numpy as np
from _common import (
    MODEL_NAMES,
    Recorder,
    base_parser,
    checkpoint_for,
    environment,
    open_viewer,
    sync,
)


def test_image(size: int, seed: int = 1) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A synthetic 16-bit fluorescence image and one click (row, col) inside each cell."""
    from napari_sam2.engine.synthetic import synthetic_cells

    image, labels = synthetic_cells((size, size), n_cells=24, dtype=np.uint16, seed=seed)
    clicks = []
    for obj in np.unique(labels)[1:]:
        rows, cols = np.nonzero(labels == obj)
        clicks.append((int(np.median(rows)), int(np.median(cols))))
    return image, clicks


def variant(image: np.ndarray, i: int) -> np.ndarray:
    """The image shifted by a few pixels: new content, so never an embedding-cache hit."""
    return np.roll(image, 3 * (i + 2), axis=1)


def bench_preprocessing(image, image_size, device, repeats, record, fields) -> None:
    """The engine's work before the image encoder: content hash, percentiles, and the
    encoder's input (``image_size``², the model's) prepared on the device (copy,
    normalisation, resize, standardisation)."""
    from napari_sam2.engine.frames import Normalization, model_input
    from napari_sam2.engine.image import plane_fingerprint

    norm = Normalization.for_data(image)
    steps = {
        "hash": lambda i: plane_fingerprint(variant(image, i)),
        "percentiles": lambda i: Normalization.for_data(variant(image, i)),
        "normalise": lambda i: model_input(variant(image, i), norm, image_size, device),
        "roll": lambda i: variant(image, i),  # the benchmark's own cost, to subtract
    }
    for step, (seconds, cpu) in interleaved(steps, device, repeats, 1).items():
        record.timings(f"preprocess_{step}", seconds, cpu, impl="ours", **fields)


@contextlib.contextmanager
def engine_precision(dtype: str, device):
    """The engine runs bf16 autocast on CUDA; for a float32 row on CUDA, turn autocast off."""
    import torch

    from napari_sam2.engine import image as image_module

    if device.type != "cuda" or dtype == "bfloat16":
        yield
        return
    original = image_module.inference_context
    image_module.inference_context = lambda _device: torch.inference_mode()
    try:
        yield
    finally:
        image_module.inference_context = original


def official_context(dtype: str, device):
    """How sam2's README runs the image predictor: inference mode, bf16 autocast on CUDA."""
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if dtype == "bfloat16":
        stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
    return stack


def interleaved(fns: dict, device, repeats: int, warmup: int) -> dict[str, tuple[list, list]]:
    """Time each of ``fns`` once per round, round after round, so load swings hit all alike.

    Returns {name: (wall-clock seconds, process CPU seconds)}. The CPU time is the robust
    figure on a loaded machine: there, idle-waiting and spinning worker threads make wall-clock
    times swing, while the work itself stays the same.
    """
    for i in range(warmup):
        for fn in fns.values():
            fn(-1 - i)
            sync(device)
    out: dict[str, tuple[list, list]] = {name: ([], []) for name in fns}
    for i in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start, cpu = time.perf_counter(), time.process_time()
            fn(i)
            sync(device)
            out[name][0].append(time.perf_counter() - start)
            out[name][1].append(time.process_time() - cpu)
    return out


def bench_engine(seg, image, clicks, dtype, args, record, fields) -> None:
    """Embedding and click latency: this engine and the official predictor, same model.

    ``image`` must differ from the previous call's (the engine would find the embeddings of
    the same pixels in its cache, whatever the precision).
    """
    import torch

    from napari_sam2.engine.frames import Normalization, to_model_frame
    from napari_sam2.engine.image import image_predictor

    device = seg.device
    official = image_predictor(seg.model)
    norm = Normalization.for_data(image)
    frames = {}

    def official_frame(i):
        if i not in frames:
            frames[i] = to_model_frame(variant(image, i), norm)
        return frames[i]

    for i in range(-args.warmup, args.embed_repeats):
        official_frame(i)  # prepared up front: the official path gets float RGB for free

    def ours_embed(i):
        seg.set_image(variant(image, i))

    def official_embed(i):
        with official_context(dtype, device):
            official.set_image(official_frame(i))

    with engine_precision(dtype, device):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        embeds = interleaved(
            {"ours": ours_embed, "official": official_embed},
            device,
            args.embed_repeats,
            args.warmup,
        )
        for impl, (seconds, cpu) in embeds.items():
            record.timings("embed", seconds, cpu, impl=impl, **fields)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) / 2**30
            record("gpu_peak_embed", round(peak, 3), "GiB", impl="both", **fields)

        seg.set_image(image)
        with official_context(dtype, device):
            official.set_image(to_model_frame(image, norm))
        sizes = []

        def ours_click(i):
            sizes.append(int(seg.predict(points=[clicks[i % len(clicks)]]).sum()))

        def official_click(i):
            row, col = clicks[i % len(clicks)]
            with official_context(dtype, device):
                masks, scores, _ = official.predict(
                    point_coords=np.array([[col, row]], np.float32),
                    point_labels=np.array([1]),
                    multimask_output=True,
                )
            return masks[int(np.argmax(scores))] > 0

        clicks_t = interleaved(
            {"ours": ours_click, "official": official_click},
            device,
            args.click_repeats,
            args.warmup + 2,
        )
        for impl, (seconds, cpu) in clicks_t.items():
            record.timings("click", seconds, cpu, impl=impl, **fields)
        record(
            "mask_fraction",
            round(float(np.median(sizes)) / image.size, 4),
            "1",
            impl="ours",
            **fields,
        )


def time_session_clicks(viewer, seg, image, clicks, args, record, fields, after_apply=None):
    """Click → Labels updated, driving ``AnnotationSession.request``, ``compute`` and
    ``AnnotationSession.apply`` step by step
    (in this thread, as the GUI thread does); ``after_apply`` runs the events that follow
    (a Qt viewer's redraw) and is timed too."""
    from napari_sam2.layers.annotation import AnnotationSession
    from napari_sam2.layers.segmentation import compute

    path = "session" if after_apply else "viewer-model"
    layer = viewer.add_image(image)
    session = AnnotationSession(viewer)
    session.set_segmenter(seg)
    session.attach(layer)
    parts: dict[str, list[float]] = {
        k: [] for k in ("points_event", "request", "compute", "apply", "plugin", "total")
    }
    events: list[float] = []
    n = args.warmup + args.click_repeats
    for i in range(n):
        row, col = clicks[i % len(clicks)]
        t0 = time.perf_counter()
        session.points_layer.data = np.array([[row, col]], float)  # the click moves
        t1 = time.perf_counter()
        request = session.request()
        t2 = time.perf_counter()
        results = compute(seg, request)
        t3 = time.perf_counter()
        session.apply(request, results)
        t4 = time.perf_counter()
        if after_apply:
            after_apply()
        t5 = time.perf_counter()
        if i >= args.warmup:
            for key, value in (
                ("points_event", t1 - t0),  # napari's own handling of the click
                ("request", t2 - t1),
                ("compute", t3 - t2),
                ("apply", t4 - t3),
                ("plugin", t4 - t1),  # from napari's click event to the Labels updated
                ("total", t4 - t0),
            ):
                parts[key].append(value)
            events.append(t5 - t4)
    for key, seconds in parts.items():
        record.timings(f"click_to_labels_{key}", seconds, impl="ours", path=path, **fields)
    if after_apply:
        # What follows apply in the GUI thread: the redraw of the changed Labels region.
        record.timings("events_after_apply", events, impl="ours", path=path, **fields)
        drawn = [total + ev for total, ev in zip(parts["total"], events, strict=True)]
        record.timings("click_to_labels_drawn", drawn, impl="ours", path=path, **fields)
    viewer.layers.clear()


def bench_viewer_model(seg, image, clicks, args, record, fields) -> None:
    """Click → Labels updated in napari's ``ViewerModel``: no Qt, no canvas (for machines
    without a display, such as the GPU machine)."""
    from napari.components import ViewerModel

    time_session_clicks(ViewerModel(), seg, image, clicks, args, record, fields)


def bench_napari(seg, image, clicks, args, record, fields) -> None:
    """Click → Labels updated in a headless viewer: the session's steps, then the dock widget."""
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    viewer = open_viewer(args.hidden)
    app = QApplication.instance()
    try:
        time_session_clicks(viewer, seg, image, clicks, args, record, fields, app.processEvents)

        # The same through the dock widget: point added → worker → apply in the GUI thread.
        _, widget = viewer.window.add_plugin_dock_widget("napari-sam2", "Segment with SAM2")
        layer = viewer.add_image(image)
        widget.session.set_segmenter(seg)
        widget.image.value = layer
        widget.start()
        session = widget.session
        applied: list[float] = []
        loop = QEventLoop()
        original_apply = session.apply

        def timed_apply(request, results):
            out = original_apply(request, results)
            applied.append(time.perf_counter())
            loop.quit()
            return out

        session.apply = timed_apply
        waits, cpus = [], []
        for i in range(args.warmup + args.click_repeats):
            row, col = clicks[(i + 5) % len(clicks)]
            count = len(applied)
            t0, c0 = time.perf_counter(), time.process_time()
            session.points_layer.data = np.array([[row, col]], float)
            if len(applied) == count:
                QTimer.singleShot(60_000, loop.quit)
                loop.exec()
            if len(applied) == count:
                raise RuntimeError("the widget did not apply a mask within 60 s")
            if i >= args.warmup:
                waits.append(applied[-1] - t0)
                cpus.append(time.process_time() - c0)
            while widget._busy:  # let the worker's finished signal arrive
                app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        record.timings("click_to_labels_total", waits, cpus, impl="ours", path="widget", **fields)
    finally:
        viewer.close()


def main(argv=None) -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--models", nargs="+", choices=list(MODEL_NAMES), default=None)
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16"], default=None)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--embed-repeats", type=int, default=None)
    parser.add_argument("--click-repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument(
        "--napari",
        choices=["auto", "on", "model", "off"],
        default="auto",
        help="headless-viewer measurements (auto: when napari is installed); model: in napari's "
        "ViewerModel, without Qt",
    )
    args = parser.parse_args(argv)

    import importlib.util

    use_napari = args.napari in ("on", "model") or (
        args.napari == "auto" and importlib.util.find_spec("napari") is not None
    )
    if use_napari and args.napari != "model":
        # Before torch loads triton and before any canvas exists (see napari_sam2._qt.workers).
        import napari_sam2._qt.workers  # noqa: F401
    import torch

    from napari_sam2.engine.models import select_device
    from napari_sam2.engine.segmenter import Segmenter

    device = select_device(args.device)
    gpu = device.type == "cuda"
    models = args.models or (["micro", "tiny"] if args.quick else list(MODEL_NAMES))
    dtypes = args.dtypes or (["float32", "bfloat16"] if gpu else ["float32"])
    if not gpu and "bfloat16" in dtypes:
        parser.error("bfloat16 rows are measured on CUDA only")
    args.embed_repeats = args.embed_repeats or (3 if args.quick else 10)
    args.click_repeats = args.click_repeats or (10 if args.quick else 50)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    record = Recorder("interactive", environment(device), args.out)
    image, clicks = test_image(args.size)

    for short in models:
        name = MODEL_NAMES[short]
        with checkpoint_for(name, args.micro_checkpoint) as (path, weights):
            start = time.perf_counter()
            seg = Segmenter(name, device=device, checkpoint=path)
            sync(device)
            load_s = time.perf_counter() - start
        fields = dict(
            model=name,
            device=device.type,
            size=args.size,
            weights=weights,
            parameters=seg.info["parameters"],
        )
        record("load", round(load_s * 1000, 1), "ms", impl="ours", dtype="float32", **fields)
        for k, dtype in enumerate(dtypes):
            # Each precision gets its own pixels (shifted by k rows), never the cached ones.
            shifted = np.roll(image, k, axis=0)
            bench_engine(seg, shifted, clicks, dtype, args, record, dict(fields, dtype=dtype))
        if short == models[0]:
            size = seg.model.image_size
            bench_preprocessing(image, size, device, args.embed_repeats, record, fields)
        if use_napari:
            bench = bench_viewer_model if args.napari == "model" else bench_napari
            for k, dtype in enumerate(dtypes):
                with engine_precision(dtype, device):
                    shifted = np.roll(image, k, axis=0)
                    bench(seg, shifted, clicks, args, record, dict(fields, dtype=dtype))
        del seg
        gc.collect()
        if gpu:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
