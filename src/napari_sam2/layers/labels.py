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
    take the id only where the labels are background, unless ``overwrite``. Everything is one
    ``data_setitem`` call, so a single Ctrl-Z in the Labels layer undoes it.
    """
    current = np.asarray(labels_layer.data[plane_index])
    new = np.zeros(current.shape, bool) if mask is None else mask
    remove = np.zeros_like(new) if previous is None else previous & (current == object_id) & ~new
    allowed = (current == 0) | (overwrite & (current != object_id))
    add = new & allowed
    changed = remove | add
    if changed.any():
        rows, cols = np.nonzero(changed)
        values = np.where(add[rows, cols], object_id, 0)
        full_index = plane_indices(plane_index, rows, cols)
        labels_layer.data_setitem(full_index, values)
    return (new & allowed) | (new & (current == object_id))


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
