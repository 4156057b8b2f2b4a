"""Tracking a region of interest of large frames at native resolution: the stack cropped
lazily to a rectangle, prompts moved into it, masks placed back.

Frames larger than the model input are otherwise shrunk whole to it; a region no larger than
the model input is tracked at the pixels the user sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SAM2Error
from ..plane import unread
from ..prompts import PromptSet


@dataclass(frozen=True)
class Region:
    """Rows and columns of the frames tracked: ``rows``, ``cols`` (slices of the full frame)."""

    rows: slice
    cols: slice

    @classmethod
    def from_box(cls, box, frame_shape: tuple[int, int]) -> Region:
        """(min_row, min_col, max_row, max_col) as napari boxes are, clipped to the frames."""
        values = np.asarray(box, dtype=float).reshape(-1)
        if values.shape != (4,) or not np.isfinite(values).all():
            raise SAM2Error(f"roi is (min_row, min_col, max_row, max_col), got {box!r}.")
        r0, c0 = max(0, math.floor(values[0])), max(0, math.floor(values[1]))
        r1 = min(frame_shape[0], math.ceil(values[2]))
        c1 = min(frame_shape[1], math.ceil(values[3]))
        if r1 - r0 < 2 or c1 - c0 < 2:
            raise SAM2Error(
                f"The region {tuple(values.tolist())} holds no pixels of the {frame_shape} "
                "frames: draw it over the cells to track."
            )
        return cls(slice(r0, r1), slice(c0, c1))

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start

    def crop(self, stack, frame_axis: int, channel_axis: int | None):
        """``stack`` cut to the region along its two spatial axes, unread (a numpy view, or a
        dask array: indexing zarr would read it)."""
        stack = unread(stack)
        spatial = [
            ax for ax in range(stack.ndim) if ax not in (frame_axis % stack.ndim, channel_axis)
        ]
        index = [slice(None)] * stack.ndim
        index[spatial[0] % stack.ndim], index[spatial[1] % stack.ndim] = self.rows, self.cols
        return stack[tuple(index)]

    def prompt(self, prompt: PromptSet) -> PromptSet:
        """A prompt of the full frame in the region's pixels."""
        origin = np.array([self.rows.start, self.cols.start], dtype=float)
        return PromptSet(
            None if prompt.points is None else prompt.points - origin,
            prompt.point_labels,
            None if prompt.box is None else prompt.box - np.tile(origin, 2),
            None if prompt.mask is None else prompt.mask[self.rows, self.cols],
        )

    def prompts(self, prompts: dict) -> dict:
        """``{frame: {object id: prompt}}`` (dicts as ``propagate`` takes them, or PromptSets)
        moved into the region."""
        return {
            frame: {
                oid: self.prompt(p if isinstance(p, PromptSet) else PromptSet.from_arguments(**p))
                for oid, p in objects.items()
            }
            for frame, objects in prompts.items()
        }
