"""The mask downsampler's stride-2 convolution of four channels, as a convolution of its
input's 2×2 pixel blocks.

sam2's memory encoder halves the mask four times (1 → 4 → 16 → 64 → 256 channels, 3×3 kernels,
stride 2). For the layer taking four channels cuDNN picks a slow kernel: on an H200, bfloat16,
64 micro objects (64 × 4 × 512² in), 3.6 of the downsampler's 10 ms a frame. The same
convolution over the 16 channels of the input's pixel blocks (``pixel_unshuffle``), a 2×2
kernel at stride 1, takes 1.3 ms; for the other layers that form is slower (one channel: 2.0
vs 0.9 ms; 16: 1.0 vs 0.8). Same values up to float rounding. On a CPU the block form is
the slower one (32 × 4 × 256² in: 67 vs 22 ms), so there the layer computes as it is.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .computed_as import computed_as


class UnshuffledConv2d(nn.Conv2d):
    """A 3×3, stride-2, padding-1 ``Conv2d`` computed on the input's 2×2 pixel blocks on a
    GPU (``blocked_conv``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda" or x.shape[-1] % 2 or x.shape[-2] % 2:
            return super().forward(x)
        return blocked_conv(x, self.weight, self.bias)


def blocked_conv(x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """The 3×3, stride-2, padding-1 convolution of ``x`` (even sides) over its pixel blocks."""
    blocks = F.pixel_unshuffle(F.pad(x, (1, 1, 1, 1)), 2)
    return F.conv2d(blocks, block_weight(weight), bias)


def block_weight(weight: torch.Tensor) -> torch.Tensor:
    """A 3×3 kernel (out, in, 3, 3) as the 2×2 kernel over pixel blocks (out, in · 4, 2, 2).

    Output pixel (i, j) reads padded input rows 2i..2i+2: row 2·di + r of the kernel is row r
    of block i + di (the kernel padded to 4×4 with zeros), and likewise for columns; the block
    channels are ordered (channel, r, s) as ``pixel_unshuffle`` orders them.
    """
    out, channels = weight.shape[:2]
    padded = F.pad(weight, (0, 1, 0, 1)).reshape(out, channels, 2, 2, 2, 2)
    return padded.permute(0, 1, 3, 5, 2, 4).reshape(out, channels * 4, 2, 2)


def _eligible(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.in_channels == 4
        and module.kernel_size == (3, 3)
        and module.stride == (2, 2)
        and module.padding == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
    )


def unshuffled_convs(model: nn.Module) -> contextlib.AbstractContextManager:
    """A block in which the mask downsampler's four-channel convolutions compute as
    ``UnshuffledConv2d`` (``computed_as``)."""
    downsampler = model.memory_encoder.mask_downsampler
    return computed_as([m for m in downsampler.modules() if _eligible(m)], UnshuffledConv2d)
