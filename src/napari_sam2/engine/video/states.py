"""sam2 inference states of single objects: made over lazy frames and pruned (``prompting``
prompts them, ``batching`` tracks them).

``SAM2VideoPredictor`` keeps its frames in ``inference_state["images"]`` and only ever indexes
it, one frame at a time, so a state is given a ``ModelFrames`` instead of a decoded video.
The callers hold the inference and out-of-memory contexts.
"""

from __future__ import annotations

import threading
from unittest import mock

from .reading import ModelFrames
from .runtime import video_predictor

# init_state is patched while it runs (see ``new_state``); one at a time.
_INIT_LOCK = threading.Lock()


def new_state(model, frames: ModelFrames, template: dict | None = None) -> dict:
    """A fresh sam2 inference state whose frames are ``frames``.

    Without ``template`` it comes from the stock ``init_state``, with its whole-video loader
    replaced for the duration of the call by one returning the lazy frames, and without its
    warm-up encoding of frame 0: the engine encodes the frames it prompts and tracks (once,
    ``SharedFeatures``), and frame 0 may be none of them (read and encoded for nothing: on a
    CPU 0.1-0.2 s of micro's first mask, 3 s of tiny's). With ``template`` (another object's
    state) it is an empty copy of it (same frames and settings, empty containers).
    """
    if template is not None:
        return {
            key: type(value)() if isinstance(value, (dict, list)) else value
            for key, value in template.items()
        }
    height, width = frames.source.plane_shape
    stock = model._get_image_feature

    def lazy_frames(**kwargs):
        return frames, height, width

    def features(state, frame_idx, batch_size):
        # Only the state being made here is skipped; other sessions' calls pass through.
        if state["images"] is frames and not state["cached_features"]:
            return None
        return stock(state, frame_idx, batch_size)

    with (
        _INIT_LOCK,
        mock.patch.object(video_predictor(), "load_video_frames", lazy_frames),
        mock.patch.object(model, "_get_image_feature", features),
    ):
        return model.init_state(video_path="<napari-sam2 frames>")


def forget(state: dict, anchors, head: int, window: int) -> None:
    """Drop outputs of frames farther than ``window`` from every anchor and from ``head``:
    the model will not attend to them again (see ``PropagationSession``)."""
    anchors = list(anchors)

    def needed(f: int) -> bool:  # it runs for every object on every frame: head first
        return abs(f - head) <= window or any(abs(f - a) <= window for a in anchors)

    for outputs in state["output_dict_per_obj"].values():
        stored = outputs["non_cond_frame_outputs"]
        for f in [f for f in stored if not needed(f)]:
            del stored[f]
    for tracked in state["frames_tracked_per_obj"].values():
        for f in [f for f in tracked if not needed(f)]:
            del tracked[f]
    state["cached_features"] = {}


def drop_memory(state: dict, frame: int) -> None:
    """Keep a tracked frame out of the object's memory: later frames then attend only to its
    prompted frames and its reliable recent ones (an absent or doubtful mask would teach the
    model the wrong object)."""
    for outputs in state["output_dict_per_obj"].values():
        outputs["non_cond_frame_outputs"].pop(frame, None)


def stored_frames(state: dict) -> int:
    """How many frames' outputs a state holds."""
    outputs = state["output_dict_per_obj"].values()
    return sum(len(o["cond_frame_outputs"]) + len(o["non_cond_frame_outputs"]) for o in outputs)
