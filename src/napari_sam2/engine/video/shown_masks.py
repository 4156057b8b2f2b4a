"""Prompted frames segmented as a single image is: in a window where the image path uses one.

A propagation reads each frame whole, resized to the model input. On a frame that the image
path segments in a window (``window.in_windows``: a click on a plane larger than
``window.whole_side``, any prompt on one larger than the model input), the same clicks decoded
on the whole frame would give the object another mask than the one the user was shown, most
often a worse one. Such a prompt is segmented as ``Segmenter.predict`` segments it, and the
object is conditioned on that mask (sam2's mask prompt); its prompted frame shows that mask.
"""

from __future__ import annotations

import numpy as np

from ..frames import FrameSource
from ..image import ImageSession
from ..plane import LazyPlane
from ..prompts import PromptSet
from ..window import MaskCrop, in_windows
from ..windowed import WindowedPlane


class ShownMasks:
    """The image path's masks of a session's prompts on frames it segments in windows:
    (object id, frame) → ``MaskCrop``, kept while that prompt stands."""

    def __init__(self, model, source: FrameSource):
        self.model, self.source = model, source
        self.crops: dict[tuple[int, int], MaskCrop] = {}
        self._session: ImageSession | None = None

    def stand_in(self, item: tuple[int, int, PromptSet]) -> tuple[int, int, PromptSet]:
        """``item`` (frame, object id, prompt), or the mask prompt of its image-path mask where
        the image path segments the prompt in a window."""
        frame, object_id, prompt = item
        shape = self.source.plane_shape
        if prompt.mask is not None or not in_windows(prompt, shape, self.model.image_size):
            return item
        if self._session is None:
            self._session = ImageSession(self.model)
        windowed = WindowedPlane(
            LazyPlane.picked(self.source.raw_plane(frame)), self.source.normalization,
            self._session, self.model.image_size, self.model.device,
        )  # fmt: skip
        crop = windowed.predict(prompt)
        self.crops[object_id, frame] = crop
        return frame, object_id, PromptSet(mask=crop.full(shape))

    def paste(self, object_id: int, frame: int, mask: np.ndarray) -> bool:
        """Make ``mask`` (the frame's output, written in place) the shown mask of the object's
        prompt on ``frame``, if it has one."""
        crop = self.crops.get((object_id, frame))
        if crop is None:
            return False
        mask[:] = False
        mask[crop.rows, crop.cols] = crop.mask
        return True

    def forget(self, object_id: int, frame: int | None = None) -> None:
        """Drop an object's masks (on one frame: its prompt there was replaced)."""
        for key in [k for k in self.crops if k[0] == object_id and frame in (None, k[1])]:
            del self.crops[key]

    def clear(self) -> None:
        self.crops.clear()
        self._session = None
