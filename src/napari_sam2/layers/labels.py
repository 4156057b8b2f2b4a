"""Writing one object's mask into a Labels layer plane, as one undoable edit."""

from __future__ import annotations

import numpy as np

from ..engine.errors import SAM2Error


def check_labels_fit(labels_layer, shape: tuple[int, ...]) -> None:
    if tuple(labels_layer.data.shape) != tuple(shape):
        raise SAM2Error(
            f"Labels layer '{labels_layer.name}' has shape {labels_layer.data.shape} but the "
            f"image needs {shape}: pick another Labels layer or let the plugin create one."
        )


def write_object(
    labels_layer,
    plane_index: tuple,
    object_id: int,
    mask: np.ndarray | None,
    previous: np.ndarray | None,
    overwrite: bool,
) -> np.ndarray:
    """Replace object ``object_id``'s SAM mask on one plane and return what now belongs to it.

    ``previous`` is the mask this plugin wrote last time for the object on this plane: its
    pixels that still carry the id and are not in ``mask`` go back to background. New pixels
    take the id only where the labels are background, unless ``overwrite``. The writes are
    grouped in ``block_history``, so a single Ctrl-Z in the Labels layer undoes them. The work
    is done within the bounding box of the old and new mask, so a small object on a huge plane
    is cheap in the GUI thread, and each write sets one value, which napari handles faster
    than an array of values.
    """
    shape = _plane_shape(labels_layer.data.shape, plane_index)
    written = np.zeros(shape, bool)
    box = _bounding_box(mask, previous)
    if box is None:
        return written
    rows, cols = box
    current = np.asarray(labels_layer.data[_within(plane_index, rows, cols)])
    mine = current == object_id
    new = np.zeros(current.shape, bool) if mask is None else mask[rows, cols]
    allowed = ~mine if overwrite else current == 0
    add = new & allowed
    removed = np.zeros_like(new) if previous is None else previous[rows, cols] & mine & ~new
    edits = [(pixels, value) for pixels, value in ((removed, 0), (add, object_id)) if pixels.any()]
    with labels_layer.block_history():
        for n, (pixels, value) in enumerate(edits, start=1):
            r, c = np.nonzero(pixels)
            labels_layer.data_setitem(
                plane_indices(plane_index, r + rows.start, c + cols.start),
                value,
                refresh=n == len(edits),  # one redraw, of both edits' region
            )
    written[rows, cols] = add | (new & mine)
    return written


def _plane_shape(shape: tuple, plane_index: tuple) -> tuple[int, int]:
    free = [n for n, i in zip(shape, plane_index, strict=True) if isinstance(i, slice)]
    return free[0], free[1]


def _bounding_box(*masks) -> tuple[slice, slice] | None:
    """Row and column slices around every True pixel of the given masks (None: all empty)."""
    masks = [m for m in masks if m is not None]
    if not masks:
        return None
    rows = np.flatnonzero(np.logical_or.reduce([m.any(axis=1) for m in masks]))
    cols = np.flatnonzero(np.logical_or.reduce([m.any(axis=0) for m in masks]))
    if not len(rows):
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _within(plane_index: tuple, rows: slice, cols: slice) -> tuple:
    """``plane_index`` with its two free axes narrowed to ``rows`` and ``cols``."""
    free = iter((rows, cols))
    return tuple(next(free) if isinstance(i, slice) else i for i in plane_index)


def plane_indices(plane_index: tuple, rows: np.ndarray, cols: np.ndarray) -> tuple:
    """Fancy index into the full labels array for (rows, cols) of the plane's two free axes."""
    free = [ax for ax, i in enumerate(plane_index) if isinstance(i, slice)]
    out = []
    for ax, i in enumerate(plane_index):
        if ax == free[0]:
            out.append(rows)
        elif ax == free[1]:
            out.append(cols)
        else:
            out.append(np.full(rows.shape, i))
    return tuple(out)
