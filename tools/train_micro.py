"""Train the micro SAM2 (src/napari_sam2/engine/configs/sam2.1_hiera_micro.yaml) on synthetic
microscopy, so that tests and the offline demo see real segmentation (issues 4 and 5).

Recipe (image mode, issue 4)
----------------------------
* Data: ``napari_sam2.engine.synthetic.synthetic_cells`` rendered on the fly by DataLoader
  workers; every image draws its size (160-768 px a side, any aspect), dtype (uint8/uint16),
  cell radius (10-150 px once resized to the model's 1024 input), coverage, touching pairs,
  irregularity and elongation from a generator seeded by ``--seed`` and the worker id.
  Frames are normalised exactly as the plugin does (0.5 / 99.8 percentiles to 0..1; 20 % of
  images use min/max or part of the dtype range and 10 % a gamma, for robustness), then
  resized to 1024 with the same
  antialiased bilinear resize and ImageNet normalisation as ``SAM2ImagePredictor``.
* Prompts, 16 per image: 7 single positive clicks (3 multimask outputs, loss on the best),
  3 boxes (jittered), 3 positive + negative pairs (negative in a neighbour or the background
  near the object), 3 mask prompts (degraded ground truth as +-10 logits, like the plugin's
  ``mask_to_logits``); the single clicks are then corrected twice (a click in the largest
  error region of the model's own answer) and the 2- and 3-click prompts are trained too.
* Loss: 20 x focal + dice on the 256 x 256 low-resolution logits, MSE of the IoU head
  against the true IoU of every output, a cross-entropy that teaches the IoU head to rank
  the best of the three outputs first, 0.05 x the mask loss on the two non-best outputs (so no
  output collapses to empty or everything), object-score BCE (object present), and during
  the first 30 % of steps a class-balanced BCE to leave the all-background plateau.
* AdamW lr 2e-3, weight decay 0.01, 150-step warm-up then cosine to 5 %, bf16 autocast,
  gradient clipping at 1.0, seed 0.
* The forward is the one ``SAM2ImagePredictor`` runs (``no_mem_embed`` added to the lowest
  resolution features, box corners as points labelled 2 and 3 before the clicks, the padding
  point); ``--check`` verifies it against the stock predictor on CPU.

Recipe (video mode, issue 5)
----------------------------
* Starts from the image-mode weights and trains image and video mode together: every step
  is the image step above on 12 images plus 8 clips of 8 frames (``synthetic_clip``, 160-448
  px, 1-5 cells, up to 2 tracked per clip), normalised stack-wide as the plugin does.
* Frame 0 is prompted (60 % click, 20 % box, 20 % mask, in sub-batches), frames 1-7 are
  tracked from memory only, through the same ``SAM2Base`` internals as
  ``SAM2VideoPredictor`` (``_track_step`` and ``_encode_memory_in_output``, keeping the three
  outputs, IoUs and object scores for the loss), with gradients through the memory. The
  backbone runs without gradients on clips (the image step trains it).
* Loss per frame: best-of-three focal + dice where the cell is present, IoU head, ranking,
  and object-score BCE against presence (cells vanish for 1-3 frames in 25 % of moving
  clips).
* Curriculum: half the clips are static at the start (memory only has to copy the mask),
  10 % after 30 % of the run; z-stacks (20 %) are tracked from the widest slice either way.
* lr 1e-3 for the memory parts, 0.3 x that for the image parts, 50 warm-up steps.
* ``--overfit N`` trains on one fixed clip only: the check that the memory path can learn.

IoU-head fine-tune (issue 5, ``--train-only iou``)
-------------------------------------------------
* Joint training left the masks as good but the IoU head ranking the three outputs worse
  (one click 0.961 -> 0.949, best of three unchanged). From the packaged weights, only
  ``sam_mask_decoder.iou_prediction_head`` trains, on the same mixed image + clip batches and
  loss (the mask terms then carry no gradient): IoU MSE on every output of every prompt and
  tracked frame, plus the ranking term. The model runs in eval mode (no dropout), so the
  masks and memories the head learns to rank are the packaged weights' own.
  ``tools/run_iou_finetune.sh`` runs it and the held-back evaluation on the GPU machine.

Confocal nuclei (issue 17, ``--nuclei-share F``)
-----------------------------------------------
* A share F of the images comes from ``synthetic_nuclei`` (160-640 px, radius 12-150 px at the
  1024 input, 15-60 % coverage, touching 20-80 %, up to 40 % out-of-focus neighbours), and the
  z-stack clips (20 + 20 x F % of the clips) a share F from ``synthetic_nuclei_stack``, tracked
  from nucleus 1's widest slice. ``tools/run_micro_v2.sh`` fine-tunes and evaluates on the GPU
  machine (candidates and numbers: docs/micro-model.md, "Real data").

Long z-stack clips (issue 17, ``--z-clips K --z-frames N``)
---------------------------------------------------------
* Why: candidate v2b (above, from v2a) gained real 2D (click 0.701 -> 0.754, box 0.777 ->
  0.808) but lost z-propagation (0.795 -> 0.721). Its z-stack clips were 8 slices from the
  widest one, slices 4-15 % of a radius apart: most never reached a nucleus' end, while the
  real evaluation tracks 11-32 slices each way from the widest (nuclei 23-43 slices deep, plus
  4 empty slices each side), where the memory is full (num_maskmem 7) for most frames and the
  nucleus shrinks to nothing inside a glow. Its object pointers were also encoded as in an
  8-frame video (``num_frames`` 8: distances over 7), never as at inference (over 15).
* Each step adds K clips from ``make_zstack_sample``: 2N - 1 slices with nucleus 1 widest in
  the middle, tracked from it to the last slice and then from it back to the first with
  ``track_in_reverse``, as ``SAM2VideoPredictor`` propagates both ways (N = 12: 22 tracked
  frames); slices 3.5-13 % of a radius apart (the real stack: about 5 %), so about half the
  clips reach the end and the empty slices past it; nucleus 1 and another nucleus of the
  widest slice tracked; a share ``--nuclei-share`` from ``synthetic_nuclei_stack``. The
  ``--clips`` stream then draws no z-stacks (time-lapses only). Every clip now passes
  ``num_frames`` >= 16 (PTR_FRAMES) to SAM2, as inference does.
* Starting point: v2b's image parts with the packaged memory parts (measured on the dev
  machine's CPU on nuclei 14 and 10, the two v2b lost most) track worse than v2b itself (3D
  IoU 0.55 / 0.63; v2b 0.64 / 0.67 and packaged 0.91 / 0.91 on the H200; the tracked masks
  take in a touching neighbour, 1.6-1.9 x the true area), so v2b's loss is not in its memory
  parts alone: the
  image parts it shares with tracking (decoder, backbone features) moved, and the memory has
  to be trained against them on clips like the evaluation's. Neither starting point is sure,
  so ``tools/run_micro_v2.sh`` trains two side by side on the one GPU: from v2b with the image
  parts at half the memory parts' lr (keep its 2D gains, let memory and decoder re-learn z),
  and from the packaged weights at v2b's lr (keep its z-propagation, learn 2D from the
  current generator).

Echo and crowded clips (issue 17, ``--echo R``)
----------------------------------------------
* Why: the GPU waited for the CPUs (two runs side by side: 83 steps in 330 s; on one core an
  image takes 0.15-0.3 s to render, a 23-slice z-stack clip about 1 s). ``--echo R`` trains
  each rendered image and clip R times (at most 8), each time under another of the square's
  eight turns and mirror images, drawn at random from a pool of 4 steps' worth per worker
  (tools/train_echo.py; the symmetries are exact on the model's grid, prompts included).
* 40 % of the moving clips are crowded time-lapses (``synthetic_timelapse``: a third of the
  field covered, cells touching and passing each other; no divisions in 8 frames).

Commands used for the packaged checkpoint (each on one H100; see docs/micro-model.md)::

    # image mode: two calls, the second resumes from the first's model.pt / opt.pt
    python tools/train_micro.py --out $OUT --seed 0 --batch 24 --workers 14 \
        --budget-s 960 --time-limit 455
    python tools/train_micro.py --out $OUT --resume .train/ckpt --batch 24 --workers 14 \
        --time-limit 540
    # video mode, from the image-mode weights (git 423f2b4, sha256 3f1822ce...)
    python tools/train_micro.py --init image.pt --overfit 100
    python tools/train_micro.py --init image.pt --out $OUT --batch 12 --clips 8 \
        --workers 8 --clip-workers 7 --lr 1e-3 --image-lr-mult 0.3 --warmup 50 \
        --budget-s 700 --time-limit 420 --log-every 10

The result is written as ``$OUT/model.pt`` (``{"model": state_dict}``, float32), ``$OUT/opt.pt``
(optimizer state for resuming) and ``$OUT/log.jsonl`` (one JSON line per logged step).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_echo import echoed, turn_clip_sample, turn_image_sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "src/napari_sam2/engine/configs/sam2.1_hiera_micro.yaml"
IMAGE_SIZE = 1024
LOW_RES = 256
MASK_LOGIT = 10.0  # as napari_sam2.engine.prompts.mask_to_logits
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PROMPTS = {"click": 7, "box": 3, "pair": 3, "mask": 3}  # per image
N_PROMPTS = sum(PROMPTS.values())
# What ``--train-only`` trains. iou: the MLP that scores the mask outputs (not the IoU token:
# it joins the decoder transformer's self-attention, so training it would move the masks too).
# decoder: the whole mask decoder, IoU token and head included.
TRAIN_ONLY = {"iou": "sam_mask_decoder.iou_prediction_head.", "decoder": "sam_mask_decoder."}
# Share of training images (and z-stack clips) drawn by ``synthetic_nuclei`` (``--nuclei-share``;
# the DataLoader workers fork after ``main`` sets it).
NUCLEI_SHARE = 0.0


def _import_synthetic():
    """The generator lives in the package; the GPU machine gets a copy beside this script."""
    try:
        from napari_sam2.engine import synthetic
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import synthetic  # type: ignore[no-redef]
    return synthetic


# --------------------------------------------------------------------------- model


def build_model(config: str | Path = DEFAULT_CONFIG, video: bool = False, inference=False):
    """The micro SAM2 built from its YAML, as napari_sam2.engine.models does (no weights)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(str(config))
    over = []
    if inference:  # what sam2's builders (and the plugin) add for inference
        over += [
            "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
            "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
            "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
        ]
    if video:
        over += ["model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor"]
        if inference:
            over += ["model.binarize_mask_from_pts_for_mem_enc=true", "model.fill_hole_area=8"]
    if over:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(over))
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True)


def normalise(plane: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Plane to float32 0..1 as the plugin does (0.5 / 99.8 percentiles, see engine/frames.py).

    With ``rng``, 30 % of planes get another contrast instead (min/max, or a gamma), so the
    model does not depend on one exact normalisation.
    """
    x = plane.astype(np.float32)
    lo, hi = np.percentile(x[::2, ::2], [0.5, 99.8])
    if rng is not None:
        u = rng.random()
        if u < 0.15:
            lo, hi = float(x.min()), float(x.max())
        elif u < 0.2:
            lo, hi = 0.0, float(np.iinfo(plane.dtype).max) * rng.uniform(0.1, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    if rng is not None and rng.random() < 0.1:
        x = x ** rng.uniform(0.6, 1.6)
    return x.astype(np.float32)


def to_model_input(frames01: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(B, 1 or 3, H, W) 0..1 → (B, 3, size, size) as SAM2Transforms (resize, ImageNet norm)."""
    x = frames01.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=True)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def image_features(model, images: torch.Tensor) -> dict:
    """Backbone features exactly as ``SAM2ImagePredictor.set_image_batch`` computes them."""
    backbone_out = model.forward_image(images)
    _, vision_feats, _, feat_sizes = model._prepare_backbone_features(backbone_out)
    if model.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    b = images.shape[0]
    feats = [
        f.permute(1, 2, 0).reshape(b, -1, *s)
        for f, s in zip(vision_feats, feat_sizes, strict=True)
    ]
    return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}


def decode(model, feats, index, coords=None, labels=None, mask_input=None, multimask=False):
    """Mask decoder for prompts on images ``index`` (one per prompt), as the predictor's _predict.

    ``coords`` are (N, P, 2) in 1024-input pixels (x, y), box corners first with labels 2, 3.
    Returns low-res logits (N, M, 256, 256), IoU predictions (N, M), object-score logits (N, 1).
    """
    points = None if coords is None else (coords, labels)
    sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
    logits, iou, _, obj = model.sam_mask_decoder(
        image_embeddings=feats["image_embed"][index],
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=False,
        high_res_features=[f[index] for f in feats["high_res_feats"]],
    )
    return logits, iou, obj


# --------------------------------------------------------------------------- data


class ImageStream(torch.utils.data.IterableDataset):
    """Endless synthetic images with their prompts; each worker has its own seed. ``echo``:
    each image trains that many times, turned or mirrored (tools/train_echo.py)."""

    def __init__(self, seed: int, echo: int = 1, pool: int = 1):
        self.seed, self.echo, self.pool = seed, echo, pool

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = 0 if info is None else info.id
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, wid])
        box_slots = slice(PROMPTS["click"], PROMPTS["click"] + PROMPTS["box"])
        yield from echoed(
            iter(lambda: make_image_sample(rng), None),
            rng,
            self.echo,
            self.pool,
            lambda sample, k: turn_image_sample(sample, k, box_slots),
        )


def random_nuclei(rng: np.random.Generator):
    """One confocal nuclei image (``synthetic_nuclei``): crowded, sizes and optics at random."""
    from napari_sam2.engine.synthetic_nuclei import synthetic_nuclei

    h, w = (int(v) for v in rng.integers(160, 641, 2))
    r_model = math.exp(rng.uniform(math.log(12), math.log(150)))
    radius = max(3.0, r_model * math.sqrt(h * w) / IMAGE_SIZE)
    n = int(np.clip(rng.uniform(0.15, 0.6) * h * w / (math.pi * radius**2), 1, 150))
    while True:
        image, labels = synthetic_nuclei(
            (h, w),
            n_cells=n,
            dtype=np.uint8 if rng.random() < 0.4 else np.uint16,
            seed=int(rng.integers(1 << 31)),
            radius=radius,
            touching=rng.uniform(0.2, 0.8),
            out_of_focus=rng.uniform(0.0, 0.4),
        )
        if labels.max():
            return image, labels


def random_cells(rng: np.random.Generator):
    """One training image: sizes, densities and shapes drawn at random (see module docstring);
    a share ``NUCLEI_SHARE`` of them confocal nuclei (issue 17)."""
    if rng.random() < NUCLEI_SHARE:
        return random_nuclei(rng)
    syn = _import_synthetic()
    h, w = (int(v) for v in rng.integers(160, 769, 2))
    r_model = math.exp(rng.uniform(math.log(10), math.log(150)))  # radius at 1024 input
    radius = max(4.0, r_model * math.sqrt(h * w) / IMAGE_SIZE)
    coverage = rng.uniform(0.05, 0.4)
    n = int(np.clip(coverage * h * w / (math.pi * radius**2), 1, 60))
    return syn.synthetic_cells(
        (h, w),
        n_cells=n,
        dtype=np.uint8 if rng.random() < 0.4 else np.uint16,
        seed=int(rng.integers(1 << 31)),
        touching=bool(rng.random() < 0.5),
        radius=radius,
        irregularity=rng.uniform(0.0, 0.25),
        max_elongation=rng.uniform(1.0, 2.5),
    )


def _pick_pixel(rng, mask: np.ndarray, interior: bool) -> tuple[float, float]:
    """(row, col) of a pixel in ``mask``; ``interior`` favours pixels far from the border."""
    ys, xs = np.nonzero(mask)
    if interior and len(ys) > 20:
        # Depth inside the object: the local fill of a window half the object's size.
        y0, x0 = ys.min(), xs.min()
        crop = np.pad(mask[y0 : ys.max() + 1, x0 : xs.max() + 1], 1).astype(np.float32)
        k = max(1, int(math.sqrt(len(ys)) * 0.25))
        box = np.pad(crop, k).cumsum(0).cumsum(1)  # integral image: k-box sums in O(1)
        box = np.pad(box, ((1, 0), (1, 0)))
        n = 2 * k + 1
        sums = box[n:, n:] - box[:-n, n:] - box[n:, :-n] + box[:-n, :-n]
        d = sums[ys - y0 + 1, xs - x0 + 1]
        p = d**4 / (d**4).sum()
        i = rng.choice(len(ys), p=p)
    else:
        i = rng.integers(len(ys))
    return float(ys[i]) + rng.uniform(-0.4, 0.4), float(xs[i]) + rng.uniform(-0.4, 0.4)


def make_image_sample(rng: np.random.Generator) -> dict:
    """An image resized to 1024 and N_PROMPTS prompts with their 256 x 256 targets."""
    image, labels = random_cells(rng)
    h, w = labels.shape
    frame = torch.from_numpy(normalise(image, rng))[None, None]
    frame = F.interpolate(
        frame, (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=True
    )[0]
    n_obj = int(labels.max())
    objs = rng.permutation(np.tile(np.arange(1, n_obj + 1), N_PROMPTS // n_obj + 1))[:N_PROMPTS]
    sy, sx = IMAGE_SIZE / h, IMAGE_SIZE / w  # pixel (row, col) → model input (x, y): x * sx
    kinds = np.repeat(np.arange(len(PROMPTS)), list(PROMPTS.values()))
    points = np.zeros((N_PROMPTS, 2, 2), np.float32)  # (x, y) in 1024 input pixels
    targets = np.zeros((N_PROMPTS, LOW_RES, LOW_RES), np.uint8)
    for j, (k, kind) in enumerate(zip(objs, kinds, strict=True)):
        m = labels == k
        t = F.interpolate(
            torch.from_numpy(m.astype(np.float32))[None, None], (LOW_RES, LOW_RES), mode="area"
        )
        targets[j] = (t[0, 0].numpy() * 255).round().astype(np.uint8)
        name = list(PROMPTS)[kind]
        if name in ("click", "pair", "mask"):
            r, c = _pick_pixel(rng, m, interior=rng.random() < 0.6)
            points[j, 0] = (c * sx, r * sy)
        if name == "pair":
            ys, xs = np.nonzero(m)
            pad_y = max(4, int(0.5 * (ys.max() - ys.min())))
            pad_x = max(4, int(0.5 * (xs.max() - xs.min())))
            y0, y1 = max(0, ys.min() - pad_y), min(h, ys.max() + pad_y + 1)
            x0, x1 = max(0, xs.min() - pad_x), min(w, xs.max() + pad_x + 1)
            win = labels[y0:y1, x0:x1]
            other = (win > 0) & (win != k)
            neg = other if other.any() and rng.random() < 0.6 else (win == 0)
            if not neg.any():
                neg = win != k
            r, c = _pick_pixel(rng, neg, interior=rng.random() < 0.5)
            points[j, 1] = ((c + x0) * sx, (r + y0) * sy)
        if name == "box":
            ys, xs = np.nonzero(m)
            bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            jit = rng.normal(0, 0.05, 4) * np.array([bw, bh, bw, bh])
            x0 = np.clip(xs.min() + jit[0], 0, w - 1)
            y0 = np.clip(ys.min() + jit[1], 0, h - 1)
            x1 = np.clip(xs.max() + jit[2], x0 + 1, w)
            y1 = np.clip(ys.max() + jit[3], y0 + 1, h)
            points[j] = ((x0 * sx, y0 * sy), (x1 * sx, y1 * sy))
    return {
        "image": frame.half(),
        "points": torch.from_numpy(points),
        "targets": torch.from_numpy(targets),
    }


# --------------------------------------------------------------------------- losses


def mask_terms(logits: torch.Tensor, target: torch.Tensor):
    """Per-output focal, dice, class-balanced BCE and true IoU (logits: N, M, h, w)."""
    logits = logits.float()
    t = target.expand_as(logits)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    focal = (0.25 * t + 0.75 * (1 - t)) * ce * (1 - p_t) ** 2
    focal = focal.flatten(2).mean(-1)
    inter = (p * t).flatten(2).sum(-1)
    dice = 1 - (2 * inter + 1) / (p.flatten(2).sum(-1) + t.flatten(2).sum(-1) + 1)
    pos = t.flatten(2).mean(-1).clamp(1e-4, 1 - 1e-4)
    w = torch.where(t > 0.5, 0.5 / pos[..., None, None], 0.5 / (1 - pos[..., None, None]))
    bbce = (w * ce).flatten(2).mean(-1)
    pred = logits > 0
    tb = t > 0.5
    union = (pred | tb).flatten(2).sum(-1).float()
    iou = torch.where(union > 0, (pred & tb).flatten(2).sum(-1).float() / union.clamp(min=1), 1.0)
    return focal, dice, bbce, iou


def prompt_loss(logits, iou_pred, obj, target, bce_weight: float):
    """Loss of one prompt group; with 3 outputs the best one carries the mask loss.

    Returns (loss, IoU of the output the predictor would return, per-prompt IoU of that output).
    """
    focal, dice, bbce, iou = mask_terms(logits, target)
    per_out = 20 * focal + dice + bce_weight * bbce
    iou_pred = iou_pred.float()
    if logits.shape[1] > 1:
        best = per_out.argmin(1)
        loss_mask = per_out.gather(1, best[:, None])[:, 0]
        others = (per_out.sum(1) - loss_mask) / (per_out.shape[1] - 1)
        loss_mask = loss_mask + 0.05 * others
        rank = F.cross_entropy(iou_pred * 10, iou.argmax(1).detach())
    else:
        loss_mask = per_out[:, 0]
        rank = torch.zeros((), device=logits.device)
    loss_iou = F.mse_loss(iou_pred, iou.detach(), reduction="none").mean(1)
    loss_obj = F.binary_cross_entropy_with_logits(obj.float()[:, 0], torch.ones_like(obj[:, 0]))
    loss = loss_mask.mean() + loss_iou.mean() + 0.1 * rank + 0.1 * loss_obj
    chosen = iou.gather(1, iou_pred.argmax(1, keepdim=True))[:, 0]
    return loss, chosen


def correction_click(logits, iou_pred, target):
    """A click in the middle of the largest error of the chosen output (as a user would)."""
    with torch.no_grad():
        sel = logits.gather(
            1, iou_pred.argmax(1)[:, None, None, None].expand(-1, 1, *logits.shape[-2:])
        )
        pred = sel[:, 0] > 0
        tb = target[:, 0] > 0.5
        err = (pred ^ tb).float()[:, None]
        depth = F.avg_pool2d(err, 15, stride=1, padding=7)[:, 0] * err[:, 0]
        flat = depth.flatten(1).argmax(1)
        none = depth.flatten(1).amax(1) <= 0
        if none.any():  # no error: a click inside the object
            inside = tb.flatten(1).float() + 1e-6
            flat = torch.where(none, torch.multinomial(inside, 1)[:, 0], flat)
        y, x = flat // LOW_RES, flat % LOW_RES
        label = tb.flatten(1).gather(1, flat[:, None])[:, 0].int()
        scale = IMAGE_SIZE / LOW_RES
        xy = torch.stack([(x.float() + 0.5) * scale, (y.float() + 0.5) * scale], -1)
    return xy[:, None], label[:, None]


def degraded_mask_prompt(target: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A ground-truth mask, dilated / eroded / shifted / coarsened, as +-10 logits."""
    m = (target > 0.5).float()
    n = m.shape[0]
    out = []
    for i in range(n):
        x = m[i : i + 1]
        k = int(torch.randint(0, 4, (1,), generator=gen))
        if k:
            if torch.rand(1, generator=gen) < 0.5:
                x = F.max_pool2d(x, 2 * k + 1, 1, k)
            else:
                x = -F.max_pool2d(-x, 2 * k + 1, 1, k)
        dy, dx = (int(v) for v in torch.randint(-3, 4, (2,), generator=gen))
        x = torch.roll(x, (dy, dx), (-2, -1))
        if torch.rand(1, generator=gen) < 0.3:
            f = int(torch.randint(4, 17, (1,), generator=gen))
            x = F.interpolate(F.avg_pool2d(x, f, f, ceil_mode=True), (LOW_RES, LOW_RES))
            x = (x > 0.5).float()
        out.append(x)
    return (torch.cat(out) * 2 - 1) * MASK_LOGIT


# --------------------------------------------------------------------------- training step


def image_step(model, batch, step_frac: float, gen: torch.Generator, device) -> tuple:
    """One image-mode step: all prompt groups on a batch of images; returns (loss, metrics)."""
    images = to_model_input(batch["image"].to(device, non_blocking=True))
    points = batch["points"].to(device, non_blocking=True)  # (B, N, 2, 2)
    targets = batch["targets"].to(device, non_blocking=True).float()[:, :, None] / 255.0
    b = images.shape[0]
    bce_w = max(0.0, 1.0 - step_frac / 0.3)
    with torch.autocast("cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16):
        feats = image_features(model, images)
    img_idx = torch.arange(b, device=device)[:, None].expand(b, N_PROMPTS)
    offs = np.cumsum([0] + list(PROMPTS.values()))
    group = {name: slice(offs[i], offs[i + 1]) for i, name in enumerate(PROMPTS)}

    def take(name):
        s = group[name]
        return (
            img_idx[:, s].reshape(-1),
            points[:, s].reshape(-1, 2, 2),
            targets[:, s].flatten(0, 1),
        )

    losses, metrics = [], {}
    ac = torch.autocast("cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16)
    # Single clicks: three outputs.
    idx, pts, tgt = take("click")
    ones = torch.ones(len(idx), 1, dtype=torch.int32, device=device)
    coords, labels = pts[:, :1], ones
    with ac:
        lg, iou_p, obj = decode(model, feats, idx, coords, labels, multimask=True)
    loss, chosen = prompt_loss(lg, iou_p, obj, tgt, bce_w)
    losses.append(loss * 2)
    metrics["click"] = chosen.mean().item()
    # Two and three clicks from the model's own errors.
    for n_click in (2, 3):
        xy, lab = correction_click(lg.float(), iou_p.float(), tgt)
        coords = torch.cat([coords, xy], 1)
        labels = torch.cat([labels, lab], 1)
        with ac:
            lg, iou_p, obj = decode(model, feats, idx, coords, labels, multimask=False)
        loss, chosen = prompt_loss(lg, iou_p, obj, tgt, bce_w)
        losses.append(loss)
        metrics[f"click{n_click}"] = chosen.mean().item()
    # Boxes.
    idx, pts, tgt = take("box")
    box_labels = torch.tensor([[2, 3]], dtype=torch.int32, device=device).expand(len(idx), 2)
    with ac:
        lg, iou_p, obj = decode(model, feats, idx, pts, box_labels, multimask=False)
    loss, chosen = prompt_loss(lg, iou_p, obj, tgt, bce_w)
    losses.append(loss)
    metrics["box"] = chosen.mean().item()
    # Positive + negative pairs.
    idx, pts, tgt = take("pair")
    pair_labels = torch.tensor([[1, 0]], dtype=torch.int32, device=device).expand(len(idx), 2)
    with ac:
        lg, iou_p, obj = decode(model, feats, idx, pts, pair_labels, multimask=False)
    loss, chosen = prompt_loss(lg, iou_p, obj, tgt, bce_w)
    losses.append(loss)
    metrics["pair"] = chosen.mean().item()
    # Mask prompts (half of them with the click too).
    idx, pts, tgt = take("mask")
    mask_in = degraded_mask_prompt(tgt, gen)
    half = len(idx) // 2
    with ac:
        lg1, iou1, obj1 = decode(model, feats, idx[:half], mask_input=mask_in[:half])
        lg2, iou2, obj2 = decode(
            model, feats, idx[half:], pts[half:, :1], ones[: len(idx) - half], mask_in[half:]
        )
    loss1, ch1 = prompt_loss(lg1, iou1, obj1, tgt[:half], bce_w)
    loss2, ch2 = prompt_loss(lg2, iou2, obj2, tgt[half:], bce_w)
    losses += [loss1 * 0.5, loss2 * 0.5]
    metrics["mask"] = torch.cat([ch1, ch2]).mean().item()
    total = sum(losses) / 6.0
    metrics["loss"] = total.item()
    return total, metrics


# --------------------------------------------------------------------------- video (issue 5)

VIDEO_T = 8  # frames per training clip
VIDEO_OBJ = 2  # tracked objects per clip (at most)
# ``num_frames`` handed to ``_track_step``: SAM2 keeps min(num_frames, max_obj_ptrs_in_encoder
# = 16) object pointers and scales their temporal encoding by that minus one. At inference a
# clip is longer than 16 frames (the real stack's nuclei: 24-51 slices), so training passes at
# least 16 too; with the clip length (8) the pointers' distances were scaled by 1/7 in training
# and by 1/15 at inference.
PTR_FRAMES = 16
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
    syn = _import_synthetic()
    h, w = (int(v) for v in rng.integers(160, 449, 2))
    r_model = math.exp(rng.uniform(math.log(20), math.log(150)))
    radius = max(5.0, r_model * math.sqrt(h * w) / IMAGE_SIZE)
    n_cells = int(rng.integers(1, 6))
    p_static = max(0.1, 0.5 - 0.4 * progress / 0.3)
    u = rng.random()
    p_zstack = 0.2 + 0.2 * NUCLEI_SHARE if zstack else 0.0
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
        from napari_sam2.engine.synthetic_timelapse import synthetic_timelapse

        n_crowd = int(np.clip(0.35 * h * w / (math.pi * radius**2), 2, 80))
        frames, labels, _ = synthetic_timelapse(
            n_frames, (h, w), n_crowd, dtype, seed, divisions=0, entering=0, leaving=0
        )
    elif motion == "zstack" and rng.random() < NUCLEI_SHARE:
        from napari_sam2.engine.synthetic_nuclei import synthetic_nuclei_stack

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
        frames, labels = syn.synthetic_clip(
            total, (h, w), n_cells, dtype, seed, "zstack", radius=radius
        )
        mid = n_frames - 1
        order = np.arange(mid, total) if rng.random() < 0.5 else np.arange(mid, -1, -1)
        frames, labels = frames[order], labels[order]
    else:
        frames, labels = syn.synthetic_clip(
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
    syn = _import_synthetic()
    h, w = (int(v) for v in rng.integers(160, 449, 2))
    r_model = math.exp(rng.uniform(math.log(12), math.log(150)))
    radius = max(4.0, r_model * math.sqrt(h * w) / IMAGE_SIZE)
    n = 2 * per_side - 1 if both_ways else per_side
    centre = per_side - 1 if both_ways else 0
    seed = int(rng.integers(1 << 31))
    dtype = np.uint8 if rng.random() < 0.4 else np.uint16
    if rng.random() < NUCLEI_SHARE:
        from napari_sam2.engine.synthetic_nuclei import synthetic_nuclei_stack

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
        frames, labels = syn.synthetic_clip(
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
    sy, sx = IMAGE_SIZE / h, IMAGE_SIZE / w
    targets = np.zeros((VIDEO_OBJ, n_frames, LOW_RES, LOW_RES), np.uint8)
    prompt = np.zeros((VIDEO_OBJ, 2, 2), np.float32)
    kind = np.full(VIDEO_OBJ, -1, np.int64)  # 0 click, 1 box, 2 mask; -1 unused slot
    lab = torch.from_numpy(labels)
    for j, k in enumerate(ids):
        t = F.interpolate((lab == k).float()[:, None], (LOW_RES, LOW_RES), mode="area")
        targets[j] = (t[:, 0].numpy() * 255).round().astype(np.uint8)
        m = labels[0] == k
        u = rng.random()
        kind[j] = 0 if u < 0.6 else (1 if u < 0.8 else 2)
        if kind[j] == 0:
            r, c = _pick_pixel(rng, m, interior=rng.random() < 0.7)
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
    return items


def frame_loss(low_multi, ious, obj, target, present, bce_weight: float = 0.0):
    """Loss on a tracked frame: best-of-outputs mask loss where the object is present,
    IoU head, and the object score against presence. Masks the model hid (object score < 0
    gives -1024) are clamped first."""
    logits = low_multi.float().clamp(-32.0, 32.0)
    focal, dice, bbce, iou = mask_terms(logits, target)
    per_out = 20 * focal + dice + bce_weight * bbce
    iou_pred = ious.float()
    if logits.shape[1] > 1:
        best = per_out.argmin(1)
        lm = per_out.gather(1, best[:, None])[:, 0]
        lm = lm + 0.05 * (per_out.sum(1) - lm) / (per_out.shape[1] - 1)
        rank = F.cross_entropy(iou_pred * 10, iou.argmax(1), reduction="none")
    else:
        lm = per_out[:, 0]
        rank = torch.zeros_like(lm)
    li = F.mse_loss(iou_pred, iou, reduction="none").mean(1)
    pres = present.float()
    lo = F.binary_cross_entropy_with_logits(obj.float()[:, 0], pres, reduction="none")
    n = pres.sum().clamp(min=1)
    loss = ((lm + li + 0.1 * rank) * pres).sum() / n + lo.mean()
    chosen = iou.gather(1, iou_pred.argmax(1, keepdim=True))[:, 0]
    return loss, chosen


def _cat_outputs(parts, order):
    """Join the frame-0 outputs of prompt sub-batches back into object order."""
    out = {}
    for key in ("pred_masks", "pred_masks_high_res", "obj_ptr", "maskmem_features"):
        out[key] = torch.cat([p[key] for p in parts])[order]
    out["maskmem_pos_enc"] = [
        torch.cat([p["maskmem_pos_enc"][i] for p in parts])[order]
        for i in range(len(parts[0]["maskmem_pos_enc"]))
    ]
    return out


def video_step(model, clips: list, device) -> tuple:
    """Track every object of a batch of clips from a frame-0 prompt, with gradients through
    the memory, as SAM2VideoPredictor runs it (track_step internals, outputs kept)."""
    ac = torch.autocast("cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16)
    n_t = clips[0]["frames"].shape[0]
    # Frame indices and direction of each tracked position (long z-stacks: from the widest
    # slice up, then from it down, see make_zstack_sample); plain clips run 0, 1, ... forward.
    frame_idx = [int(i) for i in clips[0].get("frame_idx", torch.arange(n_t))]
    reverse = [bool(r) for r in clips[0].get("reverse", torch.zeros(n_t, dtype=torch.bool))]
    num_frames = max(n_t, PTR_FRAMES)
    if all(int(k) < 0 for c in clips for k in c["kind"]):  # nothing to track
        zero = clips[0]["frames"].new_zeros((), dtype=torch.float32, device=device)
        return zero, {}
    with torch.no_grad(), ac:  # the image branch trains the backbone; memory trains here
        frames = torch.cat([to_model_input(c["frames"].to(device)) for c in clips])
        backbone_out = model.forward_image(frames)
        _, vis, pos, sizes = model._prepare_backbone_features(backbone_out)
    vis = [v.float() for v in vis]
    pos = [p.float() for p in pos]
    clip_of, slot = [], []
    for ci, c in enumerate(clips):
        for j in range(c["kind"].shape[0]):
            if int(c["kind"][j]) >= 0:
                clip_of.append(ci)
                slot.append(j)
    clip_of_t = torch.tensor(clip_of, device=device)
    kinds = torch.stack([clips[c]["kind"][j] for c, j in zip(clip_of, slot, strict=True)])
    prompts = torch.stack([clips[c]["prompt"][j] for c, j in zip(clip_of, slot, strict=True)])
    targets = torch.stack([clips[c]["targets"][j] for c, j in zip(clip_of, slot, strict=True)])
    targets = targets.to(device).float()[:, :, None] / 255.0  # (B, T, 1, 256, 256)
    prompts = prompts.to(device)
    b = len(clip_of)
    output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    losses, chosen_all = [], []
    for t in range(n_t):
        idx = clip_of_t * n_t + t
        feats_t = [v[:, idx] for v in vis]
        pos_t = [p[:, idx] for p in pos]
        tgt = targets[:, t]
        present = tgt.flatten(1).amax(1) > 0.5
        if t == 0:
            parts, order_src = [], []
            for kind in (0, 1, 2):
                sel = (kinds == kind).nonzero()[:, 0].to(device)
                if len(sel) == 0:
                    continue
                f_s = [v[:, sel] for v in feats_t]
                p_s = [p[:, sel] for p in pos_t]
                point_inputs = mask_inputs = None
                if kind == 0:
                    point_inputs = {
                        "point_coords": prompts[sel, :1],
                        "point_labels": torch.ones(len(sel), 1, dtype=torch.int32, device=device),
                    }
                elif kind == 1:
                    point_inputs = {
                        "point_coords": prompts[sel],
                        "point_labels": torch.tensor(
                            [[2, 3]], dtype=torch.int32, device=device
                        ).expand(len(sel), 2),
                    }
                else:
                    m = F.interpolate(tgt[sel], (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")
                    mask_inputs = (m > 0.5).float()
                with ac:
                    cur, sam_out, _, _ = model._track_step(
                        frame_idx[0],
                        True,
                        f_s,
                        p_s,
                        sizes,
                        point_inputs,
                        mask_inputs,
                        output_dict,
                        num_frames,
                        False,
                        None,
                    )
                    low_multi, _, ious, low, high, obj_ptr, obj = sam_out
                    cur.update(pred_masks=low, pred_masks_high_res=high, obj_ptr=obj_ptr)
                    model._encode_memory_in_output(f_s, sizes, point_inputs, True, high, obj, cur)
                parts.append(cur)
                order_src.append(sel)
                if kind != 2:
                    loss, ch = frame_loss(low_multi, ious, obj, tgt[sel], present[sel])
                    losses.append(loss * len(sel) / b)
            order = torch.argsort(torch.cat(order_src))
            output_dict["cond_frame_outputs"][frame_idx[0]] = _cat_outputs(parts, order)
            continue
        with ac:
            cur, sam_out, _, _ = model._track_step(
                frame_idx[t],
                False,
                feats_t,
                pos_t,
                sizes,
                None,
                None,
                output_dict,
                num_frames,
                reverse[t],
                None,
            )
            low_multi, _, ious, low, high, obj_ptr, obj = sam_out
            cur.update(pred_masks=low, pred_masks_high_res=high, obj_ptr=obj_ptr)
            model._encode_memory_in_output(feats_t, sizes, None, True, high, obj, cur)
        output_dict["non_cond_frame_outputs"][frame_idx[t]] = cur
        loss, ch = frame_loss(low_multi, ious, obj, tgt, present)
        losses.append(loss)
        chosen_all.append(torch.where(present, ch, (obj[:, 0] <= 0).float()))
    total = sum(losses) / n_t
    track = torch.stack(chosen_all)  # (T-1, B): IoU if present, else 1 if hidden
    return total, {
        "vloss": total.item(),
        "track": track.mean().item(),
        "track_last": track[-1].mean().item(),
    }


# --------------------------------------------------------------------------- check


def check_against_predictor(config=DEFAULT_CONFIG, checkpoint=None) -> float:
    """Largest difference between this script's forward and the stock SAM2ImagePredictor (CPU)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    torch.manual_seed(0)
    model = build_model(config).eval()
    if checkpoint:
        model.load_state_dict(
            torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
        )
    syn = _import_synthetic()
    image, labels = syn.synthetic_cells((300, 420), n_cells=5, seed=7)
    frame01 = normalise(image)
    pred = SAM2ImagePredictor(model)
    worst = 0.0
    with torch.no_grad():
        pred.set_image(np.repeat(frame01[..., None], 3, -1))
        feats = image_features(model, to_model_input(torch.from_numpy(frame01)[None, None]))
        for a, b in zip(
            [feats["image_embed"], *feats["high_res_feats"]],
            [pred._features["image_embed"], *pred._features["high_res_feats"]],
            strict=True,
        ):
            worst = max(worst, (a - b).abs().max().item())
        h, w = labels.shape
        s = torch.tensor([IMAGE_SIZE / w, IMAGE_SIZE / h])
        idx = torch.zeros(1, dtype=torch.long)
        click = np.array([[210.0, 140.0]], np.float32)  # (x, y) pixels
        box = np.array([100.0, 80.0, 260.0, 200.0], np.float32)
        mask = np.where(labels == 1, MASK_LOGIT, -MASK_LOGIT).astype(np.float32)
        mask = F.interpolate(torch.from_numpy(mask)[None, None], (LOW_RES, LOW_RES))[0].numpy()
        cases = [
            (dict(point_coords=click, point_labels=[1]), True),
            (dict(box=box), False),
            (
                dict(
                    point_coords=np.array([[210, 140], [50, 60]], np.float32), point_labels=[1, 0]
                ),
                False,
            ),
            (dict(mask_input=mask), False),
        ]
        for kwargs, mm in cases:
            _, _, low = pred.predict(**kwargs, multimask_output=mm, return_logits=True)
            if "box" in kwargs:
                coords = torch.from_numpy(box).view(1, 2, 2) * s
                labels_t = torch.tensor([[2, 3]], dtype=torch.int32)
            elif "point_coords" in kwargs:
                coords = torch.from_numpy(kwargs["point_coords"])[None] * s
                labels_t = torch.tensor([kwargs["point_labels"]], dtype=torch.int32)
            else:
                coords = labels_t = None
            mi = torch.from_numpy(mask)[None] if "mask_input" in kwargs else None
            lg, _, _ = decode(model, feats, idx, coords, labels_t, mi, multimask=mm)
            worst = max(worst, (lg.clamp(-32, 32)[0] - torch.from_numpy(low)).abs().max().item())
    return worst


# --------------------------------------------------------------------------- main


def lr_at(step: int, total: int, base: float, warmup: int = 150) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def save(out: Path, model, opt, meta: dict, log: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"model": sd}, out / "model.tmp")
    os.replace(out / "model.tmp", out / "model.pt")
    torch.save(opt.state_dict(), out / "opt.tmp")
    os.replace(out / "opt.tmp", out / "opt.pt")
    (out / "meta.json").write_text(json.dumps(meta))
    with open(out / "log.jsonl", "w") as f:
        for row in log:
            f.write(json.dumps(row) + "\n")


def overfit_check(model, device, steps: int, seed: int) -> None:
    """Issue 5's first lead: can the memory path learn at all? Train on one fixed clip."""
    stream = iter(ClipStream(seed, fixed=True))
    clips = [next(stream)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    for step in range(steps):
        loss, metrics = video_step(model, clips, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            print(
                json.dumps({"overfit_step": step, **{k: round(v, 4) for k, v in metrics.items()}}),
                flush=True,
            )


def _clip_batches(stream: ClipStream, size: int, workers: int):
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--out", default="out/micro")
    ap.add_argument("--resume", default=None, help="folder with model.pt, opt.pt, meta.json")
    ap.add_argument("--init", default=None, help="start from these weights (new schedule)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=24, help="images per step")
    ap.add_argument("--clips", type=int, default=0, help="video clips per step (0: image only)")
    ap.add_argument("--video-weight", type=float, default=1.0)
    ap.add_argument(
        "--z-clips",
        type=int,
        default=0,
        help="long z-stack clips per step (make_zstack_sample); then --clips draws no z-stacks",
    )
    ap.add_argument("--z-frames", type=int, default=12, help="z-clip slices per side")
    ap.add_argument("--z-one-way", action="store_true", help="z-clips one side only")
    ap.add_argument("--z-weight", type=float, default=1.0)
    ap.add_argument("--z-workers", type=int, default=6)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument(
        "--echo",
        type=int,
        default=1,
        help="train each rendered image and clip this many times (<= 8), turned or mirrored",
    )
    ap.add_argument("--clip-workers", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument(
        "--image-lr-mult",
        type=float,
        default=1.0,
        help="lr factor for the image parts (backbone, prompt encoder, decoder)",
    )
    ap.add_argument(
        "--train-only",
        choices=sorted(TRAIN_ONLY),
        default=None,
        help="train the IoU prediction head (iou) or the mask decoder (decoder) only, "
        "everything else frozen in eval mode",
    )
    ap.add_argument("--total-steps", type=int, default=0, help="0: plan from --budget-s")
    ap.add_argument("--budget-s", type=float, default=900.0, help="training time to plan for")
    ap.add_argument("--time-limit", type=float, default=500.0, help="stop and save after this")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many (smoke)")
    ap.add_argument("--overfit", type=int, default=0, help="only train N steps on one clip")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--check", action="store_true", help="compare with SAM2ImagePredictor, exit")
    ap.add_argument(
        "--nuclei-share", type=float, default=0.0, help="images / z-stacks of confocal nuclei"
    )
    args = ap.parse_args(argv)
    global NUCLEI_SHARE
    NUCLEI_SHARE = args.nuclei_share

    if args.check:
        print(json.dumps({"max_abs_diff_vs_predictor": check_against_predictor(args.config)}))
        return

    t_start = time.time()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = build_model(args.config).to(device).train()
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location=device)["model"])
    if args.overfit:
        overfit_check(model, device, args.overfit, args.seed)
        return
    if args.train_only:
        # Dropout and drop-path off: the frozen parts compute what they compute at inference.
        model.eval()
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(TRAIN_ONLY[args.train_only]))
    memory_parts = (
        "memory_attention",
        "memory_encoder",
        "obj_ptr",
        "maskmem_tpos_enc",
        "no_obj",
        "mask_downsample",
    )
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    is_mem = [any(n.startswith(k) for k in memory_parts) for n, _ in named]
    groups = [
        {"params": [p for p, m in zip(params, is_mem, strict=True) if m], "mult": 1.0},
        {
            "params": [p for p, m in zip(params, is_mem, strict=True) if not m],
            "mult": args.image_lr_mult,
        },
    ]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01)
    meta = {"step": 0, "total_steps": args.total_steps, "seed": args.seed, "train_s": 0.0}
    log: list = []
    if args.resume:
        r = Path(args.resume)
        model.load_state_dict(torch.load(r / "model.pt", map_location=device)["model"])
        opt.load_state_dict(torch.load(r / "opt.pt", map_location=device))
        meta = json.loads((r / "meta.json").read_text())
        if (r / "log.jsonl").exists():
            log = [json.loads(x) for x in (r / "log.jsonl").read_text().splitlines() if x]
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in params)
    print(
        json.dumps(
            {
                "params": n_params,
                "trained": n_train,
                "device": str(device),
                "resume_step": meta["step"],
            }
        )
    )

    loader = torch.utils.data.DataLoader(
        ImageStream(args.seed * 1000 + meta["step"], args.echo, 4 * args.batch),
        batch_size=args.batch,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if args.workers else None,
        persistent_workers=bool(args.workers),
    )
    it = iter(loader)
    progress = torch.multiprocessing.Value("d", 0.0)
    seed = args.seed * 1000 + meta["step"]
    clip_it = z_it = None
    if args.clips:
        clip_it = _clip_batches(
            ClipStream(
                seed, progress, zstack=not args.z_clips, echo=args.echo, pool=4 * args.clips
            ),
            args.clips,
            args.clip_workers,
        )
    if args.z_clips:
        stream = ClipStream(
            seed,
            z_frames=args.z_frames,
            both_ways=not args.z_one_way,
            echo=args.echo,
            pool=4 * args.z_clips,
        )
        z_it = _clip_batches(stream, args.z_clips, args.z_workers)
    gen = torch.Generator().manual_seed(args.seed + meta["step"])
    out = Path(args.out)
    t0 = time.time()
    t_rate = None
    step0 = meta["step"]
    acc: dict = {}
    while True:
        step = meta["step"]
        total = meta["total_steps"] or 10**9
        if step >= total or (args.max_steps and step - step0 >= args.max_steps):
            break
        if time.time() - t_start > args.time_limit:
            break
        batch = next(it)
        if step - step0 == 10:
            torch.cuda.synchronize() if device.type == "cuda" else None
            t_rate = time.time()
        if step - step0 == 40 and not meta["total_steps"]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            rate = (time.time() - t_rate) / 30
            meta["total_steps"] = int(args.budget_s / rate)
            print(json.dumps({"s_per_step": round(rate, 4), "planned_steps": meta["total_steps"]}))
        for g in opt.param_groups:
            g["lr"] = g["mult"] * lr_at(step, meta["total_steps"] or 10**6, args.lr, args.warmup)
        frac = step / max(1, meta["total_steps"] or 10**6)
        progress.value = frac
        loss, metrics = image_step(model, batch, frac, gen, device)
        if clip_it is not None:
            vloss, vmetrics = video_step(model, next(clip_it), device)
            loss = loss + args.video_weight * vloss
            metrics.update(vmetrics)
        if z_it is not None:
            zloss, zmetrics = video_step(model, next(z_it), device)
            loss = loss + args.z_weight * zloss
            metrics.update({"z" + k: v for k, v in zmetrics.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        meta["step"] = step + 1
        for k, v in metrics.items():
            acc.setdefault(k, []).append(v)
        if (step + 1) % args.log_every == 0:
            row = {"step": step + 1, "lr": opt.param_groups[0]["lr"], "grad_norm": float(gn)}
            row.update({k: round(float(np.mean(v)), 4) for k, v in acc.items()})
            row["elapsed_s"] = round(meta["train_s"] + time.time() - t0, 1)
            log.append(row)
            acc = {}
            print(json.dumps(row), flush=True)
        if (step + 1) % 200 == 0:
            save(out, model, opt, {**meta, "train_s": meta["train_s"] + time.time() - t0}, log)
    meta["train_s"] += time.time() - t0
    save(out, model, opt, meta, log)
    print(json.dumps({"saved": str(out), **meta}))


if __name__ == "__main__":
    main()
