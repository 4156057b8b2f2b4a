"""Save the widget's annotation of a stack into a folder and open it again: the napari side of
``annotation_files`` (labels into the Labels layer, prompts into the prompt layers, and a
``LayerPropagation`` that knows what was propagated, so a correction re-runs only its part)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..annotation_files import load_annotation, save_annotation
from . import names
from .propagation import LayerPropagation


def save_layers(propagation: LayerPropagation, folder, overwrite: bool = False) -> Path:
    """Write the stack's labels, every prompt of the layers, the names and what the session
    knows (confidences, divisions) into ``folder`` (an existing one only with ``overwrite``)."""
    propagation.give_prompts()
    propagation.session.names.update(propagation.annotation.names)
    return save_annotation(folder, propagation.session, propagation.labels_view(), overwrite)


def open_layers(annotation, frame_axis: int, folder) -> LayerPropagation:
    """Reopen ``folder`` over the image shown, along ``frame_axis``; returns its propagation.

    The labels replace the stack's labels in the Labels layer (not an undoable edit); the saved
    clicks and boxes are added to the prompt layers. Mask prompts stay in the session only.
    """
    loaded: dict = {}

    def load(stack):
        session, loaded["labels"] = load_annotation(folder, annotation.segmenter, stack)
        return session

    propagation = LayerPropagation(annotation, frame_axis, load=load)
    labels = annotation.labels_layer
    labels.data[propagation.labels_selection] = loaded["labels"]
    labels.refresh()
    session = propagation.session
    _add_prompts(propagation, session.record.by_frame())
    for frame, objects in propagation.layer_prompts().items():
        plane = propagation.plane(frame)
        here = np.asarray(labels.data[plane.labels_index()])
        for object_id, prompt in objects.items():
            annotation.adopt(plane, object_id, prompt, here == object_id)
    propagation.mark_used(propagation.layer_prompts())
    propagation.mark_propagated(session.object_ids)
    annotation.names.update(session.names)
    annotation.objects_changed.emit()
    return propagation


def _add_prompts(propagation: LayerPropagation, prompts: dict) -> None:
    """Clicks and boxes into the prompt layers (their data events held back: nothing here is
    new to segment)."""
    annotation, layer = propagation.annotation, propagation.layer
    points, shapes = annotation.points_layer, annotation.shapes_layer
    new_points, point_ids, positive, boxes, box_ids = [], [], [], [], []
    for frame, objects in sorted(prompts.items()):
        plane = propagation.plane(frame)
        base = np.array([0.0 if i is None else i for i in plane.index])
        for object_id, prompt in sorted(objects.items()):
            for (row, col), label in zip(
                prompt.points if prompt.points is not None else [],
                prompt.point_labels if prompt.point_labels is not None else [],
                strict=True,
            ):
                new_points.append(_at(base, plane, row, col))
                point_ids.append(object_id)
                positive.append(bool(label))
            if prompt.box is not None:
                r0, c0, r1, c1 = np.asarray(prompt.box) - 0.5  # box edges → pixel centres
                corners = [(r0, c0), (r0, c1), (r1, c1), (r1, c0)]
                boxes.append(np.array([_at(base, plane, r, c) for r, c in corners]))
                box_ids.append(object_id)
    with points.events.data.blocker(), shapes.events.data.blocker():
        if new_points:
            world = [layer.data_to_world(p) for p in new_points]
            points.add(np.array([points.world_to_data(w) for w in world]))
            _set_features(points, point_ids, positive)
        if boxes:
            shapes.add_rectangles(
                [
                    np.array([shapes.world_to_data(layer.data_to_world(c)) for c in b])
                    for b in boxes
                ]
            )
            _set_features(shapes, box_ids)
    annotation.refresh_prompt_colors()


def _moved(coords, source, target) -> np.ndarray:
    """Data coordinates of ``source`` → those of ``target``, through the world."""
    return np.array([target.world_to_data(source.data_to_world(c)) for c in coords])


def _at(base: np.ndarray, plane, row: float, col: float) -> np.ndarray:
    point = base.copy()
    point[plane.rows_axis], point[plane.cols_axis] = row, col
    return point


def _set_features(layer, object_ids: list[int], positive: list[bool] | None = None) -> None:
    features = layer.features.copy()
    new = features.index[-len(object_ids) :]
    features.loc[new, names.OBJECT_ID] = object_ids
    if positive is not None:
        features.loc[new, names.POSITIVE] = positive
    layer.features = features
