"""Background replacement: keep the segmented objects, replace every other pixel, frame by frame.

The replacement is a colour, a Gaussian-blurred copy of the frame, or another image or video.
Frames are produced lazily (``iter_replaced``, or ``lazy_replaced`` as a dask array for a napari
layer), so a long video is never held in memory, and can be exported as an mp4 (PyAV) or a
TIFF stack, written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .engine.errors import SAM2Error
from .files import check_export_path

MODES = ("color", "blur", "image")


def replace_frame(
    frame: np.ndarray,
    labels: np.ndarray,
    mode: str = "color",
    color: float | Sequence[float] = 0,
    sigma: float = 8.0,
    other: np.ndarray | None = None,
    keep: Sequence[int] | None = None,
) -> np.ndarray:
    """One (H, W[, C]) frame with the pixels outside the objects replaced, in its dtype.

    ``labels`` (H, W) marks the objects; ``keep`` limits them to some ids. ``color`` is one
    value or one per channel; ``sigma`` is the blur's standard deviation in pixels; ``other``
    is the replacement image (resized to the frame if needed; gray is repeated over channels).
    """
    frame = np.asarray(frame)
    labels = np.asarray(labels)
    if frame.shape[:2] != labels.shape:
        raise SAM2Error(f"Frame {frame.shape} and labels {labels.shape} differ in size.")
    objects = labels > 0 if keep is None else np.isin(labels, list(keep))
    if mode == "color":
        fill = _color(color, frame)
    elif mode == "blur":
        from skimage.filters import gaussian

        blurred = gaussian(
            frame.astype(np.float32),
            sigma=sigma,
            channel_axis=-1 if frame.ndim == 3 else None,
            preserve_range=True,
        )
        fill = _cast(blurred, frame.dtype)
    elif mode == "image":
        if other is None:
            raise SAM2Error("mode='image' needs other= (an image or a video frame).")
        fill = _fit(np.asarray(other), frame)
    else:
        raise SAM2Error(f"Unknown background mode {mode!r}: choose one of {MODES}.")
    inside = objects[..., None] if frame.ndim == 3 else objects
    return np.where(inside, frame, fill).astype(frame.dtype, copy=False)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.round(values), info.min, info.max)
    return values.astype(dtype)


def _color(color, frame: np.ndarray) -> np.ndarray:
    value = np.asarray(color, dtype=np.float64).reshape(-1)
    channels = frame.shape[2] if frame.ndim == 3 else 1
    if value.size not in (1, channels):
        raise SAM2Error(
            f"The colour {tuple(value)} has {value.size} values but the frames have "
            f"{channels} channel(s): give one value or one per channel."
        )
    value = value if frame.ndim == 3 else value[0]
    return _cast(np.asarray(value), frame.dtype)


def _fit(other: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """``other`` with the frame's size, channels and dtype."""
    if other.ndim == 2 and frame.ndim == 3:
        other = np.repeat(other[..., None], frame.shape[2], axis=-1)
    elif other.ndim == 3 and frame.ndim == 2:
        other = other[..., :3].mean(axis=-1)
    elif other.ndim == 3 and other.shape[2] != frame.shape[2]:
        other = other[..., : frame.shape[2]]
        if other.shape[2] != frame.shape[2]:
            raise SAM2Error(f"Cannot use a {other.shape} image behind {frame.shape} frames.")
    if other.shape[:2] != frame.shape[:2]:
        from skimage.transform import resize

        other = resize(other.astype(np.float32), frame.shape, preserve_range=True, order=1)
    return _cast(other, frame.dtype)


def _frame_labels(labels, t: int) -> np.ndarray:
    return np.asarray(labels if labels.ndim == 2 else labels[t])


def _other_frame(other, t: int):
    """Frame ``t`` of a replacement video (looped), or the replacement image itself.

    A video is (T, H, W, C) or (T, H, W); a 3D array whose last axis has 3 or 4 entries is an
    RGB(A) image.
    """
    if other is None:
        return None
    is_video = other.ndim == 4 or (other.ndim == 3 and other.shape[-1] not in (3, 4))
    return np.asarray(other[t % len(other)]) if is_video else np.asarray(other)


def iter_replaced(frames, labels, **options) -> Iterator[np.ndarray]:
    """Replaced frames of a (T, H, W[, C]) video, one at a time (numpy, dask or zarr input).

    ``labels`` is (T, H, W), or (H, W) for the same objects in every frame; ``options`` are
    those of ``replace_frame``; a video given as ``other`` is read frame by frame (and looped
    if it is shorter).
    """
    _check_video(frames, labels)
    other = options.pop("other", None)
    for t in range(len(frames)):
        yield replace_frame(
            np.asarray(frames[t]),
            _frame_labels(labels, t),
            other=_other_frame(other, t),
            **options,
        )


def lazy_replaced(frames, labels, **options):
    """The replaced video as a dask array computed frame by frame (for a napari layer)."""
    import dask
    import dask.array as da

    _check_video(frames, labels)
    other = options.pop("other", None)
    sample = replace_frame(
        np.asarray(frames[0]),
        _frame_labels(labels, 0),
        other=_other_frame(other, 0),
        **options,
    )

    def one(t):
        return replace_frame(
            np.asarray(frames[t]),
            _frame_labels(labels, t),
            other=_other_frame(other, t),
            **options,
        )

    planes = [
        da.from_delayed(dask.delayed(one)(t), sample.shape, sample.dtype)
        for t in range(len(frames))
    ]
    return da.stack(planes)


def _check_video(frames, labels) -> None:
    if frames.ndim not in (3, 4):
        raise SAM2Error(f"Expected a (T, H, W[, C]) video, got shape {tuple(frames.shape)}.")
    if labels.ndim == 3 and labels.shape[0] != frames.shape[0]:
        raise SAM2Error(f"{labels.shape[0]} label frames for {frames.shape[0]} video frames.")
    if tuple(labels.shape[-2:]) != tuple(frames.shape[1:3]):
        raise SAM2Error(f"Labels {labels.shape} do not match frames {tuple(frames.shape)}.")


def _temporary(path: Path) -> Path:
    return path.with_name(f".~napari-sam2-{uuid.uuid4().hex[:8]}-{path.name}")


def write_tiff_stack(frames: Iterable[np.ndarray], path: str | Path) -> Path:
    """Write frames one page at a time to a TIFF stack, atomically."""
    import tifffile

    path = Path(path)
    temporary = _temporary(path)
    try:
        with tifffile.TiffWriter(temporary, bigtiff=True) as tif:
            for frame in frames:
                tif.write(frame, contiguous=True)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_mp4(
    frames: Iterable[np.ndarray],
    path: str | Path,
    fps: float = 10,
    contrast_limits: tuple[float, float] | None = None,
    codec: str = "libx264",
) -> Path:
    """Encode frames as H.264 mp4 with PyAV, atomically.

    Non-8-bit frames are scaled to 0-255 between ``contrast_limits`` (one mapping for the
    whole video: no flicker); odd sizes are padded by one pixel (yuv420p needs even sizes).
    """
    import av

    path = Path(path)
    temporary = _temporary(path)
    try:
        with av.open(str(temporary), mode="w", format="mp4") as container:
            stream = None
            for frame in frames:
                rgb = _to_rgb8(np.asarray(frame), contrast_limits)
                if stream is None:
                    stream = container.add_stream(codec, rate=int(round(fps)))
                    stream.height = rgb.shape[0] + rgb.shape[0] % 2
                    stream.width = rgb.shape[1] + rgb.shape[1] % 2
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "18"}
                pad = ((0, stream.height - rgb.shape[0]), (0, stream.width - rgb.shape[1]), (0, 0))
                rgb = np.pad(rgb, pad, mode="edge")
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
            if stream is None:
                raise SAM2Error("No frames to write.")
            for packet in stream.encode():
                container.mux(packet)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _to_rgb8(frame: np.ndarray, limits) -> np.ndarray:
    if frame.dtype != np.uint8:
        if limits is None:
            raise SAM2Error(
                "Frames that are not 8-bit need contrast_limits=(low, high) for the mp4."
            )
        low, high = limits
        frame = np.clip((frame.astype(np.float32) - low) / (high - low) * 255, 0, 255)
        frame = np.round(frame).astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    elif frame.shape[2] == 4:
        frame = frame[..., :3]
    elif frame.shape[2] != 3:
        raise SAM2Error(f"An mp4 needs gray or RGB frames, got {frame.shape[2]} channels.")
    return np.ascontiguousarray(frame)


def export_replaced(frames, labels, path: str | Path, fps: float = 10, **options) -> Path:
    """Replace the background of a video and write it as .mp4 or .tif (by ``path``'s suffix).

    For an mp4 of non-8-bit frames, the contrast limits are taken once for the whole video
    (stack-wide percentiles) unless ``contrast_limits`` is given.
    """
    path = check_export_path(path, (".mp4", ".tif", ".tiff"))
    limits = options.pop("contrast_limits", None)
    replaced = iter_replaced(frames, labels, **options)
    if path.suffix.lower() in (".tif", ".tiff"):
        return write_tiff_stack(replaced, path)
    if limits is None and np.dtype(frames.dtype) != np.uint8:
        from .engine.frames import Normalization

        norm = Normalization.for_data(frames, frame_axis=0)
        limits = (norm.low[0], norm.high[0])
    return write_mp4(replaced, path, fps, limits)
