"""Mask helpers shared by the engine tests: overlap, and where to click inside a mask."""

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
