"""Writing one object's mask (whole, or a crop of a huge plane) into a Labels layer plane, as
one undoable edit."""

from __future__ import annotations

import numpy as np

from ..engine.errors import SAM2Error
from ..engine.window import MaskCrop


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
    mask: MaskCrop | np.ndarray | None,
    previous: MaskCrop | np.ndarray | None,
    overwrite: bool,
) -> MaskCrop | None:
    """Replace object ``object_id``'s SAM mask on one plane and return what now belongs to it.

    ``mask`` and ``previous`` are a whole plane's boolean mask or a ``MaskCrop`` of it (a huge
    plane's object is never held at the plane's size). ``previous`` is the mask this plugin
    wrote last time for the object on this plane: its pixels that still carry the id and are
    not in ``mask`` go back to background. New pixels take the id only where the labels are
    background, unless ``overwrite``. The writes are grouped in ``block_history``, so a single
    Ctrl-Z in the Labels layer undoes them. The work is done within the bounding box of the
    old and new mask, so a small object on a huge plane is cheap in the GUI thread, and each
    write sets one value, which napari handles faster than an array of values. Returns the
    written pixels as a crop (None where nothing was there).
    """
    mask, previous = (_trimmed(as_crop(m)) for m in (mask, previous))
    box = _bounding_box(mask, previous)
    if box is None:
        return None
    rows, cols = box
    current = np.asarray(labels_layer.data[_within(plane_index, rows, cols)])
    mine = current == object_id
    new = _placed(mask, rows, cols)
    allowed = ~mine if overwrite else current == 0
    add = new & allowed
    removed = _placed(previous, rows, cols) & mine & ~new
    edits = [(pixels, value) for pixels, value in ((removed, 0), (add, object_id)) if pixels.any()]
    with labels_layer.block_history():
        for n, (pixels, value) in enumerate(edits, start=1):
            r, c = np.nonzero(pixels)
            labels_layer.data_setitem(
                plane_indices(plane_index, r + rows.start, c + cols.start),
                value,
                refresh=n == len(edits),  # one redraw, of both edits' region
            )
    return MaskCrop(rows, cols, add | (new & mine))


def as_crop(mask: MaskCrop | np.ndarray | None) -> MaskCrop | None:
    """A whole-plane mask as a crop of the whole plane (crops and None pass through)."""
    if mask is None or isinstance(mask, MaskCrop):
        return mask
    return MaskCrop(slice(0, mask.shape[0]), slice(0, mask.shape[1]), mask)


def _placed(crop: MaskCrop | None, rows: slice, cols: slice) -> np.ndarray:
    """``crop`` drawn into a mask of the box ``rows`` × ``cols`` (which holds it)."""
    out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), bool)
    if crop is not None:
        out[
            crop.rows.start - rows.start : crop.rows.stop - rows.start,
            crop.cols.start - cols.start : crop.cols.stop - cols.start,
        ] = crop.mask
    return out


def _trimmed(crop: MaskCrop | None) -> MaskCrop | None:
    """``crop`` cut to its bounding box; None where it is empty."""
    return None if crop is None or not crop.mask.any() else crop.trimmed()


def _bounding_box(*crops: MaskCrop | None) -> tuple[slice, slice] | None:
    """Row and column slices around the given (trimmed) crops (None: there are none)."""
    boxes = [c for c in crops if c is not None]
    if not boxes:
        return None
    return (
        slice(min(b.rows.start for b in boxes), max(b.rows.stop for b in boxes)),
        slice(min(b.cols.start for b in boxes), max(b.cols.stop for b in boxes)),
    )


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
