"""Propagation benchmark: this engine against sam2's official predictor on the same frames.

Both read the same JPEG files: the official ``SAM2VideoPredictor.init_state`` loads the whole
folder up front; the engine reads a lazy array over the folder a frame at a time. One object is
prompted with a click on frame 0 and tracked forward to the end. Each configuration runs in a
fresh subprocess, so peak RSS is that run's own; one JSON line per run goes to stdout (and to
``--out``):

    {"engine": "ours", "frames": 1000, "time_to_first_mask_s": ..., "fps": ...,
     "gpu_peak_gib": ..., "rss_peak_gib": ..., ...}

Examples::

    python bench/propagation.py --device cuda --model sam2.1_hiera_tiny --frames 100 1000 10000
    python bench/propagation.py --device cpu --model sam2.1_hiera_micro --frames 10 30 --runs 1

With ``--objects N ...`` the clip is a synthetic crowded field instead (``engine.synthetic``:
``--size``² frames, cells covering about a quarter of it), and N cells are clicked on frame 0
and tracked together; each row then also says how far the masks of the first run of each
engine of ours agree with the official predictor's (``mean_iou_vs_official``, over every
object on ten frames spread over the clip)::

    python bench/propagation.py --device cpu --model sam2.1_hiera_micro --objects 1 4 8 \
        --frames 10 --size 256 --runs 1 --engines ours ours-per-object official

``ours-per-object`` is the engine with objects tracked one by one, as sam2 does (a private
switch, for this comparison only); ``official-float32`` is the official predictor without
autocast, so that its agreement with ``official`` in a bfloat16 run says how far bfloat16 moves
sam2's own masks. ``--start masks`` prompts each of the N cells with its true
mask on frame 0 instead (sam2's ``add_new_mask`` for both engines), so both start from the
same masks and the agreement measures the tracking alone: from clicks, the engine segments
each click as its image path does (in a window on a frame larger than ``whole_side``), the
official predictor on the whole frame.

Weights are random unless ``--checkpoint`` is given (speed and memory do not depend on them).
The model is warmed up as the plugin loads it on an accelerator (``warm_up``: one click
and one tracked frame on a tiny blank clip) before the clock starts, for both engines; with
``--cold`` it is not, and the time to first mask includes the accelerator's one-time start-up.
``--source`` is a folder of JPEG frames (default ../shared/data/bedroom); longer runs reuse its
frames cyclically through hard links in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from clips import JpegFolder, crowded_folder, first_labels, frame_folder

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "bedroom"
MARKS = (10, 20, 50, 100, 1000, 10000)


def sampled_frames(n: int) -> list[int]:
    """The frames whose masks are kept for the agreement between engines."""
    return sorted({int(f) for f in np.linspace(0, n - 1, min(n, 10))})


def mean_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean IoU over (frame, object) of two (frames, objects, H, W) boolean arrays."""
    union = (a | b).sum((-2, -1))
    inter = (a & b).sum((-2, -1))
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def build(name: str, checkpoint: str | None, device: str, compile: bool = False):
    """The model as SAM2VideoPredictor, random weights unless a checkpoint is given; with
    ``compile``, its image encoder ``torch.compile``'d as ``Segmenter(compile=True)`` does."""
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from napari_sam2.engine import models

    if checkpoint:
        return models.build_model(name, checkpoint, device, compile)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    spec = models.model_spec(name)
    cfg = OmegaConf.merge(
        OmegaConf.load(models.config_path(spec)),
        OmegaConf.from_dotlist(models.config_overrides()),
    )
    torch.manual_seed(0)
    model = instantiate(cfg.model, _recursive_=True).to(device).eval()
    models.apply_model_rules(model, name)  # as build_model: both engines choose masks alike
    if compile:
        models.compile_image_encoder(model)
    return model


class PeakSampler:
    """Samples the process's RSS every few milliseconds in a thread (ru_maxrss counts the
    model load too; this starts at the run)."""

    def __init__(self):
        import threading

        import psutil

        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def one_run(args) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from napari_sam2.engine.models import inference_context
    from napari_sam2.engine.video.reading import frame_source_for
    from napari_sam2.engine.video.session import PropagationSession
    from napari_sam2.engine.video.warmup import warm_up

    device = torch.device(args.device)
    float32 = args.precision == "float32" or args.engine == "official-float32"
    if float32:  # a benchmark override: no autocast for either engine
        from napari_sam2.engine.video import session as video_session

        def inference_context(_device):
            return torch.inference_mode()

        video_session.inference_context = inference_context
    compiled = args.engine == "ours-compiled"
    model = build(args.model, args.checkpoint, args.device, compiled)
    start = time.perf_counter()
    if not args.cold:
        warm_up(model)
    warm_up_s = time.perf_counter() - start
    folder = Path(args.folder)
    data = JpegFolder(folder)
    n, height, width = data.shape[:3]
    clicks = json.loads(args.clicks) if args.clicks else [(height // 2, width // 2)]  # (row, col)
    if args.start == "masks":
        labels = first_labels(folder)
        prompts = [dict(mask=labels == k) for k in range(1, len(clicks) + 1)]
    else:
        prompts = [dict(points=[c]) for c in clicks]
    keep, kept = set(sampled_frames(n)), {}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    gpu_before = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    first = None
    done = 0
    marks = {}  # seconds from the start to the end of frame k, for a few k
    with PeakSampler() as rss:
        start = time.perf_counter()
        if args.engine.startswith("ours"):
            graphs = args.engine != "ours-no-cuda-graphs"
            session = PropagationSession(model, frame_source_for(data), cuda_graphs=graphs)
            session._per_object = args.engine == "ours-per-object"
            session.add_prompts({0: {k: prompt for k, prompt in enumerate(prompts, 1)}})
            for frame, _ids, found in session.propagate("forward"):
                masks = found
                if frame in keep:
                    kept[frame] = masks
                done += 1
                if first is None:
                    first = time.perf_counter() - start
                if done in MARKS:
                    marks[done] = round(time.perf_counter() - start, 3)
            session.close()
        else:
            with inference_context(device):
                state = model.init_state(str(folder))
                for k, prompt in enumerate(prompts, 1):
                    if "mask" in prompt:
                        model.add_new_mask(state, 0, k, prompt["mask"])
                    else:
                        ((row, col),) = prompt["points"]
                        model.add_new_points_or_box(state, 0, k, points=[[col, row]], labels=[1])
                for frame, _ids, logits in model.propagate_in_video(state):
                    masks = (logits[:, 0] > 0).cpu().numpy()
                    if frame in keep:
                        kept[frame] = masks
                    done += 1
                    if first is None:
                        first = time.perf_counter() - start
                    if done in MARKS:
                        marks[done] = round(time.perf_counter() - start, 3)
        if device.type == "cuda":
            torch.cuda.synchronize()
        total = time.perf_counter() - start
    tracking = total - first if done > 1 else total
    if args.masks:
        np.save(args.masks, np.packbits(np.stack([kept[f] for f in sorted(kept)]), axis=-1))
    return {
        "engine": args.engine,
        "model": args.model,
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "frames": n,
        "objects": len(clicks),
        "start": args.start,
        "warm": not args.cold,
        "warm_up_s": round(warm_up_s, 3),
        "compiled": compiled,
        "precision": "float32" if float32 or device.type != "cuda" else args.precision,
        "frame_shape": [height, width],
        "mask_shape": list(masks.shape),
        "time_to_first_mask_s": round(first, 4),
        "total_s": round(total, 3),
        "fps": round((done - 1) / tracking, 3) if done > 1 else None,
        "seconds_at_frame": marks,
        "gpu_peak_gib": round((torch.cuda.max_memory_allocated() - gpu_before) / 2**30, 3)
        if device.type == "cuda"
        else None,
        "rss_peak_gib": round(rss.peak / 2**30, 3),
        "rss_max_process_gib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3
        ),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def emit(row: dict, out: Path | None) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out:
        with out.open("a") as handle:
            handle.write(line + "\n")


def configurations(args, workdir: Path) -> list[tuple[int, Path, list | None]]:
    """(frames, folder, clicks) of each clip to run: the JPEG source's, or with ``--objects``
    the crowded synthetic field's, once per object count."""
    if not args.objects:
        return [(n, frame_folder(args.source, n, workdir), None) for n in args.frames]
    out = []
    for n in args.frames:
        folder, clicks = crowded_folder(n, args.size, max(args.objects), workdir)
        out += [(n, folder, clicks[:k]) for k in args.objects]
    return out


def one_subprocess(args, engine: str, n: int, folder: Path, clicks, masks: Path | None) -> dict:
    command = [sys.executable, __file__, "--one", "--engine", engine, "--folder", str(folder)]
    command += ["--model", args.model, "--device", args.device, "--precision", args.precision]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    if args.cold:
        command.append("--cold")
    command += ["--start", args.start]
    if clicks:
        command += ["--clicks", json.dumps(clicks)]
    if masks:
        command += ["--masks", str(masks)]
    proc = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {"engine": engine, "frames": n, "error": proc.stderr.strip().splitlines()[-3:]}
    return json.loads(lines[-1])


def agreement(masks: dict[str, Path], shape: tuple[int, int]) -> dict[str, float]:
    """Mean IoU of each other engine with the official predictor, from their saved masks."""
    if "official" not in masks or not masks["official"].exists():
        return {}
    width = shape[1]
    official = np.unpackbits(np.load(masks["official"]), axis=-1, count=width).astype(bool)
    out = {}
    for engine, path in masks.items():
        if engine != "official" and path.exists():
            ours = np.unpackbits(np.load(path), axis=-1, count=width).astype(bool)
            out[engine] = round(mean_iou(ours, official), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sam2.1_hiera_tiny")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["ours", "official"],
        choices=(
            "ours",
            "ours-no-cuda-graphs",
            "ours-compiled",
            "ours-per-object",
            "official",
            "official-float32",
        ),
        help="ours-no-cuda-graphs: the engine with cuda_graphs=False; ours-compiled: with its "
        "image encoder torch.compile'd (compiles in the warm-up); ours-per-object: objects "
        "tracked one by one, as sam2 does; official-float32: the official predictor "
        "without autocast, whatever --precision (its agreement with official says how far "
        "bfloat16 moves sam2 itself)",
    )
    parser.add_argument(
        "--objects",
        type=int,
        nargs="+",
        default=None,
        help="track this many cells of a synthetic crowded clip instead of one object of "
        "--source (each count in turn)",
    )
    parser.add_argument("--size", type=int, default=512, help="--objects: frame size")
    parser.add_argument(
        "--start",
        choices=("clicks", "masks"),
        default="clicks",
        help="--objects: prompt each cell on frame 0 with a click or with its true mask",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument(
        "--official-max-frames",
        type=int,
        default=2000,
        help="skip the official path above this many frames (it holds them all)",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cold", action="store_true", help="no warm-up before the clock")
    parser.add_argument(
        "--precision",
        choices=("bfloat16", "float32"),
        default="bfloat16",
        help="on CUDA: bfloat16 autocast (sam2's and the engine's default) or none",
    )
    # internal: one run in this process
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--clicks", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--masks", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args)), flush=True)
        return

    results, agreements = [], {}
    with tempfile.TemporaryDirectory(prefix="sam2-bench-") as tmp:
        for n, folder, clicks in configurations(args, Path(tmp)):
            objects = len(clicks) if clicks else 1
            masks = {e: Path(tmp) / f"masks-{e}-{n}-{objects}.npy" for e in args.engines}
            # Rounds interleave the engines, so a slow spell of the machine hits both.
            for run in range(args.runs):
                for engine in args.engines:
                    if engine.startswith("official") and n > args.official_max_frames:
                        continue
                    kept = masks[engine] if run == 0 and clicks else None
                    row = one_subprocess(args, engine, n, folder, clicks, kept)
                    results.append(row | {"run": run})
                    emit(results[-1], args.out)
            if clicks:
                shape = JpegFolder(folder).shape[1:3]
                agreements[(n, objects)] = agreement(masks, shape)
                # Now, not only in the summary: a run cut short by a time limit keeps it.
                emit(
                    {"agreement": True, "frames": n, "objects": objects, "start": args.start}
                    | {"mean_iou_vs_official": agreements[(n, objects)]},
                    args.out,
                )
    summary = {}
    for row in results:
        if "fps" in row and row["fps"]:
            key = (row["engine"], row["frames"], row.get("objects", 1))
            summary.setdefault(key, []).append(row)
    for (engine, n, objects), rows in summary.items():
        median = {
            key: statistics.median(r[key] for r in rows if r.get(key) is not None)
            for key in ("fps", "time_to_first_mask_s", "rss_peak_gib", "gpu_peak_gib")
            if any(r.get(key) is not None for r in rows)
        }
        iou = agreements.get((n, objects), {}).get(engine)
        emit(
            {"summary": True, "engine": engine, "frames": n, "objects": objects}
            | {"start": args.start}
            | {"runs": len(rows)}
            | {"precision": rows[0]["precision"]}
            | {"warm": not args.cold}
            | {f"median_{k}": v for k, v in median.items()}
            | ({"mean_iou_vs_official": iou} if iou is not None else {}),
            args.out,
        )


if __name__ == "__main__":
    main()
