"""Frames of a stack as sam2's video predictor reads them: prepared on demand, read ahead."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ..errors import SAM2Error
from ..frames import FrameSource, Normalization, model_input
from ..plane import check_pixel_dtype


class ModelFrames:
    """Frames of a ``FrameSource`` as sam2's video predictor reads them, prepared on demand.

    ``frames[i]`` is a (3, S, S) float32 tensor (S the model's image size), normalised the
    way sam2 expects. Only ``cache_size`` prepared frames are held; after each access the next
    ``read_ahead`` frames in the direction of travel are read by ``workers`` background
    threads, so reading (dask, zarr, video decoding) overlaps with the model. On a GPU, read
    at least a batch of the image encoder ahead, with several workers: the tracking loop must
    never wait for a frame. On a CPU the readers only read; the frame's float work runs when
    the model asks for it, since torch's threads in a reader and in the model would share the
    same cores (2 cores, packaged micro, 512² frames: 12 frames/s with it in the reader, 17
    without, as the official predictor with its frames loaded up front).
    """

    def __init__(
        self,
        source: FrameSource,
        image_size: int,
        cache_size: int = 4,
        read_ahead: int = 2,
        device: torch.device | str = "cpu",
        workers: int = 1,
    ):
        self.source = source
        self.image_size = image_size
        self.device = torch.device(device)
        self.cache_size = max(cache_size, read_ahead + 1)
        self.read_ahead = read_ahead
        self.step = 1  # +1 while tracking forward, -1 backward: where to read ahead
        self.frames_prepared = 0
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="napari-sam2-frames")

    def __len__(self) -> int:
        return len(self.source)

    @property
    def held(self) -> int:
        """How many prepared frames are in memory now (cached or being read)."""
        return len(self._cache) + len(self._pending)

    def prepare(self, index: int) -> torch.Tensor:
        """Read, normalise, resize and standardise one frame (no caching).

        On a GPU the raw pixels are copied there and all float work runs there: the reader
        threads then only read, and hold Python's lock (which the tracking loop needs) briefly.
        """
        return self._model_frame(self.source.raw_plane(index))

    def _model_frame(self, plane: np.ndarray) -> torch.Tensor:
        frame = model_input(plane, self.source.normalization, self.image_size, self.device)
        with self._lock:
            self.frames_prepared += 1
        return frame

    def _in_reader(self, index: int) -> torch.Tensor | np.ndarray:
        """What a reader thread does for a frame: all of it on a GPU, only the reading on a
        CPU (see the class docstring)."""
        if self.device.type == "cpu":
            return self.source.raw_plane(index)
        return self.prepare(index)

    def __getitem__(self, index: int) -> torch.Tensor:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index in self._cache:
            self._cache.move_to_end(index)
            tensor = self._cache[index]
        else:
            future = self._pending.pop(index, None)
            tensor = future.result() if future is not None else self.prepare(index)
            if not isinstance(tensor, torch.Tensor):
                tensor = self._model_frame(tensor)
            self._cache[index] = tensor
        self._read_ahead(index)
        while len(self._cache) + len(self._pending) > self.cache_size and self._cache:
            self._cache.popitem(last=False)
        return tensor

    def _read_ahead(self, index: int) -> None:
        wanted = {index + self.step * k for k in range(1, self.read_ahead + 1)}
        for stale in [i for i in self._pending if i not in wanted]:
            self._pending.pop(stale).cancel()
        for i in sorted(wanted, key=lambda i: abs(i - index)):
            if 0 <= i < len(self) and i not in self._cache and i not in self._pending:
                self._pending[i] = self._pool.submit(self._in_reader, i)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pending.clear()
        self._cache.clear()


def frame_source_for(
    stack,
    frame_axis: int = 0,
    contrast_limits=None,
    channel_axis: int | None = None,
    channels=None,
) -> FrameSource:
    """A ``FrameSource`` for a stack, with the checks and defaults of ``Segmenter.propagate``."""
    if not hasattr(stack, "ndim") or not hasattr(stack, "shape"):
        stack = np.asarray(stack)
    if stack.ndim < 3:
        raise SAM2Error(
            f"Propagation needs a stack (frames × rows × cols), but the image has shape "
            f"{stack.shape}: use predict() for a single image, or pick a 3D layer."
        )
    if not -stack.ndim <= frame_axis < stack.ndim:
        raise SAM2Error(
            f"frame_axis {frame_axis} does not exist in an array of {stack.ndim} axes."
        )
    frame_axis %= stack.ndim
    check_pixel_dtype(stack.dtype)
    if channel_axis is None and stack.ndim == 4 and stack.shape[-1] in (3, 4) and frame_axis != 3:
        channel_axis = -1  # (T, H, W, RGB[A]) like napari's rgb layers
    if stack.ndim - 1 - (channel_axis is not None) != 2:
        raise SAM2Error(
            f"A stack of shape {stack.shape} has more than one frame axis: pick one plane "
            "of the other axes first (e.g. stack[channel]), or pass channel_axis=."
        )
    normalization = None if contrast_limits is None else Normalization.from_limits(contrast_limits)
    return FrameSource(stack, frame_axis, channel_axis, channels, normalization)
