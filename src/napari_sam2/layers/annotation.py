"""``AnnotationSession``: the state the dock widget shows, and the steps of one segmentation.

The widget follows this object's signals and runs ``segmentation.compute`` in a worker thread;
everything that touches layers (``request`` and ``apply``) runs in the GUI thread.
"""

from __future__ import annotations

import numpy as np
from psygnal import Signal

from ..engine.errors import SAM2Error
from ..engine.prompts import PromptSet
from ..engine.segmenter import Segmenter
from . import names
from .intensities import AUTO, MODES, Intensities, IntensityChooser
from .labels import check_labels_fit, write_object
from .plane import Plane, displayed_plane, image_shape, pixels
from .prompts import (
    NEGATIVE_BORDER,
    NEGATIVE_SYMBOL,
    POSITIVE_BORDER,
    POSITIVE_SYMBOL,
    box_colors,
    object_colors,
    object_prompts,
    point_style,
    prompt_fingerprint,
)
from .segmentation import PlaneReader, SegmentationRequest, choose_scale

# The modifier of a click that selects the object under it (vispy reports ⌘ as Control too).
PICK_MODIFIER = "Control"
# Prompt points are 1/40 of the image side, but no larger than this (in pixels): on a huge
# image they would hide the nuclei they are clicked on.
POINT_SIZE_MAX = 12


class AnnotationSession:
    """Layers, model and current object of one annotation, shared by widget and console."""

    model_changed = Signal(dict)
    object_changed = Signal(int)
    positive_changed = Signal(bool)
    intensities_changed = Signal(str)  # what the model sees, for the widget to show
    objects_changed = Signal()  # masks were written: the objects panel re-reads them

    def __init__(self, viewer):
        self.viewer = viewer
        self.segmenter: Segmenter | None = None
        self.image_layer = None
        self.points_layer = None
        self.shapes_layer = None
        self.labels_layer = None
        self.channel_axis: int | None = None
        self.channels: tuple[int, ...] | None = None
        self.overwrite = False
        self.object_id = 1
        self.positive = True
        self.intensity_mode = AUTO
        self.embed_seconds: float | None = None  # a click that embedded its plane took this
        self.planes = PlaneReader()
        self.names: dict[int, str] = {}  # object id → the name a user gave it
        self._intensities = IntensityChooser()
        self._applied: dict[tuple, tuple] = {}
        self._written: dict[tuple, np.ndarray] = {}

    # -- model -----------------------------------------------------------------------------
    def set_segmenter(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self._applied.clear()  # a new model re-segments every prompted object on next change
        self.model_changed.emit(segmenter.info)

    # -- layers ----------------------------------------------------------------------------
    def attach(self, image_layer, labels_layer=None) -> None:
        """Use ``image_layer``; create the prompt layers and a Labels layer where missing."""
        shape = tuple(
            n for ax, n in enumerate(image_shape(image_layer)) if ax != self.channel_axis
        )
        if labels_layer is not None:
            check_labels_fit(labels_layer, shape)
        if self.labels_layer is not None:
            self.labels_layer.events.selected_label.disconnect(self._follow_selected_label)
        if self.image_layer is not None:
            self.image_layer.events.contrast_limits.disconnect(self._show_intensities)
        if self.image_layer is not None and self.image_layer is not image_layer:
            self._retire_layers()
        self.image_layer = image_layer
        image_layer.events.contrast_limits.connect(self._show_intensities)
        spatial = dict(scale=image_layer.scale, translate=image_layer.translate)
        layers = self.viewer.layers
        self.labels_layer = labels_layer or self._existing(names.LABELS, shape)
        if self.labels_layer is None:
            self.labels_layer = self.viewer.add_labels(
                np.zeros(shape, np.int32), name=names.LABELS, **_drop(spatial, self.channel_axis)
            )
        if names.POINTS not in layers:
            self.viewer.add_points(
                np.empty((0, image_layer.ndim)),
                name=names.POINTS,
                features={names.OBJECT_ID: np.empty(0, int), names.POSITIVE: np.empty(0, bool)},
                size=int(np.clip(min(image_shape(image_layer)[-2:]) // 40, 3, POINT_SIZE_MAX)),
                **spatial,
            )
        if names.BOXES not in layers:
            self.viewer.add_shapes(
                name=names.BOXES,
                ndim=image_layer.ndim,
                features={names.OBJECT_ID: np.empty(0, int)},
                face_color="transparent",
                **spatial,
            )
        self.points_layer = layers[names.POINTS]
        self.shapes_layer = layers[names.BOXES]
        self.points_layer.mode = "add"
        existing = (
            int(np.max(self.labels_layer.data))
            if isinstance(self.labels_layer.data, np.ndarray)
            else 0
        )
        self.labels_layer.events.selected_label.connect(self._follow_selected_label)
        self.set_object(max(existing + 1, self.object_id))
        self.set_positive(True)
        if self._pick_on_click not in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.append(self._pick_on_click)
        self._applied.clear()
        self._written.clear()
        self._show_intensities()

    # -- intensities -----------------------------------------------------------------------
    def intensities(self) -> Intensities:
        """The normalisation every plane (and propagation) of the image uses, and why."""
        if self.image_layer is None:
            raise SAM2Error("Choose an image layer first.")
        return self._intensities.choose(self.image_layer, self.intensity_mode)

    def set_intensity_mode(self, mode: str) -> None:
        """ "auto" (the layer's limits where they fit the data, else percentiles) or
        "from layer" (always the layer's contrast limits)."""
        if mode not in MODES:
            raise SAM2Error(f"Intensities come from one of {MODES}, not {mode!r}.")
        self.intensity_mode = mode
        self._show_intensities()

    def _show_intensities(self, event=None) -> None:
        if self.image_layer is not None:
            self.intensities_changed.emit(self.intensities().describe())

    def _follow_selected_label(self, event=None) -> None:
        """Picking a label in the Labels layer's own controls picks that object here too."""
        label = int(self.labels_layer.selected_label)
        if label > 0 and label != self.object_id:
            self.set_object(label)

    def _retire_layers(self) -> None:
        """Keep the previous image's prompts and labels under new names, freeing ours."""
        suffix = f" ({self.image_layer.name})"
        for layer in (self.points_layer, self.shapes_layer, self.labels_layer):
            if layer is not None and layer.name in (names.POINTS, names.BOXES, names.LABELS):
                layer.name = layer.name + suffix

    def _existing(self, name: str, shape: tuple[int, ...]):
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if tuple(layer.data.shape) == shape:
                return layer
            layer.name = f"{name} (other image)"  # keep the user's data, free the name
        return None

    # -- current object and click polarity ---------------------------------------------------
    def set_object(self, object_id: int) -> None:
        """Make ``object_id`` the object that the next clicks and boxes belong to."""
        object_id = int(object_id)
        if object_id < 1:
            raise SAM2Error(f"Object ids start at 1, got {object_id}.")
        self.object_id = object_id
        for layer in (self.points_layer, self.shapes_layer):
            if layer is not None:
                layer.feature_defaults[names.OBJECT_ID] = self.object_id
        if self.labels_layer is not None:
            self.labels_layer.selected_label = self.object_id
            self._style_next_prompts()
        self.object_changed.emit(self.object_id)

    def new_object(self) -> int:
        """Start the next object id, above every id in use."""
        used = [self.object_id, *(obj for _, obj in self._written)]
        for layer in (self.points_layer, self.shapes_layer):
            if layer is not None and names.OBJECT_ID in layer.features and len(layer.data):
                used.append(int(layer.features[names.OBJECT_ID].max()))
        self.set_object(max(used) + 1)
        return self.object_id

    def pick_object(self, world_position, event=None) -> int | None:
        """Make the object under ``world_position`` (its label) the current one.

        Returns its id, or None (and the current object stays) where the labels are
        background there.
        """
        if self.labels_layer is None:
            return None
        extra = {}
        if event is not None:
            extra = dict(view_direction=event.view_direction, dims_displayed=event.dims_displayed)
        value = self.labels_layer.get_value(world_position, world=True, **extra)
        if value is None or int(value) == 0:
            return None
        self.set_object(int(value))
        return self.object_id

    def _pick_on_click(self, viewer, event):
        """Ctrl-click (⌘-click on macOS) on a label selects its object and adds no prompt.

        The viewer's mouse callbacks run before the active layer's, so switching the prompt
        layer to pan/zoom for the length of the click keeps it from adding a point or box.
        """
        layer = viewer.layers.selection.active
        if (
            PICK_MODIFIER not in event.modifiers
            or event.button != 1
            or layer is None
            or layer not in (self.points_layer, self.shapes_layer)
        ):
            return
        mode, layer.mode = layer.mode, "pan_zoom"
        self.pick_object(event.position, event)
        yield
        while event.type == "mouse_move":
            yield
        layer.mode = mode

    def set_positive(self, positive: bool) -> None:
        self.positive = bool(positive)
        if self.points_layer is not None:
            self.points_layer.feature_defaults[names.POSITIVE] = self.positive
            self._style_next_prompts()
        self.positive_changed.emit(self.positive)

    def toggle_polarity(self) -> None:
        """In select mode flip the selected points; otherwise flip the next clicks' polarity."""
        layer = self.points_layer
        selecting = layer is not None and layer.mode == "select"
        selected = sorted(layer.selected_data) if selecting else []
        if selected:
            features = layer.features.copy()
            features.loc[selected, names.POSITIVE] = ~features.loc[selected, names.POSITIVE]
            layer.features = features
            self.refresh_prompt_colors()
            layer.events.data(value=layer.data, action="changed", data_indices=tuple(selected))
        else:
            self.set_positive(not self.positive)

    def _style_next_prompts(self) -> None:
        """The next point and box are drawn like the current object's and polarity's."""
        if self.points_layer is None or self.labels_layer is None:
            return
        color = object_colors(self.labels_layer, [self.object_id])[0]
        points = self.points_layer
        points.current_face_color = color
        points.current_symbol = POSITIVE_SYMBOL if self.positive else NEGATIVE_SYMBOL
        points.current_border_color = POSITIVE_BORDER if self.positive else NEGATIVE_BORDER
        self.shapes_layer.current_edge_color = color
        # napari also restyles the selected prompts with the current style: undo that.
        self.refresh_prompt_colors()

    def refresh_prompt_colors(self) -> None:
        """Draw every point and box in its object's label colour, points marked by polarity."""
        if self.labels_layer is None:
            return
        if self.points_layer is not None and len(self.points_layer.data):
            for name, value in point_style(self.points_layer, self.labels_layer).items():
                setattr(self.points_layer, name, value)
        if self.shapes_layer is not None and len(self.shapes_layer.data):
            self.shapes_layer.edge_color = box_colors(self.shapes_layer, self.labels_layer)

    # -- one segmentation: request (GUI thread) → compute (worker) → apply (GUI thread) ------
    def request(self) -> SegmentationRequest | None:
        """The objects whose prompts on the displayed plane changed since they were applied."""
        if self.image_layer is None:
            raise SAM2Error("Choose an image layer first.")
        if self.segmenter is None:
            raise SAM2Error("Load a model first.")
        plane = displayed_plane(self.viewer, self.image_layer, self.channel_axis)
        current = object_prompts(self.points_layer, self.shapes_layer, self.image_layer, plane)
        changed: dict[int, PromptSet | None] = {
            obj: prompts
            for obj, prompts in current.items()
            if self._applied.get((plane.key, obj)) != prompt_fingerprint(prompts)
        }
        for key, obj in list(self._applied):
            if key == plane.key and obj not in current:
                changed[obj] = None
        if not changed:
            return None
        return self.plane_request(plane, changed)

    def plane_request(
        self, plane: Plane | None = None, prompts: dict[int, PromptSet | None] | None = None
    ) -> SegmentationRequest:
        """A request for ``plane`` (default: the displayed one) with the given prompts."""
        if self.image_layer is None or self.segmenter is None:
            raise SAM2Error("Load a model and start annotating first.")
        if plane is None:
            plane = displayed_plane(self.viewer, self.image_layer, self.channel_axis)
        view, level, said = choose_scale(
            self.image_layer, plane, self.segmenter.model.image_size, self.viewer
        )
        return SegmentationRequest(
            self.image_layer,
            self.labels_layer,
            pixels(self.image_layer),
            plane,
            self.channels,
            self.intensities().normalization,
            prompts or {},
            self.planes,
            view,
            said,
            level,
        )

    def label_request(self) -> SegmentationRequest:
        """Re-segment the current object from its label on the displayed plane (a mask prompt).

        The object's clicks and box on the plane, if any, are used too; the refined mask then
        replaces the label's pixels for this object on this plane.
        """
        request = self.plane_request()
        plane = request.plane
        label = np.asarray(self.labels_layer.data[plane.labels_index()]) == self.object_id
        if not label.any():
            raise SAM2Error(
                f"Object {self.object_id} has no pixels on this plane: paint it or pick its id."
            )
        current = object_prompts(self.points_layer, self.shapes_layer, self.image_layer, plane)
        base = current.get(self.object_id, PromptSet())
        prompts = PromptSet(base.points, base.point_labels, base.box, label)
        self._written[(plane.key, self.object_id)] = label
        request.prompts[self.object_id] = prompts
        return request

    def forget_object(self, object_id: int) -> None:
        """Drop what was remembered of an object's masks, so that its prompts being removed or
        moved to another object is no change to segment."""
        for kept in (self._applied, self._written):
            for key in [key for key in kept if key[1] == object_id]:
                del kept[key]

    def adopt(self, plane: Plane, object_id: int, prompts: PromptSet, mask: np.ndarray) -> None:
        """Take ``mask`` as what ``prompts`` made of an object on a plane (a reopened
        annotation), so that those prompts are no change to segment."""
        self._applied[(plane.key, object_id)] = prompt_fingerprint(prompts)
        self._written[(plane.key, object_id)] = mask

    def record_written(self, plane: Plane, object_id: int, mask) -> None:
        """Note what another writer (propagation) put on a plane for an object (a whole-plane
        mask, a ``MaskCrop``, or None), so a later click there replaces it, not adds to it."""
        self._written[(plane.key, object_id)] = mask

    def apply(self, request: SegmentationRequest, results: dict) -> list[str]:
        """Write the masks into the Labels layer; returns messages for prompts that failed."""
        layers = self.viewer.layers
        if request.image_layer not in layers or request.labels_layer not in layers:
            raise SAM2Error("A layer was removed while segmenting: nothing was written.")
        if pixels(request.image_layer) is not request.data:
            raise SAM2Error("The image data changed while segmenting: nothing was written.")
        index = request.plane.labels_index()
        problems = []
        for obj, mask in results.items():
            key = (request.plane.key, obj)
            if isinstance(mask, SAM2Error):
                # Said once: these prompts are not asked for again until they change.
                problems.append(f"Object {obj}: {mask}")
                self._applied[key] = prompt_fingerprint(request.prompts[obj])
                continue
            previous = self._written.pop(key, None)
            written = write_object(
                request.labels_layer, index, obj, mask, previous, self.overwrite
            )
            if mask is None:
                self._applied.pop(key, None)
            else:
                self._written[key] = written
                self._applied[key] = prompt_fingerprint(request.prompts[obj])
        self.objects_changed.emit()
        return problems


def _drop(spatial: dict, channel_axis: int | None) -> dict:
    """Scale/translate of the image without its channel axis, for the Labels layer."""
    if channel_axis is None:
        return spatial
    return {k: np.delete(np.asarray(v), channel_axis) for k, v in spatial.items()}
