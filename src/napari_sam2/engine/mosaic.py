"""Large test images made of small labelled ones: the tests' and benchmarks' big planes.

A mosaic tiles rotated and flipped copies of small images (synthetic or real) with their labels,
so that objects in it have their native size and each one can be compared with the same object
in its small image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .window import MaskCrop


@dataclass
class Mosaic:
    """``image`` is ``grid`` × ``grid`` tiles of ``tile`` pixels; ``picks[k]`` says which small
    image and which of its 8 rotations/flips tile k (row-major) holds."""

    image: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    picks: list[tuple[int, int]]
    grid: int

    @property
    def tile(self) -> int:
        return self.images.shape[-1]

    def tile_image(self, row: int, col: int) -> np.ndarray:
        return _orient(self.images, *self.picks[row * self.grid + col])

    def tile_labels(self, row: int, col: int) -> np.ndarray:
        return _orient(self.labels, *self.picks[row * self.grid + col])

    def origin(self, row: int, col: int) -> tuple[int, int]:
        return row * self.tile, col * self.tile

    def truth(self) -> np.ndarray:
        """int32 labels of the whole mosaic: tile k's object i is ``1000 * k + i``."""
        out = np.zeros(self.image.shape, np.int32)
        for k in range(self.grid * self.grid):
            row, col = divmod(k, self.grid)
            r0, c0 = self.origin(row, col)
            tile = self.tile_labels(row, col).astype(np.int32)
            out[r0 : r0 + self.tile, c0 : c0 + self.tile] = np.where(tile > 0, tile + 1000 * k, 0)
        return out

    def cut_ids(self, truth: np.ndarray) -> set:
        """Ids of ``truth`` (a part of ``truth()`` starting on a tile corner) that a tile's
        border cuts: in the mosaic they run on into the next tile's content."""
        edges = np.zeros(truth.shape, bool)
        edges[:: self.tile], edges[self.tile - 1 :: self.tile] = True, True
        edges[:, :: self.tile], edges[:, self.tile - 1 :: self.tile] = True, True
        return set(np.unique(truth[edges & (truth > 0)]).tolist())


def crop_iou(crop: MaskCrop, truth: np.ndarray, origin: tuple[int, int]) -> float:
    """IoU of a mask crop with a ``truth`` mask whose first pixel is at ``origin`` of the
    plane, without a plane-sized array."""
    (r0, c0), (cr, cc) = origin, (crop.rows.start, crop.cols.start)
    top, left = max(cr, r0), max(cc, c0)
    bottom = min(crop.rows.stop, r0 + truth.shape[0])
    right = min(crop.cols.stop, c0 + truth.shape[1])
    both = 0
    if top < bottom and left < right:
        mine = crop.mask[top - cr : bottom - cr, left - cc : right - cc]
        theirs = truth[top - r0 : bottom - r0, left - c0 : right - c0]
        both = int((mine & theirs).sum())
    return both / max(int(crop.mask.sum()) + int(truth.sum()) - both, 1)


def f1_at_half(labels: np.ndarray, truth: np.ndarray, ignored: set = frozenset()) -> float:
    """F1 of predicted labels against truth at IoU 0.5; truth ids in ``ignored`` and the
    predictions lying mostly on them are left out."""
    found = matched = 0
    for p in np.unique(labels[labels > 0]):
        mask = labels == p
        ids, counts = np.unique(truth[mask], return_counts=True)
        best = ids[np.argmax(counts)]
        if best in ignored:
            continue
        found += 1
        if best and counts.max() / (mask | (truth == best)).sum() >= 0.5:
            matched += 1
    wanted = len(set(np.unique(truth[truth > 0]).tolist()) - set(ignored))
    return 2 * matched / max(found + wanted, 1)


def make_mosaic(images: np.ndarray, labels: np.ndarray, grid: int, seed: int = 0) -> Mosaic:
    """A ``grid`` × ``grid`` mosaic of (N, S, S) ``images`` (and their labels), each tile a
    random image of the N in one of its 8 orientations."""
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"Expected (N, S, S) square images, got {images.shape}.")
    rng = np.random.default_rng(seed)
    picks = [(int(rng.integers(len(images))), int(rng.integers(8))) for _ in range(grid * grid)]
    rows = [
        np.concatenate([_orient(images, *picks[r * grid + c]) for c in range(grid)], axis=1)
        for r in range(grid)
    ]
    return Mosaic(np.concatenate(rows, axis=0), images, labels, picks, grid)


def _orient(stack: np.ndarray, index: int, orientation: int) -> np.ndarray:
    """Image ``index`` of ``stack`` rotated by ``orientation % 4`` quarter turns, then flipped
    upside down if ``orientation >= 4``."""
    tile = np.rot90(stack[index], orientation % 4)
    return np.ascontiguousarray(tile[::-1] if orientation >= 4 else tile)
