"""What a propagation run hands out: a stream of finished frames, and writing it into labels."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..errors import SAM2Error

Frames = Iterator[tuple[int, list[int], np.ndarray]]


class FrameResult(tuple):
    """``(frame_index, object_ids, masks)`` of one finished step, with per object its
    ``confidence`` in [0, 1] (see ``confidence``; NaN for an object handed out empty because it
    divided) and mask ``area`` in pixels, so a GUI gets them with the masks."""

    confidence: np.ndarray
    area: np.ndarray

    def __new__(cls, frame: int, object_ids: list[int], masks: np.ndarray, confidence, area):
        result = super().__new__(cls, (frame, object_ids, masks))
        result.confidence = np.asarray(confidence, np.float32)
        result.area = np.asarray(area, np.float32)
        return result

    def __reduce__(self):
        return (FrameResult, (*self, self.confidence, self.area))


class FrameStream:
    """The frames of one propagation run, as they finish: ``(frame_index, object_ids, masks)``.

    An iterator that also knows its length (the number of items it will yield, for a progress
    bar and an ETA) and stops the work when closed (a GUI's Cancel). ``confidence`` maps each
    object id to a float array over the stack's frames, NaN where not computed yet, filled as
    frames finish (the session's: it also holds earlier runs' frames). With a ``region``
    (``Segmenter.propagate(..., roi=)``) the masks cover that region of the frames only.
    """

    def __init__(self, frames: Frames, total: int, confidence: dict[int, np.ndarray], region=None):
        self._frames = frames
        self.total = total
        self.confidence = confidence
        self.region = region  # a ``Region``: the masks are of that part of the frames

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> tuple[int, list[int], np.ndarray]:
        return next(self._frames)

    def close(self) -> None:
        self._frames.close()


class MasksToHost:
    """The masks, confidences and areas of one step on their way to the host, copied without
    waiting for the device."""

    def __init__(
        self,
        frame: int,
        object_ids: list[int],
        masks: torch.Tensor,
        confidence: torch.Tensor,
        area: torch.Tensor,
    ):
        self.frame, self.object_ids = frame, object_ids
        self.masks = masks.to("cpu", non_blocking=True)  # pinned memory when from CUDA
        self.confidence = confidence.to("cpu", non_blocking=True)
        self.area = area.to("cpu", non_blocking=True)
        self.copied = None
        if masks.is_cuda:
            self.copied = torch.cuda.Event()
            self.copied.record()

    def result(self) -> FrameResult:
        if self.copied is not None:
            self.copied.synchronize()
        return FrameResult(
            self.frame,
            self.object_ids,
            self.masks.numpy(),
            self.confidence.numpy(),
            self.area.numpy(),
        )


def _extents(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows (n, H) and columns (n, W) each of boolean (n, H, W) masks touches, reading
    eight pixels at a time where the rows allow it."""
    if masks.shape[-1] % 8 or not masks.flags.c_contiguous:
        return masks.any(axis=2), masks.any(axis=1)
    packed = masks.view(np.uint64)
    rows = np.bitwise_or.reduce(packed, axis=2) != 0
    return rows, np.bitwise_or.reduce(packed, axis=1).view(bool)


def paint_objects(
    plane: np.ndarray, object_ids, masks: np.ndarray, overwrite: bool = True
) -> np.ndarray:
    """``plane``, in place, with the listed objects' old pixels cleared and each new mask
    painted with its object's id.

    Where objects overlap, the one listed later wins. With ``overwrite=False`` a mask takes
    only pixels that are background or were the listed objects' (the one listed first wins
    there), so ids of objects not listed are never painted over. The old pixels are cleared in
    one pass and each mask is painted within its bounding box: a frame of hundreds of cells
    costs a few passes over the plane, not a few per object.
    """
    if len(object_ids) == 0:
        return plane
    ids = np.asarray(object_ids)
    # A lookup table over the ids' range, unless that range is huge (uint32 ids far apart).
    kind = "table" if plane.dtype.kind in "iu" and np.ptp(ids) < 2**24 else None
    plane[np.isin(plane, ids, kind=kind)] = 0
    masks = np.asarray(masks, bool)
    rows, cols = _extents(masks)
    for object_id, mask, in_rows, in_cols in zip(ids, masks, rows, cols, strict=True):
        (r,), (c,) = np.nonzero(in_rows), np.nonzero(in_cols)
        if r.size == 0:
            continue
        box = np.s_[r[0] : r[-1] + 1, c[0] : c[-1] + 1]
        window, inside = plane[box], mask[box]
        window[inside if overwrite else inside & (window == 0)] = object_id
    return plane


def write_labels(
    stream: Frames, labels, frame_axis: int = 0, overwrite: bool = True
) -> Iterator[int]:
    """Write a propagation stream into a labels array (numpy, zarr, ...), frame by frame.

    A generator: it yields each frame index once that frame is written, so a GUI can show
    progress and cancel by closing it (the stream is closed with it). Each frame is read,
    updated — every yielded object's old pixels cleared, its new mask painted with its id —
    and written back in one assignment, so no frame is ever half-written, and frames never
    yielded are never touched. Overlaps follow ``paint_objects`` (``overwrite=False`` keeps
    other objects' pixels). A stream of a region is written into that region of the labels.
    In a script: ``for _ in write_labels(stream, labels): pass``.
    """
    axis = frame_axis % labels.ndim
    region = getattr(stream, "region", None)
    dtype = np.dtype(labels.dtype)
    largest = np.iinfo(dtype).max if dtype.kind in "iu" else None
    try:
        for frame, object_ids, masks in stream:
            if largest is not None and max(object_ids, default=0) > largest:
                raise SAM2Error(
                    f"Object id {max(object_ids)} does not fit the {dtype} labels: use a labels "
                    "array of a larger integer type (e.g. uint32)."
                )
            index = (slice(None),) * axis + (frame,)
            plane = np.array(labels[index])
            part = plane if region is None else plane[region.rows, region.cols]
            paint_objects(part, object_ids, masks, overwrite)  # in place: a view of plane
            labels[index] = plane
            yield frame
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
