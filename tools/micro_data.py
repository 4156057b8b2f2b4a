"""Training clips for the micro SAM2: time-lapses and z-stacks with a frame-0 prompt per
tracked object, and the endless streams the DataLoader workers draw them from (images:
micro_images.py)."""

from __future__ import annotations

import math

import micro_images as mi
import micro_model as mm
import numpy as np
import torch
import torch.nn.functional as F
from train_echo import echoed, turn_clip_sample

from napari_sam2.engine.synthetic import synthetic_clip
from napari_sam2.engine.synthetic_nuclei import synthetic_nuclei_stack
from napari_sam2.engine.synthetic_timelapse import synthetic_timelapse

VIDEO_T = 8  # frames per training clip
VIDEO_OBJ = 2  # tracked objects per clip (at most)
# Share of the moving clips that are crowded time-lapses (``synthetic_timelapse``, issue 17):
# the real time-lapses' cells touch and pass each other; ``synthetic_clip``'s rarely meet.
CROWDED_SHARE = 0.4


class ClipStream(torch.utils.data.IterableDataset):
    """Endless synthetic clips; ``progress`` (shared 0..1) drives the curriculum."""

    def __init__(
        self,
        seed: int,
        progress=None,
        fixed: bool = False,
        zstack: bool = True,
        z_frames: int = 0,
        both_ways: bool = True,
        echo: int = 1,
        pool: int = 1,
    ):
        self.seed, self.echo, self.pool = seed, echo, pool
        self.progress = progress
        self.fixed = fixed  # the same clip forever (the overfitting check)
        self.zstack = zstack  # z-stacks among the (VIDEO_T-frame) clips
        self.z_frames = z_frames  # > 0: only long z-stack clips (make_zstack_sample)
        self.both_ways = both_ways

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = 0 if info is None else info.id
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, 11 if self.z_frames else 7, wid])
        yield from echoed(self._clips(rng), rng, self.echo, self.pool, turn_clip_sample)

    def _clips(self, rng):
        while True:
            if self.fixed:
                rng = np.random.default_rng([self.seed, 7])
            if self.z_frames:
                yield make_zstack_sample(rng, self.z_frames, self.both_ways)
                continue
            p = 1.0 if self.progress is None else float(self.progress.value)
            yield make_clip_sample(rng, p, zstack=self.zstack)


def make_clip_sample(
    rng: np.random.Generator, progress: float, n_frames: int = VIDEO_T, zstack: bool = True
) -> dict:
    """A clip, its stack-wide normalisation, targets and a frame-0 prompt per object.

    Curriculum: static clips (memory only has to copy the mask) are half of the clips at the
    start and 10 % after 30 % of the run; the rest move smoothly (speed up to 3x the
    evaluation speed), are z-stacks (tracked from the widest slice, either way; none when
    ``zstack`` is false, i.e. when ``make_zstack_sample`` draws them), and 25 % of the moving
    clips make cell 1 vanish for 1-3 frames. A share ``CROWDED_SHARE`` of the moving clips are
    crowded fields instead (``synthetic_timelapse``: a third of the field covered, cells touching
    and sliding past each other; issue 17).
    """
    h, w = (int(v) for v in rng.integers(160, 449, 2))
    r_model = math.exp(rng.uniform(math.log(20), math.log(150)))
    radius = max(5.0, r_model * math.sqrt(h * w) / mm.SIZE_REFERENCE)
    n_cells = int(rng.integers(1, 6))
    p_static = max(0.1, 0.5 - 0.4 * progress / 0.3)
    u = rng.random()
    p_zstack = 0.2 + 0.2 * mi.NUCLEI_SHARE if zstack else 0.0
    motion = "static" if u < p_static else ("zstack" if u < p_static + p_zstack else "smooth")
    absent = None
    if motion != "zstack" and rng.random() < 0.25:
        k = int(rng.integers(1, 4))
        a = int(rng.integers(2, n_frames - k))
        absent = (a, a + k)
    if motion == "smooth" and rng.random() < CROWDED_SHARE:
        motion, absent = "crowded", None
    seed = int(rng.integers(1 << 31))
    dtype = np.uint8 if rng.random() < 0.4 else np.uint16
    if motion == "crowded":
        n_crowd = int(np.clip(0.35 * h * w / (math.pi * radius**2), 2, 80))
        frames, labels, _ = synthetic_timelapse(
            n_frames, (h, w), n_crowd, dtype, seed, divisions=0, entering=0, leaving=0
        )
    elif motion == "zstack" and rng.random() < mi.NUCLEI_SHARE:
        # Confocal nuclei, from nucleus 1's widest slice on: slices 4-15 % of a radius apart.
        frames, labels = synthetic_nuclei_stack(
            n_frames,
            (h, w),
            int(rng.integers(3, 25)),
            dtype,
            seed,
            radius=radius,
            z_step=radius * rng.uniform(0.04, 0.15),
            touching=rng.uniform(0.2, 0.8),
            centre=0,
        )
    elif motion == "zstack":
        total = 2 * n_frames - 1
        frames, labels = synthetic_clip(
            total, (h, w), n_cells, dtype, seed, "zstack", radius=radius
        )
        mid = n_frames - 1
        order = np.arange(mid, total) if rng.random() < 0.5 else np.arange(mid, -1, -1)
        frames, labels = frames[order], labels[order]
    else:
        frames, labels = synthetic_clip(
            n_frames,
            (h, w),
            n_cells,
            dtype,
            seed,
            motion,
            absent,
            radius=radius,
            speed=rng.uniform(0.3, 3.0),
        )
    ids = [i for i in np.unique(labels[0]) if i > 0]
    if 1 in ids and (absent is not None or motion == "zstack"):
        ids = [1] + [i for i in ids if i != 1]
    else:
        ids = list(rng.permutation(ids))
    return _clip_tensors(rng, frames, labels, ids[:VIDEO_OBJ])


def make_zstack_sample(rng: np.random.Generator, per_side: int, both_ways: bool = True) -> dict:
    """A long z-stack clip tracked from nucleus 1's widest slice, as tools/evaluate_real.py
    propagates the real stack (issue 17).

    ``per_side`` slices from the widest one (included) outward. ``both_ways``: the stack has
    2 x per_side - 1 slices with the widest in the middle; the clip runs from it to the last
    slice, then from the one before it back to the first, with ``reverse`` set there, so
    ``SAM2Base`` picks memories as ``SAM2VideoPredictor.propagate_in_video(reverse=True)``
    does after a forward pass (its first reverse frames remember the other side). Otherwise
    one side only. Slices are 3.5-13 % of a radius apart (log-uniform; the real stack's are about
    5 %), so most clips reach the nucleus' end and the empty slices past it; radius 12-150 px
    at the model input. A share ``NUCLEI_SHARE`` are confocal nuclei (``synthetic_nuclei_stack``),
    the rest ``synthetic_clip(..., "zstack")``. Only nucleus 1 is tracked.
    """
    h, w = (int(v) for v in rng.integers(160, 449, 2))
    r_model = math.exp(rng.uniform(math.log(12), math.log(150)))
    radius = max(4.0, r_model * math.sqrt(h * w) / mm.SIZE_REFERENCE)
    n = 2 * per_side - 1 if both_ways else per_side
    centre = per_side - 1 if both_ways else 0
    seed = int(rng.integers(1 << 31))
    dtype = np.uint8 if rng.random() < 0.4 else np.uint16
    if rng.random() < mi.NUCLEI_SHARE:
        frames, labels = synthetic_nuclei_stack(
            n,
            (h, w),
            int(rng.integers(3, 25)),
            dtype,
            seed,
            radius=radius,
            z_step=radius * math.exp(rng.uniform(math.log(0.035), math.log(0.13))),
            touching=rng.uniform(0.2, 0.8),
            centre=centre,
        )
    else:  # cell 1 widest in the middle of 2 x per_side - 1 slices
        total = 2 * per_side - 1
        frames, labels = synthetic_clip(
            total, (h, w), int(rng.integers(1, 6)), dtype, seed, "zstack", radius=radius
        )
        if not both_ways:  # one side, up or down the stack
            mid = per_side - 1
            keep = np.arange(mid, total) if rng.random() < 0.5 else np.arange(mid, -1, -1)
            frames, labels = frames[keep], labels[keep]
    order = np.arange(n)
    if both_ways:
        order = np.concatenate([np.arange(centre, n), np.arange(centre - 1, -1, -1)])
    # Nucleus 1 from its widest slice and, where there is one, another nucleus of that slice
    # (a click on some other section of it).
    on_first = [int(i) for i in np.unique(labels[centre]) if i > 1]
    ids = ([1] if (labels[centre] == 1).any() else []) + list(rng.permutation(on_first))
    sample = _clip_tensors(rng, frames[order], labels[order], ids[:VIDEO_OBJ])
    sample["frame_idx"] = torch.from_numpy(order.astype(np.int64))
    sample["reverse"] = torch.from_numpy(order < centre)
    return sample


def _clip_tensors(rng, frames, labels, ids) -> dict:
    """Frames (in tracking order) normalised stack-wide, targets and frame-0 prompts of ``ids``."""
    # Stack-wide normalisation, as the plugin does for a time-lapse or a z-stack.
    lo, hi = np.percentile(frames[:, ::2, ::2], [0.5, 99.8])
    clip = np.clip((frames.astype(np.float32) - lo) / max(hi - lo, 1.0), 0, 1)
    n_frames, h, w = labels.shape
    sy, sx = mm.INPUT_SIZE / h, mm.INPUT_SIZE / w
    low = mm.low_res()
    targets = np.zeros((VIDEO_OBJ, n_frames, low, low), np.uint8)
    prompt = np.zeros((VIDEO_OBJ, 2, 2), np.float32)
    kind = np.full(VIDEO_OBJ, -1, np.int64)  # 0 click, 1 box, 2 mask; -1 unused slot
    lab = torch.from_numpy(labels)
    for j, k in enumerate(ids):
        t = F.interpolate((lab == k).float()[:, None], (low, low), mode="area")
        targets[j] = (t[:, 0].numpy() * 255).round().astype(np.uint8)
        m = labels[0] == k
        u = rng.random()
        kind[j] = 0 if u < 0.6 else (1 if u < 0.8 else 2)
        if kind[j] == 0:
            r, c = mi.pick_pixel(rng, m, interior=rng.random() < 0.7)
            prompt[j, 0] = (c * sx, r * sy)
        elif kind[j] == 1:
            ys, xs = np.nonzero(m)
            prompt[j] = ((xs.min() * sx, ys.min() * sy), (xs.max() * sx, ys.max() * sy))
    return {
        "frames": torch.from_numpy(clip).half()[:, None],
        "targets": torch.from_numpy(targets),
        "prompt": torch.from_numpy(prompt),
        "kind": torch.from_numpy(kind),
    }


def collate_list(items):
    """Clips stay a list of sample dicts: ``video_step`` gathers each clip's objects itself."""
    return items


def clip_batches(stream: ClipStream, size: int, workers: int):
    """An endless iterator of lists of ``size`` clips drawn by ``workers`` processes."""
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=size,
        num_workers=workers,
        collate_fn=collate_list,
        prefetch_factor=4 if workers else None,
        persistent_workers=bool(workers),
    )
    return iter(loader)
