"""Points and Shapes layers → one ``PromptSet`` per object on the displayed plane."""

from __future__ import annotations

import numpy as np

from ..engine.prompts import PromptSet
from .names import OBJECT_ID, POSITIVE
from .plane import Plane, to_image_coords

# A prompt is drawn in its object's label colour; the marker tells its polarity.
POSITIVE_SYMBOL = "disc"
NEGATIVE_SYMBOL = "x"
POSITIVE_BORDER = "white"
NEGATIVE_BORDER = "red"


def _feature(layer, name: str, default, n: int) -> np.ndarray:
    if name in layer.features:
        return layer.features[name].to_numpy()
    return np.full(n, default)


def point_prompts(points_layer, image_layer, plane: Plane) -> dict[int, tuple]:
    """{object id: ((N, 2) row/col points, (N,) labels)} for the points on ``plane``."""
    if points_layer is None or len(points_layer.data) == 0:
        return {}
    n = len(points_layer.data)
    coords = to_image_coords(points_layer, image_layer, np.asarray(points_layer.data))
    ids = _feature(points_layer, OBJECT_ID, 1, n).astype(int)
    positive = _feature(points_layer, POSITIVE, True, n).astype(bool)
    keep = plane.on_plane(coords)
    out: dict[int, tuple] = {}
    for obj in np.unique(ids[keep]):
        sel = keep & (ids == obj)
        out[int(obj)] = (plane.rows_cols(coords[sel]), positive[sel].astype(np.int32))
    return out


def box_prompts(shapes_layer, image_layer, plane: Plane) -> dict[int, np.ndarray]:
    """{object id: (min_row, min_col, max_row, max_col)} for rectangles on ``plane``.

    Other shape types are not box prompts and are left out. An object with several rectangles
    uses the last one drawn.
    """
    if shapes_layer is None or len(shapes_layer.data) == 0:
        return {}
    n = len(shapes_layer.data)
    ids = _feature(shapes_layer, OBJECT_ID, 1, n).astype(int)
    out: dict[int, np.ndarray] = {}
    for vertices, shape_type, obj in zip(
        shapes_layer.data, shapes_layer.shape_type, ids, strict=True
    ):
        if shape_type != "rectangle":
            continue
        coords = to_image_coords(shapes_layer, image_layer, np.asarray(vertices))
        if not plane.on_plane(coords).all():
            continue
        rc = plane.rows_cols(coords)
        # napari coordinate c is the centre of pixel c, which spans [c, c + 1] in box units.
        out[int(obj)] = np.concatenate([rc.min(0), rc.max(0)]) + 0.5
    return out


def object_prompts(points_layer, shapes_layer, image_layer, plane: Plane) -> dict[int, PromptSet]:
    """Every object's prompts on the displayed plane."""
    points = point_prompts(points_layer, image_layer, plane)
    boxes = box_prompts(shapes_layer, image_layer, plane)
    out = {}
    for obj in sorted(set(points) | set(boxes)):
        pts, labels = points.get(obj, (None, None))
        out[obj] = PromptSet.from_arguments(pts, labels, boxes.get(obj))
    return out


def prompted_objects(points_layer, shapes_layer) -> set[int]:
    """The ids of every object with a point or a box anywhere in the stack."""
    ids: set[int] = set()
    for layer in (points_layer, shapes_layer):
        if layer is not None and len(layer.data):
            ids.update(_feature(layer, OBJECT_ID, 1, len(layer.data)).astype(int).tolist())
    return ids


def prompt_fingerprint(prompts: PromptSet) -> tuple:
    """A hashable summary used to tell which objects' prompts changed."""
    pts = None if prompts.points is None else np.round(prompts.points, 3).tobytes()
    labels = None if prompts.point_labels is None else prompts.point_labels.tobytes()
    box = None if prompts.box is None else np.round(prompts.box, 3).tobytes()
    return pts, labels, box


def object_colors(labels_layer, object_ids) -> np.ndarray:
    """(N, 4) RGBA: the colour each object id has in ``labels_layer``."""
    ids = np.asarray(object_ids, dtype=np.int64).reshape(-1)
    return np.asarray(labels_layer.colormap.map(ids), dtype=np.float32).reshape(len(ids), 4)


def point_style(points_layer, labels_layer) -> dict:
    """Per-point face colour (the object's label colour), symbol and border (the polarity)."""
    n = len(points_layer.data)
    positive = _feature(points_layer, POSITIVE, True, n).astype(bool)
    ids = _feature(points_layer, OBJECT_ID, 1, n)
    return {
        "face_color": object_colors(labels_layer, ids),
        "symbol": np.where(positive, POSITIVE_SYMBOL, NEGATIVE_SYMBOL),
        "border_color": np.where(positive, POSITIVE_BORDER, NEGATIVE_BORDER),
    }


def box_colors(shapes_layer, labels_layer) -> np.ndarray:
    """Edge colour of each shape: its object's label colour."""
    ids = _feature(shapes_layer, OBJECT_ID, 1, len(shapes_layer.data))
    return object_colors(labels_layer, ids)
