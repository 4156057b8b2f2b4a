"""``PropagationSession``: prompts and tracking memory of objects over one stack.

Frames are prepared lazily (``reading``) and every tracking step is sam2's own code; the
session decides which frames to run, shares the image features between objects, and forgets
the per-frame memory the model will never attend to again, so memory stays flat as the number
of frames grows.

Each object gets its own inference state (all states share the frames and the image features).
That is what lets a correction re-run one object from the corrected frame to its next prompted
frame, and a new object join without re-running the others. On each frame, the objects whose
memories lie on the same frames are tracked in one batched step (``tracking``, ``batching``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..cuda_graphs import tracking_graphs
from ..errors import SAM2Error
from ..frames import FrameSource
from ..image import ImageSession
from ..models import inference_context
from ..prompts import PromptSet
from .faster import faster_forms
from .features import SharedFeatures
from .lineage import Division
from .planning import Step, check_frame, plan_steps, run_objects
from .prompting import PromptQueue
from .reading import ModelFrames
from .record import AnnotationRecord
from .runtime import OutOfMemoryAdvice, adapt_model, attention_kernels
from .shown_masks import ShownMasks
from .states import stored_frames
from .stream import FrameResult, Frames, FrameStream, MasksToHost
from .tracking import RunTracker


class PropagationSession:
    """Prompts and tracking memory of objects over one stack, kept between propagation runs.

    >>> session = PropagationSession(model, FrameSource(stack))      # doctest: +SKIP
    >>> session.add_prompts({0: {1: dict(points=[(30, 40)])}})       # doctest: +SKIP
    >>> for frame, ids, masks in session.propagate("both"):          # doctest: +SKIP
    ...     ...

    Corrections: add prompts on frame ``k`` for the objects to fix, then
    ``propagate(direction, start_frame=k, objects=[...], stop_at_next_prompt=True)`` (or just
    ``correct``) recomputes those objects from ``k`` up to, not including, their next prompted
    frame in that direction; every other frame and object is left alone. A new object joins by
    adding its prompts and propagating with ``objects=[new_id]``. Every prompted frame is a
    conditioning frame ("anchor") of its object. A correction made of clicks edits the mask the
    session last computed on that frame if it still holds it; pass ``mask=`` (the current mask)
    with the clicks to edit a given mask instead. ``divide`` ends an object where two daughters
    begin. What a saved annotation holds (prompts, per-frame confidence and area, names,
    divisions) is in ``record``.

    Memory: per object, the session keeps the outputs of its prompted frames and of the frames
    within ``memory_window`` of them or of the frame being tracked (the model attends to at most
    ``num_maskmem`` previous memories and ``max_obj_ptrs_in_encoder`` object pointers); the rest
    is dropped as tracking moves on.

    ``reliable_memory``: a tracked frame whose confidence is under ``MEMORY_MIN_CONFIDENCE``
    (the object absent, or its mask doubtful) does not become memory, so an object that is
    occluded or leaves for a while is looked for as prompted rather than as the background it
    was lost in (measured in docs/propagation.md). It costs a device-to-host read per object
    and frame, so it is off by default.

    ``embeddings``: the image path's ``ImageSession`` (the ``Segmenter``'s), whose cached
    windows prompted frames segmented in windows take instead of embedding them again.

    Speed: all objects tracked on a frame whose memories lie on the same frames go through one
    tracking step batched over them. On CUDA, ``batch_size`` frames are encoded at once (default
    8), and with ``cuda_graphs`` (default) the tracking step's memory attention, mask heads and
    memory encoder are replayed as CUDA graphs once their input shapes repeat, one graph per
    batch-size class (see ``cuda_graphs``, ``batching.size_class``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        source: FrameSource,
        frame_range: tuple[int, int] | None = None,
        batch_size: int | None = None,
        cuda_graphs: bool = True,
        model_name: str | None = None,
        reliable_memory: bool = False,
        embeddings: ImageSession | None = None,
    ):
        from sam2.sam2_video_predictor import SAM2VideoPredictor

        if not isinstance(model, SAM2VideoPredictor):
            raise SAM2Error("Propagation needs a model built as sam2's SAM2VideoPredictor.")
        self.model = model
        self.source = source
        self.device = model.device
        n = len(source)
        start, stop = (0, n) if frame_range is None else (int(frame_range[0]), int(frame_range[1]))
        if not 0 <= start < stop <= n:
            raise SAM2Error(
                f"Frame range {frame_range} does not fit the {n} frames: give (first, stop) "
                f"with 0 <= first < stop <= {n}."
            )
        self.frame_range = (start, stop)
        self.cuda_graphs = cuda_graphs
        self.reliable_memory = reliable_memory
        on_gpu = self.device.type == "cuda"
        if batch_size is None:
            batch_size = 8 if on_gpu else 1
        ahead = 2 * batch_size if on_gpu else 2
        self.frames = ModelFrames(
            source,
            model.image_size,
            read_ahead=ahead,
            device=self.device if on_gpu else "cpu",
            workers=4 if on_gpu else 1,
        )
        self._features = SharedFeatures(model, self.frames, batch_size)
        self.memory_window = (
            max(
                model.num_maskmem * model.memory_temporal_stride_for_eval + 1,
                model.max_obj_ptrs_in_encoder,
            )
            + 1
        )
        self._states: dict[int, dict] = {}
        self.record = AnnotationRecord(n)
        self.model_name = model_name
        self._prompts = PromptQueue(model, self._states, self.frames, self._features)
        self._shown = ShownMasks(model, source, embeddings)
        self._running = False
        # Per-object tracking, one sam2 step per object and frame as sam2 itself runs: only for
        # the agreement test and the benchmark (see ``RunTracker``).
        self._per_object = False
        adapt_model(model)

    # ----------------------------------------------------------------------------- prompts
    @property
    def confidence(self) -> dict[int, np.ndarray]:
        """Object id → confidence on each frame of the stack (NaN where not computed)."""
        return self.record.confidence

    @property
    def area(self) -> dict[int, np.ndarray]:
        """Object id → mask area in pixels on each frame of the stack (NaN where not computed)."""
        return self.record.area

    @property
    def names(self) -> dict[int, str]:
        """Object id → a name the user gave it (saved with the annotation)."""
        return self.record.names

    @property
    def parents(self) -> dict[int, int]:
        """{daughter id: mother id} of the divisions marked."""
        return self.record.lineage.parents

    @property
    def object_ids(self) -> list[int]:
        return list(self.record.prompts)

    def prompted_frames(self, object_id: int) -> list[int]:
        return self.record.frames(object_id)

    def add_prompts(self, prompts: Mapping[int, Mapping[int, dict | PromptSet]]) -> None:
        """Add prompts: {frame index: {object id: dict(points=, point_labels=, box=, mask=)}}.

        Points are (row, col), a box (min_row, min_col, max_row, max_col), a mask a boolean
        (H, W) array, as for ``Segmenter.predict``. All prompts are checked here, before any
        is used; the model reads them when a run of their object starts, in the thread that
        consumes it (the prompted frames' image encoding takes seconds on a CPU, so a GUI must
        not wait for it). A prompt replaces that object's earlier prompts on that frame.
        """
        self._check_idle()
        checked = self.record.check(prompts, self.frame_range, self.source.plane_shape)
        for frame, object_id, prompt in checked:
            self._prompts.items.append((frame, object_id, prompt))
            self.record.add(frame, object_id, prompt)
            self._shown.forget(object_id, frame)

    def restore(
        self,
        prompts: Mapping[int, Mapping[int, dict | PromptSet]],
        masks: Mapping[int, Mapping[int, np.ndarray]],
        confidence: Mapping[int, np.ndarray],
        area: Mapping[int, np.ndarray],
        divisions: list[Division],
    ) -> None:
        """Take back a saved annotation: ``prompts`` as for ``add_prompts`` (kept as they are,
        to be saved again), ``masks`` {object id: {frame: mask}} the masks they had made on
        their frames, ``confidence`` and ``area`` as ``self.confidence``, and the divisions.

        Where a prompted frame has its mask, the model is conditioned on that mask instead of
        the prompts: re-applying clicks that once edited a tracked mask would make another one.
        """
        self.record.restore_per_frame(confidence, area)
        for division in divisions:
            self.record.lineage.divisions[division.mother] = division
        self.add_prompts(prompts)
        shape = self.source.plane_shape
        queued = []
        for frame, object_id, prompt in self._prompts.items:
            mask = masks.get(object_id, {}).get(frame)
            if mask is not None:
                prompt = PromptSet.from_arguments(mask=mask).validate(shape)
                self.record.masks.setdefault(object_id, {})[frame] = prompt.mask
            queued.append((frame, object_id, prompt))
        self._prompts.items = queued

    # ------------------------------------------------------------------------- propagation
    def plan(
        self,
        direction: str = "both",
        objects=None,
        start_frame: int | None = None,
        stop_at_next_prompt: bool = False,
    ) -> list[Step]:
        """The frames ``propagate`` will yield with these arguments, in order (for progress)."""
        ids = self._pick_objects(objects)
        if start_frame is not None:
            start_frame = check_frame(self.frame_range, start_frame)
        anchors = {oid: self.record.frames(oid) for oid in ids}
        spans = {oid: self.record.lineage.span(oid, self.frame_range) for oid in ids}
        return plan_steps(anchors, spans, direction, start_frame, stop_at_next_prompt)

    def _pick_objects(self, objects) -> list[int]:
        if not self.record.prompts:
            raise SAM2Error(
                "No prompts: add points, a box or a mask for at least one object on one frame "
                "before propagating."
            )
        if objects is None:
            return self.object_ids
        ids = [int(o) for o in objects]
        unknown = [o for o in ids if o not in self.record.prompts]
        if unknown:
            raise SAM2Error(
                f"Objects {unknown} have no prompts yet: prompt them on a frame first."
            )
        return ids

    def propagate(
        self,
        direction: str = "both",
        objects=None,
        start_frame: int | None = None,
        stop_at_next_prompt: bool = False,
    ) -> FrameStream:
        """Yield ``(frame_index, object_ids, masks)`` as frames finish; masks: bool (n, H, W).

        "forward" runs from each object's first prompted frame (or ``start_frame``) to the end
        of the range, "backward" from its last prompted frame (or ``start_frame``) to the start,
        "both" forward then backward from its first prompted frame. With
        ``stop_at_next_prompt`` a run stops before the object's next prompted frame. A frame may
        come twice in "both" when objects start on different frames, each time with other
        objects. ``len()`` of the stream is the number of items; closing it stops the work,
        and what was yielded stays valid.
        """
        steps = self.plan(direction, objects, start_frame, stop_at_next_prompt)
        return self.run(steps)

    def correct(
        self, frame: int, prompts: Mapping[int, dict | PromptSet], direction="both"
    ) -> FrameStream:
        """Add correction prompts {object id: prompt} on ``frame`` and re-run only those objects
        from ``frame`` to their next prompted frame in ``direction`` (the frame itself included).
        """
        self.add_prompts({frame: prompts})
        return self.run(self.plan(direction, list(prompts), frame, True))

    def divide(
        self, object_id: int, frame: int, daughters: Mapping[int, dict | PromptSet]
    ) -> FrameStream:
        """Mark that ``object_id`` divides on ``frame`` into ``daughters`` {new id: prompt on
        ``frame``}, and track the daughters forward from there.

        The mother's track ends on ``frame - 1``: this stream hands her out with an empty mask
        on each frame the daughters are tracked on (``write_labels`` clears her pixels there),
        and no run tracks her past it again, nor the daughters before ``frame``. ``parents``
        keeps the lineage (for ``export_ctc``).
        """
        self._check_idle()
        frame = check_frame(self.frame_range, frame)
        division = Division(int(object_id), frame, tuple(int(d) for d in daughters))
        lineage = self.record.lineage
        lineage.check(division, self.record, self.frame_range)
        self.add_prompts({frame: daughters})
        lineage.divisions[division.mother] = division
        steps = self.plan("forward", division.daughters, frame)
        return FrameStream(self._run(steps, (division.mother,)), len(steps), self.confidence)

    def remove_object(self, object_id: int) -> None:
        """Forget an object: its prompts and tracking memory (labels are the caller's)."""
        self._check_idle()
        self._states.pop(object_id, None)
        self.record.remove(object_id)
        self._prompts.forget(object_id)
        self._shown.forget(object_id)

    def run(self, steps: list[Step]) -> FrameStream:
        """Yield the frames of ``steps`` (from ``plan``) as ``propagate`` does."""
        self._check_idle()
        return FrameStream(self._run(steps), len(steps), self.confidence)

    @property
    def running(self) -> bool:
        """Whether a propagation run on this session is under way."""
        return self._running

    def _check_idle(self) -> None:
        if self._running:
            raise SAM2Error(
                "A propagation is already running on this stack: wait for it to finish or "
                "cancel it before starting another or adding prompts."
            )

    def _run(self, steps: list[Step], ended: tuple[int, ...] = ()) -> Frames:
        """The frames of ``steps``, with the ``ended`` objects handed out empty on each."""
        self._check_idle()
        self._running = True
        try:
            objects = run_objects(steps)
            with (
                faster_forms(self.model),
                tracking_graphs(self.model, self.cuda_graphs) as graphs,
                attention_kernels(self.model),
            ):
                self._prompts.items = self._shown.stand_in(self._prompts.items, objects)
                # The model gets the prompts of the objects this run tracks; other objects'
                # wait for their own run.
                with OutOfMemoryAdvice(self.device), inference_context(self.device):
                    self._prompts.give(objects, self._per_object)
                tracker = RunTracker(
                    self.model,
                    steps,
                    self._states,
                    self._features,
                    self._prompts.scores,
                    self.record.prompts,
                    self.memory_window,
                    pad=bool(graphs),
                    per_object=self._per_object,
                    reliable_memory=self.reliable_memory,
                )
                # On a GPU a frame is handed out once the next one is queued: its masks reach
                # the host while the GPU works on, instead of the GPU idling while Python
                # prepares each frame.
                lag = 1 if self.device.type == "cuda" else 0
                copying: list[MasksToHost] = []
                for i, step in enumerate(steps):
                    direction = -1 if step.reverse else 1
                    self.frames.step = direction
                    with OutOfMemoryAdvice(self.device), inference_context(self.device):
                        masks, confidence, area = tracker.track(i)
                    self._features.forget_before(step.frame + direction, direction)
                    if ended:
                        n = len(ended)
                        masks = torch.cat([masks, masks.new_zeros((n, *masks.shape[1:]))])
                        confidence = torch.cat([confidence, confidence.new_full((n,), torch.nan)])
                        area = torch.cat([area, area.new_zeros(n)])
                    ids = [*step.object_ids, *ended]
                    copying.append(MasksToHost(step.frame, ids, masks, confidence, area))
                    while len(copying) > lag:
                        yield self._finished(copying.pop(0).result())
                while copying:
                    yield self._finished(copying.pop(0).result())
        finally:
            self._features.clear()
            self._running = False

    def _finished(self, result: FrameResult) -> FrameResult:
        """A finished frame, its prompted masks as shown (``ShownMasks.as_shown``), recorded
        (see ``AnnotationRecord``)."""
        self._shown.as_shown(result, self.record.prompts)
        self.record.handed_out(result)
        return result

    def stored_frames(self, object_id: int) -> int:
        """How many frames' outputs the session holds for an object (tests memory bounds)."""
        return stored_frames(self._states[object_id])

    def close(self) -> None:
        """Free the frames, features and states (the ``record`` stays readable)."""
        self.frames.close()
        self._features.clear()
        self._states.clear()
        self._prompts.clear()
        self._shown.clear()

    def __enter__(self) -> PropagationSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
