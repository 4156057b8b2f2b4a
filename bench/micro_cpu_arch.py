"""CPU cost per object-frame of the stock SAM2VideoPredictor for micro variants (issue 17).

Tracking on a CPU is dominated by memory attention: at image_size 1024 every frame has 4,096
query tokens that attend to up to ``num_maskmem`` memory frames of 4,096 tokens each. This
builds the micro config with smaller inputs and fewer memory frames (random weights: the cost
does not depend on them), tracks one clicked object through a synthetic 256 x 256 clip with
the stock predictor, and prints seconds per tracked frame beside today's config: the fastest
frame once the memory is full, less the frame's encoding (shared by all objects). Variants are
timed in interleaved rounds, so that load from other jobs falls on all of them alike.

Command::

    PYTHONPATH=src python bench/micro_cpu_arch.py --threads 2 --frames 14 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import evaluate_micro as em  # noqa: E402
import evaluate_micro_video as emv  # noqa: E402
import micro_model as mm  # noqa: E402

# (image_size, num_maskmem): today's packaged architecture first.
VARIANTS = [(1024, 7), (512, 7), (512, 4), (384, 4), (256, 4)]


def build(image_size: int, num_maskmem: int) -> torch.nn.Module:
    """The micro SAM2VideoPredictor (random weights) at another input size / memory length."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    side = image_size // 16  # the backbone's stride: memory-attention tokens per side
    layer = "model.memory_attention.layer"
    over = [
        f"model.image_size={image_size}",
        f"model.num_maskmem={num_maskmem}",
        f"{layer}.self_attention.feat_sizes=[{side},{side}]",
        f"{layer}.cross_attention.feat_sizes=[{side},{side}]",
        "model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
        "model.binarize_mask_from_pts_for_mem_enc=true",
        "model.fill_hole_area=0",
    ]
    cfg = OmegaConf.merge(OmegaConf.load(str(mm.DEFAULT_CONFIG)), OmegaConf.from_dotlist(over))
    OmegaConf.resolve(cfg)
    torch.manual_seed(0)
    return instantiate(cfg.model, _recursive_=True).eval()


def seconds_per_frame(model, frames01: np.ndarray, point) -> tuple[float, float]:
    """(tracked seconds per frame, seconds of the prompted frame) for one object."""
    with torch.inference_mode():
        state = emv.init_state_from_frames(model, frames01)
        t = time.perf_counter()
        model.add_new_points_or_box(
            state,
            frame_idx=0,
            obj_id=1,
            points=np.array([point[::-1]], np.float32),
            labels=np.array([1]),
        )
        prompt_s = time.perf_counter() - t
        times, last = [], time.perf_counter()
        for _ in model.propagate_in_video(state, 0):
            now = time.perf_counter()
            times.append(now - last)
            last = now
    # times[0] is the prompted frame's output; from frame 8 on every variant's memory is full.
    # The fastest frame: the one least slowed by other jobs on the machine.
    return float(np.min(times[8:])), prompt_s


def encode_seconds(model, frames01: np.ndarray, repeats: int = 3) -> float:
    """Image encoder time of one frame: shared by all objects, paid once per frame."""
    x = mm.to_model_input(torch.from_numpy(frames01[:1])[:, None], model.image_size)
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            t = time.perf_counter()
            model.forward_image(x)
            times.append(time.perf_counter() - t)
    return float(np.min(times))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=14)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from napari_sam2.engine.synthetic import synthetic_clip

    frames, labels = synthetic_clip(args.frames, (256, 256), 3, np.uint16, seed=5)
    frames01 = emv.clip_norm(frames).astype(np.float32)
    point = em.deepest_point(labels[0] == 1)
    models = {v: build(*v) for v in VARIANTS}
    for model in models.values():  # the predictor's CPU trap: bfloat16 memories (see em)
        emv.VideoModel.cast_memory_to_float(model)
    runs: dict = {v: [] for v in VARIANTS}
    encode: dict = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for v, model in models.items():
            runs[v].append(seconds_per_frame(model, frames01, point)[0])
            encode[v].append(encode_seconds(model, frames01))
    # Per object: a tracked frame less the frame's encoding (which all objects share).
    per_object = {v: min(runs[v]) - min(encode[v]) for v in VARIANTS}
    base = per_object[VARIANTS[0]]
    for (size, mem), values in runs.items():
        row = {
            "image_size": size,
            "num_maskmem": mem,
            "memory_tokens_per_frame": (size // 16) ** 2,
            "s_per_frame_one_object": round(min(values), 4),
            "encode_s": round(min(encode[(size, mem)]), 4),
            "s_per_object_frame": round(per_object[(size, mem)], 4),
            "all_rounds": [round(x, 4) for x in values],
            "vs_today": round(per_object[(size, mem)] / base, 3),
            "threads": args.threads,
            "load_avg_1min": round(__import__("os").getloadavg()[0], 2),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
