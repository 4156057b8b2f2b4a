"""Export controls of the dock widget: labels files, measurements and tracks, for 2D images
and stacks alike."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import FileEdit, PushButton
from napari.utils.notifications import show_info, show_warning

from ..engine.errors import SAM2Error
from ..export.ctc import export_ctc
from ..files import check_export_path
from ..layers.plane import displayed_plane, pixels
from ..measure import add_tracking_columns, measure_table, save_labels, save_table_csv, tracks
from .section import Section

TRACKS_LAYER = "SAM2 tracks"
SUFFIXES = (".tif", ".tiff", ".zarr", ".csv")


class ExportControls(Section):
    """Save the labels (compressed TIFF or zarr) or a measurements CSV; add a Tracks layer.

    ``frame_axis`` returns the image axis chosen on the Propagate tab (None for a 2D image):
    measurements and tracks are taken along it, at the other sliders' current position.
    ``propagation`` returns the Propagate tab's ``LayerPropagation`` (or None): its
    confidences and divisions go into the table, the tracks and the CTC files.
    """

    def __init__(self, annotation, notify, frame_axis, propagation):
        super().__init__(annotation, notify)
        self._frame_axis = frame_axis
        self._propagation = propagation
        self.path = FileEdit(label="Export to", mode="w", value="")
        self.path.tooltip = (
            ".tif/.tiff/.zarr: the whole labels layer; .csv: one row per object (per frame)"
        )
        self.export_button = PushButton(text="Export")
        self.tracks_button = PushButton(text="Add tracks layer")
        self.ctc_folder = FileEdit(label="CTC folder", mode="d", value="")
        self.ctc_folder.tooltip = "A new or empty folder for the Cell Tracking Challenge files"
        self.ctc_button = PushButton(text="Export for tracking tools (CTC)")
        self.extend(
            [self.path, self.export_button, self.tracks_button, self.ctc_folder, self.ctc_button]
        )
        self.export_button.changed.connect(self.export)
        self.tracks_button.changed.connect(self.add_tracks)
        self.ctc_button.changed.connect(self.export_ctc)

    def _tracked(self):
        """The propagation along the chosen axis, if there is one."""
        propagation = self._propagation()
        if propagation is None or propagation.frame_axis != self._frame_axis():
            return None
        return propagation.session

    def _parents(self) -> dict[int, int]:
        session = self._tracked()
        return {} if session is None else dict(session.parents)

    def _stacks(self) -> tuple[np.ndarray, np.ndarray, int | None]:
        """(frames, rows, cols) labels, (frames, rows, cols[, channels]) image and its channel
        axis (-1 or None); a 2D image is one frame."""
        annotation = self.annotation
        if annotation.labels_layer is None:
            raise SAM2Error("Start annotating first: exports read the SAM2 labels layer.")
        layer, channel_axis = annotation.image_layer, annotation.channel_axis
        plane = displayed_plane(annotation.viewer, layer, channel_axis)
        axis = self._frame_axis()
        selection = tuple(
            slice(None) if i is None or ax == axis else i for ax, i in enumerate(plane.index)
        )
        kept = [ax for ax, sel in enumerate(selection) if isinstance(sel, slice)]
        labels = np.asarray(
            annotation.labels_layer.data[
                tuple(sel for ax, sel in enumerate(selection) if ax != channel_axis)
            ]
        )
        image = np.asarray(pixels(layer)[selection])
        channel = None if channel_axis is None else kept.index(channel_axis)
        if axis is None:
            labels, image = labels[None], image[None]
            channel = None if channel is None else channel + 1
        else:
            labels = np.moveaxis(labels, [a for a in kept if a != channel_axis].index(axis), 0)
            frame = kept.index(axis)
            if channel is not None:
                image = np.moveaxis(image, [frame, channel], [0, -1])
            else:
                image = np.moveaxis(image, frame, 0)
        if channel is not None and axis is None:
            image = np.moveaxis(image, channel, -1)
        has_channels = channel is not None or layer.rgb
        return labels, image, (-1 if has_channels else None)

    def export(self) -> None:
        try:
            path = check_export_path(self.path.line_edit.value, SUFFIXES)  # text: "" stays ""
            if path.suffix.lower() == ".csv":
                labels, image, channel = self._stacks()
                table = measure_table(labels, image, 0, channel)
                session = self._tracked()
                if session is not None:
                    table = add_tracking_columns(table, session.confidence, dict(session.parents))
                written = save_table_csv(table, path)
            else:
                written = save_labels(self.annotation.labels_layer.data, path)
        except (SAM2Error, OSError) as err:
            self._notify(err)
            return
        show_info(f"Saved {written}")

    def add_tracks(self) -> None:
        try:
            if self._frame_axis() is None:
                raise SAM2Error("Tracks need a time or z axis: this image is 2D.")
            labels, _, _ = self._stacks()
        except SAM2Error as err:
            self._notify(err)
            return
        data = tracks(labels)
        if not len(data):
            show_warning("There are no labels to track yet.")
            return
        viewer = self.annotation.viewer
        if TRACKS_LAYER in viewer.layers:
            viewer.layers.remove(TRACKS_LAYER)
        ids = set(data[:, 0].astype(int).tolist())
        graph = {d: [m] for d, m in self._parents().items() if d in ids and m in ids}
        viewer.add_tracks(data, graph=graph, name=TRACKS_LAYER)

    def export_ctc(self) -> None:
        """The labels along the chosen axis as Cell Tracking Challenge files, with lineage."""
        try:
            if self._frame_axis() is None:
                raise SAM2Error("The CTC format is for time-lapses: this image is 2D.")
            folder = self.ctc_folder.line_edit.value.strip()
            if not folder:
                raise SAM2Error("Type or choose a new or empty folder for the CTC files.")
            labels, _, _ = self._stacks()
            written = export_ctc(labels, folder, self._parents())
        except (SAM2Error, OSError) as err:
            self._notify(err)
            return
        show_info(f"Saved the CTC files in {written}")
