"""Propagation of the annotated objects through one axis of the image layer.

A ``LayerPropagation`` holds the engine's ``PropagationSession`` for one image, frame axis and
frame range, and remembers which prompts it has already used, so that pressing *Propagate*
again runs only what changed: new objects over the whole range, and corrected objects from
the corrected frame to their next prompted frame.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..engine.errors import SAM2Error
from ..engine.prompts import PromptSet
from ..engine.video.planning import Step
from ..engine.video.region import Region
from ..engine.video.session import PropagationSession
from ..engine.video.stream import paint_objects
from ..engine.window import MaskCrop
from .annotation import AnnotationSession
from .plane import Plane, displayed_plane, pixels, to_image_coords
from .prompts import object_prompts, prompt_fingerprint


def frame_axes(layer, plane: Plane) -> list[int]:
    """Layer axes that can be propagated along: any axis that is fixed on screen."""
    return [ax for ax, i in enumerate(plane.index) if i is not None]


class LayerPropagation:
    """Objects of an ``AnnotationSession`` tracked along ``frame_axis`` of its image layer.

    The other fixed axes (say the channel slider or z when tracking in time) stay where the
    viewer shows them now. ``frame_range`` is (first, stop) in frames of that axis. ``load``,
    if given, makes the session from the stack instead (a saved annotation reopened).
    ``region_box`` (min_row, min_col, max_row, max_col of the plane) tracks only that region,
    at native resolution; the frames are otherwise shrunk to the model input when larger.
    """

    def __init__(
        self,
        annotation: AnnotationSession,
        frame_axis: int,
        frame_range: tuple[int, int] | None = None,
        use_labels: bool = False,
        load=None,
        region_box=None,
    ):
        viewer, layer = annotation.viewer, annotation.image_layer
        if layer is None or annotation.segmenter is None:
            raise SAM2Error("Load a model and start annotating first.")
        here = displayed_plane(viewer, layer, annotation.channel_axis)
        if frame_axis not in frame_axes(layer, here):
            raise SAM2Error(
                f"Axis {frame_axis} cannot be propagated along: pick an axis with a slider "
                "(a 2D image has none)."
            )
        self.annotation = annotation
        self.segmenter = annotation.segmenter
        self.layer = layer
        self.data = layer.data
        self.frame_axis = frame_axis
        self.use_labels = use_labels
        intensities = annotation.intensities()
        self.normalization = intensities.normalization
        # The (frames, rows, cols[, channels]) view of the image: other sliders stay put.
        kept = [ax for ax, i in enumerate(here.index) if i is None or ax == frame_axis]
        selection = tuple(slice(None) if ax in kept else i for ax, i in enumerate(here.index))
        self._here = here
        stack = pixels(layer)[selection]
        self.region = None
        channel_axis = None
        if annotation.channel_axis is not None:
            channel_axis = kept.index(annotation.channel_axis)
        elif layer.rgb:
            channel_axis = stack.ndim - 1
        if region_box is not None:
            self.region = Region.from_box(region_box, here.shape(layer.data))
            stack = self.region.crop(stack, kept.index(frame_axis), channel_axis)
        self.stack = stack
        # Where the stack's labels are in the Labels layer (which has no channel axis).
        self.labels_selection = tuple(
            sel for ax, sel in enumerate(selection) if ax != annotation.channel_axis
        )
        if load is not None:
            self.session: PropagationSession = load(stack)
        else:
            self.session = annotation.segmenter.propagation_session(
                stack,
                frame_axis=kept.index(frame_axis),
                contrast_limits=intensities.limits,
                channel_axis=channel_axis,
                channels=annotation.channels,
                frame_range=frame_range,
            )
        self._used: dict[tuple[int, int], tuple] = {}  # (frame, object) → prompt fingerprint
        self._done: set[int] = set()  # objects propagated over the whole range

    def matches(
        self, annotation: AnnotationSession, frame_axis: int, frame_range, region_box=None
    ) -> bool:
        """Whether this propagation can be reused: same model, image, axis, position, range
        and region."""
        here = displayed_plane(annotation.viewer, annotation.image_layer, annotation.channel_axis)
        region = None if region_box is None else Region.from_box(region_box, here.shape(self.data))
        others = [i for ax, i in enumerate(here.index) if ax != frame_axis]
        mine = [i for ax, i in enumerate(self._here.index) if ax != self.frame_axis]
        first, stop = self.session.frame_range
        wanted = frame_range or (0, len(self.session.source))
        return (
            annotation.segmenter is self.segmenter
            and annotation.image_layer is self.layer
            and annotation.image_layer.data is self.data
            and annotation.intensities().normalization == self.normalization
            and frame_axis == self.frame_axis
            and others == mine
            and tuple(wanted) == (first, stop)
            and region == self.region
        )

    def plane(self, frame: int) -> Plane:
        index = list(self._here.index)
        index[self.frame_axis] = frame
        return Plane(
            tuple(index), self._here.rows_axis, self._here.cols_axis, self._here.channel_axis
        )

    def layer_prompts(self) -> dict[int, dict[int, PromptSet]]:
        """{frame: {object id: prompts}} from the Points/Shapes layers on every frame."""
        annotation = self.annotation
        frames: set[int] = set()
        for layer in (annotation.points_layer, annotation.shapes_layer):
            if layer is None or not len(layer.data):
                continue
            coords = np.concatenate([np.atleast_2d(c) for c in layer.data])
            frame_coords = to_image_coords(layer, self.layer, coords)[:, self.frame_axis]
            frames.update(np.round(frame_coords).astype(int).tolist())
        first, stop = self.session.frame_range
        out: dict[int, dict[int, PromptSet]] = {}
        for frame in sorted(f for f in frames if first <= f < stop):
            found = object_prompts(
                annotation.points_layer, annotation.shapes_layer, self.layer, self.plane(frame)
            )
            if found:
                out[frame] = found
        if self.use_labels:
            self._add_label_prompts(out)
        return self._in_region(out)

    def _in_region(self, prompts: dict[int, dict[int, PromptSet]]) -> dict:
        """Prompts of the full plane in the pixels the session tracks (its region, if any)."""
        return prompts if self.region is None else self.region.prompts(prompts)

    def _add_label_prompts(self, out: dict[int, dict[int, PromptSet]]) -> None:
        """Objects labelled on the current frame without clicks there get their label as mask."""
        frame = self._here.index[self.frame_axis]
        labels = np.asarray(self.annotation.labels_layer.data[self.plane(frame).labels_index()])
        here = out.setdefault(frame, {})
        for object_id in np.unique(labels[labels > 0]).tolist():
            if object_id not in here:
                here[object_id] = PromptSet(mask=labels == object_id)
        if not here:
            del out[frame]

    def start(self, direction: str) -> tuple[list[Step], Iterator]:
        """Add what changed in the prompts and plan the runs: (steps, frame stream).

        New objects run over the whole range; objects that were already propagated and got
        new prompts on frame k run from k to their next prompted frame only.
        """
        prompts = self.layer_prompts()
        if not prompts:
            raise SAM2Error("No prompts: click or draw a box on an object before propagating.")
        changed = self._changed(prompts)
        if changed:
            self.session.add_prompts(changed)
        runs: list[list[Step]] = []
        new = [oid for oid in self.session.object_ids if oid not in self._done]
        if new:
            runs.append(self.session.plan(direction, new))
        for frame, objects in sorted(changed.items()):
            corrected = [oid for oid in objects if oid in self._done]
            if corrected:
                runs.append(self.session.plan(direction, corrected, frame, True))
        steps = [step for run in runs for step in run]
        if not steps:
            raise SAM2Error("Nothing changed since the last propagation.")
        self.mark_used(changed)
        return steps, self._stream(runs, new)

    def _changed(self, prompts: dict[int, dict[int, PromptSet]]) -> dict:
        """The prompts not given to the session yet, or changed since."""
        changed: dict[int, dict[int, PromptSet]] = {}
        for frame, objects in prompts.items():
            for object_id, prompt in objects.items():
                if self._used.get((frame, object_id)) != _fingerprint(prompt):
                    changed.setdefault(frame, {})[object_id] = prompt
        return changed

    def mark_used(self, prompts: dict[int, dict[int, PromptSet]]) -> None:
        """Note that the session has these prompts (so they are no change to propagate)."""
        for frame, objects in prompts.items():
            for object_id, prompt in objects.items():
                self._used[(frame, object_id)] = _fingerprint(prompt)

    def divide(self, mother: int, frame: int, daughters: list[int]) -> tuple[int, Iterator]:
        """``mother`` divides on ``frame`` into ``daughters``, prompted there in the layers:
        (frames to write, stream) of the run that tracks the daughters forward."""
        plane = self.plane(frame)
        found = object_prompts(
            self.annotation.points_layer, self.annotation.shapes_layer, self.layer, plane
        )
        missing = [d for d in daughters if d not in found]
        if missing:
            raise SAM2Error(f"Daughter {missing[0]} has no prompt on frame {frame}.")
        prompts = self._in_region({frame: {d: found[d] for d in daughters}})[frame]
        stream = self.session.divide(mother, frame, prompts)
        self.mark_used({frame: prompts})
        self.mark_propagated(daughters)
        here = np.asarray(self.annotation.labels_layer.data[plane.labels_index()])
        for daughter, prompt in prompts.items():  # the run writes them: no click to segment
            self.annotation.adopt(plane, daughter, prompt, here == daughter)
        return len(stream), stream

    def mark_propagated(self, object_ids) -> None:
        """Note that these objects were propagated over the whole range already."""
        self._done.update(object_ids)

    def give_prompts(self) -> None:
        """Hand the session every prompt of the layers it lacks, without propagating."""
        changed = self._changed(self.layer_prompts())
        if changed:
            self.session.add_prompts(changed)
            self.mark_used(changed)

    def labels_view(self) -> np.ndarray:
        """The Labels layer's part that belongs to the stack, laid out as the stack."""
        labels = np.asarray(self.annotation.labels_layer.data[self.labels_selection])
        if self.region is not None:
            labels = labels[..., self.region.rows, self.region.cols]
        return labels

    def _stream(self, runs: list[list[Step]], new: list[int]) -> Iterator:
        for n, steps in enumerate(runs):
            yield from self.session.run(steps)
            if n == 0 and new:
                self._done.update(new)

    def write(self, frame: int, object_ids: list[int], masks: np.ndarray) -> None:
        """Write one propagated frame into the Labels layer (GUI thread)."""
        annotation = self.annotation
        labels = annotation.labels_layer
        if self.layer not in annotation.viewer.layers or labels not in annotation.viewer.layers:
            raise SAM2Error("A layer was removed while propagating: the run was stopped.")
        if self.layer.data is not self.data:
            raise SAM2Error("The image data changed while propagating: the run was stopped.")
        plane = self.plane(frame)
        index = plane.labels_index()
        shown = self._shown(plane)
        data = labels.data
        # A numpy frame is painted in place: only the changed pixels are written. Copying the
        # plane and writing it back touched every page of a frame, which on a fresh labels
        # array first has to be allocated (about 10 ms per 1024² frame in the GUI thread).
        # zarr, dask...: the frame is read, painted and written back in one assignment.
        in_place = isinstance(data, np.ndarray)
        whole = data[index] if in_place else np.array(data[index])
        rows, cols = (
            (slice(None), slice(None))
            if self.region is None
            else (self.region.rows, self.region.cols)
        )
        part = whole[rows, cols]  # a view: painting it paints the frame
        before = part.copy() if shown else None
        paint_objects(part, object_ids, masks, annotation.overwrite)
        if not in_place:
            data[index] = whole
        for object_id, crop in written_crops(part, object_ids, rows, cols).items():
            annotation.record_written(plane, object_id, crop)
        if shown and not np.array_equal(before, part):  # the prompted frame often is not
            labels.refresh()

    def shown_frame(self) -> int:
        """The frame of the frame axis that the viewer shows now."""
        here = displayed_plane(self.annotation.viewer, self.layer, self.annotation.channel_axis)
        return here.index[self.frame_axis]

    def _shown(self, plane: Plane) -> bool:
        """Whether the viewer shows this plane now. Only then does a write need a redraw:
        napari reads another frame afresh when the user moves there, and redrawing for every
        frame written elsewhere stalls the GUI thread."""
        try:
            shown = displayed_plane(self.annotation.viewer, self.layer, plane.channel_axis)
        except SAM2Error:
            return True  # a 3D view, say: the whole stack may be on screen
        axes = (shown.rows_axis, shown.cols_axis) == (plane.rows_axis, plane.cols_axis)
        return not axes or shown.index == plane.index

    def close(self) -> None:
        self.session.close()


def _fingerprint(prompt: PromptSet) -> tuple:
    mask = None if prompt.mask is None else hash(prompt.mask.tobytes())
    return (*prompt_fingerprint(prompt), mask)


def written_crops(part: np.ndarray, object_ids, rows: slice, cols: slice) -> dict:
    """{object id: ``MaskCrop`` of its pixels in ``part``} (``part`` lies at ``rows``, ``cols``
    of the plane), from one pass over the frame: hundreds of objects of a "segment everything"
    then cost a few small crops a frame, not a full-frame mask each."""
    from scipy.ndimage import find_objects

    r0, c0 = rows.start or 0, cols.start or 0
    boxes = find_objects(part, max_label=max(object_ids, default=0))
    out = {}
    for object_id in object_ids:
        box = boxes[object_id - 1] if object_id >= 1 else None
        if box is None:
            out[object_id] = None
            continue
        r, c = box
        out[object_id] = MaskCrop(
            slice(r0 + r.start, r0 + r.stop),
            slice(c0 + c.start, c0 + c.stop),
            part[box] == object_id,
        )
    return out
