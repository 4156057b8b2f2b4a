"""One segmentation of a plane, as the widget runs it off the GUI thread: the request built
from the layers, the plane read from the layer's data, and the masks computed for it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..engine.errors import SAM2Error
from ..engine.frames import Normalization, select_channels
from ..engine.plane import is_dask
from ..engine.prompts import PromptSet
from ..engine.segmenter import Segmenter
from .plane import Plane, PyramidLevel, coarsest_level


class PlaneReader:
    """Reads planes of layer data, keeping the last few of dask arrays.

    A dask plane is computed afresh on every read (0.3-0.7 s a click on a chunked stack), and
    a dask array never changes in place, so its planes can be kept. numpy (cheap to read, and
    edited in place) and zarr (its store can be written) are always read anew.
    """

    def __init__(self, size: int = 4):
        self.size = size
        self._kept: OrderedDict[tuple, tuple[object, np.ndarray]] = OrderedDict()

    def read(self, data, plane: Plane) -> np.ndarray:
        if not is_dask(data):
            return plane.read(data)
        key = (id(data), plane.key)
        if key in self._kept and self._kept[key][0] is data:
            self._kept.move_to_end(key)
            return self._kept[key][1]
        raw = plane.read(data)
        self._kept[key] = (data, raw)  # the array is kept with it, so its id stays its own
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return raw


def field_of_view(layer, plane: Plane, viewer=None) -> tuple[float, float, float, float] | None:
    """The part of ``plane`` on screen, (min_row, min_col, max_row, max_col) in its pixels
    (None before the canvas has drawn it).

    From ``viewer``'s camera and canvas where napari has a canvas model (0.9); else from the
    layer's corner pixels, which napari rounds out to whole chunks on a chunked multiscale
    layer and grows only when the view leaves them (a close view there would look wider than
    it is, and be shrunk).
    """
    if viewer is not None and hasattr(viewer, "canvas"):
        corners = _canvas_corners(layer, plane, viewer)
        if corners is None:
            return None
    else:
        corners = np.asarray(layer.corner_pixels, dtype=float)
        if getattr(layer, "multiscale", False):  # corners are in the level on screen's pixels
            corners = corners * np.asarray(layer.downsample_factors[layer.data_level])
        corners = corners[:, [plane.rows_axis, plane.cols_axis]] + [[0, 0], [1, 1]]
    (r0, c0), (r1, c1) = corners
    if r1 - r0 <= 1 or c1 - c0 <= 1:
        return None
    return (r0, c0, r1, c1)


def _canvas_corners(layer, plane: Plane, viewer) -> np.ndarray | None:
    """The canvas's corners, from the camera's centre and zoom, in the plane's pixels
    ((min_row, min_col), (max_row, max_col)), clipped to the plane."""
    height, width = viewer.canvas.viewbox_size(viewer.layers)
    zoom = viewer.camera.zoom
    if height <= 1 or width <= 1 or zoom <= 0:
        return None
    axes = list(viewer.dims.displayed)[-2:]
    centre = np.asarray(viewer.camera.center, dtype=float)[-2:]
    half = np.array([height, width]) / zoom / 2
    world = np.asarray(viewer.dims.point, dtype=float)
    corners = []
    for sign in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        world[axes] = centre + half * sign
        data = np.asarray(layer.world_to_data(world), dtype=float)
        corners.append(data[[plane.rows_axis, plane.cols_axis]])
    shape = np.asarray(plane.shape(layer.data), dtype=float)
    return np.clip([np.min(corners, axis=0), np.max(corners, axis=0)], 0, shape)


def choose_scale(
    layer, plane: Plane, image_size: int, viewer=None
) -> tuple[tuple[float, float, float, float] | None, PyramidLevel | None, str]:
    """What the user sees decides the scale: (region to segment in, pyramid level to read it
    from, what the widget says).

    A plane no larger than the model input is segmented whole. On a larger one, a view that
    shows more than the model input (zoomed out) is segmented as a whole, downsampled to the
    model input, from the coarsest level of a multiscale layer that still shows it at the
    model input or finer; a closer view gets a native-resolution window around the prompts.
    """
    shape = plane.shape(layer.data)
    if max(shape) <= image_size:
        return None, None, ""
    view = field_of_view(layer, plane, viewer)
    seen = None if view is None else (view[2] - view[0], view[3] - view[1])
    if seen is not None and max(seen) > image_size:
        level = coarsest_level(layer, plane, seen, image_size)
        said = f"segmented on the field of view at 1:{max(seen) / image_size:.1f}"
        return view, level, said + ("" if level is None else f" (pyramid level {level.index})")
    return None, None, "segmented at native resolution (zoom out to segment what you see)"


@dataclass
class SegmentationRequest:
    """What to segment: a plane of an image, and the objects whose prompts changed there.

    ``prompts`` maps object id → its prompts, or None when the object lost all its prompts
    on this plane (its mask is then removed).
    """

    image_layer: object
    labels_layer: object
    data: object
    plane: Plane
    channels: tuple[int, ...] | None
    normalization: Normalization
    prompts: dict[int, PromptSet | None]
    planes: PlaneReader = field(default_factory=PlaneReader)
    # (min_row, min_col, max_row, max_col) of the plane to segment in: the field of view when
    # the plane is larger than the model input and so is the view; None: a native window.
    region: tuple[float, float, float, float] | None = None
    scale: str = ""  # which scale was used, for the widget to say
    level: PyramidLevel | None = None  # a multiscale layer's level to read the region from


def embed(segmenter: Segmenter, request: SegmentationRequest) -> None:
    """Make the request's plane the segmenter's image (cached embeddings); a plane larger than
    the model input is handed over unread, so only the windows segmented are read."""
    if max(request.plane.shape(request.data)) > segmenter.model.image_size:
        raw = request.plane.view(request.data)
    else:
        raw = request.planes.read(request.data, request.plane)
    segmenter.set_plane(_picked(raw, request.channels), request.normalization)


def _picked(raw, channels: tuple[int, ...] | None):
    """A (H, W[, C]) plane with the model's channels picked."""
    return select_channels(raw, -1 if raw.ndim == 3 else None, channels)


def compute(segmenter: Segmenter, request: SegmentationRequest) -> dict:
    """Embed the plane (cached) and predict each changed object; safe off the GUI thread.

    Returns {object id: ``MaskCrop``, or None to remove it, or a SAM2Error for a bad prompt}.
    """
    results: dict = {}
    level = request.level
    if level is not None:
        level = (_picked(level.plane.view(level.data), request.channels), level.factors)
    with segmenter.lock:
        embed(segmenter, request)
        for obj, prompts in request.prompts.items():
            if prompts is None:
                results[obj] = None
                continue
            try:
                results[obj] = segmenter.predict_crop(
                    prompts.points, prompts.point_labels, prompts.box, prompts.mask,
                    region=request.region, level=level,
                )  # fmt: skip
            except SAM2Error as err:
                results[obj] = err
    return results
