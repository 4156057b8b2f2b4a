"""Warming an accelerator up, so that the user's first click or run is as fast as the next."""

from __future__ import annotations

import numpy as np
import torch

from ..frames import FrameSource, Normalization
from ..window import whole_side
from .batching import MAX_BATCH, graph_limit
from .session import PropagationSession


def warm_up(model: torch.nn.Module) -> None:
    """Run clicks and tracked frames once on a tiny blank clip.

    An accelerator loads each kernel and library handle the first time it is used, which
    makes the first click or propagation about a second slower than the next. Loading a model
    on CUDA or MPS ends with this, so that cost is paid while the user waits for the load.
    The clip is long enough for one full batch of the image encoder. On CUDA further runs
    track more objects than CUDA graphs take (``graph_limit``, where a batch can hold more)
    and ``MAX_BATCH`` objects together, the paths of a crowded field, whose kernels are others
    (H200, micro, 64 cells, first mask in a fresh process: 0.46 s without these runs, 0.17 s
    with them, for 0.5 s more of warm-up). The one-object run's frames are larger than
    ``whole_side``, so its click is segmented in a window as on a real field (``ShownMasks``),
    whose image-path kernels are others again.
    """
    runs = [(1, whole_side(model.image_size) + 1)]
    if model.device.type == "cuda":
        runs += [(n, 64) for n in sorted({min(graph_limit(model) + 1, MAX_BATCH), MAX_BATCH})]
    for count, side in runs:
        clip = np.zeros((9, side, side), np.uint8)
        blank = FrameSource(clip, normalization=Normalization((0.0,), (1.0,)))
        clicks = {
            k: dict(points=[(2 + 3 * (k % 20), 4 + 6 * (k // 20))]) for k in range(1, count + 1)
        }
        with PropagationSession(model, blank) as session:
            session.add_prompts({0: clicks})
            for _ in session.propagate("forward"):
                pass
