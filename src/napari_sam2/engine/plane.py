"""A 2D plane of any array (numpy, dask, zarr; gray, RGB or multichannel), read a window at a
time so that a huge lazy plane is never read or held whole."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .errors import SAM2Error
from .frames import Normalization, channel_picks

# Percentiles of a lazy plane come from a grid of this many patches by this many, of this many
# pixels a side: a bounded number of chunks, spread wherever the plane's bright and dark parts
# lie.
_PATCH_GRID = 8
_PATCH_SIDE = 128
# A numpy plane is subsampled regularly to about this many pixels (as Normalization.for_data).
_NUMPY_SAMPLE = 2_000_000


def check_pixel_dtype(dtype) -> None:
    """Refuse pixel types the model cannot read, saying how to convert them."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise SAM2Error(
            f"The image is complex ({dtype}): pass its magnitude (np.abs(image)) or its real "
            "part (image.real)."
        )
    if dtype.kind not in "biuf":
        raise SAM2Error(
            f"The image has pixel type {dtype}, not numbers: convert it first, e.g. "
            "image.astype(np.float32)."
        )


def is_dask(data) -> bool:
    return type(data).__module__.startswith("dask.")


def unread(data):
    """``data`` where indexing it reads nothing (numpy views, dask), else wrapped in dask (zarr
    and other stores read on indexing), so that slicing it stays lazy."""
    if isinstance(data, np.ndarray) or is_dask(data):
        return data
    import dask.array as da

    return da.from_array(data, chunks=getattr(data, "chunks", "auto"))


def describe(data) -> str:
    """A name for an array in messages: a dask array's name, a zarr array's path."""
    name = getattr(data, "name", None) or getattr(data, "path", None)
    kind = f"{type(data).__module__.split('.')[0]} array"
    return f"{kind} {name!r} {tuple(data.shape)}" if name else f"{kind} {tuple(data.shape)}"


class LazyPlane:
    """(H, W) or (H, W, ≤3 channels) pixels of ``data``, read by ``read(rows, cols)``.

    ``channel_axis`` and ``channels`` mean what they mean for ``Segmenter.set_image``: the
    picked channels (default: the first three) feed the model's R, G, B inputs.
    """

    def __init__(
        self, data, channel_axis: int | None = None, channels: Sequence[int] | None = None
    ):
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            data = np.asarray(data)
        check_pixel_dtype(data.dtype)
        self.data = data
        self.channel_axis = None if channel_axis is None else channel_axis % max(data.ndim, 1)
        if channel_axis is None and data.ndim != 2:
            raise SAM2Error(
                f"Expected a 2D plane but got shape {tuple(data.shape)}; pass channel_axis= "
                "for multichannel data."
            )
        if channel_axis is not None and data.ndim != 3:
            raise SAM2Error(
                f"Expected a 2D plane with channels but got shape {tuple(data.shape)}."
            )
        spatial = [n for ax, n in enumerate(data.shape) if ax != self.channel_axis]
        self.shape: tuple[int, int] = (int(spatial[0]), int(spatial[1]))
        if min(self.shape) < 1:
            raise SAM2Error(f"The image plane {self.shape} is empty.")
        self.channels = None
        if self.channel_axis is not None:
            self.channels = channel_picks(data.shape[self.channel_axis], channels)

    @classmethod
    def picked(cls, plane) -> LazyPlane:
        """A plane whose channels are already picked: (H, W), or (H, W, ≤3) as R, G, B."""
        return cls(plane, -1 if plane.ndim == 3 else None)

    def read(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """The pixels at ``rows``, ``cols`` (slices, maybe strided) as a numpy array."""
        index: list = [rows, cols]
        if self.channel_axis is not None:
            index.insert(self.channel_axis, slice(None))
        try:
            pixels = np.asarray(self.data[tuple(index)])
        except Exception as err:  # a lazy array's store can fail in any way
            raise SAM2Error(
                f"Could not read pixels [{rows.start}:{rows.stop}, {cols.start}:{cols.stop}] "
                f"of the {describe(self.data)}: {err}. Check that its files are readable."
            ) from err
        if self.channel_axis is not None:
            pixels = np.moveaxis(pixels, self.channel_axis, -1)[..., self.channels]
        return pixels

    def overview(self, max_side: int) -> np.ndarray:
        """The whole plane read every n-th pixel, at most ``max_side`` a side."""
        step = max(1, math.ceil(max(self.shape) / max_side))
        return self.read(slice(None, None, step), slice(None, None, step))

    def normalization(self) -> Normalization:
        """The plane's default normalisation, from a bounded sample of its pixels.

        A numpy plane is subsampled regularly (as ``Normalization.for_data`` does); a lazy
        plane is read in a grid of patches, so only a bounded number of its chunks is read.
        """
        if isinstance(self.data, np.ndarray):
            step = max(1, int(math.sqrt(self.shape[0] * self.shape[1] / _NUMPY_SAMPLE)))
            every = slice(None, None, step)
            return Normalization.for_data(self.read(every, every))
        side, patches = _PATCH_SIDE, []
        for row in _patch_starts(self.shape[0], side):
            for col in _patch_starts(self.shape[1], side):
                patches.append(self.read(slice(row, row + side), slice(col, col + side)))
        flat = np.concatenate([p.reshape(-1, 1, *p.shape[2:]) for p in patches])
        return Normalization.for_data(flat)


class PlaneLevel(NamedTuple):
    """A coarser copy of a plane, e.g. a level of an image pyramid: its pixel (i, j) covers
    the plane's pixels [i·f_r, (i + 1)·f_r) × [j·f_c, (j + 1)·f_c), ``factors`` (f_r, f_c)."""

    plane: LazyPlane
    factors: tuple[float, float]

    @classmethod
    def checked(cls, level, full: LazyPlane) -> PlaneLevel:
        """``level`` (array, (f_r, f_c)) laid out like ``full``, refused if its shape is not
        that of ``full`` shrunk by its factors."""
        data, factors = level
        plane = LazyPlane(data, full.channel_axis, full.channels)
        factors = tuple(float(f) for f in np.asarray(factors, dtype=np.float64).reshape(-1))
        fits = len(factors) == 2 and all(
            math.isfinite(f) and f >= 1 and abs(n * f - whole) <= f
            for n, f, whole in zip(plane.shape, factors, full.shape, strict=True)
        )
        if not fits:
            raise SAM2Error(
                f"A level of shape {plane.shape} with factors {factors} does not cover the "
                f"image {full.shape}: give the factors as image pixels a level pixel, "
                "e.g. (8, 8) for a level 8 times smaller."
            )
        return cls(plane, factors)


def _patch_starts(length: int, side: int) -> list[int]:
    """Starts of up to ``_PATCH_GRID`` patches of ``side`` spread along an axis."""
    if length <= side:
        return [0]
    return sorted({round(s) for s in np.linspace(0, length - side, _PATCH_GRID)})
