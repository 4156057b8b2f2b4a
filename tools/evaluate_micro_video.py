"""The micro SAM2's video mode on held-back synthetic clips (issue 5), through the stock
``SAM2VideoPredictor`` built as the plugin builds it; also the predictor helpers that
tools/evaluate_real.py and bench/micro_cpu_arch.py track with. Run by
``tools/evaluate_micro.py`` (its ``video`` part).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from napari_sam2.engine.synthetic import synthetic_clip

sys.path.insert(0, str(Path(__file__).resolve().parent))
import micro_model as mm  # noqa: E402
from evaluate_micro import iou  # noqa: E402


def deepest_point_torch(mask: np.ndarray) -> tuple[int, int]:
    """(row, col) deepest inside ``mask`` by repeated 3 x 3 erosion (no scipy needed)."""
    import torch.nn.functional as F

    x = torch.from_numpy(mask.astype(np.float32))[None, None]
    last = x
    while x.sum() > 0:
        last = x
        x = -F.max_pool2d(-F.pad(x, (1, 1, 1, 1)), 3, 1)
    ys, xs = np.nonzero(last[0, 0].numpy())
    cy, cx = ys.mean(), xs.mean()
    i = np.argmin((ys - cy) ** 2 + (xs - cx) ** 2)
    return int(ys[i]), int(xs[i])


def init_state_from_frames(predictor, frames01: np.ndarray) -> dict:
    """A SAM2VideoPredictor inference state over in-memory frames (T, H, W) in 0..1.

    The same keys as ``SAM2VideoPredictor.init_state``; the frames are resized and normalised
    as its JPEG loader does (bilinear to the model's input size, ImageNet mean / std), without a
    JPEG round trip.
    """
    from collections import OrderedDict

    device = predictor.device
    x = torch.from_numpy(frames01.astype(np.float32))[:, None]
    size = predictor.image_size
    images = torch.cat(
        [mm.to_model_input(x[i : i + 8].to(device), size) for i in range(0, len(x), 8)]
    )
    state = {
        "images": images,
        "num_frames": len(images),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": frames01.shape[1],
        "video_width": frames01.shape[2],
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    predictor._get_image_feature(state, frame_idx=0, batch_size=1)
    return state


class VideoModel:
    """The stock SAM2VideoPredictor on the micro model, as the plugin builds it."""

    def __init__(self, checkpoint, config=mm.DEFAULT_CONFIG, device="cpu"):
        self.device = torch.device(device)
        self.predictor = mm.load_model(checkpoint, config, self.device)
        if self.device.type == "cpu":
            self.cast_memory_to_float(self.predictor)

    @staticmethod
    def cast_memory_to_float(predictor) -> None:
        """The predictor stores memories in bfloat16; on CPU the memory attention needs float
        (issue 5's CPU trap)."""
        attn = predictor.memory_attention
        forward = attn.forward

        def float_memory(curr, memory, curr_pos=None, memory_pos=None, **kw):
            return forward(curr, memory.float(), curr_pos, memory_pos.float(), **kw)

        attn.forward = float_memory

    def track(self, frames01: np.ndarray, frame_idx: int, point, both_ways=False) -> np.ndarray:
        """Masks (T, H, W) of one object clicked at ``point`` (row, col) on ``frame_idx``."""
        p = self.predictor
        ac = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else torch.autocast("cpu", enabled=False)
        )
        out = np.zeros(frames01.shape, bool)
        with torch.inference_mode(), ac:
            state = init_state_from_frames(p, frames01)
            p.add_new_points_or_box(
                state,
                frame_idx=frame_idx,
                obj_id=1,
                points=np.array([[point[1], point[0]]], np.float32),
                labels=np.array([1]),
            )
            for reverse in (False, True) if both_ways else (False,):
                for t, _, masks in p.propagate_in_video(state, frame_idx, reverse=reverse):
                    out[t] = (masks[0, 0] > 0).float().cpu().numpy()
        return out


def held_back_clips(kind: str, n: int):
    """Clips training never drew: seeds 20 000 and up."""
    for i in range(n):
        seed = 20_000 + i + {"smooth": 0, "absent": 1000, "zstack": 2000}[kind]
        dtype = np.uint8 if i % 2 else np.uint16
        if kind == "smooth":
            yield synthetic_clip(30, (256, 256), 3, dtype, seed, "smooth")
        elif kind == "absent":
            yield synthetic_clip(30, (256, 256), 3, dtype, seed, "smooth", absent=(10, 13))
        else:
            yield synthetic_clip(21, (256, 256), 3, dtype, seed, "zstack")


def clip_norm(frames: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(frames[:, ::2, ::2], [0.5, 99.8])
    return np.clip((frames.astype(np.float32) - lo) / max(hi - lo, 1.0), 0, 1)


def evaluate_video(vm: VideoModel, n_clips: int) -> dict:
    """Per-target figures of issue 5 and the per-frame IoU curves."""
    res: dict = {}
    curves = []
    mean_present, last = [], []
    for frames, labels in held_back_clips("smooth", n_clips):
        truth = labels == 1
        masks = vm.track(clip_norm(frames), 0, deepest_point_torch(truth[0]))
        ious = [iou(masks[t], truth[t]) for t in range(len(truth))]
        curves.append(ious)
        mean_present.append(np.mean(ious))
        last.append(ious[-1])
    res["smooth_mean_iou"] = round(float(np.mean(mean_present)), 4)
    res["smooth_last_iou"] = round(float(np.mean(last)), 4)
    res["smooth_curve"] = [round(float(v), 4) for v in np.mean(curves, 0)]
    redetected, hidden, present_iou, acurves = [], [], [], []
    for frames, labels in held_back_clips("absent", n_clips):
        truth = labels == 1
        masks = vm.track(clip_norm(frames), 0, deepest_point_torch(truth[0]))
        ious = [iou(masks[t], truth[t]) for t in range(len(truth))]
        acurves.append(ious)
        hidden.append(float(np.mean([masks[t].sum() == 0 for t in range(10, 13)])))
        back = [t for t in range(13, 30) if ious[t] > 0.5]
        redetected.append(bool(back) and back[0] <= 15)
        present_iou.append(np.mean([ious[t] for t in range(30) if truth[t].any()]))
    res["absent_hidden_frac"] = round(float(np.mean(hidden)), 4)
    res["absent_redetected_within_2"] = round(float(np.mean(redetected)), 4)
    res["absent_present_mean_iou"] = round(float(np.mean(present_iou)), 4)
    res["absent_curve"] = [round(float(v), 4) for v in np.mean(acurves, 0)]
    zs, zcurves = [], []
    for frames, labels in held_back_clips("zstack", n_clips):
        truth = labels == 1
        widest = int(np.argmax(truth.reshape(len(truth), -1).sum(1)))
        masks = vm.track(clip_norm(frames), widest, deepest_point_torch(truth[widest]), True)
        ious = [iou(masks[t], truth[t]) for t in range(len(truth))]
        zcurves.append(ious)
        zs.append(np.mean([ious[t] for t in range(len(truth)) if truth[t].any()]))
    res["zstack_mean_iou"] = round(float(np.mean(zs)), 4)
    res["zstack_curve"] = [round(float(v), 4) for v in np.mean(zcurves, 0)]
    res["n_clips_each"] = n_clips
    return res
