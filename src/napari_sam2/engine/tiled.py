"""Segment everything on a plane larger than the model input: overlapping tiles, stitched.

Each tile (``window.base_side`` image pixels a side, the scale clicks are segmented at) goes
through the automatic mask generator once. Tiles overlap by a quarter of their side; each tile
owns the pixels nearer to it than to its neighbours (its interior), and keeps the masks whose
box centre lies in its interior and that do not reach one of its borders inside the plane (a
cut object: the neighbour that owns its centre sees it whole if it is no wider than the
overlap). Interiors partition the plane, so no object is kept twice; the kept masks are painted
into one non-overlapping label image, and objects every tile cut are found once more from
their pieces (``cut_objects``). ``iter_tile`` and ``stitch_tiles`` are the two halves, so the
tiles of one plane can run as separate tasks (the batch spreads them over Dask workers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch

from .automatic import (
    AutomaticOptions,
    Progress,
    finish_labels,
    iter_mask_proposals,
    paint_masks,
)
from .cut_objects import cut_extents, paint_uncovered, resegment_cut
from .frames import Normalization, to_model_frame
from .plane import LazyPlane
from .window import MaskCrop, Window, base_side


def tile_grid(shape: tuple[int, int], side: int) -> list[Window]:
    """Windows of ``side`` covering ``shape``, overlapping by a quarter side (the last of each
    row and column ends on the plane's edge)."""
    return [
        Window(row0, col0, min(side, shape[0]), min(side, shape[1]))
        for row0 in _starts(shape[0], side)
        for col0 in _starts(shape[1], side)
    ]


def _starts(length: int, side: int) -> list[int]:
    if length <= side:
        return [0]
    stride = side - side // 4
    count = math.ceil((length - side) / stride) + 1
    return [min(j * stride, length - side) for j in range(count)]


def interior(tile: Window, tiles: list[Window]) -> tuple[float, float, float, float]:
    """(row0, col0, row1, col1) of the part of the plane ``tile`` owns: up to halfway into its
    overlap with each neighbour, up to the plane's edge where it has none."""
    rows = sorted({t.row0 for t in tiles})
    cols = sorted({t.col0 for t in tiles})

    def bounds(starts: list[int], start: int, length: int) -> tuple[float, float]:
        i = starts.index(start)
        low = -math.inf if i == 0 else (start + starts[i - 1] + length) / 2
        high = math.inf if i == len(starts) - 1 else (starts[i + 1] + start + length) / 2
        return low, high

    r0, r1 = bounds(rows, tile.row0, tile.rows)
    c0, c1 = bounds(cols, tile.col0, tile.cols)
    return r0, c0, r1, c1


@dataclass
class TileMasks:
    """What one tile found: the masks it owns whole, and the masks it cut (pieces of objects
    reaching one of its inner borders), each as (area, crop in plane pixels)."""

    tile: Window
    kept: list[tuple[int, MaskCrop]]
    cut: list[tuple[int, MaskCrop]]


def iter_tile(
    model: torch.nn.Module,
    plane: LazyPlane,
    normalization: Normalization,
    options: AutomaticOptions,
    index: int,
) -> Generator[Progress, None, TileMasks]:
    """Segment everything in tile ``index`` of the plane's ``tile_grid`` (one model pass;
    only the tile's pixels are read); yields ``Progress`` per point batch.

    Closing the generator stops the work at the next batch.
    """
    tiles = tile_grid(plane.shape, base_side(model.image_size))
    tile = tiles[index]
    frame = to_model_frame(plane.read(*tile.slices), normalization)
    work = iter_mask_proposals(model, frame, options)
    try:
        proposals = yield from work
    finally:
        work.close()  # cancelled: the tile's generator resets its predictor now
    return split_owned(proposals, tile, tiles, plane.shape, options)


def iter_tiled_labels(
    model: torch.nn.Module,
    plane: LazyPlane,
    normalization: Normalization,
    options: AutomaticOptions,
) -> Generator[Progress, None, np.ndarray]:
    """Yields ``Progress`` over every point batch of every tile; returns int32 labels.

    Closing the generator stops the work at the next batch.
    """
    count = len(tile_grid(plane.shape, base_side(model.image_size)))
    found: list[TileMasks] = []
    per_tile = total = None
    for n in range(count):
        work = iter_tile(model, plane, normalization, options, n)
        try:
            first = next(work)
            if per_tile is None:
                per_tile, total = first.total, first.total * count
                yield Progress(0, total)
            while True:
                try:
                    step = next(work)
                except StopIteration as done:
                    found.append(done.value)
                    break
                yield Progress(n * per_tile + step.done, total)
        finally:
            work.close()

    def resegment(extents):
        return resegment_cut(model, plane, normalization, extents, options)

    return stitch_tiles(found, plane.shape, options, resegment)


def stitch_tiles(
    found: list[TileMasks],
    shape: tuple[int, int],
    options: AutomaticOptions,
    resegment: Callable[[list[tuple]], list[tuple[int, MaskCrop]]],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """One int32 label image of the tiles' results, painted into ``out`` (zeros of ``shape``,
    maybe a memory map; a new array by default).

    The masks the tiles own are painted as ``paint_crops`` does; the objects every tile cut
    are gathered from their pieces (``cut_extents``), segmented once by ``resegment`` (their
    extents → masks) and painted where no owned mask lies.
    """
    labels = np.zeros(shape, np.int32) if out is None else out
    count = paint_masks([m for tile in found for m in tile.kept], labels, options)
    extents = cut_extents(found, labels)
    count = paint_uncovered(resegment(extents) if extents else [], labels, options, count)
    return finish_labels(labels, count, options)


def split_owned(proposals, tile: Window, tiles: list[Window], shape, options) -> TileMasks:
    """The ownership rule: of ``tile``'s proposals, it keeps those whose box centre lies in
    its interior and that reach none of its inner borders; the others that reach one are
    pieces of cut objects (the neighbour owning the centre may see them whole)."""
    max_area = options.max_area_fraction * tile.rows * tile.cols
    owned = interior(tile, tiles)
    top, left, bottom, right = tile.inner_edges(shape)
    out = TileMasks(tile, [], [])
    for proposal in proposals:
        if not max(options.min_area, 1) <= proposal.area <= max_area:
            continue
        mask = proposal.mask
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        cut = (
            (top and rows[0] == 0)
            or (left and cols[0] == 0)
            or (bottom and rows[-1] == tile.rows - 1)
            or (right and cols[-1] == tile.cols - 1)
        )
        centre_row = tile.row0 + (rows[0] + rows[-1] + 1) / 2
        centre_col = tile.col0 + (cols[0] + cols[-1] + 1) / 2
        inside = owned[0] <= centre_row < owned[2] and owned[1] <= centre_col < owned[3]
        if not (cut or inside):
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = MaskCrop(
            slice(tile.row0 + r0, tile.row0 + r1),
            slice(tile.col0 + c0, tile.col0 + c1),
            mask[r0:r1, c0:c1],
        )
        (out.cut if cut else out.kept).append((proposal.area, crop))
    return out
