"""Image-encoder outputs shared by all objects tracked over the same frames."""

from __future__ import annotations

import torch

from ..models import is_compiled
from .reading import ModelFrames


class SharedFeatures:
    """Image-encoder outputs for the frames about to be tracked, computed once for all objects.

    On a miss the next ``batch_size`` frames in the direction of travel are encoded together
    (batching helps on a GPU, where the encoder does not depend on the tracking memory).
    Frames are forgotten once tracking has moved past them. (Encoding the next batch in a
    background thread while one is tracked was measured, and gained nothing: both halves are
    bound by Python on the host; see ``bench/diagnostics.py pipeline``.) A compiled encoder
    gets every batch padded to full size: each new input shape would compile for a minute.
    """

    def __init__(self, model, frames: ModelFrames, batch_size: int):
        self.model = model
        self.frames = frames
        self.batch_size = batch_size
        self.pad = is_compiled(model)
        self._store: dict[int, tuple[torch.Tensor, dict]] = {}

    def get(self, index: int, step: int, last: int) -> tuple[torch.Tensor, dict]:
        if index not in self._store:
            self._store.clear()
            batch = list(range(index, last + step, step))[: self.batch_size]
            device = self.model.device
            images = torch.stack([self.frames[i] for i in batch]).to(device).float()
            missing = self.batch_size - len(batch)
            if self.pad and missing:
                images = torch.cat([images, images[-1:].expand(missing, -1, -1, -1)])
            out = self.model.forward_image(images)
            for k, i in enumerate(batch):
                self._store[i] = (
                    images[k : k + 1],
                    {
                        "backbone_fpn": [x[k : k + 1] for x in out["backbone_fpn"]],
                        "vision_pos_enc": [x[k : k + 1] for x in out["vision_pos_enc"]],
                    },
                )
        return self._store[index]

    def put(self, index: int, features: tuple[torch.Tensor, dict]) -> None:
        self._store[index] = features

    def forget_before(self, index: int, step: int) -> None:
        for i in [i for i in self._store if (i - index) * step < 0]:
            del self._store[i]

    def clear(self) -> None:
        self._store.clear()
