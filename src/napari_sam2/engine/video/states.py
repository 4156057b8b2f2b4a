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
    replaced for the duration of the call by one returning the lazy frames; with one (another
    object's state), it is an empty copy of it (same frames and settings, empty containers)
    rather than re-running init_state's warm-up encoding of frame 0.
    """
    if template is not None:
        return {
            key: type(value)() if isinstance(value, (dict, list)) else value
            for key, value in template.items()
        }
    height, width = frames.source.plane_shape

    def lazy_frames(**kwargs):
        return frames, height, width

    with _INIT_LOCK, mock.patch.object(video_predictor(), "load_video_frames", lazy_frames):
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
