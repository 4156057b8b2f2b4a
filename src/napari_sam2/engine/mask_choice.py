"""Which of a single click's three masks to keep: highest predicted IoU plus stability.

A lone click is ambiguous (a nucleus, a part of it, the cell around it), so SAM2's decoder
proposes three masks and sam2 keeps the one of highest predicted IoU. The micro model's IoU
head learnt synthetic cells and misjudges real ones; adding each mask's stability score (the
IoU of the mask thresholded at logit +1 and at -1, sam2's own measure for automatic masks)
keeps better ones: one click on the real nuclei stack 0.761 mIoU instead of 0.739, z-propagation
0.861 instead of 0.852, long crowded time-lapses 0.794 / 0.690 instead of 0.774 / 0.659
(32 / 64 cells), the synthetic held-back click 0.937 instead of 0.940 (docs/micro-model.md).

``keep_stable_choice`` makes a model's decoder return only the kept mask, with its own
predicted IoU and token, whenever three are asked for, so every caller — sam2's image
predictor, prompted and tracked video frames, where sam2 then "keeps the best" of one —
applies the same rule. Training, and sam2's automatic mask generator (inside
``all_candidates``: it filters all three itself), get all three. ``models.build_model``
installs it on the micro model only: the official checkpoints' IoU heads were trained on real
images at scale, and the rule has not been measured with them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.utils.amg import calculate_stability_score

# Logit offset of the stability score, as in sam2's automatic mask generator.
STABILITY_OFFSET = 1.0
_all = threading.local()


@contextlib.contextmanager
def all_candidates() -> Iterator[None]:
    """In this block, this thread's decoder calls return all three masks of a click."""
    _all.depth = getattr(_all, "depth", 0) + 1
    try:
        yield
    finally:
        _all.depth -= 1


class StableChoiceMaskDecoder(MaskDecoder):
    """sam2's mask decoder that keeps one of its three masks by predicted IoU + stability."""

    def forward(self, *args, **kwargs):
        masks, ious, tokens, presence = super().forward(*args, **kwargs)
        multimask = kwargs["multimask_output"] if "multimask_output" in kwargs else args[4]
        if not multimask or self.training or getattr(_all, "depth", 0):
            return masks, ious, tokens, presence
        stability = calculate_stability_score(masks.float(), 0.0, STABILITY_OFFSET)
        kept = (ious.float() + stability).argmax(1, keepdim=True)  # (B, 1)
        masks = masks.gather(1, kept[..., None, None].expand(-1, -1, *masks.shape[-2:]))
        ious = ious.gather(1, kept)
        if tokens.shape[1] > 1:
            tokens = tokens.gather(1, kept[..., None].expand(-1, -1, tokens.shape[-1]))
        return masks, ious, tokens, presence


def keep_stable_choice(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (a SAM2Base) with its decoder choosing as ``StableChoiceMaskDecoder``; the
    weights and their names stay as they are."""
    model.sam_mask_decoder.__class__ = StableChoiceMaskDecoder
    return model
