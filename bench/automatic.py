"""Automatic-mask and batch benchmarks, one JSON line per run (stdout, and ``--out``).

``automatic``: segment-everything on one image (default ../shared/data/images/cars.jpg, cut or
padded to ``--size``²): this engine (``Segmenter.segment_everything``, timed from a fresh image
and again with the embedding already cached, as after a few clicks) against sam2's official
``SAM2AutomaticMaskGenerator.generate`` on the same normalised frame, model and settings::

    {"bench": "automatic", "engine": "ours", "size": 1024, "points_per_side": 32,
     "seconds": ..., "proposals": ..., "labels": ..., "gpu_peak_gib": ..., "rss_peak_gib": ...}

``proposals`` are the masks the generator kept (overlapping), ``labels`` the objects left after
painting them into one label image (both engines through the same painter).

``batch``: images/s over a folder of synthetic cell images, a plain loop in this process against
a LocalCluster of ``--workers`` worker processes (same settings; model loading included)::

    {"bench": "batch", "mode": "loop", "images": 10, "seconds": ..., "images_per_s": ...}

Each configuration runs in its own subprocess so peak memory is its own. Weights are random
unless ``--checkpoint`` is given: time and memory barely depend on them, mask counts do.

    python bench/automatic.py automatic --device cuda --size 1024
    python bench/automatic.py batch --device cpu --images 8 --workers 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "images" / "cars.jpg"
MICRO = "sam2.1_hiera_micro"


def _checkpoint(args) -> str:
    if args.checkpoint:
        return args.checkpoint
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from napari_sam2.engine import models

    torch.manual_seed(0)
    cfg = OmegaConf.load(models.config_path(models.MODELS[args.model]))
    path = Path(tempfile.gettempdir()) / f"bench-random-{args.model}.pt"
    torch.save({"model": instantiate(cfg.model, _recursive_=True).state_dict()}, path)
    return str(path)


def _image(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    reps = (-(-size // rgb.shape[0]), -(-size // rgb.shape[1]), 1)
    return np.tile(rgb, reps)[:size, :size]


def _peaks(device: str) -> dict:
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    gpu = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {"gpu_peak_gib": gpu and round(gpu, 3), "rss_peak_gib": round(rss, 3)}


def run_automatic(args) -> dict:
    import torch

    from napari_sam2 import Segmenter
    from napari_sam2.engine.automatic import (
        AutomaticOptions,
        MaskProposal,
        mask_generator,
        paint_labels,
    )
    from napari_sam2.engine.models import inference_context

    image = _image(Path(args.image), args.size)
    seg = Segmenter(args.model, device=args.device, checkpoint=args.checkpoint)
    options = AutomaticOptions(points_per_side=args.points_per_side)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
    record = {"bench": "automatic", "engine": args.engine, "size": args.size}
    record |= {"points_per_side": args.points_per_side, "model": args.model}
    record |= {"device": args.device}
    # Warm both engines alike (first-call set-up) on a small unrelated image.
    seg.set_image(np.full((64, 64), 7, np.uint8))
    seg.segment_everything(points_per_side=2)
    if args.engine == "official":
        seg.set_image(image)
        frame = seg.current_frame()
        generator = mask_generator(seg.model, options)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        with inference_context(seg.device):
            masks = generator.generate(frame)
        sync()
        record |= {"seconds": time.perf_counter() - start, "proposals": len(masks)}
        proposals = [
            MaskProposal(m["segmentation"], m["area"], m["predicted_iou"], m["stability_score"])
            for m in masks
        ]
        record["labels"] = int(paint_labels(proposals, frame.shape[:2], options).max())
    else:
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        seg.set_image(image)
        labels = seg.segment_everything(points_per_side=args.points_per_side)
        sync()
        record |= {"seconds": time.perf_counter() - start, "labels": int(labels.max())}
        record["proposals"] = len(seg.last_proposals)
        start = time.perf_counter()
        seg.segment_everything(points_per_side=args.points_per_side)
        sync()
        record["seconds_embedding_cached"] = time.perf_counter() - start
    return record | _peaks(args.device)


def run_batch_bench(args) -> dict:
    import tifffile

    from napari_sam2.batch import run_batch
    from napari_sam2.engine.synthetic import synthetic_cells

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for seed in range(args.images):
            image, _ = synthetic_cells(shape=(args.size, args.size), n_cells=12, seed=seed)
            tifffile.imwrite(folder / f"cells{seed:03d}.tif", image)
        start = time.perf_counter()
        results = run_batch(
            folder,
            Path(tmp) / "out",
            model=args.model,
            checkpoint=args.checkpoint,
            device=args.device,
            automatic={"points_per_side": args.points_per_side},
            workers=0 if args.mode == "loop" else args.workers,
        )
        seconds = time.perf_counter() - start
    done = sum(r.status == "done" for r in results)
    return {
        "bench": "batch",
        "mode": args.mode,
        "workers": 0 if args.mode == "loop" else args.workers,
        "device": args.device,
        "model": args.model,
        "images": done,
        "size": args.size,
        "points_per_side": args.points_per_side,
        "seconds": seconds,
        "images_per_s": done / seconds,
    } | _peaks(args.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=("automatic", "batch"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=MICRO)
    parser.add_argument("--checkpoint")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out")
    parser.add_argument("--engine", help=argparse.SUPPRESS)  # one run, in a subprocess
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size is None:
        args.size = 1024 if args.bench == "automatic" else 256

    if args.engine or args.mode:
        run = run_automatic if args.bench == "automatic" else run_batch_bench
        print(json.dumps(run(args)))
        return

    args.checkpoint = _checkpoint(args)
    runs = ("ours", "official") if args.bench == "automatic" else ("loop", "cluster")
    flag = "--engine" if args.bench == "automatic" else "--mode"
    base = [sys.executable, __file__, *sys.argv[1:], "--checkpoint", args.checkpoint]
    for run in runs:
        result = subprocess.run([*base, flag, run], capture_output=True, text=True)
        lines = [ln for ln in result.stdout.splitlines() if ln.startswith("{")]
        if result.returncode or not lines:
            record = {"bench": args.bench, "run": run, "error": result.stderr[-2000:]}
        else:
            record = json.loads(lines[-1])
            record["weights"] = "random" if "bench-random" in args.checkpoint else "checkpoint"
        line = json.dumps(record)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as handle:
                handle.write(line + "\n")


if __name__ == "__main__":
    main()
