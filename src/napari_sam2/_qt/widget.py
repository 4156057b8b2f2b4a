"""The SAM2 dock widget: a view over an ``AnnotationSession`` plus the workers that feed it."""

from __future__ import annotations

import time
from functools import partial

import torch
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_warning
from qtpy.QtWidgets import QTabWidget

from ..engine.errors import SAM2Error
from ..engine.models import MICRO_MODEL, available_models
from ..layers.annotation import AnnotationSession
from ..layers.intensities import AUTO, MODES
from . import workers
from .apps import AppsControls
from .automatic import AutomaticControls
from .export import ExportControls
from .objects_panel import ObjectsPanel
from .propagation import DIVIDE_KEY, NEXT_DOUBTFUL_KEY, PropagationControls
from .resume import ResumeControls

NEW_OBJECT_KEY = "n"
TOGGLE_POLARITY_KEY = "t"
AUTO_DEVICE = "auto"


def _devices() -> list[str]:
    devices = [AUTO_DEVICE]
    if torch.cuda.is_available():
        devices.append("cuda")
    if torch.backends.mps.is_available():
        devices.append("mps")
    return [*devices, "cpu"]


class SAM2Widget(Container):
    """Pick a model and an image; clicks and boxes on the prompt layers become labels."""

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session = AnnotationSession(napari_viewer)
        self._busy = False
        self._pending = False
        self._last_embedded = None  # what the last finished click embedded (see _run)
        self._loader = None
        self._alive = True  # worker results may arrive after napari deleted the widget
        self.native.destroyed.connect(partial(setattr, self, "_alive", False))

        self.model = ComboBox(label="Model", choices=available_models(), value=MICRO_MODEL)
        self.device = ComboBox(label="Device", choices=_devices(), value=AUTO_DEVICE)
        self.checkpoint = FileEdit(label="Checkpoint", mode="r", filter="*.pt", value="")
        self.checkpoint.tooltip = "Optional local file with the selected model's architecture"
        self.load_button = PushButton(text="Load model")
        self.model_info = Label(label="Loaded", value="no model")
        self.image = create_widget(annotation=Image, label="Image")
        self.labels = create_widget(annotation=Labels | None, label="Labels")
        self.labels.tooltip = "Leave empty to create a new Labels layer"
        self.channel_axis = ComboBox(label="Channel axis", choices=self._channel_axes)
        self.channels = LineEdit(label="Channels", value="")
        self.channels.tooltip = "Up to three channel indices for R, G, B, e.g. 0,2 (empty: first)"
        self.intensity_mode = ComboBox(label="Intensities", choices=list(MODES), value=AUTO)
        self.intensity_mode.tooltip = (
            "auto: the layer's contrast limits where they fit the data, else stack-wide "
            "0.5-99.8 % percentiles; from layer: always the contrast limits"
        )
        self.intensities = Label(label="Model sees", value="")
        self.start_button = PushButton(text="Start annotating")
        self.object_button = PushButton(text=f"New object [{NEW_OBJECT_KEY}]")
        self.object_id = SpinBox(label="Object id", min=1, max=2**31 - 1, value=1)
        self.object_id.tooltip = (
            "The object the next clicks and boxes belong to; Ctrl-click (⌘-click) a label "
            "in the canvas to pick its object"
        )
        self.polarity_button = PushButton(text=f"Positive click [{TOGGLE_POLARITY_KEY}]")
        self.refine_button = PushButton(text="Refine object from its label")
        self.refine_button.tooltip = (
            "Use the current object's label on this plane as a mask prompt"
        )
        self.overwrite = CheckBox(text="Masks may overwrite other objects", value=False)
        self.status = Label(value="")
        self.automatic = AutomaticControls(self.session, _notify)
        self.propagation = PropagationControls(self.session, _notify)
        self.apps = AppsControls(self.session, _notify)
        self.export = ExportControls(
            self.session, _notify, self._frame_axis, lambda: self.propagation.propagation
        )
        self.resume = ResumeControls(self.session, _notify, self.propagation)
        self.export.append(self.resume)
        self.objects = ObjectsPanel(
            self.session, _notify, self._frame_axis, lambda: self.propagation.propagation
        )
        self.extend(
            [
                self.model,
                self.device,
                self.checkpoint,
                self.load_button,
                self.model_info,
                self.image,
                self.labels,
                self.channel_axis,
                self.channels,
                self.intensity_mode,
                self.intensities,
                self.start_button,
                self.object_id,
                self.object_button,
                self.polarity_button,
                self.refine_button,
                self.overwrite,
                self.status,
            ]
        )
        # The secondary tools live in tabs, so the dock fits a laptop screen.
        self.tabs = QTabWidget()
        for title, section in (
            ("Propagate", self.propagation),
            ("Objects", self.objects),
            ("Segment everything", self.automatic),
            ("Extract", self.apps),
            ("Save / export", self.export),
        ):
            self.tabs.addTab(section.native, title)
        self.native.layout().addWidget(self.tabs)
        self.tabs.currentChanged.connect(self._tab_shown)

        self.load_button.changed.connect(self.load_model)
        self.start_button.changed.connect(self.start)
        self.object_button.changed.connect(lambda: self.session.new_object())
        self.polarity_button.changed.connect(lambda: self.session.toggle_polarity())
        self.refine_button.changed.connect(lambda: self._run(self.session.label_request))
        self.overwrite.changed.connect(lambda v: setattr(self.session, "overwrite", v))
        self.image.changed.connect(self._image_chosen)
        self.session.model_changed.connect(self._show_model)
        self.object_id.changed.connect(self._choose_object)
        self.session.object_changed.connect(lambda i: setattr(self.object_id, "value", i))
        self.session.positive_changed.connect(self._show_polarity)
        self.intensity_mode.changed.connect(self.session.set_intensity_mode)
        self.session.intensities_changed.connect(
            lambda text: setattr(self.intensities, "value", text)
        )

    def _tab_shown(self, _index: int) -> None:
        self.objects.shown = self.tabs.currentWidget() is self.objects.native
        self.objects.refresh_if_shown()

    # -- model --------------------------------------------------------------------------------
    def load_model(self) -> None:
        """Load the chosen model in the background; the widget stays usable meanwhile."""
        device = None if self.device.value == AUTO_DEVICE else self.device.value
        path = str(self.checkpoint.value)
        checkpoint = path if path not in ("", ".") else None
        self.load_button.enabled = False
        self.model_info.value = f"loading {self.model.value}…"
        self._loader = workers.load_model(self.model.value, device, checkpoint)
        self._loader.returned.connect(self._model_loaded)
        self._loader.errored.connect(self._model_failed)
        self._loader.start()

    def _model_loaded(self, segmenter) -> None:
        if self._alive:
            self.load_button.enabled = True
            self.session.set_segmenter(segmenter)

    def _model_failed(self, err: Exception) -> None:
        _notify(err)
        if self._alive:
            self.load_button.enabled = True
            self.model_info.value = "no model"

    def _show_model(self, info: dict) -> None:
        self.model_info.value = (
            f"{info['model']}: {info['parameters'] / 1e6:.2f} M parameters, "
            f"{info['device']}, {info['dtype']}"
        )
        self._schedule()

    # -- layers -------------------------------------------------------------------------------
    def _channel_axes(self, _widget=None) -> list[str]:
        """Axes of the chosen image that can hold channels: any but the displayed two."""
        layer = self.image.value
        if layer is None or layer.rgb or layer.ndim < 3:
            return ["none"]
        return ["none", *(str(ax) for ax in range(layer.ndim - 2))]

    def _image_chosen(self, layer) -> None:
        self.channel_axis.reset_choices()
        # The labels made for the previous image are not offered for another one. (== and not
        # `is`: napari hands plugins proxies of the layers the combo boxes list.)
        session = self.session
        if layer != session.image_layer and self.labels.value == session.labels_layer:
            self.labels.value = None

    def start(self) -> None:
        """Attach the session to the chosen image and wire the prompt layers to it."""
        if self.image.value is None:
            show_warning("Open an image first.")
            return
        try:
            axis = None if self.channel_axis.value == "none" else int(self.channel_axis.value)
            text = self.channels.value.strip()
            self.session.channel_axis = axis
            self.session.channels = tuple(int(c) for c in text.split(",")) if text else None
            self.session.attach(self.image.value, self.labels.value)
        except (SAM2Error, ValueError) as err:
            _notify(err)
            return
        for layer in (self.session.points_layer, self.session.shapes_layer):
            layer.events.data.disconnect(self._on_prompts_changed)
            layer.events.data.connect(self._on_prompts_changed)
            layer.bind_key(NEW_OBJECT_KEY, lambda _: self.session.new_object(), overwrite=True)
            layer.bind_key(
                TOGGLE_POLARITY_KEY, lambda _: self.session.toggle_polarity(), overwrite=True
            )
            layer.bind_key(NEXT_DOUBTFUL_KEY, self.propagation.next_doubtful, overwrite=True)
            layer.bind_key(DIVIDE_KEY, self.propagation.start_division, overwrite=True)
        self.labels.reset_choices()
        self.labels.value = self.session.labels_layer
        self.viewer.layers.selection.active = self.session.points_layer
        self.propagation.refresh()
        if self.session.segmenter is None:
            self.load_model()

    def _choose_object(self, object_id: int) -> None:
        if object_id != self.session.object_id:
            self.session.set_object(object_id)

    def _show_polarity(self, positive: bool) -> None:
        kind = "Positive" if positive else "Negative"
        self.polarity_button.text = f"{kind} click [{TOGGLE_POLARITY_KEY}]"

    # -- segmentation -------------------------------------------------------------------------
    def _on_prompts_changed(self, event=None) -> None:
        # Finished edits only ("added", not "adding"): napari announces an edit before making
        # it, and segmenting the prompts as they were would write a mask only to undo it.
        if self.propagation.take_division_click(event):
            return
        if str(getattr(event, "action", "")).endswith("ing"):
            return
        self.session.refresh_prompt_colors()
        self.propagation.update_estimate()
        self._schedule()

    def _schedule(self) -> None:
        """Segment what changed; while a run is busy, remember to run once more after it."""
        if self.session.image_layer is None or self.session.segmenter is None:
            return
        if self._busy:
            self._pending = True
            return
        self._run(self.session.request)

    def _run(self, make_request) -> None:
        """Build a request in the GUI thread, compute it in a worker, apply it back here."""
        if self._busy:
            show_warning("SAM2 is busy; try again in a moment.")
            return
        try:
            request = make_request()
        except SAM2Error as err:
            _notify(err)
            return
        if request is None:
            return
        self._busy = True
        self.status.value = "segmenting…"
        # A click on the plane the last one segmented uses its cached embedding and takes
        # milliseconds: no progress bar then, since adding one to napari's activity dock costs
        # the GUI thread more than the click (bench/responsiveness.py: 40-90 ms per 10 clicks).
        embedded = (  # ids, not objects: an old model or image must not be kept alive here
            id(self.session.segmenter),
            id(request.data),
            request.plane.key,
            request.channels,
            request.normalization,
        )
        quiet = {"_progress": False} if embedded == self._last_embedded else {}
        worker = workers.segment(self.session.segmenter, request, **quiet)
        worker.returned.connect(lambda _: setattr(self, "_last_embedded", embedded))
        seg = self.session.segmenter
        timing = (seg, seg.session.embeddings_computed, time.perf_counter())
        worker.returned.connect(lambda _: self._timed(*timing))
        worker.returned.connect(lambda results: self._apply(request, results))
        worker.errored.connect(_notify)
        worker.finished.connect(self._finished)
        worker.start()

    def _timed(self, segmenter, embeddings_before: int, started: float) -> None:
        """Keep how long a click that embedded its plane took, for propagation's estimate."""
        if self._alive and segmenter.session.embeddings_computed > embeddings_before:
            self.session.embed_seconds = time.perf_counter() - started

    def _frame_axis(self) -> int | None:
        """The axis chosen on the Propagate tab, or None for a 2D image."""
        return self.propagation.frame_axis.value if self.propagation.frame_axis.choices else None

    def _apply(self, request, results: dict) -> None:
        if not self._alive:
            return
        try:
            problems = self.session.apply(request, results)
        except SAM2Error as err:
            _notify(err)
            return
        self.status.value = request.scale  # on a large plane: which scale was used
        for problem in problems:
            show_warning(problem)

    def _finished(self) -> None:
        if not self._alive:
            return
        self._busy = False
        if self.status.value == "segmenting…":
            self.status.value = ""
        if self._pending:
            self._pending = False
            self._schedule()


def _notify(err: Exception) -> None:
    """User mistakes become a warning notification; anything else an error one, never raised."""
    if isinstance(err, SAM2Error | ValueError):
        show_warning(str(err))
    elif isinstance(err, OSError) and err.filename:  # a missing folder, no permission, ...
        show_warning(f"{err.strerror or err}: {err.filename}")
    else:
        show_error(f"SAM2 failed: {type(err).__name__}: {err}")
