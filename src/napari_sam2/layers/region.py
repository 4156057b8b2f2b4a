"""The region of interest of large frames, drawn as a rectangle on the *SAM2 region* layer:
propagation tracks only that part of each frame, at native resolution."""

from __future__ import annotations

import numpy as np

from . import names
from .plane import displayed_plane, to_image_coords


def draw_region(annotation) -> None:
    """Add (or pick) the region layer and let the user draw a rectangle on it."""
    viewer, image = annotation.viewer, annotation.image_layer
    if names.REGION not in viewer.layers:
        viewer.add_shapes(
            name=names.REGION,
            ndim=image.ndim,
            edge_color="white",
            edge_width=3,
            face_color="transparent",
            scale=image.scale,
            translate=image.translate,
        )
    layer = viewer.layers[names.REGION]
    viewer.layers.selection.active = layer
    layer.mode = "add_rectangle"


def region_box(annotation) -> tuple[float, float, float, float] | None:
    """(min_row, min_col, max_row, max_col) of the last rectangle drawn, in the image plane's
    pixels, or None where there is none."""
    viewer, image = annotation.viewer, annotation.image_layer
    if image is None or names.REGION not in viewer.layers:
        return None
    layer = viewer.layers[names.REGION]
    rectangles = [
        v for v, kind in zip(layer.data, layer.shape_type, strict=True) if kind == "rectangle"
    ]
    if not rectangles:
        return None
    plane = displayed_plane(viewer, image, annotation.channel_axis)
    coords = to_image_coords(layer, image, np.asarray(rectangles[-1]))
    rc = plane.rows_cols(coords)
    low, high = rc.min(axis=0), rc.max(axis=0) + 1
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def frames_note(annotation, box, image_size: int) -> str:
    """What the estimate line says of the frames' size: shrunk, or a region at native size."""
    plane = displayed_plane(annotation.viewer, annotation.image_layer, annotation.channel_axis)
    rows, cols = plane.shape(annotation.image_layer.data)
    if box is not None:
        return f"; region {int(box[2] - box[0])} × {int(box[3] - box[1])} px at native resolution"
    if max(rows, cols) > image_size:
        return (
            f"; frames of {rows} × {cols} px are shrunk to {image_size}: draw a region to track "
            "at native resolution"
        )
    return ""
