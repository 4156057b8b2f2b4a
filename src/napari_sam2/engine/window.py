"""Which part of a plane the model sees for a prompt set: the one place windows are chosen.

A plane no larger than the model input (``image_size``: 1024 for SAM2, 512 for the packaged
micro) is resized to it whole, except for clicks on one larger than ``whole_side`` (3/4 of the
input): resized whole, such a plane shows its objects at 1-1.33× their size, where a click on a
real nucleus finds it far worse than in a window (a click tells the model no extent, a box does;
see ``in_windows``). A larger plane is never shrunk as a whole: the model reads a window around
the prompts at native pixels.
The smallest window is ``base_side(image_size)`` image pixels a side (384 for 1024, 256 for
512), so that 10-50 px nuclei appear 2-2.7× larger to the model, the scale at which the
measurements in docs/performance.md show it segments them best; prompts that span more get a
window twice as large per level, read every ``step``-th pixel once it exceeds twice the model
input. Windows of a level lie on a grid with half-window steps, so nearby clicks choose the same
window (and reuse its embedding), and a prompt set a third of the window wide always finds one
that holds it a twelfth of a window away from any border that is not the image's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .prompts import PromptSet


def base_side(image_size: int) -> int:
    """Image pixels a side of the smallest window for a model reading ``image_size``²: 3/8 of
    the input, but never under 256. At a 512 input a 192 px window (or segment-everything
    tile) cuts 150 px nuclei and reads the real 4096² mosaic worse than a 256 px one (0.881
    against 0.920 mIoU, docs/micro-model.md)."""
    return max(image_size * 3 // 8, 256)


def whole_side(image_size: int) -> int:
    """The longest plane side whose clicks are segmented on the whole plane: 3/4 of the model
    input (768 for a 1024 input), so the model sees objects at least 1.33× enlarged.

    Measured on mosaics of real nuclei slices (docs/micro-model.md, "Which view a click is
    segmented in"): one click, whole 1024² plane 0.686 mIoU, in windows 0.858; at 768² both
    0.83; a box 0.91 whole at either size, 0.88-0.89 in windows.
    """
    return image_size * 3 // 4


def in_windows(prompts: PromptSet, shape: tuple[int, int], image_size: int) -> bool:
    """Whether ``prompts`` on a plane of ``shape`` are segmented in a window rather than on
    the whole plane resized to the model input: all prompts on a plane larger than the model
    input, clicks alone on one larger than ``whole_side``."""
    if max(shape) > image_size:
        return True
    clicks = prompts.box is None and prompts.mask is None and prompts.points is not None
    return clicks and max(shape) > whole_side(image_size)


@dataclass(frozen=True)
class Window:
    """Rows ``row0:row0 + rows`` and columns ``col0:col0 + cols`` of a plane, read every
    ``step``-th pixel."""

    row0: int
    col0: int
    rows: int
    cols: int
    step: int = 1

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.row0, self.row0 + self.rows), slice(self.col0, self.col0 + self.cols)

    @property
    def read_slices(self) -> tuple[slice, slice]:
        """The strided slices that read this window at the model's resolution."""
        rows, cols = self.slices
        return slice(rows.start, rows.stop, self.step), slice(cols.start, cols.stop, self.step)

    def local(self, prompts: PromptSet) -> PromptSet:
        """``prompts`` (plane coordinates) in the pixels read from this window."""
        origin = np.array([self.row0, self.col0], dtype=np.float64)
        points = None if prompts.points is None else (prompts.points - origin) / self.step
        box = None if prompts.box is None else (prompts.box - np.tile(origin, 2)) / self.step
        mask = None
        if prompts.mask is not None:
            mask = prompts.mask[self.read_slices]
        return PromptSet(points, prompts.point_labels, box, mask)

    def upscaled(self, mask: np.ndarray) -> np.ndarray:
        """A mask of the pixels read from this window, enlarged to the window."""
        return upscale(mask, self.step, (self.rows, self.cols))

    def inner_edges(self, shape: tuple[int, int]) -> tuple[bool, bool, bool, bool]:
        """Which of the top, left, bottom and right borders lie inside the plane."""
        return (
            self.row0 > 0,
            self.col0 > 0,
            self.row0 + self.rows < shape[0],
            self.col0 + self.cols < shape[1],
        )


@dataclass(frozen=True)
class LevelWindow:
    """``window`` of a plane read as the pixels ``level`` of a coarser copy of it (a pyramid
    level), whose pixel (i, j) covers the plane's [i·f_r, (i + 1)·f_r) × [j·f_c, (j + 1)·f_c)
    for ``factors`` (f_r, f_c), which need not be integers."""

    window: Window
    level: Window
    factors: tuple[float, float]

    @classmethod
    def covering(
        cls, window: Window, factors: tuple[float, float], shape: tuple[int, int], image_size: int
    ) -> LevelWindow:
        """The pixels of a level of ``shape`` that cover ``window``."""
        (rows, cols), (fr, fc) = window.slices, factors
        extent = (rows.start / fr, cols.start / fc, rows.stop / fr, cols.stop / fc)
        return cls(window, covering_window(extent, shape, image_size), factors)

    @property
    def slices(self) -> tuple[slice, slice]:
        return self.window.slices

    @property
    def read_slices(self) -> tuple[slice, slice]:
        return self.level.read_slices

    def local(self, prompts: PromptSet) -> PromptSet:
        """``prompts`` (plane coordinates) in the pixels read from the level."""
        (fr, fc), level = self.factors, self.level
        scale = np.array([fr, fc]) * level.step
        origin = (np.array([level.row0, level.col0]) + 0.5) * np.array([fr, fc]) - 0.5
        points = None if prompts.points is None else (prompts.points - origin) / scale
        box = None
        if prompts.box is not None:
            box = (prompts.box - np.tile(origin, 2)) / np.tile(scale, 2)
        mask = None
        if prompts.mask is not None:  # the plane pixel at the centre of each pixel read
            rows, cols = level.read_slices
            at_rows = _centres(rows, fr, prompts.mask.shape[0])
            mask = prompts.mask[np.ix_(at_rows, _centres(cols, fc, prompts.mask.shape[1]))]
        return PromptSet(points, prompts.point_labels, box, mask)

    def upscaled(self, mask: np.ndarray) -> np.ndarray:
        """A mask of the level pixels read, as the window's plane pixels (nearest)."""
        (rows, cols), (fr, fc), level = self.window.slices, self.factors, self.level
        at_rows = _covering(rows, fr, level.row0, level.step, mask.shape[0])
        return mask[np.ix_(at_rows, _covering(cols, fc, level.col0, level.step, mask.shape[1]))]


def _centres(read: slice, factor: float, length: int) -> np.ndarray:
    """The plane pixel at the centre of each level pixel of ``read`` (strided)."""
    centres = (np.arange(read.start, read.stop, read.step) + 0.5) * factor
    return np.minimum(centres.astype(int), length - 1)


def _covering(plane: slice, factor: float, start: int, step: int, read: int) -> np.ndarray:
    """For each plane pixel of ``plane``, which of ``read`` level pixels read every ``step``-th
    from ``start`` covers its centre."""
    level = ((np.arange(plane.start, plane.stop) + 0.5) / factor).astype(int)
    return np.clip((level - start) // step, 0, read - 1)


class MaskCrop(NamedTuple):
    """A boolean mask held as the crop ``mask`` at ``rows``, ``cols`` of the full plane."""

    rows: slice
    cols: slice
    mask: np.ndarray

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        """The (H, W) boolean mask (H × W bytes: prefer the crop for huge planes)."""
        out = np.zeros(shape, dtype=bool)
        out[self.rows, self.cols] = self.mask
        return out

    def trimmed(self) -> MaskCrop:
        """The same mask cropped to its bounding box (unchanged if it is empty)."""
        rows, cols = np.nonzero(self.mask.any(1))[0], np.nonzero(self.mask.any(0))[0]
        if rows.size == 0:
            return self
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return MaskCrop(
            slice(self.rows.start + r0, self.rows.start + r1),
            slice(self.cols.start + c0, self.cols.start + c1),
            self.mask[r0:r1, c0:c1],
        )


def prompt_extent(prompts: PromptSet) -> tuple[float, float, float, float]:
    """(min_row, min_col, max_row, max_col) the prompts cover, pixel i spanning [i, i + 1]."""
    parts = []
    if prompts.points is not None:
        parts += [prompts.points.min(0), prompts.points.max(0) + 1]
    if prompts.box is not None:
        parts += [prompts.box[:2], prompts.box[2:]]
    if prompts.mask is not None and prompts.mask.any():
        rows, cols = np.nonzero(prompts.mask.any(1))[0], np.nonzero(prompts.mask.any(0))[0]
        parts += [np.array([rows[0], cols[0]]), np.array([rows[-1] + 1, cols[-1] + 1])]
    corners = np.array(parts, dtype=np.float64)
    return (*corners.min(0), *corners.max(0))


def union(a: tuple, b: tuple) -> tuple[float, float, float, float]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def crop_extent(crop: MaskCrop) -> tuple[float, float, float, float]:
    """The extent of a trimmed crop."""
    return crop.rows.start, crop.cols.start, crop.rows.stop, crop.cols.stop


def choose_window(
    extent: tuple[float, float, float, float], shape: tuple[int, int], image_size: int
) -> Window:
    """The grid window for prompts covering ``extent`` on a plane of ``shape``.

    The level is the smallest whose side is at least three times the extent (or covers the
    plane); on it, the window whose borders lie farthest from the extent, not counting
    borders on the plane's edge. Along an axis shorter than the side the window is the axis.
    """
    r0, c0, r1, c1 = extent
    side = base_side(image_size)
    while max(r1 - r0, c1 - c0) * 3 > side and side < max(shape):
        side *= 2
    row0 = _start(r0, r1, side, shape[0])
    col0 = _start(c0, c1, side, shape[1])
    rows, cols = min(side, shape[0]), min(side, shape[1])
    return Window(row0, col0, rows, cols, _step(max(rows, cols), image_size))


def covering_window(
    extent: tuple[float, float, float, float], shape: tuple[int, int], image_size: int
) -> Window:
    """The window that is exactly ``extent`` (e.g. a field of view), clipped to the plane."""
    r0, c0 = max(0, math.floor(extent[0])), max(0, math.floor(extent[1]))
    r1, c1 = min(shape[0], math.ceil(extent[2])), min(shape[1], math.ceil(extent[3]))
    rows, cols = max(1, r1 - r0), max(1, c1 - c0)
    row0, col0 = min(r0, shape[0] - rows), min(c0, shape[1] - cols)
    return Window(row0, col0, rows, cols, _step(max(rows, cols), image_size))


def _step(side: int, image_size: int) -> int:
    """Read every step-th pixel so that at most twice the model input is read a side (the
    antialiased resize to the model input then does the rest, as for a small plane)."""
    return max(1, math.ceil(side / (2 * image_size)))


def _start(low: float, high: float, side: int, length: int) -> int:
    """First index of the grid window of ``side`` along an axis of ``length`` that holds
    [low, high) farthest from its inner borders."""
    if side >= length:
        return 0
    stride = side // 2
    last = math.ceil((length - side) / stride)
    centre = round(((low + high) / 2 - side / 2) / stride)
    best, best_margin = 0, -math.inf
    for j in range(max(0, centre - 1), min(last, centre + 1) + 1):
        start = min(j * stride, length - side)
        before = low - start if start > 0 else math.inf
        after = start + side - high if start + side < length else math.inf
        if min(before, after) > best_margin:
            best, best_margin = start, min(before, after)
    return best


def upscale(mask: np.ndarray, step: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour enlargement of a mask read every ``step``-th pixel to ``shape``."""
    if step == 1:
        return mask
    rows = np.minimum(np.arange(shape[0]) // step, mask.shape[0] - 1)
    cols = np.minimum(np.arange(shape[1]) // step, mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]
