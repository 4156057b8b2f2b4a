"""Warming an accelerator up, so that the user's first click or run is as fast as the next."""

from __future__ import annotations

import numpy as np
import torch

from ..cuda_graphs import padded_size
from ..frames import FrameSource, Normalization
from ..window import base_side, whole_side
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
    (``ShownMasks``: one object's alone, many objects' together; ``spread_clicks`` puts them
    in as many windows as a crowded field's batch of windows takes) and given to the tracker
    as masks, whose kernels are others again.
    """
    counts = [1]
    if model.device.type == "cuda":  # every ``padded_size`` a crowded field may take
        classes = {padded_size(n) for n in range(2, MAX_BATCH + 1)}
        counts += sorted(classes | {min(graph_limit(model) + 1, MAX_BATCH)})
    side = max(whole_side(model.image_size) + 1, 2 * base_side(model.image_size))
    for count in counts:
        clip = np.zeros((9, side, side), np.uint8)
        blank = FrameSource(clip, normalization=Normalization((0.0,), (1.0,)))
        clicks = {k: dict(points=[spot]) for k, spot in enumerate(spread_clicks(count, side), 1)}
        with PropagationSession(model, blank) as session:
            session.add_prompts({0: clicks})
            for _ in session.propagate("forward"):
                pass


def spread_clicks(count: int, side: int) -> list[tuple[int, int]]:
    """``count`` clicks on a ``side``² frame at most 2 ``base_side`` wide, spread over its
    3 × 3 windows of the smallest level (a window each for up to 9, then a few pixels apart),
    so that the windows' encoder batches take every size ``ImageSession.embed_many`` pads to."""
    spots = [(r * side // 4, c * side // 4) for r in (1, 2, 3) for c in (1, 2, 3)]
    return [(spots[k % 9][0], spots[k % 9][1] - k // 9) for k in range(count)]
