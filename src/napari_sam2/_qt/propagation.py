"""Propagate and export controls of the dock widget, over a ``LayerPropagation``."""

from __future__ import annotations

from functools import partial

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, PushButton, SpinBox
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info, show_warning

from ..engine.errors import SAM2Error
from ..engine.video.planning import DIRECTIONS
from ..layers.plane import displayed_plane
from ..layers.propagation import LayerPropagation, frame_axes
from ..measure import measure_table, save_labels, save_table_csv, tracks
from .section import Section

TRACKS_LAYER = "SAM2 tracks"


class PropagationControls(Section):
    """Frame axis, range and direction; Propagate with progress, ETA and Cancel; exports."""

    def __init__(self, annotation, notify):
        super().__init__(annotation, notify)
        self.propagation: LayerPropagation | None = None
        self._stream = None

        self.frame_axis = ComboBox(label="Frame axis", choices=self._axes)
        self.frame_axis.tooltip = "The time or z axis to propagate along"
        self.first = SpinBox(label="First frame", min=0, max=0)
        self.last = SpinBox(label="Last frame", min=0, max=0)
        self.direction = ComboBox(label="Direction", choices=list(DIRECTIONS), value="both")
        self.use_labels = CheckBox(text="Also propagate labels painted on this frame")
        self.propagate_button = PushButton(text="Propagate")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.tracks_button = PushButton(text="Add tracks layer")
        self.export_path = FileEdit(label="Export to", mode="w", value="")
        self.export_path.tooltip = ".csv: measurements table; .tif/.tiff/.zarr: the labels"
        self.export_button = PushButton(text="Export")
        self.extend(
            [
                self.frame_axis,
                self.first,
                self.last,
                self.direction,
                self.use_labels,
                self.propagate_button,
                self.cancel_button,
                self.tracks_button,
                self.export_path,
                self.export_button,
            ]
        )
        self.frame_axis.changed.connect(self._update_range)
        self.propagate_button.changed.connect(self.propagate)
        self.cancel_button.changed.connect(self.cancel)
        self.tracks_button.changed.connect(self.add_tracks)
        self.export_button.changed.connect(self.export)

    # -- choices ------------------------------------------------------------------------------
    def _axes(self, _widget=None) -> list[int]:
        annotation = self.annotation
        if annotation.image_layer is None:
            return []
        try:
            plane = displayed_plane(
                annotation.viewer, annotation.image_layer, annotation.channel_axis
            )
        except SAM2Error:
            return []
        return frame_axes(annotation.image_layer, plane)

    def _update_range(self, *_) -> None:
        axis = self.frame_axis.value
        if axis is None:
            return
        n = self.annotation.image_layer.data.shape[axis]
        for box in (self.first, self.last):
            box.max = n - 1
        self.first.value, self.last.value = 0, n - 1

    def refresh(self) -> None:
        """Re-read the axes after the widget attached to another image."""
        self.frame_axis.reset_choices()
        self._update_range()

    # -- propagation --------------------------------------------------------------------------
    def _current(self) -> LayerPropagation:
        axis = self.frame_axis.value
        if axis is None:
            raise SAM2Error("This image has no axis to propagate along (it is 2D).")
        if self.last.value < self.first.value:
            raise SAM2Error("The last frame comes before the first: fix the frame range.")
        frame_range = (self.first.value, self.last.value + 1)
        if self.propagation is not None and not self.propagation.matches(
            self.annotation, axis, frame_range
        ):
            self.propagation.close()
            self.propagation = None
        if self.propagation is None:
            self.propagation = LayerPropagation(
                self.annotation, axis, frame_range, self.use_labels.value
            )
        self.propagation.use_labels = self.use_labels.value
        return self.propagation

    def propagate(self) -> None:
        """Run the propagation in a worker; each finished frame is written as it arrives."""
        if self.worker is not None:
            show_warning("A propagation is already running: wait for it or cancel it.")
            return
        try:
            propagation = self._current()
            steps, stream = propagation.start(self.direction.value)
        except SAM2Error as err:
            self._notify(err)
            return
        self._stream = stream
        self.worker = create_worker(
            _pass_through,
            stream,
            _progress={"total": len(steps), "desc": "SAM2: propagating"},
            _ignore_errors=True,  # errored → notification
        )
        self.worker.yielded.connect(partial(self._write, propagation))
        self.worker.errored.connect(self._notify)
        self.worker.finished.connect(self._finished)
        self.propagate_button.enabled = False
        self.cancel_button.enabled = True
        self.worker.start()

    def _write(self, propagation: LayerPropagation, result) -> None:
        if not self._alive:
            return
        try:
            propagation.write(*result)
        except SAM2Error as err:
            self._notify(err)
            self.cancel()

    def cancel(self) -> None:
        """Stop after the frame being computed; frames already written stay."""
        if self.worker is not None:
            self.worker.quit()

    def _finished(self) -> None:
        # A cancelled worker leaves its generator open; closing it ends the engine's run.
        self._stream.close()
        self.worker = None
        if self._alive:
            self.propagate_button.enabled = True
            self.cancel_button.enabled = False

    # -- export -------------------------------------------------------------------------------
    def _labels_stack(self) -> np.ndarray:
        """The (frames, rows, cols) labels at the current position of the other sliders."""
        if self.propagation is None:
            raise SAM2Error("Propagate first: exports follow the propagated axis.")
        plane = self.propagation.plane(0)
        index = list(plane.labels_index())
        axis = self.propagation.frame_axis
        labels_axis = axis - (plane.channel_axis is not None and plane.channel_axis < axis)
        index[labels_axis] = slice(None)
        stack = np.asarray(self.annotation.labels_layer.data[tuple(index)])
        kept = [ax for ax, i in enumerate(index) if isinstance(i, slice)]
        return np.moveaxis(stack, kept.index(labels_axis), 0)

    def add_tracks(self) -> None:
        try:
            stack = self._labels_stack()
        except SAM2Error as err:
            self._notify(err)
            return
        data = tracks(stack)
        if not len(data):
            show_warning("There are no labels to track yet.")
            return
        viewer = self.annotation.viewer
        if TRACKS_LAYER in viewer.layers:
            viewer.layers.remove(TRACKS_LAYER)
        viewer.add_tracks(data, name=TRACKS_LAYER)

    def export(self) -> None:
        path = str(self.export_path.value)
        try:
            stack = self._labels_stack()
            if path.lower().endswith(".csv"):
                source = self.propagation.session.source
                axes = [source.frame_axis] + (
                    [] if source.channel_axis is None else [source.channel_axis]
                )
                image = np.moveaxis(source.data, axes, list(range(len(axes))))
                channel_axis = None if source.channel_axis is None else 1
                written = save_table_csv(measure_table(stack, image, 0, channel_axis), path)
            else:
                written = save_labels(stack, path)
        except (SAM2Error, OSError) as err:
            self._notify(err)
            return
        show_info(f"Saved {written}")


def _pass_through(stream):
    """Generator for ``create_worker``: yields the engine's frames in the worker thread."""
    yield from stream
