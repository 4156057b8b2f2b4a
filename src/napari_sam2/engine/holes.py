"""Fill the small holes SAM2 leaves inside masks (pinholes over dark chromatin, nucleoli).

A hole is a piece of background enclosed by the mask (4-connected, not reaching the mask's
bounding box edge). Those of at most ``HOLE_FRACTION`` of the mask's area are filled; larger
ones (a lumen, the nucleus inside a cytoplasm mask) are kept. sam2 has the same post-processing
(its predictors' ``max_hole_area`` / ``fill_hole_area``, on the low-resolution logits), but it
needs sam2's compiled extension, which CPU installs lack. On the real nuclei stack filling
raises one click from 0.761 to 0.770 mIoU and a box from 0.800 to 0.814 (docs/micro-model.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

HOLE_FRACTION = 0.1


def fill_small_holes(mask: np.ndarray, fraction: float = HOLE_FRACTION) -> int:
    """Fill, in place, the holes of boolean ``mask`` of at most ``fraction`` of its area;
    returns how many pixels were filled. Only the mask's bounding box is read."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return 0
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    inside = mask[box]
    # A background margin joins everything outside the mask into one component.
    background, n = ndimage.label(np.pad(~inside, 1, constant_values=True))
    if n < 2:
        return 0
    sizes = np.bincount(background.ravel(), minlength=n + 1)
    small = sizes <= fraction * np.count_nonzero(inside)
    small[0] = small[background[0, 0]] = False
    holes = small[background[1:-1, 1:-1]]
    inside |= holes
    return int(np.count_nonzero(holes))
