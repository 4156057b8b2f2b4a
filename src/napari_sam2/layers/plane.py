"""Which 2D plane of an nD image layer is on screen, and how to read it and its labels.

Layer data axes, not world axes, are used throughout; world ↔ data conversion goes through the
layers' own transforms so scale and translate are respected.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..engine.errors import SAM2Error
from ..engine.plane import unread

MAX_NDIM = 4  # (t, z, y, x) plus an optional channel axis


@dataclass(frozen=True)
class Plane:
    """A plane of an image layer: ``index`` holds the fixed position on every other axis.

    ``index`` has one entry per layer data axis (RGB channels excluded): an int for axes that
    are fixed, None for the two displayed axes and the channel axis.
    """

    index: tuple[int | None, ...]
    rows_axis: int
    cols_axis: int
    channel_axis: int | None

    @property
    def key(self) -> tuple:
        return self.index

    def read(self, data) -> np.ndarray:
        """The (H, W) or (H, W, C) raw pixels of this plane (RGB last axis kept last)."""
        return self._channels_last(np.asarray(data[self._selection()]))

    def shape(self, data) -> tuple[int, int]:
        """(rows, cols) of this plane of ``data``."""
        return data.shape[self.rows_axis], data.shape[self.cols_axis]

    def view(self, data):
        """The plane like ``read`` but unread: a numpy view, or a dask array (``unread``)."""
        return self._channels_last(unread(data)[self._selection()])

    def _selection(self) -> tuple:
        return tuple(slice(None) if i is None else i for i in self.index)

    def _channels_last(self, plane):
        if self.channel_axis is None:
            return plane
        kept = [ax for ax, i in enumerate(self.index) if i is None]
        return np.moveaxis(plane, kept.index(self.channel_axis), -1)

    def on_level(self, factors, shape) -> Plane:
        """This plane in a pyramid level of ``shape``, ``factors`` times smaller an axis."""
        index = tuple(
            None if i is None else min(round(i / f), n - 1)
            for i, f, n in zip(self.index, factors, shape, strict=False)
        )
        return replace(self, index=index)

    def labels_index(self) -> tuple:
        """Index of this plane in a labels array shaped like the image minus its channel axis."""
        return tuple(
            slice(None) if i is None else i
            for ax, i in enumerate(self.index)
            if ax != self.channel_axis
        )

    def on_plane(self, coords: np.ndarray) -> np.ndarray:
        """Which rows of (N, ndim) image-data coordinates lie on this plane."""
        keep = np.ones(len(coords), bool)
        for ax, i in enumerate(self.index):
            if i is not None:
                keep &= np.abs(coords[:, ax] - i) < 0.5
        return keep

    def rows_cols(self, coords: np.ndarray) -> np.ndarray:
        return coords[:, [self.rows_axis, self.cols_axis]]


def image_shape(layer) -> tuple[int, ...]:
    """The image layer's data shape without the RGB axis."""
    return tuple(layer.data.shape[:-1] if layer.rgb else layer.data.shape)


def displayed_plane(viewer, layer, channel_axis: int | None = None) -> Plane:
    """The plane of ``layer`` that the viewer shows now."""
    if viewer.dims.ndisplay != 2:
        raise SAM2Error("Switch the viewer to 2D view to segment a plane.")
    ndim = layer.ndim
    extra = ndim - 2 - (channel_axis is not None)
    if extra > MAX_NDIM - 2:
        raise SAM2Error(
            f"The layer has {ndim} dimensions: up to {MAX_NDIM} (e.g. t, z, y, x) plus one "
            "channel axis are supported. Select a sub-stack with napari first."
        )
    offset = viewer.dims.ndim - ndim
    # In data-axis order, as the plane is read (a transposed view only changes the display).
    displayed = sorted(ax - offset for ax in viewer.dims.displayed if ax - offset >= 0)
    if len(displayed) != 2:
        raise SAM2Error("The image layer has fewer than two displayed axes.")
    if channel_axis is not None and channel_axis in displayed:
        raise SAM2Error("The channel axis cannot be one of the two displayed axes.")
    position = layer.world_to_data(viewer.dims.point)
    shape = image_shape(layer)
    index = []
    for ax in range(ndim):
        if ax in displayed or ax == channel_axis:
            index.append(None)
        else:
            index.append(int(np.clip(np.round(position[ax]), 0, shape[ax] - 1)))
    return Plane(tuple(index), displayed[0], displayed[1], channel_axis)


def to_image_coords(source_layer, image_layer, coords: np.ndarray) -> np.ndarray:
    """(N, source ndim) data coordinates of ``source_layer`` → image-layer data coordinates."""
    out = np.empty((len(coords), image_layer.ndim))
    for n, point in enumerate(coords):
        world = np.asarray(source_layer.data_to_world(point))
        out[n] = np.asarray(image_layer.world_to_data(world))[-image_layer.ndim :]
    return out


def move_to_frame(viewer, layer, axis: int, frame: int) -> None:
    """Move the viewer's slider of ``layer``'s data axis ``axis`` to ``frame``."""
    point = np.zeros(layer.ndim)
    point[axis] = frame
    world = layer.data_to_world(point)[axis]
    viewer.dims.set_point(viewer.dims.ndim - layer.ndim + axis, world)


def pixels(layer):
    """The image layer's full-resolution array: its data, or a multiscale layer's first level
    (OME-Zarr pyramids, say), which is read lazily a window at a time like any large plane."""
    if not getattr(layer, "multiscale", False):
        return layer.data
    levels = list(layer.data)
    for n in range(1, len(levels)):
        before, now = levels[n - 1].shape, levels[n].shape
        if len(now) != len(before) or any(b < a for a, b in zip(now, before, strict=True)):
            raise SAM2Error(
                f"The levels of the multiscale layer '{layer.name}' disagree: level {n} has "
                f"shape {now} after {before}. Give the levels from the largest down."
            )
    return levels[0]


@dataclass(frozen=True)
class PyramidLevel:
    """A coarser level of a multiscale layer: its number, its pixels, the plane on it, and
    the level-0 pixels one of its pixels spans along the plane's rows and columns."""

    index: int
    data: object
    plane: Plane
    factors: tuple[float, float]


def coarsest_level(
    layer, plane: Plane, seen: tuple[float, float], least: int
) -> PyramidLevel | None:
    """The coarsest level of a multiscale layer on which ``seen`` (rows, cols of level 0)
    still spans at least ``least`` pixels a side; None where only level 0 does."""
    if not getattr(layer, "multiscale", False):
        return None
    full, found = pixels(layer).shape, None
    for n, data in enumerate(list(layer.data)[1:], start=1):
        factors = np.divide(full, data.shape)
        rows, cols = float(factors[plane.rows_axis]), float(factors[plane.cols_axis])
        same_channels = plane.channel_axis is None or factors[plane.channel_axis] == 1
        if not same_channels or max(seen[0] / rows, seen[1] / cols) < least:
            break
        found = PyramidLevel(n, data, plane.on_level(factors, data.shape), (rows, cols))
    return found
