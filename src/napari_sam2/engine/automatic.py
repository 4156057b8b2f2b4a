"""Segment everything: SAM2's stock automatic mask generator, batch by batch, as a generator.

``SAM2AutomaticMaskGenerator`` (sam2's own class, its filtering and NMS untouched) prompts the
model with a grid of points and keeps the confident, stable, non-duplicate masks (of all three
masks of each point: ``mask_choice.all_candidates``). Its
``generate`` is one long call; here the same per-batch step (``_process_batch``) is driven
from a generator that yields a ``Progress`` after every point batch, so a GUI worker can show
progress and cancel by closing the generator. The full-image embedding is the one the
``ImageSession`` already holds, so "segment everything" after a few clicks does not re-embed.
The proposals are then painted into one non-overlapping int32 label image.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from .errors import SAM2Error
from .image import feature_sizes
from .models import inference_context
from .window import MaskCrop

# Labels are read and rewritten in bands of rows of about this many pixels (``row_bands``).
_BAND_PIXELS = 1 << 24


@dataclass(frozen=True)
class AutomaticOptions:
    """Settings of the automatic mask generator, with defaults chosen for microscopy.

    The grid, thresholds and crop settings are passed to ``SAM2AutomaticMaskGenerator``
    unchanged (see its docstring). Compared with sam2's defaults (tuned for photos with the
    large model), the IoU and stability thresholds are a little lower so that faint cells
    survive, tiny specks (``min_area``) are dropped, and masks covering more than
    ``max_area_fraction`` of the image (the background, the whole dish) are dropped too.
    ``larger_first`` paints large masks first so that smaller ones lying on them stay
    visible; False paints small masks first and lets large ones cover them.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.7
    stability_score_thresh: float = 0.9
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    use_m2m: bool = False
    multimask_output: bool = True
    min_area: int = 16
    max_area_fraction: float = 0.6
    larger_first: bool = True

    @classmethod
    def from_kwargs(cls, **options) -> AutomaticOptions:
        """Options from keyword arguments, with a clear error for unknown names or values."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise SAM2Error(
                f"Unknown automatic-mask option(s) {unknown}; choose among {sorted(names)}."
            )
        return cls(**options).validate()

    def validate(self) -> AutomaticOptions:
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise SAM2Error("points_per_side and points_per_batch must be at least 1.")
        for name in ("pred_iou_thresh", "stability_score_thresh", "max_area_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SAM2Error(f"{name} must lie between 0 and 1, got {value}.")
        if self.crop_n_layers < 0 or self.min_area < 0:
            raise SAM2Error("crop_n_layers and min_area cannot be negative.")
        return self

    def generator_kwargs(self) -> dict:
        """The keyword arguments of ``SAM2AutomaticMaskGenerator`` these options fix."""
        return {
            "points_per_side": self.points_per_side,
            "points_per_batch": self.points_per_batch,
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_score_thresh": self.stability_score_thresh,
            "stability_score_offset": self.stability_score_offset,
            "box_nms_thresh": self.box_nms_thresh,
            "crop_n_layers": self.crop_n_layers,
            "crop_nms_thresh": self.crop_nms_thresh,
            "crop_overlap_ratio": self.crop_overlap_ratio,
            "crop_n_points_downscale_factor": self.crop_n_points_downscale_factor,
            "use_m2m": self.use_m2m,
            "multimask_output": self.multimask_output,
            "output_mode": "uncompressed_rle",
        }


def mask_generator(model: torch.nn.Module, options: AutomaticOptions):
    """sam2's ``SAM2AutomaticMaskGenerator`` for ``model`` with ``options``, its predictor told
    the feature sizes of the model's input (sam2 assumes a 1024 input)."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    generator = SAM2AutomaticMaskGenerator(model, **options.generator_kwargs())
    generator.predictor._bb_feat_sizes = feature_sizes(model.image_size)
    return generator


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` point batches processed (over all crops)."""

    done: int
    total: int


@dataclass
class MaskProposal:
    """One mask the generator kept, as sam2's uncompressed RLE (decoded on demand)."""

    rle: dict
    area: int
    predicted_iou: float
    stability_score: float

    @property
    def mask(self) -> np.ndarray:
        from sam2.utils.amg import rle_to_mask

        return rle_to_mask(self.rle)


def iter_mask_proposals(
    model: torch.nn.Module,
    frame: np.ndarray,
    options: AutomaticOptions,
    embedding: tuple[dict, tuple[int, int]] | None = None,
) -> Generator[Progress, None, list[MaskProposal]]:
    """Run the stock generator over ``frame`` ((h, w, 3) float in [0, 1]) batch by batch.

    Yields a ``Progress`` after each point batch and returns the kept proposals, sorted by
    decreasing area. ``embedding`` (features, (h, w)) is the full frame's image embedding if
    it is already known (the image session's), saving one pass of the image encoder.
    Closing the generator stops the work at the next batch.
    """
    from sam2.utils.amg import MaskData, area_from_rle, batch_iterator, generate_crop_boxes
    from torchvision.ops.boxes import batched_nms, box_area

    from .mask_choice import all_candidates

    amg = mask_generator(model, options)
    predictor = amg.predictor
    device = next(model.parameters()).device
    h, w = frame.shape[:2]
    crop_boxes, layers = generate_crop_boxes((h, w), amg.crop_n_layers, amg.crop_overlap_ratio)
    batches = [math.ceil(len(amg.point_grids[layer]) / amg.points_per_batch) for layer in layers]
    total, done = sum(batches), 0
    yield Progress(0, total)

    everything = MaskData()
    try:
        for crop_box, layer in zip(crop_boxes, layers, strict=True):
            x0, y0, x1, y1 = crop_box
            crop_hw = (y1 - y0, x1 - x0)
            with inference_context(device):
                if embedding is not None and crop_hw == (h, w):
                    _restore_embedding(predictor, *embedding)
                else:
                    predictor.set_image(frame[y0:y1, x0:x1])
            # The point grid is in (x, y) fractions of the crop, as the generator expects.
            points = amg.point_grids[layer] * np.array(crop_hw)[None, ::-1]
            in_crop = MaskData()
            for (batch,) in batch_iterator(amg.points_per_batch, points):
                with inference_context(device), all_candidates():
                    in_crop.cat(amg._process_batch(batch, crop_hw, crop_box, (h, w), True))
                done += 1
                yield Progress(done, total)
            with inference_context(device):
                everything.cat(_dedupe_crop(in_crop, crop_box, amg.box_nms_thresh, batched_nms))
        predictor.reset_predictor()
        if len(crop_boxes) > 1 and _count(everything) > 1:
            # Between crops, prefer masks found in smaller crops (as the stock generator does).
            scores = 1 / box_area(everything["crop_boxes"]).to(everything["boxes"].device)
            keep = batched_nms(
                everything["boxes"].float(),
                scores,
                torch.zeros_like(everything["boxes"][:, 0]),
                iou_threshold=amg.crop_nms_thresh,
            )
            everything.filter(keep)
    finally:
        predictor.reset_predictor()
    if _count(everything) == 0:
        return []
    everything.to_numpy()
    proposals = [
        MaskProposal(
            rle,
            area_from_rle(rle),
            float(everything["iou_preds"][i]),
            float(everything["stability_score"][i]),
        )
        for i, rle in enumerate(everything["rles"])
    ]
    return sorted(proposals, key=lambda p: -p.area)


def _count(data) -> int:
    """Number of masks in a sam2 ``MaskData`` (which has no keys at all before the first cat)."""
    return len(data["rles"]) if "rles" in dict(data.items()) else 0


def _restore_embedding(predictor, features: dict, hw: tuple[int, int]) -> None:
    """Give ``predictor`` an embedding computed elsewhere (the attributes set_image fills)."""
    predictor.reset_predictor()
    predictor._features = features
    predictor._orig_hw = [hw]
    predictor._is_image_set = True


def _dedupe_crop(data, crop_box, nms_thresh, batched_nms):
    """Box NMS inside one crop, then coordinates back in the full frame (the stock steps)."""
    from sam2.utils.amg import uncrop_boxes_xyxy, uncrop_points

    if _count(data) == 0:
        return data
    keep = batched_nms(
        data["boxes"].float(),
        data["iou_preds"],
        torch.zeros_like(data["boxes"][:, 0]),
        iou_threshold=nms_thresh,
    )
    data.filter(keep)
    data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
    data["points"] = uncrop_points(data["points"], crop_box)
    data["crop_boxes"] = torch.tensor([crop_box for _ in range(len(data["rles"]))])
    return data


def paint_labels(
    proposals: list[MaskProposal],
    shape: tuple[int, int],
    options: AutomaticOptions = AutomaticOptions(),
) -> np.ndarray:
    """Non-overlapping int32 labels 1..n from mask proposals (0 is background).

    Proposals smaller than ``min_area`` or larger than ``max_area_fraction`` of the image are
    dropped; the rest are painted as ``paint_crops`` does.
    """
    max_area = options.max_area_fraction * shape[0] * shape[1]
    whole = slice(0, shape[0]), slice(0, shape[1])
    kept = [(p.area, MaskCrop(*whole, p.mask)) for p in proposals if p.area <= max_area]
    return paint_crops(kept, shape, options)


def paint_crops(
    masks: list[tuple[int, MaskCrop]],
    shape: tuple[int, int],
    options: AutomaticOptions = AutomaticOptions(),
) -> np.ndarray:
    """Non-overlapping int32 labels 1..n from (area, mask crop) pairs (0 is background).

    Masks smaller than ``min_area`` are dropped; the rest are painted large-to-small (or
    small-to-large), and masks that end up completely hidden, or smaller than ``min_area``
    after being overlapped, are removed. Ids are given in painting order and then made
    consecutive.
    """
    labels = np.zeros(shape, dtype=np.int32)
    return finish_labels(labels, paint_masks(masks, labels, options), options)


def paint_masks(
    masks: list[tuple[int, MaskCrop]], labels: np.ndarray, options: AutomaticOptions
) -> int:
    """Paint the masks of at least ``min_area`` into ``labels`` (numpy or a memory map) as
    ids 1..n in ``paint_crops``'s order; returns n."""
    kept = [m for m in masks if m[0] >= options.min_area]
    kept.sort(key=lambda m: m[0], reverse=options.larger_first)
    for label, (_, crop) in enumerate(kept, start=1):
        labels[crop.rows, crop.cols][crop.mask] = label
    return len(kept)


def finish_labels(labels: np.ndarray, count: int, options: AutomaticOptions) -> np.ndarray:
    """Remove from ``labels`` (ids 1..count) the ids left smaller than ``min_area`` and make
    the others consecutive, in place, a band of rows at a time (a memory map stays mapped)."""
    if count == 0:
        return labels
    areas = np.zeros(count + 1, dtype=np.int64)
    for band in row_bands(labels.shape):
        areas += np.bincount(labels[band].ravel(), minlength=count + 1)
    survivors = areas >= max(options.min_area, 1)
    survivors[0] = False
    lookup = np.zeros(count + 1, dtype=np.int32)
    lookup[survivors] = np.arange(1, survivors.sum() + 1, dtype=np.int32)
    for band in row_bands(labels.shape):
        labels[band] = lookup[labels[band]]
    return labels


def row_bands(shape: tuple[int, ...]) -> list[slice]:
    """Slices of rows of a (rows, cols) plane of about ``_BAND_PIXELS`` pixels each, to read
    or rewrite a plane (a memory map, say) a band at a time."""
    band = max(1, _BAND_PIXELS // max(shape[1], 1))
    return [slice(row, row + band) for row in range(0, shape[0], band)]
