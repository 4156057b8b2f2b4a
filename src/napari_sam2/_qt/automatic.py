"""Segment-everything controls of the dock widget: options, progress, cancel."""

from __future__ import annotations

from functools import partial

from magicgui.widgets import CheckBox, FloatSpinBox, PushButton, SpinBox
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_info

from ..engine.automatic import AutomaticOptions
from ..engine.errors import SAM2Error
from ..layers.automatic import merge_new_objects, segment_everything
from .section import Section

_DEFAULTS = AutomaticOptions()


class AutomaticControls(Section):
    """SAM2's automatic mask generator on the displayed plane, with microscopy defaults."""

    def __init__(self, annotation, notify):
        super().__init__(annotation, notify)
        self._bar = None
        self.points_per_side = SpinBox(
            label="Points per side", min=4, max=128, value=_DEFAULTS.points_per_side
        )
        self.pred_iou_thresh = FloatSpinBox(
            label="Min predicted IoU", min=0, max=1, step=0.05, value=_DEFAULTS.pred_iou_thresh
        )
        self.stability_score_thresh = FloatSpinBox(
            label="Min stability", min=0, max=1, step=0.05, value=_DEFAULTS.stability_score_thresh
        )
        self.crop_n_layers = SpinBox(label="Crop layers", min=0, max=3, value=0)
        self.min_area = SpinBox(label="Min area (px)", min=0, max=10**6, value=_DEFAULTS.min_area)
        self.only_new = CheckBox(text="Skip masks over objects already labelled", value=True)
        self.run_button = PushButton(text="Segment everything")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.extend(
            [
                self.points_per_side,
                self.pred_iou_thresh,
                self.stability_score_thresh,
                self.crop_n_layers,
                self.min_area,
                self.only_new,
                self.run_button,
                self.cancel_button,
            ]
        )
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)

    def options(self) -> dict:
        return {
            "points_per_side": self.points_per_side.value,
            "pred_iou_thresh": self.pred_iou_thresh.value,
            "stability_score_thresh": self.stability_score_thresh.value,
            "crop_n_layers": self.crop_n_layers.value,
            "min_area": self.min_area.value,
        }

    def run(self) -> None:
        if self.worker is not None:
            return
        try:
            request = self.annotation.plane_request()
        except SAM2Error as err:
            self._notify(err)
            return
        self._bar = progress(total=0, desc="SAM2: segmenting everything")
        self.worker = create_worker(
            segment_everything,
            self.annotation.segmenter,
            request,
            self.options(),
            _ignore_errors=True,  # errored → notification
        )
        self.worker.yielded.connect(self._progress)
        self.worker.returned.connect(partial(self._merge, request))
        self.worker.errored.connect(self._notify)
        self.worker.finished.connect(self._finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.worker.start()

    def _progress(self, step) -> None:
        self._bar.total = step.total
        self._bar.n = step.done
        self._bar.refresh()

    def _merge(self, request, labels) -> None:
        if not self._alive:
            return
        try:
            added = merge_new_objects(self.annotation, request, labels, self.only_new.value)
        except SAM2Error as err:
            self._notify(err)
            return
        show_info(f"Segment everything: {added} new objects.")

    def cancel(self) -> None:
        """Stop at the next batch of points; nothing is written."""
        if self.worker is not None:
            self.worker.quit()

    def _finished(self) -> None:
        self.worker = None
        self._bar.close()
        if self._alive:
            self.run_button.enabled = True
            self.cancel_button.enabled = False
