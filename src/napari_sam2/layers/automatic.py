"""Automatic masks of the displayed plane, merged into the Labels layer as new objects."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..engine.automatic import Progress
from ..engine.errors import SAM2Error
from ..engine.segmenter import Segmenter
from .annotation import AnnotationSession
from .labels import plane_indices
from .segmentation import SegmentationRequest, embed


def segment_everything(
    segmenter: Segmenter, request: SegmentationRequest, options: dict
) -> Generator[Progress, None, np.ndarray]:
    """Worker generator: embed the plane, yield ``Progress``, return the automatic labels.

    The plane is embedded and handed to the generator under the segmenter's lock; after its
    first step the generator works on its own copy, so clicks can go on meanwhile.
    """
    with segmenter.lock:
        embed(segmenter, request)
        work = segmenter.iter_segment_everything(**options)
        try:
            first = next(work)
        except StopIteration as done:
            return done.value
    yield first
    return (yield from work)


def merge_new_objects(
    annotation: AnnotationSession,
    request: SegmentationRequest,
    automatic: np.ndarray,
    only_new: bool = True,
    max_overlap: float = 0.5,
) -> int:
    """Add the automatic masks to the plane's labels as new ids; returns how many were added.

    With ``only_new``, a mask whose area is more than ``max_overlap`` labelled already is an
    object the user has (from earlier frames or clicks) and is skipped: re-running on a later
    frame then picks up only objects that appeared. Masks take background pixels only unless
    the session allows overwriting. The whole merge is one undoable edit.
    """
    layers = annotation.viewer.layers
    if request.image_layer not in layers or request.labels_layer not in layers:
        raise SAM2Error("A layer was removed while segmenting: nothing was written.")
    index = request.plane.labels_index()
    current = np.asarray(request.labels_layer.data[index])
    updated = current.copy()
    next_id = max(int(current.max()), annotation.object_id - 1) + 1
    added = 0
    for auto_id in np.unique(automatic[automatic > 0]):
        mask = automatic == auto_id
        if only_new and (current[mask] > 0).mean() > max_overlap:
            continue
        free = mask & ((updated == 0) | annotation.overwrite)
        if free.any():
            updated[free] = next_id
            next_id += 1
            added += 1
    rows, cols = np.nonzero(updated != current)
    if len(rows):
        request.labels_layer.data_setitem(plane_indices(index, rows, cols), updated[rows, cols])
        annotation.set_object(next_id)
    return added
