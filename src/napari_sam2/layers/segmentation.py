"""One segmentation of a plane, as the widget runs it off the GUI thread: the request built
from the layers, the plane read from the layer's data, and the masks computed for it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..engine.errors import SAM2Error
from ..engine.frames import Normalization, select_channels
from ..engine.prompts import PromptSet
from ..engine.segmenter import Segmenter
from .plane import Plane


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
        if not _is_dask(data):
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


def _is_dask(data) -> bool:
    return type(data).__module__.startswith("dask.")


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


def embed(segmenter: Segmenter, request: SegmentationRequest) -> None:
    """Read the request's plane and make it the segmenter's image (cached embeddings)."""
    raw = request.planes.read(request.data, request.plane)
    channel_axis = -1 if raw.ndim == 3 else None
    segmenter.set_plane(
        select_channels(raw, channel_axis, request.channels), request.normalization
    )


def compute(segmenter: Segmenter, request: SegmentationRequest) -> dict:
    """Embed the plane (cached) and predict each changed object; safe off the GUI thread.

    Returns {object id: mask, or None to remove it, or a SAM2Error for a bad prompt}.
    """
    results: dict = {}
    with segmenter.lock:
        embed(segmenter, request)
        for obj, prompts in request.prompts.items():
            if prompts is None:
                results[obj] = None
                continue
            try:
                results[obj] = segmenter.predict(
                    prompts.points, prompts.point_labels, prompts.box, prompts.mask
                )
            except SAM2Error as err:
                results[obj] = err
    return results
