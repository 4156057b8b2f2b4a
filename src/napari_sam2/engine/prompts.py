"""Prompts for one object on one plane, in napari's (row, col) order, checked and converted.

This module is the one place where napari's (..., y, x) order becomes SAM's (x, y): everything
before ``PromptSet.to_sam`` speaks (row, col), everything after it speaks (x, y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import SAM2Error

# Logit magnitude used to turn a boolean mask prompt into the low-resolution logits SAM2 reads.
_MASK_LOGIT = 10.0
_LOW_RES = 256


@dataclass
class PromptSet:
    """Clicks, a box and/or a mask for one object.

    ``points`` are (row, col) pixel indices, ``point_labels`` 1 for positive and 0 for negative
    clicks, ``box`` is (min_row, min_col, max_row, max_col) with pixel i spanning [i, i + 1]
    (so scikit-image's ``regionprops`` bbox of an object bounds it exactly), ``mask`` a boolean
    (H, W) array.
    """

    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask: np.ndarray | None = None

    @classmethod
    def from_arguments(cls, points=None, point_labels=None, box=None, mask=None) -> PromptSet:
        pts = None if points is None else _numbers(points, "Points")
        if pts is not None and pts.size == 0:
            pts = None
        if pts is not None:
            if pts.ndim == 1 and len(pts) == 2:
                pts = pts[None]
            if pts.ndim != 2 or pts.shape[1] != 2:
                raise SAM2Error(
                    f"Points are (row, col) pairs on the image plane, got an array of shape "
                    f"{pts.shape}: for a plane of a stack give its two in-plane coordinates."
                )
        labels = None
        if pts is not None:
            labels = (
                np.ones(len(pts), dtype=np.int32)
                if point_labels is None
                else _numbers(point_labels, "Point labels").reshape(-1)
            )
            if len(labels) != len(pts):
                raise SAM2Error(f"{len(pts)} points but {len(labels)} point labels.")
            if not np.isin(labels, (0, 1)).all():
                raise SAM2Error("Point labels must be 1 (positive) or 0 (negative).")
            labels = labels.astype(np.int32)
        box_arr = None if box is None else _numbers(box, "A box").reshape(-1)
        if box_arr is not None and box_arr.shape != (4,):
            raise SAM2Error("A box is (min_row, min_col, max_row, max_col).")
        mask_arr = None if mask is None else np.asarray(mask, dtype=bool)
        return cls(pts, labels, box_arr, mask_arr)

    @property
    def is_empty(self) -> bool:
        return self.points is None and self.box is None and self.mask is None

    @property
    def is_single_click(self) -> bool:
        """One click and nothing else: ambiguous, so SAM2 proposes three masks."""
        return (
            self.points is not None
            and len(self.points) == 1
            and self.box is None
            and (self.mask is None)
        )

    def keep_inside_box(self, mask: np.ndarray) -> int:
        """Clear, in place, the pixels of boolean ``mask`` whose centres lie outside the box,
        grown to hold the pixels of positive clicks; returns how many were cleared.

        A box says where its object is, but the decoder's mask of a tight box spills past it
        onto the light around a nucleus (real nuclei stack, tight boxes, through the
        plugin: 0.814 → 0.859 mIoU).
        """
        if self.box is None or not mask.any():
            return 0
        r0, c0, r1, c1 = self.box
        top, left = math.ceil(r0 - 0.5), math.ceil(c0 - 0.5)
        bottom, right = math.floor(r1 - 0.5), math.floor(c1 - 0.5)
        if self.points is not None and (self.point_labels == 1).any():
            rows, cols = np.rint(self.points[self.point_labels == 1]).astype(int).T
            top, left = min(top, rows.min()), min(left, cols.min())
            bottom, right = max(bottom, rows.max()), max(right, cols.max())
        before = int(np.count_nonzero(mask))
        mask[: max(top, 0)] = False
        mask[max(bottom + 1, 0) :] = False
        mask[:, : max(left, 0)] = False
        mask[:, max(right + 1, 0) :] = False
        return before - int(np.count_nonzero(mask))

    def validate(self, shape: tuple[int, int]) -> PromptSet:
        """Checked copy for an image of ``shape``; a box is clipped to the image."""
        h, w = shape
        if self.is_empty:
            raise SAM2Error("No prompt: add a point, a box or a mask for this object.")
        if self.points is not None:
            if not np.isfinite(self.points).all():
                raise SAM2Error("Point coordinates must be finite numbers.")
            outside = (
                (self.points < -0.5).any(1)
                | (self.points[:, 0] > h - 0.5)
                | (self.points[:, 1] > w - 0.5)
            )
            if outside.any():
                row, col = self.points[outside][0]
                raise SAM2Error(
                    f"Point ({row:.1f}, {col:.1f}) lies outside the {h}×{w} image: "
                    "move or delete it."
                )
        box = self.box
        if box is not None:
            if not np.isfinite(box).all():
                raise SAM2Error("Box coordinates must be finite numbers.")
            r0, c0, r1, c1 = box
            if r1 < r0 or c1 < c0:
                corners = ", ".join(f"{v:g}" for v in box)
                raise SAM2Error(
                    f"Box ({corners}) is inverted: give (min_row, min_col, max_row, max_col)."
                )
            box = np.array([max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)])
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                raise SAM2Error(
                    "The box is smaller than a pixel or lies outside the image: draw it over "
                    "the object."
                )
        if self.mask is not None and self.mask.shape != (h, w):
            raise SAM2Error(f"Mask prompt of shape {self.mask.shape} does not match {h}×{w}.")
        return PromptSet(self.points, self.point_labels, box, self.mask)

    def scaled(self, factor: int) -> PromptSet:
        """The same prompts on an image shrunk by ``factor`` (see frames.MAX_MODEL_SIDE)."""
        if factor == 1:
            return self
        mask = None if self.mask is None else self.mask[::factor, ::factor]
        return PromptSet(
            None if self.points is None else self.points / factor,
            self.point_labels,
            None if self.box is None else self.box / factor,
            mask,
        )

    def to_sam(self, mask_side: int = _LOW_RES) -> dict:
        """Keyword arguments for ``SAM2ImagePredictor.predict``: (row, col) → (x, y) here; a
        mask as ``mask_side``² logits (the model's ``sam_prompt_encoder.mask_input_size``)."""
        kwargs: dict = {}
        if self.points is not None:
            kwargs["point_coords"] = self.points[:, ::-1].astype(np.float32)
            kwargs["point_labels"] = self.point_labels
        if self.box is not None:
            r0, c0, r1, c1 = self.box
            kwargs["box"] = np.array([c0, r0, c1, r1], dtype=np.float32)
        if self.mask is not None:
            kwargs["mask_input"] = mask_to_logits(self.mask, mask_side)
        return kwargs


def _numbers(values, what: str) -> np.ndarray:
    """``values`` as a float64 array, or a ``SAM2Error`` naming ``what`` when they are not
    numbers (strings, ragged lists, objects)."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise SAM2Error(f"{what} must be numbers, got {values!r}.") from err


def mask_to_logits(mask: np.ndarray, side: int = _LOW_RES) -> np.ndarray:
    """A boolean (H, W) mask as SAM2's (1, side, side) low-resolution mask-prompt logits (256
    for a 1024 input)."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
    low = F.interpolate(tensor, size=(side, side), mode="area")[0]
    return ((low.numpy() > 0.5) * 2 - 1).astype(np.float32) * _MASK_LOGIT
