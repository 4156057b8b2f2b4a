"""Object extraction: each labelled object cut out of its image, to its bounding box.

The background inside the box is either transparent (an RGBA crop whose alpha is the mask) or
zeroed (the image's own channels). For a (T, H, W) label stack the crop follows the object
through time: one box, the union over the frames where the object exists, and one crop per
such frame. Only the boxes are read from ``image``, so a lazy (dask or zarr) video is fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine.errors import SAM2Error

BACKGROUNDS = ("transparent", "zero")


@dataclass
class ObjectCrop:
    """One object: ``data`` is (h, w, 4) RGBA or (h, w[, C]) zeroed, with a leading time axis
    for stacks; ``mask`` is its boolean footprint; ``box`` is (min_row, min_col, max_row,
    max_col) and ``frames`` the (first, stop) frames of a stack (None for one image)."""

    label: int
    data: np.ndarray
    mask: np.ndarray
    box: tuple[int, int, int, int]
    frames: tuple[int, int] | None = None


def extract_objects(
    labels: np.ndarray,
    image,
    background: str = "transparent",
    ids=None,
    padding: int = 0,
) -> list[ObjectCrop]:
    """Crops of every object (or of ``ids``) of ``labels`` out of ``image``.

    ``labels`` is (H, W) or (T, H, W); ``image`` has the same leading shape, optionally with a
    trailing channel axis (1-4 channels for transparent output). ``padding`` enlarges each box
    by that many pixels (clipped to the image).
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    if background not in BACKGROUNDS:
        raise SAM2Error(f"background must be one of {BACKGROUNDS}, got {background!r}.")
    if labels.ndim not in (2, 3):
        raise SAM2Error(f"Labels must be (H, W) or (T, H, W), got shape {labels.shape}.")
    if tuple(image.shape[: labels.ndim]) != labels.shape or image.ndim > labels.ndim + 1:
        raise SAM2Error(
            f"The image {tuple(image.shape)} does not match the labels {labels.shape}: it needs "
            "the same frames and pixels (plus at most one channel axis)."
        )
    channels = image.shape[-1] if image.ndim == labels.ndim + 1 else 0
    if background == "transparent" and channels > 4:
        raise SAM2Error(
            f"A transparent crop needs gray, RGB or RGBA, not {channels} channels: "
            "use background='zero'."
        )
    boxes = ndimage.find_objects(labels)
    wanted = range(1, len(boxes) + 1) if ids is None else [int(i) for i in ids]
    crops = []
    for label in wanted:
        if label < 1 or label > len(boxes) or boxes[label - 1] is None:
            continue
        box = tuple(
            slice(max(s.start - padding, 0), min(s.stop + padding, n))
            if ax >= labels.ndim - 2
            else s
            for ax, (s, n) in enumerate(zip(boxes[label - 1], labels.shape, strict=True))
        )
        mask = labels[box] == label
        pixels = np.asarray(image[box])
        data = (
            _rgba(pixels, mask, channels)
            if background == "transparent"
            else _zeroed(pixels, mask, channels)
        )
        rows, cols = box[-2], box[-1]
        crops.append(
            ObjectCrop(
                label,
                data,
                mask,
                (rows.start, cols.start, rows.stop, cols.stop),
                (box[0].start, box[0].stop) if labels.ndim == 3 else None,
            )
        )
    return crops


def _opaque(dtype: np.dtype):
    return np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0


def _zeroed(pixels: np.ndarray, mask: np.ndarray, channels: int) -> np.ndarray:
    inside = mask[..., None] if channels else mask
    return np.where(inside, pixels, np.zeros((), pixels.dtype))


def _rgba(pixels: np.ndarray, mask: np.ndarray, channels: int) -> np.ndarray:
    """RGBA in the image's dtype: gray is repeated, alpha is opaque on the mask only."""
    if channels == 0:
        rgb = np.repeat(pixels[..., None], 3, axis=-1)
    elif channels == 1:
        rgb = np.repeat(pixels, 3, axis=-1)
    elif channels == 2:
        rgb = np.concatenate([pixels, np.zeros_like(pixels[..., :1])], axis=-1)
    else:
        rgb = pixels[..., :3]
    alpha = np.where(mask, _opaque(pixels.dtype), 0).astype(pixels.dtype)
    if channels == 4:
        alpha = np.minimum(alpha, pixels[..., 3])
    rgb = np.where(mask[..., None], rgb, np.zeros((), pixels.dtype))
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


def save_objects(
    crops: list[ObjectCrop],
    folder: str | Path,
    fmt: str = "png",
    prefix: str = "object",
    contrast_limits: tuple[float, float] | None = None,
) -> list[Path]:
    """Write each crop to ``folder/<prefix>_<label>.<fmt>`` (PNG for 2D crops, or TIFF).

    Crops through time are always written as TIFF stacks, in the image's dtype. PNG crops are
    8-bit: other dtypes are scaled to 0-255 between ``contrast_limits`` (one mapping for all).
    """
    if fmt not in ("png", "tif"):
        raise SAM2Error(f"Objects are saved as png or tif, not {fmt!r}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for crop in crops:
        stack = crop.frames is not None
        path = folder / f"{prefix}_{crop.label:04d}.{'tif' if stack else fmt}"
        if path.suffix == ".png":
            import imageio.v3 as iio

            iio.imwrite(path, _to_uint8(crop, contrast_limits))
        else:
            import tifffile

            tifffile.imwrite(path, crop.data)
        paths.append(path)
    return paths


def _to_uint8(crop: ObjectCrop, limits) -> np.ndarray:
    """An 8-bit copy of a crop for PNG: colour scaled between ``limits``, alpha kept binary."""
    if crop.data.dtype == np.uint8:
        return crop.data
    if limits is None:
        raise SAM2Error(
            f"PNG crops are 8-bit but the image is {crop.data.dtype}: pass "
            "contrast_limits=(low, high), or save as tif to keep the values."
        )
    low, high = limits
    scaled = np.clip((crop.data.astype(np.float32) - low) / (high - low) * 255, 0, 255)
    scaled = np.round(scaled).astype(np.uint8)
    if crop.data.ndim == crop.mask.ndim + 1 and crop.data.shape[-1] == 4:
        scaled[..., 3] = np.where(crop.mask, 255, 0)
    return scaled
