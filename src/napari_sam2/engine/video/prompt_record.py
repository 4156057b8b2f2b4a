"""Every object's prompts per frame as the user gave them, and the masks they made there."""

from __future__ import annotations

import numpy as np

from ..prompts import PromptSet


class PromptRecord:
    """What a saved annotation needs to resume: ``prompts`` {object id: {frame: PromptSet}}
    (the latest per frame) and ``masks`` {object id: {frame: mask}}, the mask handed out on
    each prompted frame since its latest prompt."""

    def __init__(self):
        self.prompts: dict[int, dict[int, PromptSet]] = {}
        self.masks: dict[int, dict[int, np.ndarray]] = {}

    def frames(self, object_id: int) -> list[int]:
        """The object's prompted frames (its anchors), in order."""
        return sorted(self.prompts.get(object_id, ()))

    def add(self, frame: int, object_id: int, prompt: PromptSet) -> None:
        self.prompts.setdefault(object_id, {})[frame] = prompt
        self.masks.get(object_id, {}).pop(frame, None)  # made by older prompts

    def handed_out(self, frame: int, object_ids, masks: np.ndarray) -> None:
        """Keep the masks of objects prompted on ``frame``."""
        for object_id, mask in zip(object_ids, masks, strict=True):
            if frame in self.prompts.get(object_id, ()):
                self.masks.setdefault(object_id, {})[frame] = mask.copy()

    def by_frame(self) -> dict[int, dict[int, PromptSet]]:
        """The prompts as ``add_prompts`` takes them: {frame: {object id: PromptSet}}."""
        out: dict[int, dict[int, PromptSet]] = {}
        for object_id, frames in self.prompts.items():
            for frame, prompt in frames.items():
                out.setdefault(frame, {})[object_id] = prompt
        return dict(sorted(out.items()))

    def remove(self, object_id: int) -> None:
        self.prompts.pop(object_id, None)
        self.masks.pop(object_id, None)
