"""sam2's memory encoder on a CPU, one object at a time.

The memory encoder downsamples each object's mask at the model input's size through four
strided convolutions. Batched over objects on a CPU those activations leave the caches
(measured at a 1024 input; the packaged micro now reads 512²): 2-core machine, micro, 8
objects, 0.40 s batched against 0.19 s one by one (the mask downsampler alone 0.50 against
0.14 s; 32 objects 1.13 against 0.50 s), while everything else of a batched step gains or
breaks even. On a GPU the batch is what pays.
"""

from __future__ import annotations

import contextlib

import torch
from sam2.modeling.memory_encoder import MemoryEncoder

from .computed_as import computed_as


class OneByOneMemoryEncoder(MemoryEncoder):
    """``MemoryEncoder`` that on a CPU encodes a batch's objects one at a time; the same values."""

    def forward(self, pix_feat, masks, skip_mask_sigmoid=False):
        if masks.device.type != "cpu" or len(masks) == 1:
            return super().forward(pix_feat, masks, skip_mask_sigmoid)
        feats = [pix_feat[min(i, len(pix_feat) - 1)][None] for i in range(len(masks))]
        parts = [
            super(OneByOneMemoryEncoder, self).forward(feat, masks[i : i + 1], skip_mask_sigmoid)
            for i, feat in enumerate(feats)
        ]
        return {
            "vision_features": torch.cat([p["vision_features"] for p in parts]),
            "vision_pos_enc": [torch.cat([p["vision_pos_enc"][0] for p in parts])],
        }


def one_by_one_memory(model: torch.nn.Module) -> contextlib.AbstractContextManager:
    """A block in which ``model``'s memory encoder computes as ``OneByOneMemoryEncoder``."""
    encoder = model.memory_encoder
    return computed_as([encoder] if type(encoder) is MemoryEncoder else [], OneByOneMemoryEncoder)
