"""A propagation run's frames, one tracking step per frame for all objects tracked there.

On each frame of a run, the objects tracked there are grouped by the frames their memories lie
on (``batching.memory_frames``): objects prompted on the same frames and tracked over the same
frames — all cells of a "segment everything", say — share one batched sam2 step (up to
``batching.batch_limit`` objects a step); an object added later, corrected, or conditioned on
other frames is its own group until its memories line up again. A prompted frame hands out the
object's stored output, as sam2 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .batching import (
    batch_limit,
    encode_prompted,
    graph_limit,
    graphs_for,
    memory_frames,
    size_class,
    track_batch,
)
from .confidence import MEMORY_MIN_CONFIDENCE, confidence, jump, per_object, summary
from .features import SharedFeatures
from .memory_keys import MemoryKeys, fits, usable
from .planning import Step, run_end, run_objects
from .states import drop_memory, forget


@dataclass
class _Run:
    """One object's run of consecutive frames in one direction."""

    next: int  # the frame it continues on
    last: int
    reverse: bool  # as sam2 is told: a reverse run that starts on frame 0 runs forward
    previous: torch.Tensor | None = None  # summary of its last mask, for ``jump``


class RunTracker:
    """Tracks the objects of ``steps`` frame by frame (``track(i)`` for ``steps[i]``, in order).

    ``states``, ``scores`` and ``anchors`` are the session's: each object's inference state,
    the scores of its prompted frames, and its prompts by frame. With ``pad`` (while CUDA
    graphs replay the step) each batch is padded to its ``size_class``. ``per_object`` tracks
    every object in a step of its own, as sam2 does: only for the agreement test and bench.
    ``reliable_memory`` keeps a tracked frame under ``MEMORY_MIN_CONFIDENCE`` out of its
    object's memory (see ``PropagationSession``). Steps that run without CUDA graphs reuse
    each memory frame's keys and values where the model and the budget allow
    (``memory_keys``).
    """

    def __init__(
        self,
        model,
        steps: list[Step],
        states: dict[int, dict],
        features: SharedFeatures,
        scores: dict[int, dict[int, tuple]],
        anchors: dict[int, dict],
        memory_window: int,
        pad: bool = False,
        per_object: bool = False,
        reliable_memory: bool = False,
    ):
        self.model, self.steps, self.states, self.features = model, steps, states, features
        self.scores, self.anchors, self.memory_window = scores, anchors, memory_window
        self.pad, self.per_object, self.reliable_memory = pad, per_object, reliable_memory
        self._runs: dict[tuple[int, bool], _Run] = {}
        self.graph_limit, self.batch_limit = graph_limit(model), batch_limit(model)
        objects = run_objects(steps)
        prompted = max((len(anchors.get(oid, ())) for oid in objects), default=0)
        reuse = not per_object and usable(model) and fits(model, len(objects), prompted)
        self.keys = MemoryKeys(model) if reuse else None

    def track(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks (boolean, n × H × W), confidences and areas of ``steps[i]``'s objects, in its
        order, on the device."""
        step = self.steps[i]
        frame, direction = step.frame, -1 if step.reverse else 1
        starting = [oid for oid in step.object_ids if not self._continues(oid, step)]
        if not self.per_object and not self.model.non_overlap_masks_for_mem_enc:
            encode_prompted(self.model, [self.states[oid] for oid in starting], self.features)
        runs = [self._run(oid, i) for oid in step.object_ids]
        for oid in step.object_ids:
            # Share the features sam2 computed itself for this frame (a prompt just added).
            own = self.states[oid]["cached_features"].get(frame)
            if own is not None:
                self.features.put(frame, own)
        last = max((run.last for run in runs), key=lambda f: f * direction)
        image = self.features.get(frame, direction, last)

        low: list[torch.Tensor | None] = [None] * len(runs)
        iou: list[torch.Tensor | None] = [None] * len(runs)
        logit: list[torch.Tensor | None] = [None] * len(runs)
        groups: dict[tuple, list[int]] = {}
        prompted: set[int] = set()
        for k, (oid, run) in enumerate(zip(step.object_ids, runs, strict=True)):
            state = self.states[oid]
            stored = state["output_dict_per_obj"][0]["cond_frame_outputs"].get(frame)
            if stored is not None:  # a prompted frame: its output and its prompts' scores
                low[k] = stored["pred_masks"].to(self.model.device, non_blocking=True)
                iou[k], logit[k] = per_object(self.scores[oid][frame])
                if self.model.clear_non_cond_mem_around_input:
                    self.model._clear_obj_non_cond_mem_around_input(state, frame, 0)
                state["frames_tracked_per_obj"][0][frame] = {"reverse": run.reverse}
                prompted.add(k)
                continue
            key = (run.reverse, memory_frames(self.model, state, frame, run.reverse))
            # Alone when asked, or where sam2's memory encoder would couple a batch's objects.
            if self.per_object or self.model.non_overlap_masks_for_mem_enc:
                key += (oid,)
            groups.setdefault(key, []).append(k)
        for (reverse, frames, *_), group in groups.items():
            for start in range(0, len(group), self.batch_limit):
                members = group[start : start + self.batch_limit]
                batch = [self.states[step.object_ids[k]] for k in members]
                size = size_class(len(batch), self.graph_limit) if self.pad else None
                with graphs_for(len(batch), self.graph_limit):
                    keys = self.keys if size is None else None
                    masks, ious, logits = track_batch(
                        self.model, batch, frame, reverse, image, frames, size, keys
                    )
                for j, k in enumerate(members):
                    low[k], iou[k], logit[k] = masks[j : j + 1], ious[j : j + 1], logits[j : j + 1]

        masks = self._video_resolution(torch.cat(low))[:, 0] > 0
        current = summary(masks)
        pairs = zip(runs, current, strict=True)
        previous = torch.stack([c if run.previous is None else run.previous for run, c in pairs])
        scores = confidence(torch.cat(iou), torch.cat(logit), jump(previous, current))
        for oid, run, c in zip(step.object_ids, runs, current, strict=True):
            run.previous, run.next = c, frame + direction
            forget(self.states[oid], self.anchors[oid], frame, self.memory_window)
        if self.reliable_memory:  # one device-to-host read a frame
            doubtful = (scores < MEMORY_MIN_CONFIDENCE).reshape(-1).tolist()
            for k, oid in enumerate(step.object_ids):
                if doubtful[k] and k not in prompted:
                    drop_memory(self.states[oid], frame)
        return masks, scores, current[:, 0]

    def _continues(self, oid: int, step: Step) -> bool:
        """Whether ``oid`` continues a run on ``step`` (else one starts there)."""
        run = self._runs.get((oid, step.reverse))
        return run is not None and run.next == step.frame

    def _run(self, oid: int, i: int) -> _Run:
        """The run ``oid`` continues on ``steps[i]``, or a new one starting there."""
        step = self.steps[i]
        run = self._runs.get((oid, step.reverse))
        if not self._continues(oid, step):
            # sam2 takes the prompts added since the last run into the object's memory.
            self.model.propagate_in_video_preflight(self.states[oid])
            run = _Run(step.frame, run_end(self.steps, i, oid), step.reverse and step.frame > 0)
            self._runs[(oid, step.reverse)] = run
        return run

    def _video_resolution(self, logits: torch.Tensor) -> torch.Tensor:
        """Mask logits resized to the stack's frames, as sam2 hands them out."""
        state = next(iter(self.states.values()))
        size = (state["video_height"], state["video_width"])
        if logits.shape[-2:] == size:
            return logits
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
