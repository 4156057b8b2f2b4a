"""Losses of micro SAM2 training, and the prompts made from the model's own answers and the
ground truth (correction clicks, degraded mask prompts)."""

from __future__ import annotations

import micro_model as mm
import torch
import torch.nn.functional as F
from micro_model import MASK_LOGIT


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


def best_output_loss(per_out: torch.Tensor) -> torch.Tensor:
    """Per-prompt mask loss from (N, M) per-output losses: with several outputs the best one
    carries it, plus 0.05 x the others' mean (so none collapses to empty or everything)."""
    if per_out.shape[1] == 1:
        return per_out[:, 0]
    best = per_out.gather(1, per_out.argmin(1)[:, None])[:, 0]
    return best + 0.05 * (per_out.sum(1) - best) / (per_out.shape[1] - 1)


def prompt_loss(logits, iou_pred, obj, target, bce_weight: float):
    """Loss of one prompt group; with 3 outputs the best one carries the mask loss.

    Returns (loss, IoU of the output the predictor would return, per-prompt IoU of that output).
    """
    focal, dice, bbce, iou = mask_terms(logits, target)
    loss_mask = best_output_loss(20 * focal + dice + bce_weight * bbce)
    iou_pred = iou_pred.float()
    if logits.shape[1] > 1:
        rank = F.cross_entropy(iou_pred * 10, iou.argmax(1).detach())
    else:
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
        side = target.shape[-1]
        y, x = flat // side, flat % side
        label = tb.flatten(1).gather(1, flat[:, None])[:, 0].int()
        scale = mm.INPUT_SIZE / side
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
            x = F.interpolate(F.avg_pool2d(x, f, f, ceil_mode=True), m.shape[-2:])
            x = (x > 0.5).float()
        out.append(x)
    return (torch.cat(out) * 2 - 1) * MASK_LOGIT


def frame_loss(low_multi, ious, obj, target, present, bce_weight: float = 0.0):
    """Loss on a tracked frame: best-of-outputs mask loss where the object is present,
    IoU head, and the object score against presence. Masks the model hid (object score < 0
    gives -1024) are clamped first."""
    logits = low_multi.float().clamp(-32.0, 32.0)
    focal, dice, bbce, iou = mask_terms(logits, target)
    lm = best_output_loss(20 * focal + dice + bce_weight * bbce)
    iou_pred = ious.float()
    if logits.shape[1] > 1:
        rank = F.cross_entropy(iou_pred * 10, iou.argmax(1), reduction="none")
    else:
        rank = torch.zeros_like(lm)
    li = F.mse_loss(iou_pred, iou, reduction="none").mean(1)
    pres = present.float()
    lo = F.binary_cross_entropy_with_logits(obj.float()[:, 0], pres, reduction="none")
    n = pres.sum().clamp(min=1)
    loss = ((lm + li + 0.1 * rank) * pres).sum() / n + lo.mean()
    chosen = iou.gather(1, iou_pred.argmax(1, keepdim=True))[:, 0]
    return loss, chosen
