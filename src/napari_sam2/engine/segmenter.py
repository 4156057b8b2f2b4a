"""``Segmenter``: the scripting API, and the object the napari widget is a view over."""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np
import torch

from .automatic import AutomaticOptions, Progress, iter_mask_proposals, paint_labels
from .errors import SAM2Error
from .frames import MAX_MODEL_SIDE, Normalization, model_input, to_model_frame
from .image import ImageSession, plane_fingerprint
from .models import build_model, compute_dtype, select_device
from .plane import LazyPlane, PlaneLevel
from .prompts import PromptSet
from .tiled import iter_tiled_labels
from .video.reading import frame_source_for
from .video.region import Region
from .video.session import PropagationSession
from .video.stream import Frames, FrameStream
from .video.warmup import warm_up
from .window import MaskCrop, in_windows
from .windowed import WindowedPlane


class Segmenter:
    """A SAM2 model on a device, and the image it currently segments.

    >>> seg = Segmenter(model="sam2.1_hiera_tiny")          # doctest: +SKIP
    >>> seg.set_image(image)                                # doctest: +SKIP
    >>> mask = seg.predict(points=[(120, 80)])              # doctest: +SKIP

    Coordinates are napari's: points are (row, col), a box is (min_row, min_col, max_row,
    max_col). ``device=None`` picks CUDA, then MPS, then CPU; ``checkpoint`` loads a local file
    with the architecture of ``model``. ``compile=True`` (CUDA) ``torch.compile``s the image
    encoder for propagation: loading then takes about a minute (``compile_image_encoder``).
    """

    def __init__(
        self,
        model: str = "sam2.1_hiera_tiny",
        device: str | torch.device | None = None,
        checkpoint: str | Path | None = None,
        compile: bool = False,
    ):
        self.model_name = model
        self.device = select_device(device)
        self.model = build_model(model, checkpoint, self.device, compile)
        if self.device.type != "cpu":
            warm_up(self.model)
        self.session = ImageSession(self.model)
        # Held while the current image is set and used, so that worker threads (clicks,
        # segment-everything) never interleave a set_plane with another's predict.
        self.lock = threading.RLock()
        self._plane: np.ndarray | None = None  # an image no larger than the model input
        self._key = None  # its embedding's cache key
        self._windowed: WindowedPlane | None = None  # or a larger one, read lazily
        self._normalization: Normalization | None = None
        self.last_proposals: list = []  # MaskProposals of the last segment_everything

    @property
    def info(self) -> dict:
        """What is loaded: model name, parameter count, device and compute dtype."""
        return {
            "model": self.model_name,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "device": str(self.device),
            "dtype": compute_dtype(self.device),
        }

    def set_image(
        self,
        image,
        channel_axis: int | None = None,
        contrast_limits: Sequence[float] | None = None,
        channels: Sequence[int] | None = None,
    ) -> None:
        """Embed a 2D gray, RGB(A) or multichannel image (any dtype) for later ``predict`` calls.

        An (H, W, 3) or (H, W, 4) array is read as RGB(A) unless ``channel_axis`` says otherwise.
        ``contrast_limits`` (low, high) map intensities to the model's range; by default 8-bit
        colour uses 0-255 and anything else its 0.5-99.8 percentiles. ``channels`` picks up to
        three channels of a multichannel image as the model's R, G, B inputs. ``image`` may be
        numpy, dask or zarr: one larger than the model input is read lazily, a window around
        each prompt set at a time (see ``engine.window``).
        """
        if not hasattr(image, "shape") or not hasattr(image, "dtype"):
            image = np.asarray(image)
        if channel_axis is None and image.ndim == 3 and image.shape[-1] in (3, 4):
            channel_axis = -1
        plane = LazyPlane(image, channel_axis, channels)
        if contrast_limits is not None:
            normalization = Normalization.from_limits(contrast_limits)
        elif self._is_large(plane.shape):
            normalization = plane.normalization()
        else:
            pixels = plane.read()
            normalization = Normalization.for_data(pixels)
            self._set_small(pixels, normalization)
            return
        self._set_lazy(plane, normalization)

    def set_plane(self, plane, normalization: Normalization) -> None:
        """Embed an already channel-selected (H, W[, ≤3]) plane with a given normalisation.

        The napari adapters call this with the displayed plane and the layer's contrast limits,
        so one normalisation serves every plane of a stack.
        """
        self._set_lazy(LazyPlane.picked(plane), normalization)

    def _is_large(self, shape: tuple[int, int]) -> bool:
        """Whether a plane is segmented in windows rather than resized whole to the model."""
        return max(shape) > self.model.image_size

    def _set_lazy(self, plane: LazyPlane, normalization: Normalization) -> None:
        if not self._is_large(plane.shape):
            self._set_small(plane.read(), normalization)
            return
        windowed = WindowedPlane(
            plane, normalization, self.session, self.model.image_size, self.device
        )
        with self.lock:
            self._plane, self._normalization, self._windowed = None, normalization, windowed

    def _set_small(self, plane: np.ndarray, normalization: Normalization) -> None:
        """Embed a plane no larger than the model input whole, as the model was trained."""
        with self.lock:
            self._plane, self._normalization, self._windowed = plane, normalization, None
            self._key = (plane_fingerprint(plane), normalization)
            self._set_whole()

    def _set_whole(self) -> None:
        """Make the small plane the session's frame (a click segmented in a window of it made
        the window the frame), embedding it again if the cache let it go."""
        if self.session.key == self._key:
            return
        frame = None
        if not self.session.is_cached(self._key):
            size = self.model.image_size
            frame = model_input(self._plane, self._normalization, size, self.device)
        self.session.set_frame(frame, self._plane.shape[:2], self._key)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the current image."""
        if self._windowed is not None:
            return self._windowed.shape
        if self._plane is None:
            raise SAM2Error("No image is set: call set_image first.")
        return self._plane.shape[:2]

    def current_frame(self) -> np.ndarray:
        """The current image as the model sees it whole: (h, w, 3) float32 in [0, 1]; a large
        image read every n-th pixel to at most ``frames.MAX_MODEL_SIDE`` a side."""
        plane = self._plane
        if self._windowed is not None:
            plane = self._windowed.plane.overview(MAX_MODEL_SIDE)
        if plane is None:
            raise SAM2Error("No image is set: call set_image first.")
        return to_model_frame(plane, self._normalization)

    def predict(self, points=None, point_labels=None, box=None, mask=None) -> np.ndarray:
        """Boolean (H, W) mask of one object from clicks, a box and/or a mask prompt.

        On a huge image the full-size mask costs H × W bytes: ``predict_crop`` returns only
        the part that holds the object.
        """
        with self.lock:
            crop = self.predict_crop(points, point_labels, box, mask)
            h, w = self.image_shape
            if (crop.rows, crop.cols) == (slice(0, h), slice(0, w)):
                return crop.mask
            return crop.full((h, w))

    def predict_crop(
        self, points=None, point_labels=None, box=None, mask=None, region=None, level=None
    ) -> MaskCrop:
        """``predict``'s mask as ``MaskCrop(rows, cols, mask)``: the mask's pixels at
        ``rows``, ``cols`` (slices) of the image.

        On an image larger than the model input, ``region`` (min_row, min_col, max_row,
        max_col), e.g. the field of view, is the window to segment in; by default the engine
        picks one around the prompts. ``level`` (array, (f_r, f_c)), a coarser copy of the
        image such as a pyramid level f_r × f_c times smaller, is then read for the region
        instead of the image. A small image is segmented whole, except for clicks alone on one
        larger than ``window.whole_side`` (768 px for a 1024 input): those get a window too.
        """
        with self.lock:
            shape = self.image_shape
            prompts = PromptSet.from_arguments(points, point_labels, box, mask).validate(shape)
            if self._windowed is not None:
                if level is not None:
                    if region is None:
                        raise SAM2Error("A level is read for a region: pass region= too.")
                    level = PlaneLevel.checked(level, self._windowed.plane)
                return self._windowed.predict(prompts, _region(region), level)
            if in_windows(prompts, shape, self.model.image_size):
                windowed = WindowedPlane(
                    LazyPlane.picked(self._plane), self._normalization, self.session,
                    self.model.image_size, self.device,
                )  # fmt: skip
                return windowed.predict(prompts)
            self._set_whole()
            result, _ = self.session.predict(prompts)
        return MaskCrop(slice(0, shape[0]), slice(0, shape[1]), result)

    def iter_segment_everything(self, **options) -> Generator[Progress, None, np.ndarray]:
        """``segment_everything`` as a generator: yields ``Progress``, returns the labels.

        Made for GUI workers (``thread_worker`` reports the yields and returns the value);
        closing the generator cancels the work at the next point batch. An image larger than
        the model input is segmented in overlapping tiles at native resolution (``tiled``);
        ``last_proposals`` then stays empty.
        """
        settings = AutomaticOptions.from_kwargs(**options)
        with self.lock:  # the generator works on its own copy of the image and embedding
            windowed = self._windowed
            if windowed is None:
                self._set_whole()
                frame, embedding = self.current_frame(), self.session.embedding()
        if windowed is not None:
            self.last_proposals = []
            plane, normalization = windowed.plane, windowed.normalization
            return (yield from iter_tiled_labels(self.model, plane, normalization, settings))
        proposals = yield from iter_mask_proposals(self.model, frame, settings, embedding)
        self.last_proposals = proposals
        return paint_labels(proposals, frame.shape[:2], settings)

    def segment_everything(self, **options) -> np.ndarray:
        """int32 labels (0 = background) of every object SAM2 finds in the current image.

        ``options`` are the fields of ``AutomaticOptions`` (points_per_side, pred_iou_thresh,
        stability_score_thresh, crop_n_layers, min_area, larger_first, ...).
        """
        work = self.iter_segment_everything(**options)
        while True:
            try:
                next(work)
            except StopIteration as done:
                return done.value

    def track_everything(
        self,
        stack,
        frame: int = 0,
        direction: str = "both",
        frame_axis: int = 0,
        contrast_limits: Sequence[float] | None = None,
        **options,
    ) -> Frames:
        """Segment everything on ``frame`` of ``stack``, then track each mask through it.

        ``options`` go to ``segment_everything``; the stream is ``propagate``'s, with one
        object per automatic mask (ids as in the automatic labels). Objects that appear later
        can be added by segmenting a later frame and keeping the masks that overlap no
        tracked object (the widget does this with *Skip masks over objects already labelled*).
        """
        source = frame_source_for(stack, frame_axis, contrast_limits)
        if not 0 <= frame < len(source):
            raise SAM2Error(f"Frame {frame} is outside the {len(source)} frames.")
        self.set_plane(source.raw_plane(frame), source.normalization)
        labels = self.segment_everything(**options)
        ids = [int(i) for i in np.unique(labels) if i]
        if not ids:
            raise SAM2Error(f"Segment everything found no object on frame {frame}.")
        prompts = {frame: {i: dict(mask=labels == i) for i in ids}}
        limits = (source.normalization.low[0], source.normalization.high[0])
        return self.propagate(stack, prompts, direction, frame_axis, limits)

    def propagation_session(
        self,
        stack,
        frame_axis: int = 0,
        contrast_limits: Sequence[float] | None = None,
        channel_axis: int | None = None,
        channels: Sequence[int] | None = None,
        frame_range: tuple[int, int] | None = None,
        reliable_memory: bool = False,
    ) -> PropagationSession:
        """A ``PropagationSession`` over ``stack`` for prompting, propagating and correcting.

        ``stack`` is any (T, H, W[, C]) array — numpy, dask, zarr, or a lazy video — read one
        frame at a time with one normalisation for the whole stack (``contrast_limits``, or
        stack-wide percentiles by default). ``frame_axis`` says which axis is time or z;
        ``frame_range`` (first, stop) limits the frames propagated through.
        ``reliable_memory`` keeps doubtful frames out of each object's memory (for objects
        that are occluded or leave the field; see ``PropagationSession``).
        """
        source = frame_source_for(stack, frame_axis, contrast_limits, channel_axis, channels)
        return PropagationSession(
            self.model,
            source,
            frame_range,
            model_name=self.model_name,
            reliable_memory=reliable_memory,
            embeddings=self.session,
        )

    def propagate(
        self,
        stack,
        prompts: dict,
        direction: str = "both",
        frame_axis: int = 0,
        contrast_limits: Sequence[float] | None = None,
        channel_axis: int | None = None,
        channels: Sequence[int] | None = None,
        frame_range: tuple[int, int] | None = None,
        reliable_memory: bool = False,
        roi=None,
    ) -> FrameStream:
        """Track prompted objects through a stack; yields ``(frame, object_ids, masks)``.

        ``prompts`` maps a frame index to {object id: dict(points=, point_labels=, box=,
        mask=)} in the conventions of ``predict``. ``direction`` is "forward", "backward" or
        "both". Masks are boolean (n_objects, H, W) arrays, yielded as frames finish; pass the
        stream to ``write_labels`` to fill a labels array. Bad input raises ``SAM2Error`` here,
        before any frame is computed. ``len()`` of the stream is the number of frames it will
        yield; closing it cancels. ``stream.confidence`` holds each object's per-frame
        confidence in [0, 1] (NaN where not computed), filled as frames finish; each yielded
        item also carries its objects' as ``.confidence``. ``reliable_memory`` keeps doubtful
        frames out of the objects' memory. Frames larger than the model input are shrunk to
        it, unless ``roi`` (min_row, min_col, max_row, max_col) names the region to track:
        then only that part of each frame is read and tracked, at native resolution, the masks
        cover it (``stream.region``; ``write_labels`` puts them in place) and the intensities
        still come from the whole stack. For corrections and objects added later, keep a
        ``propagation_session`` instead.

        >>> labels = np.zeros(stack.shape, np.uint16)                          # doctest: +SKIP
        >>> stream = seg.propagate(stack, {0: {1: dict(points=[(120, 80)])}})   # doctest: +SKIP
        >>> for frame in write_labels(stream, labels):                          # doctest: +SKIP
        ...     print(f"frame {frame} done")
        """
        region = None
        if roi is not None:
            whole = frame_source_for(stack, frame_axis, contrast_limits, channel_axis, channels)
            region = Region.from_box(roi, whole.plane_shape)
            norm = whole.normalization
            contrast_limits = np.stack([norm.low, norm.high], axis=1)
            stack = region.crop(stack, whole.frame_axis, whole.channel_axis)
            prompts = region.prompts(prompts)
        session = self.propagation_session(
            stack,
            frame_axis,
            contrast_limits,
            channel_axis,
            channels,
            frame_range,
            reliable_memory,
        )
        try:
            session.add_prompts(prompts)
            steps = session.plan(direction)
        except BaseException:
            session.close()
            raise
        frames = _closing(session, session.run(steps))
        return FrameStream(frames, len(steps), session.confidence, region)


def _closing(session: PropagationSession, frames: Frames) -> Frames:
    """Yield from ``frames``, closing ``session`` when done or when the consumer stops."""
    try:
        yield from frames
    finally:
        frames.close()
        session.close()


def _region(region) -> tuple[float, float, float, float] | None:
    """A checked (min_row, min_col, max_row, max_col) region, or None."""
    if region is None:
        return None
    values = np.asarray(region, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.isfinite(values).all() or (values[2:] <= values[:2]).any():
        raise SAM2Error(
            f"A region is (min_row, min_col, max_row, max_col) with max > min, got {region!r}."
        )
    return tuple(values)
