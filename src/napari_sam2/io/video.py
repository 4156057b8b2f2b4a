"""Video files (mp4, avi, mov) as lazy arrays, decoded with PyAV a frame at a time.

``VideoFile`` looks like a read-only (T, H, W, 3) uint8 array: napari can show it as a layer,
and the propagation engine can read it as a stack, while only the frames asked for (and the
few around them that decoding passes through) are ever decoded and held. Opening a file reads
its packet index (no decoding), so frame counts and seeking are exact.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..engine.errors import SAM2Error

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".m4v", ".mkv")
# Decoded frames kept in memory, at most (per file).
CACHE_BYTES = 256 * 2**20
# Going forward by fewer frames than this keeps decoding instead of seeking.
_SEEK_THRESHOLD = 32


class VideoFile:
    """A video file as a lazy (T, H, W, 3) uint8 array: ``video[i]`` decodes frame ``i``.

    Indexing accepts what napari and numpy use on the first axis — an int, a slice, a list of
    ints — optionally followed by indices of the other axes. Decoded frames are kept in a
    small LRU cache; forward reads continue the decoder, other reads seek to the nearest
    keyframe. Safe to read from several threads (one decoder per file, behind a lock).
    """

    def __init__(self, path: str | Path, cache_bytes: int = CACHE_BYTES):
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise SAM2Error(f"Video file {self.path} does not exist.")
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_size = 2
        self.frames_decoded = 0
        try:
            self._container = av.open(str(self.path))
            streams = self._container.streams.video
            if not streams:
                raise SAM2Error(f"{self.path.name} has no video stream.")
            self._stream = streams[0]
            self._stream.thread_type = "AUTO"
            self._pts = self._index_frames()
            first = self._decode_from(0)
        except SAM2Error:
            raise
        except (av.FFmpegError, OSError, StopIteration, ValueError) as err:
            raise _corrupt(self.path, err) from err
        if not self._pts:
            raise SAM2Error(f"{self.path.name} contains no video frames: is the file complete?")
        self.shape = (len(self._pts), *first.shape)
        self.dtype = np.dtype(np.uint8)
        self.cache_size = int(max(2, min(64, cache_bytes // max(1, first.nbytes))))

    # -------------------------------------------------------------------- array protocol
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def fps(self) -> float | None:
        rate = self._stream.average_rate
        return float(rate) if rate else None

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"VideoFile({str(self.path)!r}, shape={self.shape}, dtype=uint8)"

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            key = _expand_ellipsis(key, self.ndim)
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(first, (int, np.integer)):
            index = int(first) + len(self) if first < 0 else int(first)
            if not 0 <= index < len(self):
                raise IndexError(f"frame {first} is out of range for {len(self)} frames")
            return self.frame(index)[rest]
        if isinstance(first, slice):
            indices = range(*first.indices(len(self)))
        else:
            indices = np.arange(len(self))[np.asarray(first)].reshape(-1)
        frames = [self.frame(int(i))[rest] for i in indices]
        if not frames:
            empty = np.zeros((1, *self.shape[1:]), self.dtype)[(slice(0, 0), *rest)]
            return empty
        return np.stack(frames)

    def take(self, indices, axis=None, out=None, mode="raise"):
        """``np.take`` along the frame axis decodes only those frames (numpy calls this)."""
        if axis not in (0, -self.ndim) or out is not None:
            raise NotImplementedError("VideoFile.take reads along the frame axis only")
        return self[indices]

    # ------------------------------------------------------------------------- decoding
    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as an (H, W, 3) uint8 array (decoded now or from the cache)."""
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
            import av

            try:
                return self._decode_from(index)
            except (av.FFmpegError, OSError, ValueError) as err:
                raise _corrupt(self.path, err) from err

    def _index_frames(self) -> list[int]:
        """Presentation timestamps of every frame, from the packets (nothing is decoded)."""
        stamps = []
        for packet in self._container.demux(self._stream):
            if packet.size == 0:
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None:
                stamps.append(stamp)
        self._decoder = None
        self._next = None
        return sorted(set(stamps))

    def _decode_from(self, index: int) -> np.ndarray:
        """Decode until frame ``index``, caching the frames passed on the way."""
        if (
            self._decoder is None
            or self._next is None
            or not (0 <= index - self._next < _SEEK_THRESHOLD)
        ):
            self._container.seek(
                self._pts[index], stream=self._stream, backward=True, any_frame=False
            )
            self._decoder = self._container.decode(self._stream)
            self._next = None
        for decoded in self._decoder:
            stamp = decoded.pts if decoded.pts is not None else decoded.dts
            if stamp is None:
                position = self._next if self._next is not None else index
            else:
                position = bisect.bisect_left(self._pts, stamp)
            self._next = position + 1
            if position > index:
                break  # the target had no decodable frame: fall through to the error
            array = decoded.to_ndarray(format="rgb24")
            self.frames_decoded += 1
            self._cache[position] = array
            self._cache.move_to_end(position)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            if position == index:
                return array
        self._decoder = None
        self._next = None
        raise ValueError(f"frame {index} could not be decoded")

    def close(self) -> None:
        with self._lock:
            self._container.close()
            self._cache.clear()


def _expand_ellipsis(key: tuple, ndim: int) -> tuple:
    at = next(i for i, k in enumerate(key) if k is Ellipsis)
    fill = ndim - (len(key) - 1)
    return key[:at] + (slice(None),) * fill + key[at + 1 :]


def _corrupt(path: Path, err: Exception) -> SAM2Error:
    return SAM2Error(
        f"Could not read the video {path.name}: it is corrupt, incomplete or in a format "
        f"FFmpeg does not know ({type(err).__name__}: {err}). Re-export it (e.g. as H.264 "
        "mp4) or open it as an image sequence."
    )


def read_video(path: str | Path) -> list[tuple]:
    """napari layer data for a video file: one lazy RGB image layer."""
    video = VideoFile(path)
    meta = {"name": Path(path).stem, "rgb": True, "metadata": {"path": str(path)}}
    if video.fps:
        meta["metadata"]["fps"] = video.fps
    return [(video, meta, "image")]


def napari_get_reader(path):
    """npe2 reader contribution: ``read_video`` for one .mp4/.avi/.mov file, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, Path)) or Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        return None
    return read_video
