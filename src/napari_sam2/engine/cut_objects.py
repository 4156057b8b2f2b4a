"""Objects every tile cuts, found once: their pieces merged across tiles, each segmented in a
window that holds it, painted where no tile's own mask lies.

A tile keeps only masks that reach none of its inner borders (``tiled.split_owned``), so an
object wider than the tiles' overlap (96 px) that lies across a boundary can be cut by every
tile that sees it. The pieces that no kept mask covers are grouped: two pieces from different
tiles are one object when they agree on the pixels both tiles see (IoU ≥ 0.5 there). A group's
extent, if no larger than a tile, is segmented with a box prompt in the window
``engine.window`` chooses for it (``WindowedPlane``, as a click is); the mask is painted on the
pixels still unlabelled if at least half of it lies there (so no object comes out twice).
"""

from __future__ import annotations

from functools import reduce

import numpy as np
import torch

from .automatic import AutomaticOptions
from .frames import Normalization
from .image import ImageSession
from .plane import LazyPlane
from .prompts import PromptSet
from .window import MaskCrop, Window, crop_extent, union
from .windowed import WindowedPlane

Extent = tuple[float, float, float, float]


def cut_extents(found, labels: np.ndarray) -> list[Extent]:
    """Extents of the objects the tiles cut and no kept mask covers, given ``found``
    (``tiled.TileMasks`` of every tile) and ``labels`` holding the kept masks."""
    pieces: list[tuple[Window, MaskCrop]] = []
    for tile in found:
        for _, crop in tile.cut:
            if (labels[crop.rows, crop.cols][crop.mask] > 0).mean() < 0.5:
                pieces.append((tile.tile, crop))
    extents = []
    for group in _objects(pieces):
        extent = reduce(union, (core_extent(crop) for _, crop in group))
        side = max(max(tile.rows, tile.cols) for tile, _ in group)
        if len(group) > 1 and max(extent[2] - extent[0], extent[3] - extent[1]) <= side:
            extents.append(extent)
    return extents


def _objects(pieces: list[tuple[Window, MaskCrop]]) -> list[list[tuple[Window, MaskCrop]]]:
    """The pieces grouped by object: pieces of different tiles that agree join one group."""
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    boxes = np.array([crop_extent(crop) for _, crop in pieces]).reshape(-1, 4)
    for i, (tile, _) in enumerate(pieces):
        later = boxes[i + 1 :]
        touching = (later[:, :2] < boxes[i, 2:]).all(1) & (later[:, 2:] > boxes[i, :2]).all(1)
        for j in np.flatnonzero(touching) + i + 1:
            if pieces[j][0] != tile and _agree(pieces[i], pieces[j]):
                parent[root(i)] = root(int(j))
    groups: dict[int, list[tuple[Window, MaskCrop]]] = {}
    for i, piece in enumerate(pieces):
        groups.setdefault(root(i), []).append(piece)
    return list(groups.values())


def core_extent(crop: MaskCrop) -> Extent:
    """The extent of a mask's main part: along rows, then columns, the run of non-empty
    lines holding most of its pixels (a generator's mask often has stray pixels far off)."""
    rows = _main_run(crop.mask.sum(1))
    cols = _main_run(crop.mask[rows].sum(0))
    r0, c0 = crop.rows.start, crop.cols.start
    return r0 + rows.start, c0 + cols.start, r0 + rows.stop, c0 + cols.stop


def _main_run(counts: np.ndarray) -> slice:
    """The run of consecutive non-zero ``counts`` with the largest sum."""
    edges = np.flatnonzero(np.diff(np.r_[0, counts > 0, 0]))
    runs = edges.reshape(-1, 2)
    best = max(runs, key=lambda run: counts[run[0] : run[1]].sum())
    return slice(int(best[0]), int(best[1]))


def _agree(a: tuple[Window, MaskCrop], b: tuple[Window, MaskCrop]) -> bool:
    """Whether two pieces from different tiles cover the pixels both tiles see alike."""
    (tile_a, crop_a), (tile_b, crop_b) = a, b
    rows = slice(max(tile_a.row0, tile_b.row0), min(tile_a.slices[0].stop, tile_b.slices[0].stop))
    cols = slice(max(tile_a.col0, tile_b.col0), min(tile_a.slices[1].stop, tile_b.slices[1].stop))
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return False
    mask_a, mask_b = _render(crop_a, rows, cols), _render(crop_b, rows, cols)
    both = np.count_nonzero(mask_a & mask_b)
    return both > 0 and both >= 0.5 * np.count_nonzero(mask_a | mask_b)


def _render(crop: MaskCrop, rows: slice, cols: slice) -> np.ndarray:
    """The part of ``crop``'s mask inside ``rows``, ``cols``, as a mask of that region."""
    out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), bool)
    r0, r1 = max(rows.start, crop.rows.start), min(rows.stop, crop.rows.stop)
    c0, c1 = max(cols.start, crop.cols.start), min(cols.stop, crop.cols.stop)
    if r0 < r1 and c0 < c1:
        part = crop.mask[
            r0 - crop.rows.start : r1 - crop.rows.start,
            c0 - crop.cols.start : c1 - crop.cols.start,
        ]
        out[r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start] = part
    return out


def resegment_cut(
    model: torch.nn.Module,
    plane: LazyPlane,
    normalization: Normalization,
    extents: list[Extent],
    options: AutomaticOptions,
) -> list[tuple[int, MaskCrop]]:
    """Each extent segmented with a box prompt in its own window (the windows embedded and
    decoded together), as (area, crop)."""
    device = next(model.parameters()).device
    session = ImageSession(model, cache_size=4)  # its own: a GUI click may use the other
    windowed = WindowedPlane(plane, normalization, session, model.image_size, device)
    boxes = [PromptSet.from_arguments(box=extent).validate(plane.shape) for extent in extents]
    out = []
    for crop in windowed.predict_many(boxes):
        area = int(np.count_nonzero(crop.mask))
        if area >= max(options.min_area, 1):
            out.append((area, crop))
    return out


def paint_uncovered(
    masks: list[tuple[int, MaskCrop]], labels: np.ndarray, options: AutomaticOptions, count: int
) -> int:
    """Paint each mask (largest first) as ids count+1.. on the unlabelled pixels of
    ``labels`` if at least half of it (and ``min_area``) lies there; returns the last id."""
    for area, crop in sorted(masks, key=lambda m: -m[0]):
        region = labels[crop.rows, crop.cols]
        free = crop.mask & (region == 0)
        if np.count_nonzero(free) >= max(options.min_area, 1, area / 2):
            count += 1
            region[free] = count
    return count
