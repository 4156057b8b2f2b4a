"""Large test images made of small labelled ones: the tests' and benchmarks' big planes.

A mosaic tiles rotated and flipped copies of small images (synthetic or real) with their labels,
so that objects in it have their native size and each one can be compared with the same object
in its small image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
