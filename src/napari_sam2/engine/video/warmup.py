"""Warming an accelerator up, so that the user's first click or run is as fast as the next."""

from __future__ import annotations

import numpy as np
import torch

from ..frames import FrameSource, Normalization
from .batching import MAX_BATCH, graph_limit
from .session import PropagationSession


def warm_up(model: torch.nn.Module) -> None:
    """Run clicks and tracked frames once on a tiny blank clip.

    An accelerator loads each kernel and library handle the first time it is used, which
    makes the first click or propagation about a second slower than the next. Loading a model
    on CUDA or MPS ends with this, so that cost is paid while the user waits for the load.
    The clip is long enough for one full batch of the image encoder. On CUDA a second run
    tracks more objects than CUDA graphs take (``graph_limit``, where a batch can hold more)
    together, the path a crowded field takes (its kernels are others: H200, micro, 64 cells,
    first mask 0.54 s in a fresh process against 0.10 s once they are loaded).
    """
    clip = np.zeros((9, 64, 64), np.uint8)
    blank = FrameSource(clip, normalization=Normalization((0.0,), (1.0,)))
    limit = graph_limit(model)
    counts = [1, limit + 1] if model.device.type == "cuda" and limit < MAX_BATCH else [1]
    for count in counts:
        clicks = {k: dict(points=[(2 + 3 * k, 32)]) for k in range(1, count + 1)}
        with PropagationSession(model, blank) as session:
            session.add_prompts({0: clicks})
            for _ in session.propagate("forward"):
                pass
