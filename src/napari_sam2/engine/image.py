"""One image at a time through SAM2's image predictor, with an embedding cache.

Embedding is the slow step (the image encoder); a click is only the prompt encoder and mask
decoder. So embeddings are kept in a small LRU cache keyed by what determines them — the plane's
pixels, the chosen channels and the normalisation — and a re-click or a revisit never re-embeds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

import numpy as np
import torch
import xxhash

from .cuda_graphs import GraphedCall, padded_size
from .errors import SAM2Error
from .holes import fill_small_holes
from .models import inference_context
from .prompts import PromptSet


def plane_fingerprint(plane: np.ndarray) -> str:
    """A content hash of a raw plane: equal pixels give equal keys, edits give new ones.

    It runs on every click (the plane may have been edited in place), so it is xxHash's
    128-bit XXH3: 0.07 ms for a 1024² RGB plane, where SHA-256 takes 1.8 ms.
    """
    plane = np.ascontiguousarray(plane)
    digest = xxhash.xxh3_128(plane.view(np.uint8).reshape(-1))
    digest.update(str((plane.shape, plane.dtype.str)).encode())
    return digest.hexdigest()


def feature_sizes(image_size: int) -> list[tuple[int, int]]:
    """The backbone's feature map sizes (strides 4, 8 and 16) at an ``image_size`` input, for
    sam2's image predictor, which assumes those of a 1024 input."""
    return [(image_size // stride, image_size // stride) for stride in (4, 8, 16)]


def image_predictor(model: torch.nn.Module):
    """sam2's ``SAM2ImagePredictor`` for ``model``, told the feature sizes of the model's input
    (its constructor assumes a 1024 input)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model)
    predictor._bb_feat_sizes = feature_sizes(model.image_size)
    return predictor


class ImageSession:
    """Holds an image predictor and the embeddings of recently seen frames."""

    def __init__(self, model: torch.nn.Module, cache_size: int = 16):
        self.predictor = image_predictor(model)
        self.device = next(model.parameters()).device
        self.cache_size = cache_size
        self._cache: OrderedDict[Hashable, tuple[dict, tuple[int, int]]] = OrderedDict()
        self.key: Hashable | None = None
        self.embeddings_computed = 0
        # Calls come from the GUI's worker threads one at a time (the Segmenter's lock).
        self._decode_clicks = GraphedCall(self._clicks, any_thread=True)

    def is_cached(self, key: Hashable) -> bool:
        return key in self._cache

    def set_frame(self, frame: torch.Tensor | None, hw: tuple[int, int], key: Hashable) -> None:
        """Make a frame current, embedding it unless ``key`` is cached.

        ``frame`` is the encoder's input (``frames.model_input``) of an (h, w) frame; it may be
        None when ``key`` is cached, so callers can skip preparing it.
        """
        if key in self._cache:
            self._cache.move_to_end(key)
            features, hw = self._cache[key]
        else:
            with inference_context(self.device):
                features = self._embed(frame)
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

    def _embed(self, frame: torch.Tensor) -> dict:
        """The image features ``SAM2ImagePredictor.set_image`` computes, from a frame already
        prepared on the device (``set_image`` takes a host array and prepares it on the CPU)."""
        model = self.predictor.model
        _, vision_feats, _, _ = model._prepare_backbone_features(model.forward_image(frame[None]))
        if model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
        feats = [
            feat.permute(1, 2, 0).view(1, -1, *size)
            for feat, size in zip(vision_feats, self.predictor._bb_feat_sizes, strict=True)
        ]
        return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}

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

        A single click is ambiguous, so three masks are proposed and the decoder keeps one
        (``mask_choice``); any richer prompt asks for one mask. A box bounds its mask
        (``PromptSet.keep_inside_box``) and small holes are filled (``holes``).
        """
        if self.key is None:
            raise SAM2Error("No image is set: call set_image first.")
        multimask = prompts.is_single_click
        sam = prompts.to_sam(self.predictor.model.sam_prompt_encoder.mask_input_size[0])
        with inference_context(self.device):
            mask_input, coords, labels, box = self.predictor._prep_prompts(
                sam.get("point_coords"),
                sam.get("point_labels"),
                sam.get("box"),
                sam.get("mask_input"),
                normalize_coords=True,
            )
            if box is None and mask_input is None:
                features, hw = self._cache[self.key]
                mask, score = self._decode_clicks(
                    features["image_embed"], *features["high_res_feats"], coords, labels,
                    multimask, hw,
                )  # fmt: skip
            else:
                proposals = self.predictor._predict(coords, labels, box, mask_input, multimask)
                mask, score = _best(*proposals)
        mask = mask.cpu().numpy()
        prompts.keep_inside_box(mask)
        fill_small_holes(mask)
        return mask, float(score)

    def predict_many(self, prompts: list[PromptSet]) -> list[tuple[np.ndarray, float]]:
        """What ``predict`` gives for each of ``prompts`` on the current frame, those alike
        (the same number of clicks, all with a box or none, no mask) decoded in one pass: the
        decoder treats them independently, so every cell of a field clicked once costs one
        pass, not one each."""
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(prompts):
            points = 0 if p.points is None else len(p.points)
            kind = ("mask", i) if p.mask is not None else (points, p.box is not None)
            groups.setdefault(kind, []).append(i)
        out: list = [None] * len(prompts)
        for indices in groups.values():
            alike = [prompts[i] for i in indices]
            found = [self.predict(alike[0])] if len(alike) == 1 else self._predict_alike(alike)
            for i, result in zip(indices, found, strict=True):
                out[i] = result
        return out

    def _predict_alike(self, prompts: list[PromptSet]) -> list[tuple[np.ndarray, float]]:
        """``predict`` for several clicks-and-boxes prompts of one shape, in one decoder pass."""
        if self.key is None:
            raise SAM2Error("No image is set: call set_image first.")
        sams = [p.to_sam() for p in prompts]
        if self.device.type == "cuda":  # shapes that repeat (``padded_size``)
            sams += sams[-1:] * (padded_size(len(sams)) - len(sams))

        def stacked(key):
            return np.stack([sam[key] for sam in sams]) if key in sams[0] else None

        with inference_context(self.device):
            _, coords, labels, box = self.predictor._prep_prompts(
                stacked("point_coords"), stacked("point_labels"), stacked("box"), None,
                normalize_coords=True,
            )  # fmt: skip
            masks, scores, _ = self.predictor._predict(
                coords, labels, box, None, prompts[0].is_single_click
            )
            best = scores.float().argmax(dim=1)
            chosen = masks[torch.arange(len(sams), device=masks.device), best][: len(prompts)]
            kept = scores.float().gather(1, best[:, None])[: len(prompts), 0]
        found = []
        for prompt, mask, score in zip(prompts, chosen.cpu().numpy(), kept.tolist(), strict=True):
            prompt.keep_inside_box(mask)
            fill_small_holes(mask)
            found.append((mask, float(score)))
        return found

    def _clicks(self, image_embed, high_res_0, high_res_1, coords, labels, multimask, hw):
        """The mask decoder on clicks, as a function of tensors only, so that on CUDA it can be
        replayed as a graph: sam2's ``_predict`` launches some 300 small kernels from Python,
        which take longer than the GPU needs for them (only clicks: a box prompt makes sam2
        copy a tensor from the host, which a graph cannot hold)."""
        predictor = self.predictor
        kept = predictor._features, predictor._orig_hw
        predictor._features = {
            "image_embed": image_embed,
            "high_res_feats": [high_res_0, high_res_1],
        }
        predictor._orig_hw = [hw]
        try:
            return _best(*predictor._predict(coords, labels, None, None, multimask))
        finally:
            predictor._features, predictor._orig_hw = kept


def _best(masks: torch.Tensor, scores: torch.Tensor, _low_res=None) -> tuple:
    """The proposal with the highest predicted IoU and its score (the one the decoder kept,
    where it keeps one), picked on the device: only one boolean mask then travels to the host,
    where ``predictor.predict`` copies every proposal as float32."""
    score, best = scores[0].float().max(dim=0)
    # index_select, not masks[0, best]: a tensor index would be read back to the host.
    return masks[0].index_select(0, best.view(1))[0], score
