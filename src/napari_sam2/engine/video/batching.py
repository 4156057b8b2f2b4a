"""One tracking step for several objects at once, batched over objects.

Each object keeps its own sam2 inference state (``states``). sam2 tracks a frame from the
memories of a few earlier frames and of the conditioning frames; objects whose memories lie on
the same frames get memory tensors of the same shapes, so their memories are stacked along the
batch dimension and sam2's own frame inference (memory attention, mask decoder, memory encoder)
runs once for all of them, on the image features of the frame expanded to the batch. Every part
of that step treats batch elements independently, so each object gets the mask it would get
alone (up to the order of float reductions). The outputs are then split back into each object's
state, as sam2 stores them when it tracks that object by itself.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..cuda_graphs import padded_size, without_graphs
from .confidence import per_object, take_scores
from .memory_keys import Attended, MemoryKeys, release

# At most this many objects go through one step: the step's activations grow with the batch
# (micro on a CPU: peak RSS 0.85 GiB with one object, 1.29 GiB with eight), and on a GPU a
# larger batch gains little once the step fills it.
MAX_BATCH = 64
# On a CPU the arithmetic sets the pace whatever the batch, and a large batch's activations
# leave the caches and fill the memory: 2-core machine, micro, 32 objects, 0.108 frames/s and
# 2.32 GiB peak RSS in one batch, 0.117 and 1.30 GiB in batches of 4 (of 8: 0.114, 1.48).
CPU_BATCH = 4


def batch_limit(model) -> int:
    """The most objects one step of ``model`` takes on its device."""
    return CPU_BATCH if model.device.type == "cpu" else MAX_BATCH


# While CUDA graphs replay the step, a group of objects is padded to the next power of two (1,
# 2, 4, ...): a graph is recorded per input shape, so padding keeps their number small as
# objects come and go. Groups of more than ``graph_limit`` run without graphs and unpadded: the
# GPU's work, not the host's launches, sets their pace. The work goes with objects × image
# tokens; GRAPH_MAX_TOKENS is 16 objects at a 1024 input (H200, micro, 64 objects: 18.5
# frames/s with graphs, 20.5 without, and the recordings delayed the first mask), 64 at 512.
GRAPH_MAX_TOKENS = 16 * 64 * 64


def graph_limit(model) -> int:
    """The most objects a CUDA-graphed step of ``model`` takes: as many as GRAPH_MAX_TOKENS
    image tokens hold, at most MAX_BATCH."""
    tokens = model.sam_image_embedding_size**2
    return max(1, min(MAX_BATCH, GRAPH_MAX_TOKENS // tokens))


def size_class(n: int, limit: int) -> int | None:
    """The batch size a group of ``n`` objects is padded to for CUDA graphs (``limit``: the
    model's ``graph_limit``); None for a group too large for graphs, which runs without them
    (``graphs_for``)."""
    if n > limit:
        return None
    return min(padded_size(n), limit)


def prompt_batch(model, n: int) -> int:
    """The batch ``n`` objects' prompts or first memories go through: on CUDA padded to its
    ``padded_size`` (the padding repeats the last object, its outputs dropped), as the number
    of objects clicked varies from run to run; on a CPU ``n``."""
    return padded_size(n) if model.device.type == "cuda" else n


def graphs_for(n: int, limit: int) -> contextlib.AbstractContextManager:
    """The context a step of ``n`` objects runs in: with CUDA graphs (where installed) where
    it has a ``size_class``, without above."""
    return contextlib.nullcontext() if size_class(n, limit) is not None else without_graphs()


def memory_frames(model, state: dict, frame: int, reverse: bool) -> tuple:
    """The frames whose outputs sam2 may read to track ``frame`` for this state's object: its
    conditioning frames, and its other frames within reach on the side it comes from."""
    outputs = state["output_dict_per_obj"][0]
    reach = max(
        model.num_maskmem * model.memory_temporal_stride_for_eval, model.max_obj_ptrs_in_encoder
    )
    if reverse:
        near = (f for f in outputs["non_cond_frame_outputs"] if frame < f <= frame + reach)
    else:
        near = (f for f in outputs["non_cond_frame_outputs"] if frame - reach <= f < frame)
    return tuple(sorted(outputs["cond_frame_outputs"])), tuple(sorted(near))


def _stacked(outputs: list[dict]) -> dict:
    """One frame's memory outputs of several objects as one batched output."""
    if len(outputs) == 1:
        return outputs[0]
    n = len(outputs)
    return {
        "maskmem_features": torch.cat([o["maskmem_features"] for o in outputs]),
        # The same for every object and frame (sam2 keeps one copy): expanded, not copied.
        "maskmem_pos_enc": [x[:1].expand(n, *x.shape[1:]) for x in outputs[0]["maskmem_pos_enc"]],
        "obj_ptr": torch.cat([o["obj_ptr"] for o in outputs]),
    }


def track_batch(
    model,
    states: list[dict],
    frame: int,
    reverse: bool,
    features: tuple[torch.Tensor, dict],
    frames: tuple[tuple, tuple],
    size: int | None = None,
    keys: MemoryKeys | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Track the objects of ``states`` on ``frame`` in one batched sam2 step.

    ``features`` are the frame's image features (one image), ``frames`` the ``memory_frames``
    all states share. With ``size`` the batch is padded to that many objects by repeating the
    last (for CUDA graphs; the padding's outputs are dropped). With ``keys`` memory attention
    reuses the keys and values kept with the memory frames' outputs (``memory_keys``). Each
    state gets the frame's output as sam2 stores it. Returns, per object: low-resolution mask
    logits (n, 1, h, w), predicted IoU of the kept mask (n,) and presence logit (n,).
    """
    n = len(states)
    batch = states + states[-1:] * ((size or n) - n)
    per_state = [s["output_dict_per_obj"][0] for s in batch]
    cond, near = frames
    order: list[Attended] = []

    def handed(kind: str, t: int) -> dict:
        sources = [o[kind][t] for o in per_state]
        if keys is None:
            return _stacked(sources)
        distance = None if kind == "cond_frame_outputs" else abs(frame - t)
        return Attended(_stacked(sources), sources, distance, order)

    memory = {
        kind: {t: handed(kind, t) for t in wanted}
        for kind, wanted in (("cond_frame_outputs", cond), ("non_cond_frame_outputs", near))
    }
    lead = batch[0]
    lead["cached_features"] = {frame: features}
    take_scores()  # forget any other caller's
    with keys.attending(order) if keys is not None else contextlib.nullcontext():
        out, masks = model._run_single_frame_inference(
            inference_state=lead,
            output_dict=memory,
            frame_idx=frame,
            batch_size=len(batch),
            is_init_cond_frame=False,
            point_inputs=None,
            mask_inputs=None,
            reverse=reverse,
            run_mem_encoder=True,
        )
    iou, logit = per_object(take_scores())
    for i, (state, outputs) in enumerate(zip(states, per_state, strict=False)):
        if keys is not None:
            release(outputs, frame, reverse, model)
        outputs["non_cond_frame_outputs"][frame] = {
            "maskmem_features": out["maskmem_features"][i : i + 1],
            "maskmem_pos_enc": [x[i : i + 1] for x in out["maskmem_pos_enc"]],
            "pred_masks": out["pred_masks"][i : i + 1],
            "obj_ptr": out["obj_ptr"][i : i + 1],
            "object_score_logits": out["object_score_logits"][i : i + 1],
        }
        state["frames_tracked_per_obj"][0][frame] = {"reverse": reverse}
    return masks[:n], iou[:n], logit[:n]


def encode_prompted(model, states: list[dict], features) -> None:
    """Encode the memories of the frames just prompted, for all objects prompted on a frame at
    once: sam2 encodes them in ``propagate_in_video_preflight``, one object at a time, as it
    does here for what is left (frames prompted for one object).

    ``features`` is the run's ``SharedFeatures``. The memories are encoded as sam2's preflight
    encodes them (the prompts' mask at the model's input size, marked as from the user).
    """
    waiting: dict[int, list[tuple[dict, dict]]] = {}
    for state in states:
        for frame, out in state["temp_output_dict_per_obj"][0]["cond_frame_outputs"].items():
            if out["maskmem_features"] is None:
                waiting.setdefault(frame, []).append((state, out))
    size = (model.image_size, model.image_size)
    limit, graphed = batch_limit(model), graph_limit(model)
    for frame, prompted in waiting.items():
        if len(prompted) < 2:
            continue
        for start in range(0, len(prompted), limit):
            chunk = prompted[start : start + limit]
            lead = chunk[0][0]
            lead["cached_features"] = {frame: features.get(frame, 1, frame)}
            padded = chunk + chunk[-1:] * (prompt_batch(model, len(chunk)) - len(chunk))
            masks = torch.cat([out["pred_masks"] for _, out in padded]).to(model.device)
            masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
            with graphs_for(len(padded), graphed):
                memory, position = model._run_memory_encoder(
                    inference_state=lead,
                    frame_idx=frame,
                    batch_size=len(padded),
                    high_res_masks=masks,
                    object_score_logits=torch.cat(
                        [out["object_score_logits"] for _, out in padded]
                    ),
                    is_mask_from_pts=True,
                )
            for i, (_, out) in enumerate(chunk):
                out["maskmem_features"] = memory[i : i + 1]
                out["maskmem_pos_enc"] = [x[i : i + 1] for x in position]
