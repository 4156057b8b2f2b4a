"""Prompts into the objects' sam2 inference states: one object at a time, or the prompts of
many objects on one frame in one pass of the model.

sam2 takes each object's prompts by itself (``add_new_points_or_box``, ``add_new_mask``: one
pass of the prompt encoder and mask decoder per object). Objects clicked on the same frame
with the same number of prompt points (box corners count as two) and nothing computed on that
frame yet — every cell of a crowded field clicked once, say — are decoded together here, and
so are objects given a mask alone on the same frame (segment everything, or clicks the image
path segmented in windows, ``shown_masks``): the model treats batch elements independently, so
each object gets the output sam2 would give it alone, stored in its state as sam2 stores it.
The callers hold the inference context.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..prompts import PromptSet
from .batching import MAX_BATCH, graph_limit, graphs_for, prompt_batch
from .confidence import take_scores
from .states import new_state

# Mask prompts are resized on the device at most this many pixels at a time (256 MiB as
# float32: four 4096² planes).
_MASK_PIXELS = 1 << 26
# (frame, object id, prompt), as ``PropagationSession`` queues them.
Item = tuple[int, int, PromptSet]


class PromptQueue:
    """A session's prompts that are checked and recorded but not yet in the model (``items``),
    and the scores of the masks the model made from those it was given (``scores``: object id
    → frame → ``take_scores()``, see ``confidence``). ``states`` are the session's, by object.
    """

    def __init__(self, model, states: dict[int, dict], frames, features):
        self.model, self.states, self.frames, self.features = model, states, frames, features
        self.items: list[Item] = []
        self.scores: dict[int, dict[int, tuple]] = {}

    def give(self, tracked: set[int], one_by_one: bool = False) -> None:
        """Give the model the queued prompts of the ``tracked`` objects; each stays queued
        until the model has it (a failure retries). Clicks of many objects on one frame are
        decoded together unless ``one_by_one`` (as sam2 does: for the agreement test)."""
        ready = [item for item in self.items if item[1] in tracked]
        together, alone = ([], ready) if one_by_one else batches(ready, self.states)
        given: set[int] = set()  # ids: items are not compared (their prompts hold arrays)
        try:
            for group in together:
                frame = group[0][0]
                states = [self._state(oid) for _, oid, _ in group]
                states[0]["cached_features"] = {frame: self.features.get(frame, 1, frame)}
                ious, logits = add_together(self.model, states, group)
                for k, item in enumerate(group):
                    scores = (ious[k : k + 1], logits[k : k + 1])
                    self.scores.setdefault(item[1], {})[frame] = scores
                    given.add(id(item))
            for item in alone:
                frame, object_id, prompt = item
                state = self._state(object_id)
                # Objects prompted on the same frame share its image features (sam2 would
                # encode the frame again for each object's state).
                state["cached_features"] = {frame: self.features.get(frame, 1, frame)}
                take_scores()
                add_prompt(self.model, state, frame, object_id, prompt)
                self.scores.setdefault(object_id, {})[frame] = take_scores()
                given.add(id(item))
        finally:
            self.items = [item for item in self.items if id(item) not in given]

    def _state(self, object_id: int) -> dict:
        """The object's inference state, made on its first prompt."""
        state = self.states.get(object_id)
        if state is None:
            template = next(iter(self.states.values()), None)
            state = self.states[object_id] = new_state(self.model, self.frames, template)
        return state

    def forget(self, object_id: int) -> None:
        self.scores.pop(object_id, None)
        self.items = [item for item in self.items if item[1] != object_id]

    def clear(self) -> None:
        self.items.clear()
        self.scores.clear()


def add_prompt(model, state: dict, frame: int, object_id: int, prompt: PromptSet) -> None:
    """Give the model one object's prompts on one frame, which becomes a conditioning frame."""
    _make_anchor(state, frame)
    if prompt.mask is not None:
        model.add_new_mask(state, frame, object_id, prompt.mask)
    if prompt.points is not None or prompt.box is not None:
        # The previous step's mask (if any) seeds the decoder with the clicks.
        sam = PromptSet(prompt.points, prompt.point_labels, prompt.box).to_sam()
        model.add_new_points_or_box(
            state,
            frame,
            object_id,
            points=sam.get("point_coords"),
            labels=sam.get("point_labels"),
            box=sam.get("box"),
            clear_old_points=True,
        )


def _make_anchor(state: dict, frame: int) -> None:
    """A prompted frame is always a conditioning frame of its object (an anchor), also when it
    was tracked before: forget that it was tracked so sam2 treats it as one."""
    for tracked in state["frames_tracked_per_obj"].values():
        tracked.pop(frame, None)


def batches(items: list[Item], states: dict[int, dict]) -> tuple[list[list[Item]], list[Item]]:
    """``items`` split into groups to give together (``add_together``, at most ``MAX_BATCH``
    each) and the rest, in their order, for ``add_prompt`` one at a time.

    An item joins a group when it is its object's only item on its frame and is either a mask
    alone or clicks and boxes without a mask where the object has no output on that frame
    (clicks that edit a mask are seeded with it).
    """
    seen: dict[tuple[int, int], int] = {}
    for frame, oid, _ in items:
        seen[frame, oid] = seen.get((frame, oid), 0) + 1
    groups: dict[tuple[int, int], list[Item]] = {}
    rest = []
    for item in items:
        frame, oid, prompt = item
        state = states.get(oid)
        clicks = prompt.points is not None or prompt.box is not None
        if seen[frame, oid] > 1 or (prompt.mask is not None and clicks):
            rest.append(item)
        elif prompt.mask is not None:
            groups.setdefault((frame, "mask"), []).append(item)
        elif state is None or not _has_output(state, frame):
            groups.setdefault((frame, _tokens(prompt)), []).append(item)
        else:
            rest.append(item)
    together = [
        group[start : start + MAX_BATCH]
        for group in groups.values()
        for start in range(0, len(group), MAX_BATCH)
    ]
    return together, rest


def _tokens(prompt: PromptSet) -> int:
    points = 0 if prompt.points is None else len(prompt.points)
    return points + (2 if prompt.box is not None else 0)


def _has_output(state: dict, frame: int) -> bool:
    temp, out = state["temp_output_dict_per_obj"][0], state["output_dict_per_obj"][0]
    return any(frame in d[key] for d in (temp, out) for key in d)


def add_together(model, states: list[dict], items: list[Item]) -> tuple:
    """Give the prompts of ``items`` (one group of ``batches``, all on one frame: all masks,
    or all clicks and boxes; ``states[k]`` is the state of ``items[k]``'s object, the first
    holding the frame's features) in one pass. Returns the pass's scores
    (``confidence.take_scores``)."""
    frame = items[0][0]
    given_masks = items[0][2].mask is not None
    inputs: list = []
    if given_masks:
        inputs = list(_mask_inputs(model, states[0], [p.mask for *_, p in items]).split(1))
    for k, (state, (_, oid, prompt)) in enumerate(zip(states, items, strict=True)):
        model._obj_id_to_idx(state, oid)  # makes the object known to its state
        _make_anchor(state, frame)
        if given_masks:
            state["mask_inputs_per_obj"][0][frame] = inputs[k]
            state["point_inputs_per_obj"][0].pop(frame, None)
        else:
            point_coords, point_labels = _point_inputs(model, state, prompt)
            inputs.append({"point_coords": point_coords, "point_labels": point_labels})
            state["point_inputs_per_obj"][0][frame] = inputs[-1]
            state["mask_inputs_per_obj"][0].pop(frame, None)
    inputs += inputs[-1:] * (prompt_batch(model, len(inputs)) - len(inputs))
    masks = points = None
    if given_masks:
        masks = torch.cat(inputs)
    else:
        points = {key: torch.cat([p[key] for p in inputs]) for key in inputs[0]}
    lead = states[0]
    take_scores()
    with graphs_for(len(inputs), graph_limit(model)):
        out, _ = model._run_single_frame_inference(
            inference_state=lead,
            output_dict=lead["output_dict_per_obj"][0],
            frame_idx=frame,
            batch_size=len(inputs),
            is_init_cond_frame=True,
            point_inputs=points,
            mask_inputs=masks,
            reverse=False,
            run_mem_encoder=False,  # sam2 encodes prompted frames' memory when tracking starts
        )
    for i, state in enumerate(states):
        state["temp_output_dict_per_obj"][0]["cond_frame_outputs"][frame] = {
            "maskmem_features": None,
            "maskmem_pos_enc": None,
            "pred_masks": out["pred_masks"][i : i + 1],
            "obj_ptr": out["obj_ptr"][i : i + 1],
            "object_score_logits": out["object_score_logits"][i : i + 1],
        }
    ious, logits = take_scores()
    return ious[: len(states)], logits[: len(states)]


def _mask_inputs(model, state: dict, masks: list) -> torch.Tensor:
    """Masks of one plane as sam2's ``add_new_mask`` makes each: (n, 1, size, size) at the
    model's input size, resized with antialiasing and thresholded at a half; copied to the
    device and resized together, as many at a time as ``_MASK_PIXELS`` holds, rather than one
    copy and resize per object."""
    size = model.image_size
    h, w = masks[0].shape
    per_copy = max(1, _MASK_PIXELS // (h * w))
    out = []
    for start in range(0, len(masks), per_copy):
        chunk = torch.from_numpy(np.stack(masks[start : start + per_copy]))
        chunk = chunk[:, None].to(state["device"]).float()
        if (h, w) != (size, size):
            chunk = F.interpolate(
                chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
            chunk = (chunk >= 0.5).float()
        out.append(chunk)
    return torch.cat(out)


def _point_inputs(model, state: dict, prompt: PromptSet) -> tuple[torch.Tensor, torch.Tensor]:
    """One object's prompt as sam2's point inputs (1, k, 2) and labels (1, k): box corners
    first (labels 2 and 3), then the clicks, in the model's input pixels (x, y)."""
    sam = PromptSet(prompt.points, prompt.point_labels, prompt.box).to_sam()
    points = torch.zeros(0, 2, dtype=torch.float32)
    labels = torch.zeros(0, dtype=torch.int32)
    if "point_coords" in sam:
        points = torch.tensor(sam["point_coords"], dtype=torch.float32)
        labels = torch.tensor(sam["point_labels"], dtype=torch.int32)
    if "box" in sam:
        points = torch.cat([torch.tensor(sam["box"], dtype=torch.float32).reshape(2, 2), points])
        labels = torch.cat([torch.tensor([2, 3], dtype=torch.int32), labels])
    size = torch.tensor([state["video_width"], state["video_height"]])
    points = points / size * model.image_size
    device = state["device"]
    return points[None].to(device), labels[None].to(device)
