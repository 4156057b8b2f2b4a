"""Mask helpers shared by the tests: overlap, where to click inside a mask, and a wide plane of
bright disks."""

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (two empty masks agree: 1.0)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def centre(mask: np.ndarray) -> tuple[float, float]:
    """A pixel well inside ``mask`` (the one farthest from its border)."""
    from scipy.ndimage import distance_transform_edt

    dist = distance_transform_edt(mask)
    return tuple(float(v) for v in np.unravel_index(np.argmax(dist), mask.shape))


# (row, col, radius) of the disks of ``wide_disks``: the first, 150 px across, is centred on
# the line between the second and third 256 px tiles' interiors (col 416; the packaged micro
# reads 512², see ``window.base_side``), so both tiles cut it.
DISKS = [(128, 416, 75), (70, 850, 22), (170, 540, 25), (60, 100, 22)]


def wide_disks() -> np.ndarray:
    """A 256 × 1100 uint16 plane (six tiles at a 512 input) of bright, soft-edged ``DISKS`` on
    noise; show it with contrast limits (150, 1800)."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:256, :1100]
    image = rng.normal(200, 15, rows.shape)
    for r, c, radius in DISKS:
        image += 1500 / (1 + np.exp((np.hypot(rows - r, cols - c) - radius) / 2))
    return image.astype(np.uint16)


def disk_mask(shape: tuple[int, int], disk: tuple[int, int, int]) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return np.hypot(rows - disk[0], cols - disk[1]) < disk[2]
