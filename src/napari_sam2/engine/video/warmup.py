"""Warming an accelerator up, so that the user's first click or run is as fast as the next."""

from __future__ import annotations

import numpy as np
import torch

from ..cuda_graphs import padded_size
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
    track the paths of a crowded field, whose kernels are others: objects of every batch size
    class (``padded_size`` up to ``MAX_BATCH``; each new batch shape costs cuDNN its plans on
    first use: H200, micro, 8 objects, first mask 0.69 s cold, 0.25 s warm) and more objects
    than CUDA graphs take (``graph_limit``, where a batch can hold more). The frames are
    larger than ``whole_side``, so the clicks are segmented in windows as on a real field
    (``ShownMasks``: one object's alone, many objects' together) and given to the tracker as
    masks, whose kernels are others again.
    """
    counts = [1]
    if model.device.type == "cuda":  # every ``padded_size`` a crowded field may take
        classes = {padded_size(n) for n in range(2, MAX_BATCH + 1)}
        counts += sorted(classes | {min(graph_limit(model) + 1, MAX_BATCH)})
    side = whole_side(model.image_size) + 1
    for count in counts:
        clip = np.zeros((9, side, side), np.uint8)
        blank = FrameSource(clip, normalization=Normalization((0.0,), (1.0,)))
        clicks = {
            k: dict(points=[(2 + 3 * (k % 20), 4 + 6 * (k // 20))]) for k in range(1, count + 1)
        }
        with PropagationSession(model, blank) as session:
            session.add_prompts({0: clicks})
            for _ in session.propagate("forward"):
                pass
