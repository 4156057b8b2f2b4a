"""The GPU profiles of ``diagnostics.py``: where a tracked frame's time goes (``propagation``),
the frame reader and thread switch interval (``pipeline``), frames with many objects
(``objects``), a process's first runs (``first-runs``) and the image encoder eager and
compiled (``encoder``); see diagnostics.py's docstring for what each prints and how to run it."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


class _Timer:
    """Accumulated wall-clock time of a wrapped function (thread-safe enough for totals)."""

    def __init__(self, owner, name: str):
        self.owner, self.name, self.total, self.calls = owner, name, 0.0, 0
        self.inner = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self.inner(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - start
                self.calls += 1

        setattr(owner, name, timed)

    def restore(self) -> None:
        setattr(self.owner, self.name, self.inner)

    def __str__(self) -> str:
        return f"{self.name}: {self.total:.2f} s in {self.calls} calls"


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _profile(label: str, frames, count: int) -> None:
    """torch's profiler over ``count`` items of an iterator of tracked frames."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    _synchronize()
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(count):
            next(frames)
        _synchronize()
    wall = time.perf_counter() - start
    events = prof.key_averages()
    gpu = sum(e.self_device_time_total for e in events) / 1e6
    print(
        f"\n== {label}: {count} frames in {wall:.2f} s under the profiler "
        f"({wall / count * 1000:.1f} ms a frame); GPU busy {gpu:.2f} s "
        f"({gpu / wall:.0%} of the time)",
        flush=True,
    )
    print(events.table(sort_by="self_cpu_time_total", row_limit=25), flush=True)
    if torch.cuda.is_available():
        print(events.table(sort_by="self_device_time_total", row_limit=25), flush=True)


def _label_parts(model) -> list[tuple]:
    """Wrap the tracking step's parts in profiler ranges named after them, so the device table
    says where a frame goes by part (memory attention and its self / cross-attention, mask
    heads, memory encoder and its mask downsampler and fuser). Returns what to restore."""
    from torch.profiler import record_function

    layers = model.memory_attention.layers
    parts = [
        (model, "_prepare_memory_conditioned_features", "part: memory conditioning"),
        (model.memory_attention, "forward", "part: memory attention"),
        *[(layer, "_forward_sa", "part: memory attention, self") for layer in layers],
        *[(layer, "_forward_ca", "part: memory attention, cross") for layer in layers],
        (model, "_forward_sam_heads", "part: mask heads"),
        (model, "_encode_new_memory", "part: memory encoder"),
        (model.memory_encoder.mask_downsampler, "forward", "part: memory encoder, mask"),
        (model.memory_encoder.fuser, "forward", "part: memory encoder, fuser"),
    ]
    restore = []
    for owner, name, label in parts:
        restore.append((owner, name, vars(owner).get(name)))
        inner = getattr(owner, name)

        def labelled(*args, _inner=inner, _label=label, **kwargs):
            with record_function(_label):
                return _inner(*args, **kwargs)

        setattr(owner, name, labelled)
    return restore


def _unlabel(restore: list[tuple]) -> None:
    for owner, name, own in reversed(restore):
        if own is None:
            delattr(owner, name)
        else:
            setattr(owner, name, own)


def propagation() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("check")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--profile-frames", type=int, default=60)
    parser.add_argument("--source", type=Path, default=None)
    args = parser.parse_args()
    import torch
    from propagation import DEFAULT_SOURCE, JpegFolder, build, frame_folder

    from napari_sam2.engine.models import inference_context
    from napari_sam2.engine.video.features import SharedFeatures
    from napari_sam2.engine.video.reading import ModelFrames, frame_source_for
    from napari_sam2.engine.video.session import PropagationSession
    from napari_sam2.engine.video.warmup import warm_up

    model = build(args.model, None, args.device)
    warm_up(model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = frame_folder(args.source or DEFAULT_SOURCE, args.frames, Path(tmp))
        data = JpegFolder(folder)
        click = (data.shape[1] // 2, data.shape[2] // 2)

        def ours():
            session = PropagationSession(model, frame_source_for(data))
            session.add_prompts({0: {1: dict(points=[click])}})
            return session, iter(session.propagate("forward"))

        timers = [
            _Timer(ModelFrames, "prepare"),
            _Timer(SharedFeatures, "get"),
            _Timer(model, "forward_image"),
            _Timer(model, "track_step"),
            _Timer(model, "_get_orig_video_res_output"),
        ]
        session, frames = ours()
        start = time.perf_counter()
        n = sum(1 for _ in frames)
        _synchronize()
        wall = time.perf_counter() - start
        session.close()
        for timer in timers:
            timer.restore()
        print(
            f"ours: {n} frames in {wall:.2f} s ({n / wall:.1f} frames/s); host time in", flush=True
        )
        for timer in timers:
            print(f"  {timer}", flush=True)

        session, frames = ours()
        next(frames)
        _profile("ours", frames, min(args.profile_frames, args.frames - 1))
        frames.close()  # ends the run: the model is back to plain sam2 (no CUDA graphs)
        session.close()

        with inference_context(torch.device(args.device)):
            state = model.init_state(str(folder))
            model.add_new_points_or_box(state, 0, 1, points=[[click[1], click[0]]], labels=[1])
            official = (
                (i, ids, (m[:, 0] > 0).cpu().numpy())
                for i, ids, m in model.propagate_in_video(state)
            )
            next(official)
            _profile("official", official, min(args.profile_frames, args.frames - 1))


def pipeline() -> None:
    """Frames/s of the engine's propagation with parts of its GPU pipeline switched off, and
    of the official loop, on the same frames in one process, round after round."""
    parser = argparse.ArgumentParser()
    parser.add_argument("check")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--source", type=Path, default=None)
    args = parser.parse_args()
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from propagation import DEFAULT_SOURCE, JpegFolder, build, frame_folder

    from napari_sam2.engine.models import inference_context
    from napari_sam2.engine.video.reading import frame_source_for
    from napari_sam2.engine.video.session import PropagationSession
    from napari_sam2.engine.video.warmup import warm_up

    model = build("sam2.1_hiera_tiny", None, args.device)
    warm_up(model)
    device = model.device
    configs = {
        "engine": dict(workers=4),
        "1 frame reader": dict(workers=1),
        "engine, switch interval 0.5 ms": dict(workers=4, switch=0.0005),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = frame_folder(args.source or DEFAULT_SOURCE, args.frames, Path(tmp))
        data = JpegFolder(folder)
        click = (data.shape[1] // 2, data.shape[2] // 2)
        with inference_context(device):
            state = model.init_state(str(folder))
            model.add_new_points_or_box(state, 0, 1, points=[[click[1], click[0]]], labels=[1])
        for round_ in range(args.rounds):
            for name, config in configs.items():
                session = PropagationSession(model, frame_source_for(data))
                session.frames._pool = ThreadPoolExecutor(config["workers"])
                session.add_prompts({0: {1: dict(points=[click])}})
                default_switch = sys.getswitchinterval()
                sys.setswitchinterval(config.get("switch", default_switch))
                frames = iter(session.propagate("forward"))
                next(frames)
                start = time.perf_counter()
                n = sum(1 for _ in frames)
                _synchronize()
                fps = n / (time.perf_counter() - start)
                sys.setswitchinterval(default_switch)
                session.close()
                print(f"round {round_}: {name}: {fps:.1f} frames/s", flush=True)
            with inference_context(device):
                official = iter(model.propagate_in_video(state))
                next(official)
                start = time.perf_counter()
                n = sum(1 for _, _, m in official if (m[:, 0] > 0).cpu().numpy() is not None)
                fps = n / (time.perf_counter() - start)
            print(f"round {round_}: official (frames preloaded): {fps:.1f} frames/s", flush=True)


@contextlib.contextmanager
def _crowded(args) -> Iterator[tuple]:
    """``args.model`` (random weights; micro by default) built on ``args.device`` and warmed up,
    a crowded synthetic clip of ``args.frames`` 512² frames, and one click per cell of its
    ``args.objects`` on frame 0: (model, frames, prompts)."""
    from clips import crowded_folder
    from propagation import JpegFolder, build

    from napari_sam2.engine.models import MICRO_MODEL
    from napari_sam2.engine.video.warmup import warm_up

    model = build(args.model or MICRO_MODEL, None, args.device)
    warm_up(model)
    with tempfile.TemporaryDirectory() as tmp:
        folder, clicks = crowded_folder(args.frames, 512, args.objects, Path(tmp))
        yield (
            model,
            JpegFolder(folder),
            {0: {k: dict(points=[c]) for k, c in enumerate(clicks, 1)}},
        )


def objects() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("check")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--objects", type=int, default=64)
    parser.add_argument("--profile-frames", type=int, default=15)
    parser.add_argument("--model", default=None, help="default: micro (random weights)")
    args = parser.parse_args()
    from napari_sam2.engine.video.reading import frame_source_for
    from napari_sam2.engine.video.session import PropagationSession

    with _crowded(args) as (model, data, prompts):
        for graphs in (True, False):
            session = PropagationSession(model, frame_source_for(data), cuda_graphs=graphs)
            session.add_prompts(prompts)
            timer = _Timer(session._prompts, "give")
            start = time.perf_counter()
            frames = iter(session.propagate("forward"))
            next(frames)
            first = time.perf_counter() - start
            timer.restore()
            print(f"CUDA graphs {graphs}: first mask {first * 1000:.0f} ms; {timer}", flush=True)
            start = time.perf_counter()
            n = sum(1 for _ in frames)
            _synchronize()
            wall = time.perf_counter() - start
            print(f"  then {n} frames in {wall:.2f} s ({n / wall:.1f} frames/s)", flush=True)
            session.close()
        session = PropagationSession(model, frame_source_for(data))
        session.add_prompts(prompts)
        labels = _label_parts(model)
        frames = iter(session.propagate("forward"))
        for _ in range(20):  # past the first 16 frames: the memory bank is full
            next(frames)
        _profile(f"ours, {args.objects} objects", frames, args.profile_frames)
        frames.close()
        session.close()
        _unlabel(labels)


def first_runs() -> None:
    """Per-frame wall time of a process's first two runs over the same crowded clip: the
    frames that take over three times the median (kernels built on first use)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("check")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--objects", type=int, default=32)
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    import numpy as np

    from napari_sam2.engine.video.reading import frame_source_for
    from napari_sam2.engine.video.session import PropagationSession

    with _crowded(args) as (model, data, prompts):
        for run in range(2):
            session = PropagationSession(model, frame_source_for(data))
            session.add_prompts(prompts)
            done, start = [], time.perf_counter()
            for _ in session.propagate("forward"):
                done.append(time.perf_counter() - start)
            session.close()
            ms = np.diff([0.0, *done]) * 1000
            slow = {i: round(float(v)) for i, v in enumerate(ms) if v > 3 * np.median(ms)}
            print(
                f"{args.model}, {args.objects} objects, run {run}: median "
                f"{np.median(ms[20:]):.1f} ms a frame after frame 20; slow frames (ms): {slow}",
                flush=True,
            )


def encoder() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("check")
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    args = parser.parse_args()
    import torch
    from propagation import build

    from napari_sam2.engine.models import inference_context

    device = torch.device("cuda")
    encode = build(args.model, None, "cuda").image_encoder.forward
    compiled = torch.compile(encode, fullgraph=True, dynamic=False)

    def per_frame_ms(fn, images, repeats: int = 20) -> float:
        for _ in range(3):
            fn(images)
        _synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            fn(images)
        _synchronize()
        return (time.perf_counter() - start) / repeats / len(images) * 1000

    print(f"{args.model}, {torch.cuda.get_device_name()}, bfloat16 autocast, ms per frame")
    with inference_context(device):
        for batch in (1, 8):
            images = torch.rand(batch, 3, 1024, 1024, device=device)
            start = time.perf_counter()
            compiled(images)
            _synchronize()
            compile_s = time.perf_counter() - start
            eager_ms, compiled_ms = per_frame_ms(encode, images), per_frame_ms(compiled, images)
            print(
                f"batch {batch}: eager {eager_ms:.2f}, compiled {compiled_ms:.2f} "
                f"({compiled_ms / eager_ms:.2f}x), compiling took {compile_s:.0f} s"
            )
