"""What a session knows of its objects besides the model's memory: all a saved annotation holds."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import SAM2Error
from ..prompts import PromptSet
from .lineage import Lineage
from .planning import check_frame


class AnnotationRecord:
    """Per object: ``prompts`` {frame: PromptSet} (the latest per frame), ``masks`` {frame:
    mask} handed out on each prompted frame since its latest prompt, ``confidence`` and
    ``area`` per frame of the stack (NaN where not computed), a name; and the divisions."""

    def __init__(self, n_frames: int):
        self.n_frames = n_frames
        self.prompts: dict[int, dict[int, PromptSet]] = {}
        self.masks: dict[int, dict[int, np.ndarray]] = {}
        self.confidence: dict[int, np.ndarray] = {}
        self.area: dict[int, np.ndarray] = {}
        self.names: dict[int, str] = {}
        self.lineage = Lineage()

    def frames(self, object_id: int) -> list[int]:
        """The object's prompted frames (its anchors), in order."""
        return sorted(self.prompts.get(object_id, ()))

    def check(
        self,
        prompts: Mapping[int, Mapping[int, dict | PromptSet]],
        frame_range: tuple[int, int],
        shape: tuple[int, int],
    ) -> list[tuple[int, int, PromptSet]]:
        """(frame, object id, checked prompt) for each of ``prompts`` (as ``add_prompts``
        takes them), all checked before any is used."""
        checked = []
        for frame, objects in prompts.items():
            frame = check_frame(frame_range, frame)
            for object_id, prompt in objects.items():
                if not isinstance(object_id, (int, np.integer)) or object_id < 1:
                    raise SAM2Error(
                        f"Object id {object_id!r} is not a positive integer: ids are label "
                        "values, and 0 is the background."
                    )
                self.lineage.check_prompt(int(object_id), frame, frame_range)
                if not isinstance(prompt, PromptSet):
                    prompt = PromptSet.from_arguments(**prompt)
                checked.append((frame, int(object_id), prompt.validate(shape)))
        return checked

    def add(self, frame: int, object_id: int, prompt: PromptSet) -> None:
        self.prompts.setdefault(object_id, {})[frame] = prompt
        self.masks.get(object_id, {}).pop(frame, None)  # made by older prompts

    def handed_out(self, result) -> None:
        """Keep what a finished frame (a ``FrameResult``) says about its objects."""
        frame, object_ids, masks = result
        for object_id, mask in zip(object_ids, masks, strict=True):
            if frame in self.prompts.get(object_id, ()):
                self.masks.setdefault(object_id, {})[frame] = mask.copy()
        for per_frame, values in ((self.confidence, result.confidence), (self.area, result.area)):
            for object_id, value in zip(object_ids, values, strict=True):
                self._series(per_frame, object_id)[frame] = value

    def restore_per_frame(
        self, confidence: Mapping[int, np.ndarray], area: Mapping[int, np.ndarray]
    ) -> None:
        """Take back saved confidences and areas ({object id: one value a frame})."""
        for kind, given in (("confidences", confidence), ("areas", area)):
            for object_id, values in given.items():
                if len(values) != self.n_frames:
                    raise SAM2Error(
                        f"Object {object_id} has {kind} for {len(values)} frames, not "
                        f"{self.n_frames}: the annotation belongs to another stack."
                    )
        for per_frame, given in ((self.confidence, confidence), (self.area, area)):
            for object_id, values in given.items():
                self._series(per_frame, int(object_id))[:] = values

    def _series(self, per_frame: dict[int, np.ndarray], object_id: int) -> np.ndarray:
        if object_id not in per_frame:
            per_frame[object_id] = np.full(self.n_frames, np.nan, np.float32)
        return per_frame[object_id]

    def by_frame(self) -> dict[int, dict[int, PromptSet]]:
        """The prompts as ``add_prompts`` takes them: {frame: {object id: PromptSet}}."""
        out: dict[int, dict[int, PromptSet]] = {}
        for object_id, frames in self.prompts.items():
            for frame, prompt in frames.items():
                out.setdefault(frame, {})[object_id] = prompt
        return dict(sorted(out.items()))

    def remove(self, object_id: int) -> None:
        for per_object in (
            self.prompts,
            self.masks,
            self.confidence,
            self.area,
            self.names,
        ):
            per_object.pop(object_id, None)
        self.lineage.remove(object_id)
