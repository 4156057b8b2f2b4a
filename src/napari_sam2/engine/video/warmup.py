"""Warming an accelerator up, so that the user's first click or run is as fast as the next."""

from __future__ import annotations

import numpy as np
import torch

from ..frames import FrameSource, Normalization
from .session import PropagationSession


def warm_up(model: torch.nn.Module) -> None:
    """Run clicks and tracked frames once on a tiny blank clip.

    An accelerator loads each kernel and library handle the first time it is used, which
    makes the first click or propagation about a second slower than the next. Loading a model
    on CUDA or MPS ends with this, so that cost is paid while the user waits for the load.
    The clip is long enough for one full batch of the image encoder.
    """
    clip = np.zeros((9, 64, 64), np.uint8)
    blank = FrameSource(clip, normalization=Normalization((0.0,), (1.0,)))
    with PropagationSession(model, blank) as session:
        session.add_prompts({0: {1: dict(points=[(32, 32)])}})
        for _ in session.propagate("forward"):
            pass
