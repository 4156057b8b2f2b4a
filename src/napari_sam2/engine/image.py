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

ENCODER_BATCH = 8
"""Frames ``ImageSession.embed_many`` runs through the image encoder at once (the video path
encodes 8 frames at a time on CUDA too)."""


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

    def __init__(
        self,
        model: torch.nn.Module,
        cache_size: int = 16,
        lender: ImageSession | None = None,
    ):
        self.predictor = image_predictor(model)
        self.device = next(model.parameters()).device
        self.cache_size = cache_size
        self._cache: OrderedDict[Hashable, tuple[dict, tuple[int, int]]] = OrderedDict()
        self.key: Hashable | None = None
        self.embeddings_computed = 0
        # Another session of the same model whose cached embeddings this one takes instead
        # of embedding again (read only: no lock needed, its entries are never changed).
        self._lender = lender
        # Calls come from the GUI's worker threads one at a time (the Segmenter's lock).
        self._decode_clicks = GraphedCall(self._clicks, any_thread=True)

    def is_cached(self, key: Hashable) -> bool:
        """Whether ``key``'s embedding is here, taking it from the lender if it has it."""
        if key not in self._cache and self._lender is not None:
            found = self._lender._cache.get(key)
            if found is not None:
                self._cache[key] = found
        return key in self._cache

    def set_frame(self, frame: torch.Tensor | None, hw: tuple[int, int], key: Hashable) -> None:
        """Make a frame current, embedding it unless ``key`` is cached.

        ``frame`` is the encoder's input (``frames.model_input``) of an (h, w) frame; it may be
        None when ``key`` is cached, so callers can skip preparing it.
        """
        self.embed_many([(frame, hw, key)])

    def embed_many(self, frames: list[tuple[torch.Tensor | None, tuple[int, int], Hashable]]):
        """``set_frame`` for each of ``frames`` in turn, those not cached embedded
        ``ENCODER_BATCH`` at a time (on CUDA padded to a power of two: shapes that repeat, see
        ``cuda_graphs.padded_size``): the windows of a crowded field cost one encoder call,
        not one each. All of them stay cached until the next call; the last becomes the
        current frame."""
        todo: dict[Hashable, tuple[torch.Tensor, tuple[int, int]]] = {}
        for frame, hw, key in frames:
            if not self.is_cached(key):
                todo.setdefault(key, (frame, hw))
        pending = list(todo.items())
        for start in range(0, len(pending), ENCODER_BATCH):
            chunk = pending[start : start + ENCODER_BATCH]
            batch = [frame for _, (frame, _) in chunk]
            if self.device.type == "cuda":
                batch += batch[-1:] * (padded_size(len(batch)) - len(batch))
            with inference_context(self.device):
                found = self._embed(torch.stack(batch))
            for (key, (_, hw)), features in zip(chunk, found, strict=False):
                self._cache[key] = (features, hw)
                self.embeddings_computed += 1
        used = list(dict.fromkeys(key for _, _, key in frames))
        for key in used:  # the most recent, kept while the cache lets older ones go
            self._cache.move_to_end(key)
        while len(self._cache) > max(self.cache_size, len(used)):
            self._cache.popitem(last=False)
        self._show(used[-1])

    def _show(self, key: Hashable) -> None:
        """Make the cached frame ``key`` current: restore the attributes of sam2's predictor
        that ``set_image`` fills."""
        self._cache.move_to_end(key)
        features, hw = self._cache[key]
        self.predictor.reset_predictor()
        self.predictor._features = features
        self.predictor._orig_hw = [hw]
        self.predictor._is_image_set = True
        self.key = key

    def _embed(self, frames: torch.Tensor) -> list[dict]:
        """The image features ``SAM2ImagePredictor.set_image`` computes, of each of a batch
        of frames already prepared on the device (``set_image`` takes a host array and
        prepares it on the CPU)."""
        model = self.predictor.model
        _, vision_feats, _, _ = model._prepare_backbone_features(model.forward_image(frames))
        if model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
        n = len(frames)
        feats = [
            feat.permute(1, 2, 0).view(n, -1, *size)
            for feat, size in zip(vision_feats, self.predictor._bb_feat_sizes, strict=True)
        ]
        if n > 1:  # copies: a cached view would keep its whole batch in memory
            return [
                {
                    "image_embed": feats[-1][i : i + 1].clone(),
                    "high_res_feats": [f[i : i + 1].clone() for f in feats[:-1]],
                }
                for i in range(n)
            ]
        return [{"image_embed": feats[-1], "high_res_feats": feats[:-1]}]

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

    def predict_many(
        self, prompts: list[PromptSet], keys: list[Hashable] | None = None
    ) -> list[tuple[np.ndarray, float]]:
        """What ``predict`` gives for each of ``prompts`` on the current frame, or on the
        cached frame of its key in ``keys``. Those alike (the same number of clicks, all with
        a box or none, no mask, on frames of one size) are decoded in one pass, each on its
        own frame's features: the decoder treats them independently, so every cell of a field
        clicked once costs one pass, not one each nor one per window. One of those frames
        may be left the current one."""
        if self.key is None:
            raise SAM2Error("No image is set: call set_image first.")
        keys = keys or [self.key] * len(prompts)
        groups: dict[tuple, list[int]] = {}
        for i, (p, key) in enumerate(zip(prompts, keys, strict=True)):
            points = 0 if p.points is None else len(p.points)
            kind = ("mask", i) if p.mask is not None else (points, p.box is not None)
            groups.setdefault((*kind, self._cache[key][1]), []).append(i)
        out: list = [None] * len(prompts)
        for indices in groups.values():
            if len(indices) == 1:
                self._show(keys[indices[0]])
                out[indices[0]] = self.predict(prompts[indices[0]])
                continue
            found = self._predict_alike([prompts[i] for i in indices], [keys[i] for i in indices])
            for i, result in zip(indices, found, strict=True):
                out[i] = result
        return out

    def _predict_alike(
        self, prompts: list[PromptSet], keys: list[Hashable]
    ) -> list[tuple[np.ndarray, float]]:
        """``predict`` for several clicks-and-boxes prompts of one shape, each on the cached
        frame of its key (frames of one size), in one decoder pass."""
        sams = [p.to_sam() for p in prompts]
        features = [self._cache[key][0] for key in keys]
        hw = self._cache[keys[0]][1]
        if self.device.type == "cuda":  # shapes that repeat (``padded_size``)
            extra = padded_size(len(sams)) - len(sams)
            sams, features = sams + sams[-1:] * extra, features + features[-1:] * extra
        coords, labels = _clicks_and_corners(sams)
        with inference_context(self.device):
            coords = self.predictor._transforms.transform_coords(
                torch.as_tensor(coords, dtype=torch.float, device=self.device),
                normalize=True,
                orig_hw=hw,
            )
            labels = torch.as_tensor(labels, dtype=torch.int, device=self.device)
            if all(f is features[0] for f in features):
                image_embed, high_res = features[0]["image_embed"], features[0]["high_res_feats"]
            else:
                image_embed = torch.cat([f["image_embed"] for f in features])
                high_res = [
                    torch.cat([f["high_res_feats"][j] for f in features]) for j in range(2)
                ]
            masks, scores = self._decode(
                image_embed, high_res, coords, labels, prompts[0].is_single_click, hw
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

    def _decode(self, image_embed, high_res, coords, labels, multimask: bool, hw):
        """sam2's prompt encoder and mask decoder on a batch of prompts (clicks and box
        corners, model coordinates), each on its own image embedding, or all on one: the
        masks at the frame's size (h, w) and their predicted IoUs. ``_predict`` of sam2's
        image predictor does this for one image only."""
        model = self.predictor.model
        sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        low_res, scores, _, _ = model.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=len(image_embed) != len(coords),
            high_res_features=high_res,
        )
        masks = self.predictor._transforms.postprocess_masks(low_res, hw)
        return masks > self.predictor.mask_threshold, scores

    def _clicks(self, image_embed, high_res_0, high_res_1, coords, labels, multimask, hw):
        """The mask decoder on clicks, as a function of tensors only, so that on CUDA it can be
        replayed as a graph: the prompt encoder and mask decoder launch some 300 small kernels
        from Python, which take longer than the GPU needs for them."""
        return _best(
            *self._decode(image_embed, [high_res_0, high_res_1], coords, labels, multimask, hw)
        )


def _clicks_and_corners(sams: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The (n, k, 2) point coordinates and (n, k) labels of n sam prompts of one shape, a
    box as its two corners first (labels 2 and 3), as sam2's decoder reads a box."""
    n = len(sams)
    coords, labels = [], []
    if "box" in sams[0]:
        coords.append(np.stack([sam["box"] for sam in sams]).reshape(n, 2, 2))
        labels.append(np.tile([2, 3], (n, 1)))
    if "point_coords" in sams[0]:
        coords.append(np.stack([sam["point_coords"] for sam in sams]))
        labels.append(np.stack([sam["point_labels"] for sam in sams]))
    return np.concatenate(coords, axis=1), np.concatenate(labels, axis=1)


def _best(masks: torch.Tensor, scores: torch.Tensor, _low_res=None) -> tuple:
    """The proposal with the highest predicted IoU and its score (the one the decoder kept,
    where it keeps one), picked on the device: only one boolean mask then travels to the host,
    where ``predictor.predict`` copies every proposal as float32."""
    score, best = scores[0].float().max(dim=0)
    # index_select, not masks[0, best]: a tensor index would be read back to the host.
    return masks[0].index_select(0, best.view(1))[0], score
