"""How far to trust each tracked mask: a number in [0, 1] per object per frame.

Made from what sam2 computes for the mask anyway, on the device, with no extra model pass:

- the object-presence probability, ``sigmoid(object_score_logits)``: near 0 where sam2 thinks
  the object is absent (occluded, left the field, lost);
- the predicted IoU of the mask kept (sam2 keeps the best of three by it, then drops the
  numbers): low where the mask decoder doubts its own mask;
- a jump factor against the object's previous frame in the same run: 1 while the area changes
  by less than a factor 2 and the centroid moves by less than the previous mask's equivalent
  radius, lower for larger jumps (see ``jump``): a mask that swaps to a neighbour or loses half
  the cell shows, even where sam2 is sure of it.

The confidence is their product. A prompted frame gets the scores of the mask made from its
prompts (a mask prompt counts as certain).
"""

from __future__ import annotations

import math
import threading

import torch

# With ``reliable_memory``, a tracked frame below this confidence does not become memory.
MEMORY_MIN_CONFIDENCE = 0.5

_last = threading.local()


def install_score_capture(model: torch.nn.Module) -> None:
    """Keep the predicted IoUs and presence logit of each tracking step (once per model).

    sam2's ``_track_step`` returns them to ``track_step``, which drops the IoUs; this wrapper
    keeps both, per thread, for ``take_scores``.
    """
    if getattr(model, "_napari_sam2_scores", False):
        return
    track_step = model._track_step

    def capturing(*args, **kwargs):
        out = track_step(*args, **kwargs)
        sam_outputs = out[1]
        _last.scores = (sam_outputs[2], sam_outputs[6])
        return out

    model._track_step = capturing
    model._napari_sam2_scores = True


def take_scores() -> tuple[torch.Tensor, torch.Tensor] | None:
    """(predicted IoUs, presence logit) of this thread's last tracking step since the last call,
    or None where none ran (sam2 hands out a prompted frame's stored output without one)."""
    scores = getattr(_last, "scores", None)
    _last.scores = None
    return scores


def per_object(scores: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted IoU of the kept mask, presence logit), one of each per object, from a tracking
    step's ``take_scores()`` (sam2 keeps the mask of highest predicted IoU, or the only one)."""
    ious, logits = scores
    return ious.float().amax(-1), logits.float().reshape(-1)


def summary(mask: torch.Tensor) -> torch.Tensor:
    """(area, centroid row, centroid col) of boolean (..., H, W) masks, on their device."""
    weights = mask.float()
    area = weights.sum((-2, -1))
    rows = torch.arange(mask.shape[-2], device=mask.device, dtype=torch.float32)
    cols = torch.arange(mask.shape[-1], device=mask.device, dtype=torch.float32)
    scale = area.clamp(min=1)
    row = (weights.sum(-1) * rows).sum(-1) / scale
    col = (weights.sum(-2) * cols).sum(-1) / scale
    return torch.stack([area, row, col], -1)


def jump(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """1 for an ordinary change between consecutive frames, down to 0 for a sudden jump.

    ``2 * min(area) / max(area)`` (capped at 1) times ``2 - shift / radius`` (clipped to
    [0, 1]), with the centroid's shift measured in the previous mask's equivalent radius. 1
    when either mask is empty: the presence probability speaks for that. Summaries are
    (..., 3), as ``summary`` gives them.
    """
    a0, a1 = previous[..., 0], current[..., 0]
    ratio = torch.minimum(a0, a1) / torch.maximum(a0, a1).clamp(min=1)
    radius = torch.sqrt(a0 / math.pi).clamp(min=1)
    shift = torch.linalg.vector_norm(current[..., 1:] - previous[..., 1:], dim=-1) / radius
    factor = (2 * ratio).clamp(max=1) * (2 - shift).clamp(0, 1)
    return torch.where((a0 > 0) & (a1 > 0), factor, torch.ones_like(factor))


def confidence(iou: torch.Tensor, logit: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Presence probability × predicted IoU of the kept mask × jump factor, per object."""
    return torch.sigmoid(logit) * iou.clamp(0, 1) * factor
