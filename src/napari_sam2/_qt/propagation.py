"""Propagate controls of the dock widget, over a ``LayerPropagation``: axis and range, an
estimate before the run, progress, ETA and Cancel in the tab itself, and following the run."""

from __future__ import annotations

import time
from functools import partial

from magicgui.widgets import CheckBox, ComboBox, Label, ProgressBar, PushButton, SpinBox
from napari.qt.threading import create_worker
from napari.utils.notifications import show_warning

from ..engine.errors import SAM2Error
from ..engine.video.planning import DIRECTIONS
from ..engine.video.timing import RunTimes
from ..layers.plane import displayed_plane, move_to_frame
from ..layers.prompts import prompted_objects
from ..layers.propagation import LayerPropagation, frame_axes
from ..layers.region import draw_region, frames_note, region_box
from .confidence_strip import ConfidenceStrip, next_doubtful
from .section import Section

NEXT_DOUBTFUL_KEY = "d"
DIVIDE_KEY = "v"
DIVIDE_TEXT = f"Current object divides here [{DIVIDE_KEY}]"
_STRIP_REFRESH_S = 0.25  # the strip is repainted at most this often while frames arrive


class PropagationControls(Section):
    """Frame axis, range and direction; an estimate; Propagate with progress and Cancel."""

    def __init__(self, annotation, notify):
        super().__init__(annotation, notify)
        self.propagation: LayerPropagation | None = None
        self._stream = None

        self._run: dict = {}  # the run in progress: start time, frames and object-frames done
        self._run_times: dict[int, RunTimes] = {}  # by segmenter id

        self.frame_axis = ComboBox(label="Along", choices=self._axes)
        self.frame_axis.tooltip = "The time or z axis to propagate along"
        self.first = SpinBox(label="First frame", min=0, max=0)
        self.last = SpinBox(label="Last frame", min=0, max=0)
        self.direction = ComboBox(label="Direction", choices=list(DIRECTIONS), value="both")
        self.use_labels = CheckBox(text="Also propagate labels painted on this frame")
        self.reliable_memory = CheckBox(text="Keep doubtful frames out of memory")
        self.reliable_memory.tooltip = (
            "For cells that are occluded or leave the field for a while: a frame whose "
            "confidence is under 0.5 is not remembered, so the cell is looked for as prompted"
        )
        self.region_button = PushButton(text="Draw a region to track at native resolution")
        self.region_button.tooltip = (
            "Large frames are shrunk to the model's input; a rectangle on the SAM2 region "
            "layer makes propagation track only that part of each frame, at native resolution"
        )
        self.follow = CheckBox(text="Follow propagation (show each frame as it finishes)")
        self.estimate = Label(label="Estimate", value="")
        self.propagate_button = PushButton(text="Propagate")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="Progress", min=0, max=1, value=0)
        self.progress_text = Label(value="")
        self.strip = ConfidenceStrip()
        self.doubtful_button = PushButton(text=f"Next doubtful frame [{NEXT_DOUBTFUL_KEY}]")
        self.divide_button = PushButton(text=DIVIDE_TEXT)
        self.divide_button.tooltip = (
            "Then click the two daughters: the object's track ends on the frame before, and "
            "the daughters, with new ids, are tracked forward from this one"
        )
        self._division: dict | None = None  # a division being marked: mother, frame, daughters
        self.extend(
            [
                self.frame_axis,
                self.first,
                self.last,
                self.direction,
                self.use_labels,
                self.reliable_memory,
                self.region_button,
                self.follow,
                self.estimate,
                self.propagate_button,
                self.cancel_button,
                self.progress,
                self.progress_text,
            ]
        )
        self.native.layout().addWidget(self.strip)
        self.append(self.doubtful_button)
        self.append(self.divide_button)
        self.divide_button.changed.connect(self.start_division)
        self.strip.picked.connect(self.go_to)
        annotation.viewer.dims.events.current_step.connect(self._mark_shown_frame)
        self.doubtful_button.changed.connect(self.next_doubtful)
        self._painted = 0.0
        self.frame_axis.changed.connect(self._update_range)
        for box in (self.first, self.last):
            box.changed.connect(self.update_estimate)
        self.propagate_button.changed.connect(self.propagate)
        self.region_button.changed.connect(lambda: draw_region(self.annotation))
        self.cancel_button.changed.connect(self.cancel)

    # -- choices ------------------------------------------------------------------------------
    def _axes(self, _widget=None) -> list[tuple[str, int]]:
        """(name shown, layer axis) for every axis that can be propagated along."""
        annotation = self.annotation
        if annotation.image_layer is None:
            return []
        try:
            plane = displayed_plane(
                annotation.viewer, annotation.image_layer, annotation.channel_axis
            )
        except SAM2Error:
            return []
        shape = annotation.image_layer.data.shape
        return [
            (f"{self._axis_name(ax)} ({shape[ax]} {self._unit(ax)}s)", ax)
            for ax in frame_axes(annotation.image_layer, plane)
        ]

    def _axis_name(self, axis: int) -> str:
        """The viewer's label of a layer axis ("t", "z"), or "axis N" where it has none."""
        viewer, layer = self.annotation.viewer, self.annotation.image_layer
        label = str(viewer.dims.axis_labels[viewer.dims.ndim - layer.ndim + axis])
        return f"axis {axis}" if label.lstrip("-").isdigit() else label

    def _unit(self, axis: int | None) -> str:
        """What one step along ``axis`` is called: a frame in time, a slice in z."""
        name = "" if axis is None else self._axis_name(axis).lower()
        if name in ("z", "depth", "slice", "slices"):
            return "slice"
        if name in ("t", "time", "frame", "frames"):
            return "frame"
        return "plane"

    def _update_range(self, *_) -> None:
        axis = self.frame_axis.value
        if axis is None:
            return
        n = self.annotation.image_layer.data.shape[axis]
        unit = self._unit(axis)
        self.first.label, self.last.label = f"First {unit}", f"Last {unit}"
        for box in (self.first, self.last):
            box.max = n - 1
        self.first.value, self.last.value = 0, n - 1
        self.update_estimate()

    def update_estimate(self, *_) -> None:
        """How long the frames of the prompted objects take, from the runs measured so far
        (``RunTimes``), before pressing."""
        annotation, axis = self.annotation, self.frame_axis.value
        if axis is None or annotation.points_layer is None:
            self.estimate.value = ""
            return
        frames = self.last.value - self.first.value + 1
        objects = len(prompted_objects(annotation.points_layer, annotation.shapes_layer))
        if not objects:
            self.estimate.value = "click an object first"
            return
        work = f"{frames} {self._unit(axis)}s × {objects} object{'s' * (objects > 1)}"
        guess = self.run_times().estimate(frames, objects)
        if guess is not None:
            word, seconds = guess
            text = f"{work}: {word} {_duration(seconds)}"
        elif annotation.embed_seconds is not None:
            least = _duration(frames * annotation.embed_seconds)
            text = f"{work}: at least {least} (measured once it runs)"
        else:
            text = f"{work} (time measured once it runs)"
        size = annotation.segmenter.model.image_size if annotation.segmenter else 1024
        self.estimate.value = text + frames_note(annotation, region_box(annotation), size)

    def run_times(self) -> RunTimes:
        """The runs measured with the current segmenter (its model on its device)."""
        return self._run_times.setdefault(id(self.annotation.segmenter), RunTimes())

    def refresh(self) -> None:
        """Re-read the axes after the widget attached to another image."""
        self.frame_axis.reset_choices()
        self._update_range()

    # -- propagation --------------------------------------------------------------------------
    def current(self) -> LayerPropagation:
        """The propagation for the chosen axis and range: the last one, or a new one."""
        axis = self.frame_axis.value
        if axis is None:
            raise SAM2Error("This image has no axis to propagate along (it is 2D).")
        if self.last.value < self.first.value:
            raise SAM2Error("The last frame comes before the first: fix the frame range.")
        frame_range = (self.first.value, self.last.value + 1)
        box = region_box(self.annotation)
        if self.propagation is not None and not self.propagation.matches(
            self.annotation, axis, frame_range, box
        ):
            self.propagation.close()
            self.propagation = None
        if self.propagation is None:
            self.propagation = LayerPropagation(
                self.annotation, axis, frame_range, self.use_labels.value, region_box=box
            )
        self.propagation.use_labels = self.use_labels.value
        self.propagation.session.reliable_memory = self.reliable_memory.value
        return self.propagation

    def propagate(self) -> None:
        """Run the propagation in a worker; each finished frame is written as it arrives."""
        if self.worker is not None:
            show_warning("A propagation is already running: wait for it or cancel it.")
            return
        try:
            propagation = self.current()
            steps, stream = propagation.start(self.direction.value)
        except SAM2Error as err:
            self._notify(err)
            return
        self._start(propagation, len(steps), stream)

    def _start(self, propagation: LayerPropagation, total: int, stream) -> None:
        self._stream = stream
        self.worker = create_worker(
            _pass_through,
            stream,
            _progress={"total": total, "desc": "SAM2: propagating"},
            _ignore_errors=True,  # errored → notification
        )
        self.worker.yielded.connect(partial(self._write, propagation))
        self.worker.errored.connect(self._notify)
        self.worker.finished.connect(self._finished)
        self.propagate_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.max, self.progress.value = total, 0
        self.progress_text.value = f"starting: {total} {self._unit(propagation.frame_axis)}s"
        self._run = {"start": time.perf_counter(), "frames": 0, "object_frames": 0}
        self.worker.start()

    # -- divisions ----------------------------------------------------------------------------
    def start_division(self, *_) -> None:
        """The current object divides on the shown frame: the next two clicks are its
        daughters, which get new ids and are tracked forward from here."""
        annotation = self.annotation
        try:
            if self.worker is not None:
                raise SAM2Error("A propagation is running: wait for it or cancel it first.")
            if self.propagation is None:
                raise SAM2Error("Propagate the object first: a division ends its track.")
            frame = self.propagation.shown_frame()
        except SAM2Error as err:
            self._notify(err)
            return
        self._division = {"mother": annotation.object_id, "frame": frame, "daughters": []}
        self.divide_button.text = f"Click the 2 daughters of object {annotation.object_id}…"

    def take_division_click(self, event) -> bool:
        """Take a click meant as a daughter (while a division is being marked); True if so."""
        division = self._division
        points = self.annotation.points_layer
        if division is None or event is None or event.source != points:  # (a proxy: ==)
            return False
        if str(getattr(event, "action", "")) != "added":
            return True
        daughter = self.annotation.new_object()
        features = points.features.copy()
        features.loc[features.index[-1], "object_id"] = daughter
        points.features = features
        self.annotation.refresh_prompt_colors()
        division["daughters"].append(daughter)
        if len(division["daughters"]) == 2:
            self._division = None
            self.divide_button.text = DIVIDE_TEXT
            self._run_division(**division)
        return True

    def _run_division(self, mother: int, frame: int, daughters: list[int]) -> None:
        try:
            total, stream = self.propagation.divide(mother, frame, daughters)
        except SAM2Error as err:
            self._notify(err)
            return
        self._start(self.propagation, total, stream)

    def _write(self, propagation: LayerPropagation, result) -> None:
        if not self._alive:
            return
        try:
            propagation.write(*result)
        except SAM2Error as err:
            self._notify(err)
            self.cancel()
            return
        frame, object_ids, _ = result
        run = self._run
        run["frames"] += 1
        run["object_frames"] += len(object_ids)
        elapsed = time.perf_counter() - run["start"]
        left = elapsed / run["frames"] * (self.progress.max - run["frames"])
        self.progress.value = run["frames"]
        self.progress_text.value = (
            f"{self._unit(propagation.frame_axis)} {frame} done, {run['frames']} of "
            f"{self.progress.max}; about {_duration(left)} left"
        )
        now = time.perf_counter()
        if now - self._painted > _STRIP_REFRESH_S:
            self._paint_strip()
            self._painted = now
        if self.follow.value:
            move_to_frame(self.annotation.viewer, propagation.layer, propagation.frame_axis, frame)

    def cancel(self) -> None:
        """Stop after the frame being computed; frames already written stay."""
        if self.worker is not None:
            self.worker.quit()

    def _finished(self) -> None:
        # A cancelled worker leaves its generator open; closing it ends the engine's run.
        self._stream.close()
        self.worker = None
        run, self._run = self._run, {}
        if run.get("frames"):
            seconds = time.perf_counter() - run["start"]
            self.run_times().add(run["frames"], run["object_frames"], seconds)
        if self._alive:
            self._paint_strip()
            self.annotation.objects_changed.emit()
            self.propagate_button.enabled = True
            self.cancel_button.enabled = False
            done, total = run.get("frames", 0), self.progress.max
            stopped = "finished" if done == total else "stopped"
            self.progress_text.value = f"{stopped}: {done} of {total} written"
            self.update_estimate()

    def adopt(self, propagation: LayerPropagation) -> None:
        """Use a propagation made elsewhere (a reopened annotation): its range, its strip."""
        self.propagation = propagation
        first, stop = propagation.session.frame_range
        self.first.value, self.last.value = first, stop - 1
        self._paint_strip()
        self.update_estimate()

    # -- confidence -----------------------------------------------------------------------------
    def _paint_strip(self) -> None:
        if self.propagation is not None:
            self.strip.set_data(
                self.propagation.session.confidence, range(*self.propagation.session.frame_range)
            )

    def go_to(self, frame: int, object_id: int) -> None:
        """Show ``frame`` and make ``object_id`` the current object (a click on the strip)."""
        if self.propagation is None:
            return
        self.annotation.set_object(object_id)
        move_to_frame(
            self.annotation.viewer, self.propagation.layer, self.propagation.frame_axis, frame
        )

    def _mark_shown_frame(self, _event=None) -> None:
        if self._alive and self.propagation is not None and self.strip.confidence:
            try:
                self.strip.current = self.propagation.shown_frame()
            except SAM2Error:
                return
            self.strip.update()

    def next_doubtful(self, *_) -> None:
        """Go to the next frame (after the shown one) where an object's mask is doubtful."""
        if self.propagation is None:
            show_warning("Propagate first: confidence comes with the propagated frames.")
            return
        here = self.propagation.shown_frame()
        found = next_doubtful(
            self.propagation.session.confidence, here, range(*self.propagation.session.frame_range)
        )
        if found is None:
            show_warning("No doubtful frame: every tracked mask has confidence ≥ 0.5.")
            return
        self.go_to(*found)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _pass_through(stream):
    """Generator for ``create_worker``: yields the engine's frames in the worker thread."""
    yield from stream
