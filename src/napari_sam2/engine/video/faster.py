"""The engine's own forms of some of sam2's modules, in force while a run lasts (sam2's
predictor outside a run stays sam2's): the channel norm in fewer passes, the mask
downsampler's four-channel convolution on pixel blocks (CUDA), the memory encoder one object
at a time (CPU), memory attention's activations object by object for batches larger than
CUDA graphs take. Each gives sam2's values up to float rounding. Entered before the engine
wraps memory attention's call (graphs, attention kernels), so that those wrap these forms."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..layer_norm import fewer_pass_norms
from ..memory_encoder import one_by_one_memory
from ..unshuffled_conv import unshuffled_convs
from .object_major import object_major_attention


@contextlib.contextmanager
def faster_forms(model: torch.nn.Module) -> Iterator[None]:
    """A block in which those modules of ``model`` compute in the engine's forms."""
    with (
        fewer_pass_norms(model),
        unshuffled_convs(model),
        one_by_one_memory(model),
        object_major_attention(model),
    ):
        yield
