"""Save annotation / Open annotation controls: a stack's labels, prompts and propagation state
in one folder, to resume tomorrow where one stopped today."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import FileEdit, PushButton
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QMessageBox

from ..engine.errors import SAM2Error
from ..layers.resume import open_layers, save_layers
from .section import Section


class ResumeControls(Section):
    """Over the Propagate tab's ``controls``: its axis, range and propagation."""

    def __init__(self, annotation, notify, controls):
        super().__init__(annotation, notify)
        self.controls = controls
        self.folder = FileEdit(label="Annotation folder", mode="d", value="")
        self.folder.tooltip = "Save writes a new folder; Open reads one saved before"
        self.save_button = PushButton(text="Save annotation")
        self.open_button = PushButton(text="Open annotation")
        self.extend([self.folder, self.save_button, self.open_button])
        self.save_button.changed.connect(self.save)
        self.open_button.changed.connect(self.open)

    def _folder(self) -> str:
        text = self.folder.line_edit.value.strip()
        if not text:
            raise SAM2Error("Type or choose the annotation folder first.")
        if self.controls.worker is not None:
            raise SAM2Error("A propagation is running: wait for it or cancel it first.")
        return text

    def save(self) -> None:
        """Write the annotation of the stack along the chosen axis into a folder; one that
        exists is replaced only if the user says so."""
        try:
            folder = self._folder()
            overwrite = Path(folder).exists()
            if overwrite and not _confirm_replace(self.native, folder):
                return
            written = save_layers(self.controls.current(), folder, overwrite)
        except (SAM2Error, OSError) as err:
            self._notify(err)
            return
        show_info(f"Saved the annotation in {written}")

    def open(self) -> None:
        """Reopen a saved annotation over the image, along the chosen axis."""
        controls = self.controls
        try:
            folder = self._folder()
            axis = controls.frame_axis.value
            if axis is None:
                raise SAM2Error("Annotations are saved for stacks: this image is 2D.")
            propagation = open_layers(self.annotation, axis, folder)
        except (SAM2Error, OSError) as err:
            self._notify(err)
            return
        if controls.propagation is not None:
            controls.propagation.close()
        controls.adopt(propagation)
        show_info(f"Opened the annotation in {folder}")


def _confirm_replace(parent, folder: str) -> bool:
    """Ask before an existing folder is replaced (never silently)."""
    answer = QMessageBox.question(
        parent,
        "Replace the saved annotation?",
        f"{folder} exists. Replace it with the annotation as it is now?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes
