"""The objects panel of the dock widget: every object with its colour, name and frames;
selecting one picks it and shows its first frame; rename, merge and delete."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import PushButton, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem

from ..engine.errors import SAM2Error
from ..layers.objects import (
    ObjectRow,
    delete_object,
    draw_hidden,
    merge_objects,
    object_rows,
    show_object,
)
from .section import Section

COLUMNS = ("", "id", "name", "frames", "prompted on", "last confidence")


def _frames_text(frames: tuple[int, ...]) -> str:
    """Frames as runs, "0-12, 15-20"."""
    runs: list[list[int]] = []
    for frame in frames:
        if runs and frame == runs[-1][-1] + 1:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return ", ".join(f"{r[0]}" if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


class ObjectsPanel(Section):
    """A table of the annotation's objects; ``frame_axis`` gives the axis frames are counted
    along (None for a 2D image), ``propagation`` the Propagate tab's propagation (or None),
    whose confidences the table shows."""

    def __init__(self, annotation, notify, frame_axis, propagation):
        super().__init__(annotation, notify)
        self._frame_axis = frame_axis
        self._propagation = propagation
        self.rows: list[ObjectRow] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.refresh_button = PushButton(text="Refresh list")
        self.merge_from = SpinBox(label="Merge object", min=1, max=2**31 - 1, value=1)
        self.merge_button = PushButton(text="into the selected one")
        self.delete_button = PushButton(text="Delete selected object")
        self.hide_button = PushButton(text="Hide / show selected object")
        self.hidden: set[int] = set()
        self._colormap = None  # the Labels layer's own colours, while objects are hidden
        self.native.layout().addWidget(self.table)
        self.extend(
            [
                self.refresh_button,
                self.merge_from,
                self.merge_button,
                self.delete_button,
                self.hide_button,
            ]
        )
        self.refresh_button.changed.connect(self.refresh)
        self.merge_button.changed.connect(self.merge)
        self.delete_button.changed.connect(self.delete)
        self.hide_button.changed.connect(self.toggle_hidden)
        self.table.itemSelectionChanged.connect(self._selected)
        self.table.itemChanged.connect(self._renamed)
        self.shown = False  # the widget says when its tab is the current one
        annotation.objects_changed.connect(self.refresh_if_shown)

    def refresh_if_shown(self) -> None:
        """Re-read the objects if the panel is on screen (it reads every labelled frame)."""
        if self._alive and self.shown:
            self.refresh()

    def refresh(self) -> None:
        """Re-read the objects from the layers."""
        annotation = self.annotation
        self.rows = (
            [] if annotation.labels_layer is None else object_rows(annotation, self._frame_axis())
        )
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.rows))
        for n, row in enumerate(self.rows):
            swatch = QTableWidgetItem("")
            swatch.setBackground(QColor.fromRgbF(*row.color))
            shown_id = f"{row.object_id}{' (hidden)' if row.object_id in self.hidden else ''}"
            cells = [swatch, QTableWidgetItem(shown_id), QTableWidgetItem(row.name)]
            cells += [QTableWidgetItem(_frames_text(f)) for f in (row.frames, row.prompted)]
            cells.append(QTableWidgetItem(self._last_confidence(row.object_id)))
            for column, cell in enumerate(cells):
                if column != 2:  # only the name is edited in the table
                    cell.setFlags(cell.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(n, column, cell)
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(0, 24)  # the colour swatch
        self.table.blockSignals(False)

    def _last_confidence(self, object_id: int) -> str:
        """The confidence on the last frame the object was tracked on ("" if never)."""
        propagation = self._propagation()
        if propagation is None or propagation.frame_axis != self._frame_axis():
            return ""
        values = propagation.session.confidence.get(object_id)
        done = [] if values is None else np.flatnonzero(np.isfinite(values))
        return f"{values[done[-1]]:.2f} (frame {done[-1]})" if len(done) else ""

    def selected(self) -> ObjectRow | None:
        rows = self.table.selectionModel().selectedRows()
        return self.rows[rows[0].row()] if rows else None

    def _selected(self) -> None:
        row = self.selected()
        if row is not None:
            show_object(self.annotation, row, self._frame_axis())

    def _renamed(self, item: QTableWidgetItem) -> None:
        if item.column() == 2:
            object_id = self.rows[item.row()].object_id
            self.annotation.names[object_id] = item.text().strip()

    def _act(self, action) -> None:
        row = self.selected()
        try:
            if row is None:
                raise SAM2Error("Select an object in the list first.")
            action(row)
        except SAM2Error as err:
            self._notify(err)
            return
        self.refresh()

    def delete(self) -> None:
        """Delete the selected object: its labels (one undoable edit) and its prompts."""
        self._act(lambda row: delete_object(self.annotation, row.object_id))

    def toggle_hidden(self) -> None:
        """Hide the selected object's labels, or show them again."""
        labels = self.annotation.labels_layer
        if self._colormap is None and labels is not None:
            self._colormap = labels.colormap
        self._act(lambda row: self.hidden.symmetric_difference_update({row.object_id}))
        if labels is not None:
            ids = [row.object_id for row in self.rows]
            draw_hidden(labels, self._colormap, ids, self.hidden)
            if not self.hidden:
                self._colormap = None

    def merge(self) -> None:
        """Merge the object given in *Merge object* into the selected one."""
        self._act(lambda row: merge_objects(self.annotation, row.object_id, self.merge_from.value))
