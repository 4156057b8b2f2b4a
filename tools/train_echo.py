"""Data echoing for tools/train_micro.py: each rendered sample trains several times, in
different mirror images and quarter turns (issue 17).

Why: on the GPU machine the micro model's steps wait for the CPUs that render the synthetic
data (two runs side by side made 83 steps in 330 s; a long z-stack clip takes about a second of
one core, an image 0.15-0.3 s), while the GPU idles. A cell seen mirrored or turned is a new
picture to the model, and the eight symmetries of the square are exact on the model's grid:
images and targets are flipped or transposed as arrays, prompts (x, y pixel coordinates at the
model input, centred on x + 0.5 as sam2's prompt encoder reads them) mirrored to S - 1 - x at
an S² input (1023 - x for the packaged micro), box
corners re-sorted. Each worker keeps a pool of rendered samples and draws from it at random, so
the copies of one sample spread over several batches instead of filling one.
"""

from __future__ import annotations

from collections.abc import Iterator

import micro_model as mm
import numpy as np
import torch

SYMMETRIES = 8  # identity, 3 quarter turns, 4 mirror images


def _turn(a: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry ``k`` of the last two (row, column) axes of ``a``."""
    if k & 1:
        a = a.transpose(-1, -2)
    dims = [d for bit, d in ((2, -2), (4, -1)) if k & bit]
    return a.flip(dims) if dims else a


def turn_points(xy: torch.Tensor, k: int, boxes: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetry ``k`` of (..., 2) (x, y) input coordinates; rows where ``boxes`` is true hold
    (top-left, bottom-right) corner pairs along the second-last axis and are re-sorted."""
    last = mm.INPUT_SIZE - 1.0  # the model input's last pixel
    xy = xy.clone()
    if k & 1:
        xy = xy.flip(-1)
    if k & 2:
        xy[..., 1] = last - xy[..., 1]
    if k & 4:
        xy[..., 0] = last - xy[..., 0]
    if boxes is not None and bool(boxes.any()):
        corners = xy[boxes]
        xy[boxes] = torch.stack([corners.amin(-2), corners.amax(-2)], -2)
    return xy


def turn_image_sample(sample: dict, k: int, box_slots: slice) -> dict:
    """An image sample of micro_images.make_image_sample under symmetry ``k``."""
    boxes = torch.zeros(sample["points"].shape[0], dtype=torch.bool)
    boxes[box_slots] = True
    return {
        "image": _turn(sample["image"], k),
        "points": turn_points(sample["points"], k, boxes),
        "targets": _turn(sample["targets"], k),
    }


def turn_clip_sample(sample: dict, k: int, box_kind: int = 1) -> dict:
    """A clip of micro_data.make_clip_sample / make_zstack_sample under symmetry ``k``
    (frames at their native size: the model input is square, so coordinates map the same)."""
    out = dict(sample)
    out["frames"] = _turn(sample["frames"], k)
    out["targets"] = _turn(sample["targets"], k)
    out["prompt"] = turn_points(sample["prompt"], k, sample["kind"] == box_kind)
    return out


def echoed(
    samples: Iterator[dict], rng: np.random.Generator, repeats: int, pool: int, turn
) -> Iterator[dict]:
    """Every sample of ``samples`` ``repeats`` times (≤ 8), each under another symmetry, drawn
    at random from a pool of ``pool`` rendered samples; ``repeats`` 1 passes them through."""
    if repeats <= 1:
        yield from samples
        return
    entries: list[tuple[dict, list[int]]] = []
    while True:
        while len(entries) < pool:
            ks = rng.permutation(SYMMETRIES)[: min(repeats, SYMMETRIES)].tolist()
            entries.append((next(samples), ks))
        i = int(rng.integers(len(entries)))
        sample, ks = entries[i]
        k = ks.pop()
        if not ks:
            entries[i] = entries[-1]
            entries.pop()
        yield turn(sample, k)
