"""Prompted frames segmented as a single image is: in a window where the image path uses one.

A propagation reads each frame whole, resized to the model input. On a frame that the image
path segments in a window (``window.in_windows``: a click on a plane larger than
``window.whole_side``, any prompt on one larger than the model input), the same clicks decoded
on the whole frame would give the object another mask than the one the user was shown, most
often a worse one. Such a prompt is segmented as ``Segmenter.predict`` segments it, and the
object is conditioned on that mask (sam2's mask prompt); its prompted frame shows that mask.
A mask given as the prompt is shown as given on its frame.
Windows the image path has embedded already (the user's clicks, given the ``Segmenter``'s
session) are taken from its cache, not embedded again.
"""

from __future__ import annotations

from ..frames import FrameSource
from ..holes import fill_small_holes
from ..image import ImageSession
from ..plane import LazyPlane
from ..prompts import PromptSet
from ..window import MaskCrop, in_windows
from ..windowed import WindowedPlane
from .prompting import Item
from .stream import FrameResult


class ShownMasks:
    """The image path's masks of a session's prompts on frames it segments in windows:
    (object id, frame) → ``MaskCrop``, kept while that prompt stands."""

    def __init__(self, model, source: FrameSource, embeddings: ImageSession | None = None):
        self.model, self.source = model, source
        self.crops: dict[tuple[int, int], MaskCrop] = {}
        self._embeddings = embeddings  # whose cached windows need no embedding again
        self._session: ImageSession | None = None

    def stand_in(self, items: list[Item], objects: set[int]) -> list[Item]:
        """``items`` (frame, object id, prompt), each of the ``objects`` whose prompt the image
        path segments in a window replaced by the mask prompt of its image-path mask. The
        prompts of a frame are segmented together (``WindowedPlane.predict_many``)."""
        shape = self.source.plane_shape
        by_frame: dict[int, list[int]] = {}
        for i, (frame, object_id, prompt) in enumerate(items):
            windowed = prompt.mask is None and in_windows(prompt, shape, self.model.image_size)
            if object_id in objects and windowed:
                by_frame.setdefault(frame, []).append(i)
        if by_frame and self._session is None:
            self._session = ImageSession(self.model, lender=self._embeddings)
        out = list(items)
        for frame, indices in by_frame.items():
            windowed = WindowedPlane(
                LazyPlane.picked(self.source.raw_plane(frame)), self.source.normalization,
                self._session, self.model.image_size, self.model.device,
            )  # fmt: skip
            crops = windowed.predict_many([items[i][2] for i in indices])
            for i, crop in zip(indices, crops, strict=True):
                object_id = items[i][1]
                self.crops[object_id, frame] = crop
                out[i] = frame, object_id, PromptSet(mask=crop.full(shape))
        return out

    def as_shown(self, result: FrameResult, prompts: dict[int, dict[int, PromptSet]]) -> None:
        """Make the masks of ``result`` (a finished frame, changed in place) that prompts
        (``prompts``: object id → frame → prompt) made on its frame the ones the user gave or
        was shown: a mask given alone (a painted label, segment everything's) as it is, not
        as the model's coarser copy of it, in which small objects vanish; clicks or a box as
        they give on a single image, the image path's own mask where it segments them in a
        window, else kept inside the box, with their small holes filled. Tracked masks are the
        model's own (filling them would cost some 5 ms a frame of 64 objects on the host and
        changed no result by more than 0.002 mIoU)."""
        frame, object_ids, masks = result
        for k, object_id in enumerate(object_ids):
            prompt = prompts.get(object_id, {}).get(frame)
            if prompt is None:
                continue
            if prompt.mask is not None:
                if prompt.points is None and prompt.box is None:
                    masks[k][:] = prompt.mask
                    result.area[k] = masks[k].sum()
                continue
            crop = self.crops.get((object_id, frame))
            if crop is not None:
                masks[k][:] = False
                masks[k][crop.rows, crop.cols] = crop.mask
                result.area[k] = masks[k].sum()
            else:
                result.area[k] -= prompt.keep_inside_box(masks[k])
                result.area[k] += fill_small_holes(masks[k])

    def forget(self, object_id: int, frame: int | None = None) -> None:
        """Drop an object's masks (on one frame: its prompt there was replaced)."""
        for key in [k for k in self.crops if k[0] == object_id and frame in (None, k[1])]:
            del self.crops[key]

    def clear(self) -> None:
        self.crops.clear()
        self._session = None
