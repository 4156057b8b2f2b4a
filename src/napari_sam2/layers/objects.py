"""The objects of an annotation as a user manages them: where each one is, and deleting,
merging and naming them (napari layers, no Qt)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.errors import SAM2Error
from . import names
from .plane import move_to_frame, to_image_coords
from .prompts import object_colors


@dataclass(frozen=True)
class ObjectRow:
    """One object: its id, label colour (RGBA), name, and the frames along the frame axis
    where it has pixels and where it has prompts (frame 0 for a 2D image)."""

    object_id: int
    color: tuple[float, ...]
    name: str
    frames: tuple[int, ...]
    prompted: tuple[int, ...]


def _labels_axis(annotation, frame_axis: int | None) -> int | None:
    """The frame axis of the image counted in the labels' axes (which lack the channel axis)."""
    if frame_axis is None:
        return None
    channel = annotation.channel_axis
    return frame_axis - (channel is not None and channel < frame_axis)


def object_frames(annotation, frame_axis: int | None) -> dict[int, tuple[int, ...]]:
    """{object id: frames along ``frame_axis`` where it has pixels}, read a frame at a time."""
    data = annotation.labels_layer.data
    axis = _labels_axis(annotation, frame_axis)
    found: dict[int, list[int]] = {}
    count = 1 if axis is None else data.shape[axis]
    for frame in range(count):
        index = () if axis is None else (slice(None),) * axis + (frame,)
        for object_id in np.unique(np.asarray(data[index])).tolist():
            if object_id:
                found.setdefault(int(object_id), []).append(frame)
    return {k: tuple(v) for k, v in found.items()}


def prompted_frames(annotation, frame_axis: int | None) -> dict[int, tuple[int, ...]]:
    """{object id: frames along ``frame_axis`` where it has a point or a box}."""
    found: dict[int, set[int]] = {}
    for layer in (annotation.points_layer, annotation.shapes_layer):
        if layer is None or not len(layer.data):
            continue
        ids = layer.features[names.OBJECT_ID].to_numpy().astype(int)
        for object_id, vertices in zip(ids, layer.data, strict=True):
            coords = to_image_coords(layer, annotation.image_layer, np.atleast_2d(vertices))
            frame = 0 if frame_axis is None else int(np.round(coords[0, frame_axis]))
            found.setdefault(int(object_id), set()).add(frame)
    return {k: tuple(sorted(v)) for k, v in found.items()}


def object_rows(annotation, frame_axis: int | None) -> list[ObjectRow]:
    """Every object with pixels or prompts, by id."""
    present = object_frames(annotation, frame_axis)
    prompted = prompted_frames(annotation, frame_axis)
    ids = sorted(set(present) | set(prompted))
    colors = object_colors(annotation.labels_layer, ids) if ids else []
    return [
        ObjectRow(
            object_id,
            tuple(float(c) for c in color),
            annotation.names.get(object_id, ""),
            present.get(object_id, ()),
            prompted.get(object_id, ()),
        )
        for object_id, color in zip(ids, colors, strict=True)
    ]


def _relabel(labels_layer, old: int, new: int) -> None:
    """Every pixel of ``old`` becomes ``new``, as one undoable edit of the Labels layer."""
    data = labels_layer.data
    with labels_layer.block_history():
        for frame in range(data.shape[0] if data.ndim > 2 else 1):
            index = (frame,) if data.ndim > 2 else ()
            pixels = np.nonzero(np.asarray(data[index]) == old)
            if len(pixels[0]):
                full = tuple(np.full(len(pixels[0]), i) for i in index) + pixels
                labels_layer.data_setitem(full, new, refresh=False)
    labels_layer.refresh()


def _prompt_indices(layer, object_id: int) -> list[int]:
    if layer is None or not len(layer.data):
        return []
    return np.flatnonzero(layer.features[names.OBJECT_ID].to_numpy() == object_id).tolist()


def delete_object(annotation, object_id: int) -> None:
    """Remove an object: its pixels on every plane (one undoable edit) and its prompts."""
    if annotation.labels_layer is None:
        raise SAM2Error("Start annotating first.")
    annotation.forget_object(object_id)  # so removing its prompts is no change to segment
    _relabel(annotation.labels_layer, object_id, 0)
    for layer in (annotation.points_layer, annotation.shapes_layer):
        gone = _prompt_indices(layer, object_id)
        if gone:
            layer.selected_data = set(gone)
            layer.remove_selected()
    annotation.names.pop(object_id, None)


def merge_objects(annotation, keep: int, other: int) -> None:
    """``other`` becomes part of ``keep``: its pixels (one undoable edit) and prompts."""
    if keep == other:
        raise SAM2Error("Pick two different objects to merge.")
    annotation.forget_object(other)
    _relabel(annotation.labels_layer, other, keep)
    for layer in (annotation.points_layer, annotation.shapes_layer):
        moved = _prompt_indices(layer, other)
        if moved:
            features = layer.features.copy()
            features.loc[moved, names.OBJECT_ID] = keep
            layer.features = features
    annotation.names.pop(other, None)
    annotation.refresh_prompt_colors()


def show_object(annotation, row: ObjectRow, frame_axis: int | None) -> None:
    """Make the object current and move the viewer to its first frame (prompted or present)."""
    annotation.set_object(row.object_id)
    frames = row.frames or row.prompted
    if frame_axis is not None and frames:
        move_to_frame(annotation.viewer, annotation.image_layer, frame_axis, frames[0])


def draw_hidden(labels_layer, colormap, object_ids, hidden: set[int]) -> None:
    """Draw ``labels_layer`` with ``colormap`` (napari's own label colours), the ``hidden``
    objects transparent; with none hidden, ``colormap`` itself comes back."""
    if not hidden:
        labels_layer.colormap = colormap
        return
    from napari.utils.colormaps import DirectLabelColormap

    ids = sorted(set(object_ids) | hidden)
    colors = {k: c for k, c in zip(ids, colormap.map(np.asarray(ids)), strict=True)}
    colors.update({k: np.zeros(4) for k in hidden})
    colors.update({0: np.zeros(4), None: np.ones(4)})  # ids made later: white until refreshed
    labels_layer.colormap = DirectLabelColormap(color_dict=colors)
