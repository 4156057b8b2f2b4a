"""The engine's own forms of some of sam2's modules, in force while a run lasts (sam2's
predictor outside a run stays sam2's): the channel norm in fewer passes, the mask
downsampler's four-channel convolution on pixel blocks (CUDA), the memory encoder one object
at a time (CPU). Each gives sam2's values up to float rounding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..layer_norm import fewer_pass_norms
from ..memory_encoder import one_by_one_memory
from ..unshuffled_conv import unshuffled_convs


@contextlib.contextmanager
def faster_forms(model: torch.nn.Module) -> Iterator[None]:
    """A block in which those modules of ``model`` compute in the engine's forms."""
    with fewer_pass_norms(model), unshuffled_convs(model), one_by_one_memory(model):
        yield
