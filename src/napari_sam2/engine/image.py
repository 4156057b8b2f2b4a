"""One image at a time through SAM2's image predictor, with an embedding cache.

Embedding is the slow step (the image encoder); a click is only the prompt encoder and mask
decoder. So embeddings are kept in a small LRU cache keyed by what determines them — the plane's
pixels, the chosen channels and the normalisation — and a re-click or a revisit never re-embeds.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np
import torch

from .errors import SAM2Error
from .models import inference_context
from .prompts import PromptSet


def plane_fingerprint(plane: np.ndarray) -> str:
    """A content hash of a raw plane: equal pixels give equal keys, edits give new ones."""
    plane = np.ascontiguousarray(plane)
    digest = hashlib.blake2b(plane.view(np.uint8).reshape(-1), digest_size=16)
    digest.update(str((plane.shape, plane.dtype.str)).encode())
    return digest.hexdigest()


class ImageSession:
    """Holds an image predictor and the embeddings of recently seen frames."""

    def __init__(self, model: torch.nn.Module, cache_size: int = 16):
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.predictor = SAM2ImagePredictor(model)
        self.device = next(model.parameters()).device
        self.cache_size = cache_size
        self._cache: OrderedDict[Hashable, tuple[dict, tuple[int, int]]] = OrderedDict()
        self.key: Hashable | None = None
        self.embeddings_computed = 0

    def is_cached(self, key: Hashable) -> bool:
        return key in self._cache

    def set_frame(self, frame: np.ndarray | None, key: Hashable) -> None:
        """Make ``frame`` ((h, w, 3) float32 in [0, 1]) current, embedding it unless cached.

        ``frame`` may be None when ``key`` is cached, so callers can skip preparing it.
        """
        if key in self._cache:
            self._cache.move_to_end(key)
            features, hw = self._cache[key]
        else:
            with inference_context(self.device):
                self.predictor.set_image(frame)
            features, hw = self.predictor._features, self.predictor._orig_hw[0]
            self._cache[key] = (features, hw)
            self.embeddings_computed += 1
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        # Restore the predictor's state for this frame (the attributes set_image fills).
        self.predictor.reset_predictor()
        self.predictor._features = features
        self.predictor._orig_hw = [hw]
        self.predictor._is_image_set = True
        self.key = key

    def embedding(self) -> tuple[dict, tuple[int, int]]:
        """The current frame's image features and its (h, w), as the predictor holds them.

        Other SAM2 predictors built on the same model (the automatic mask generator) can reuse
        them instead of running the image encoder again.
        """
        if self.key is None:
            raise SAM2Error("No image is set: call set_image first.")
        return self._cache[self.key]

    def predict(self, prompts: PromptSet) -> tuple[np.ndarray, float]:
        """Boolean mask of the current frame and SAM2's predicted IoU for it.

        A single click is ambiguous, so three masks are proposed and the one with the highest
        predicted IoU is kept; any richer prompt asks for one mask.
        """
        if self.key is None:
            raise SAM2Error("No image is set: call set_image first.")
        multimask = prompts.is_single_click
        with inference_context(self.device):
            masks, scores, _ = self.predictor.predict(
                **prompts.to_sam(), multimask_output=multimask, normalize_coords=True
            )
        best = int(np.argmax(scores))
        return np.asarray(masks[best]) > 0, float(scores[best])
