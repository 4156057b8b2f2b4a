"""Sample data for napari's File > Open Sample menu: synthetic microscopy, made on the fly."""

from __future__ import annotations

from .engine.synthetic import synthetic_cells, synthetic_clip

# The recipes, so demos and docs can regenerate the ground truth of what users see.
CELLS = dict(shape=(512, 512), n_cells=12, seed=7)
TIMELAPSE = dict(n_frames=30, shape=(256, 256), n_cells=3, seed=7, absent=(12, 15))


def cells():
    """A 16-bit image of fluorescent cells with uneven illumination and noise."""
    image, _ = synthetic_cells(**CELLS)
    return [(image, {"name": "synthetic cells"}, "image")]


def timelapse():
    """A 16-bit (t, y, x) clip of cells that move, deform and leave the field for a while."""
    frames, _ = synthetic_clip(**TIMELAPSE)
    return [(frames, {"name": "synthetic time-lapse"}, "image")]
