"""Any image array → the float RGB frames SAM2 reads, with one normalisation for a whole stack.

A frame is (H, W, 3) float32 in [0, 1]. The same ``Normalization`` is applied to every frame of
a stack (no per-frame min-max, which would make masks flicker), 16-bit data is scaled between its
contrast limits or stack-wide percentiles (never over 0-65535), and frames are read lazily, one
at a time, from numpy, dask or zarr arrays. Nothing goes through JPEG. Normalisation and the
channel mapping also run on torch tensors, so embedding and propagation do that float work on the
model's device (``model_input``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import SAM2Error

# SAM2 resizes every frame to 1024²; planes larger than this are block-averaged first so a huge
# image never becomes a huge float copy.
MAX_MODEL_SIDE = 2048
# The standardisation sam2 applies to its [0, 1] RGB input (ImageNet statistics).
_IMAGE_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
_IMAGE_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@dataclass(frozen=True)
class Normalization:
    """Maps raw intensities linearly so that ``low`` → 0 and ``high`` → 1 (then clips).

    ``low`` and ``high`` hold one value for all channels or one per model input channel.
    """

    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def from_limits(cls, limits: Sequence[float] | Sequence[Sequence[float]]) -> Normalization:
        arr = np.asarray(limits, dtype=float)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.shape[-1] != 2 or not np.all(np.isfinite(arr)):
            raise SAM2Error(f"Contrast limits must be finite (low, high) pairs, got {limits!r}.")
        if np.any(arr[:, 1] <= arr[:, 0]):
            raise SAM2Error(f"Contrast limits {limits!r} must have high > low.")
        return cls(tuple(arr[:, 0]), tuple(arr[:, 1]))

    @classmethod
    def for_data(
        cls,
        data,
        frame_axis: int | None = None,
        lower: float = 0.5,
        upper: float = 99.8,
        max_frames: int = 16,
        max_values: int = 2_000_000,
    ) -> Normalization:
        """Defaults for an array: full range for 8-bit colour, else stack-wide percentiles.

        Percentiles are taken over up to ``max_frames`` frames spread through the stack and a
        regular pixel subsample, so a long lazy stack is never read whole.
        """
        dtype = np.dtype(data.dtype)
        if dtype == np.uint8 and data.ndim >= 3 and data.shape[-1] in (3, 4):
            return cls((0.0,), (255.0,))
        if frame_axis is not None and data.shape[frame_axis] > max_frames:
            picks = np.linspace(0, data.shape[frame_axis] - 1, max_frames).round().astype(int)
            data = np.stack([read_frame(data, p, frame_axis) for p in picks], axis=frame_axis)
        step = max(1, int(math.sqrt(data.size / max_values)))
        index = tuple(
            slice(None, None, step) if ax >= data.ndim - 2 else slice(None)
            for ax in range(data.ndim)
        )
        sample = np.asarray(data[index])
        if sample.dtype.kind in "iub" and sample.dtype.itemsize <= 2:
            low, high, least, most = _small_integer_percentiles(sample, lower, upper)
        else:
            finite = sample[np.isfinite(sample)].astype(np.float64)
            if finite.size == 0:
                raise SAM2Error("The image has no finite pixel values (all NaN or inf).")
            low, high, least, most = np.percentile(finite, [lower, upper, 0, 100])
        if high <= low:
            low, high = least, most
        if high <= low:
            high = low + 1.0
        return cls((float(low),), (float(high),))

    def apply(self, values: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """float32 values in [0, 1] (NaN → 0); a torch tensor stays on its device."""
        if isinstance(values, torch.Tensor):
            if len(self.low) == 1:  # plain numbers: nothing to copy to the device
                low, span = self.low[0], self.high[0] - self.low[0]
            else:
                low = torch.tensor(self.low, device=values.device)
                span = torch.tensor(self.high, device=values.device) - low
            out = (values.to(torch.float32) - low) / span
            return out.nan_to_num_(nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
        low = np.asarray(self.low, dtype=np.float32)
        span = np.asarray(self.high, dtype=np.float32) - low
        out = (values.astype(np.float32, copy=False) - low) / span
        np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(out, 0.0, 1.0, out=out)


def _small_integer_percentiles(sample: np.ndarray, lower: float, upper: float) -> tuple:
    """``np.percentile``'s two values (linear interpolation), the minimum and the maximum of
    8- or 16-bit integers, from a histogram: 5× faster than sorting on a 1024² plane."""
    values = sample.ravel()
    offset = int(values.min())
    cumulative = np.cumsum(np.bincount(values.astype(np.int32) - offset))
    n = cumulative[-1]

    def order_statistic(k: int) -> int:  # the k-th smallest value (k from 0)
        return int(np.searchsorted(cumulative, k, side="right")) + offset

    found = []
    for q in (lower, upper):
        position = q / 100 * (n - 1)
        k = int(position)
        below, above = order_statistic(k), order_statistic(min(k + 1, n - 1))
        found.append(below + (position - k) * (above - below))
    return found[0], found[1], offset, offset + len(cumulative) - 1


def read_frame(data, index: int, frame_axis: int) -> np.ndarray:
    """One frame of a stack by plain indexing, which numpy, dask, zarr and lazy video arrays
    all answer by reading that frame only (``np.take`` reads a whole zarr array)."""
    return np.asarray(data[(slice(None),) * (frame_axis % data.ndim) + (int(index),)])


def select_channels(
    plane: np.ndarray, channel_axis: int | None, channels: Sequence[int] | None
) -> np.ndarray:
    """(H, W) or (H, W, C) with C ≤ 3: the channels that feed the model's R, G and B inputs.

    Gray stays single-channel (it is repeated later), RGBA drops alpha, and a multichannel
    plane uses ``channels`` (default: the first three).
    """
    if channel_axis is None:
        if plane.ndim != 2:
            raise SAM2Error(
                f"Expected a 2D plane but got shape {plane.shape}; pass channel_axis= for "
                "multichannel data."
            )
        return plane
    plane = np.moveaxis(plane, channel_axis, -1)
    if plane.ndim != 3:
        raise SAM2Error(f"Expected a 2D plane with channels but got shape {plane.shape}.")
    return plane[..., channel_picks(plane.shape[-1], channels)]


def channel_picks(n: int, channels: Sequence[int] | None) -> list[int]:
    """The channels of ``n`` that feed the model's R, G, B inputs (default: the first three)."""
    picks = list(channels) if channels is not None else list(range(min(n, 3)))
    if not 1 <= len(picks) <= 3 or any(not 0 <= c < n for c in picks):
        raise SAM2Error(f"Pick 1 to 3 channels among 0..{n - 1}, got {channels!r}.")
    return picks


def shrink_factor(shape: tuple[int, ...]) -> int:
    """The integer factor a plane of ``shape`` is block-averaged by before the model (1: none)."""
    return max(1, math.ceil(max(shape[:2]) / MAX_MODEL_SIDE))


def shrink(plane: np.ndarray) -> np.ndarray:
    """``plane`` block-averaged by ``shrink_factor`` (float32), or unchanged if not huge."""
    if min(plane.shape[:2]) < 1:
        raise SAM2Error(f"The image plane {plane.shape[:2]} is empty.")
    factor = shrink_factor(plane.shape)
    if factor == 1:
        return plane
    h, w = (plane.shape[0] // factor) * factor, (plane.shape[1] // factor) * factor
    shape = (h // factor, factor, w // factor, factor) + plane.shape[2:]
    # Block mean accumulated in float32 without a float copy of the whole plane.
    return np.asarray(plane[:h, :w]).reshape(shape).mean(axis=(1, 3), dtype=np.float32)


def to_rgb(frame: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """(h, w, 3) from a normalised (h, w) or (h, w, 1..3) frame, numpy or torch."""
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[-1] == 1:
        return frame[..., [0, 0, 0]]  # gray → R = G = B
    if frame.shape[-1] == 2:  # R, G and a blank B
        parts = [frame, frame[..., :1] * 0]
        join = torch.cat if isinstance(frame, torch.Tensor) else np.concatenate
        return join(parts, -1)
    return frame


def to_model_frame(plane: np.ndarray, normalization: Normalization) -> np.ndarray:
    """Normalised (h, w, 3) float32 frame, shrunk by ``shrink_factor`` if the plane is huge."""
    frame = to_rgb(normalization.apply(np.asarray(shrink(plane))))
    return np.ascontiguousarray(frame, dtype=np.float32)


def model_input(
    plane: np.ndarray, normalization: Normalization, image_size: int, device: torch.device
) -> torch.Tensor:
    """The (3, S, S) float32 tensor on ``device`` that SAM2's image encoder reads.

    The plane is shrunk if huge, then its raw pixels are copied to ``device``, which does all
    the float work: normalisation, RGB, sam2's antialiased bilinear resize to S² and its
    standardisation. On a GPU that takes a fraction of a millisecond where the same steps on
    the host take tens.
    """
    frame = to_rgb(normalization.apply(to_tensor(shrink(plane)).to(device)))
    frame = _resize(frame.permute(2, 0, 1)[None], image_size)
    mean, std = _IMAGE_MEAN.to(frame.device), _IMAGE_STD.to(frame.device)
    return ((frame[0] - mean) / std).contiguous()


def _resize(frame: torch.Tensor, size: int) -> torch.Tensor:
    """sam2's resize of a (1, 3, h, w) batch to size², on the CPU where the device has no
    antialiased bilinear kernel (MPS before torch 2.7)."""

    def resize(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )

    try:
        return resize(frame)
    except NotImplementedError:
        return resize(frame.cpu()).to(frame.device)


def to_tensor(plane: np.ndarray) -> torch.Tensor:
    """A plane as a CPU tensor without a float copy (dtypes torch lacks are widened)."""
    plane = np.asarray(plane)
    if plane.dtype == np.uint16:
        plane = plane.astype(np.int32)
    elif plane.dtype == bool:
        plane = plane.view(np.uint8)
    elif plane.dtype.kind not in "iuf" or plane.dtype in (np.uint32, np.uint64, np.float16):
        plane = plane.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(plane, dtype=plane.dtype.newbyteorder("=")))


class FrameSource:
    """Lazy, normalised frames of a (T, H, W[, C]) stack: ``source[i]`` reads frame ``i`` only.

    ``data`` may be numpy, dask or zarr; ``frame_axis`` and ``channel_axis`` index ``data``.
    """

    def __init__(
        self,
        data,
        frame_axis: int = 0,
        channel_axis: int | None = None,
        channels: Sequence[int] | None = None,
        normalization: Normalization | None = None,
    ):
        spatial = data.ndim - 1 - (channel_axis is not None)
        if spatial != 2:
            raise SAM2Error(
                f"A stack needs one frame axis and two spatial axes, got shape {data.shape}."
            )
        self.data = data
        self.frame_axis = frame_axis % data.ndim
        self.channel_axis = None if channel_axis is None else channel_axis % data.ndim
        self.channels = channels
        self.normalization = normalization or Normalization.for_data(data, self.frame_axis)

    def __len__(self) -> int:
        return self.data.shape[self.frame_axis]

    def raw_plane(self, index: int) -> np.ndarray:
        plane = read_frame(self.data, index, self.frame_axis)
        channel_axis = self.channel_axis
        if channel_axis is not None and channel_axis > self.frame_axis:
            channel_axis -= 1
        return select_channels(plane, channel_axis, self.channels)

    @property
    def plane_shape(self) -> tuple[int, int]:
        shape = [
            n
            for ax, n in enumerate(self.data.shape)
            if ax not in (self.frame_axis, self.channel_axis)
        ]
        return shape[0], shape[1]

    def __getitem__(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return to_model_frame(self.raw_plane(index % len(self)), self.normalization)
