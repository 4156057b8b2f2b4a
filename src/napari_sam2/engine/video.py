"""Propagation of prompted objects through a lazy stack with sam2's stock video predictor.

``SAM2VideoPredictor`` keeps its frames in ``inference_state["images"]`` and only ever indexes
it, one frame at a time. So instead of letting ``init_state`` decode a whole video into memory,
we hand it a ``ModelFrames`` object that prepares a frame when it is asked for (and reads a few
ahead in a background thread). Everything else — prompts, memory, tracking — is sam2's own
code; this module only decides which frames to run, shares the image features between objects,
and forgets the per-frame memory the model will never attend to again, so memory stays flat as
the number of frames grows.

Each object gets its own inference state (all states share the frames and the image features).
That is what lets a correction re-run one object from the corrected frame to its next prompted
frame, and a new object join without re-running the others.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from unittest import mock

import numpy as np
import torch

from .cuda_graphs import tracking_graphs
from .errors import SAM2Error
from .frames import FrameSource, model_input
from .models import inference_context, is_compiled
from .prompts import PromptSet

DIRECTIONS = ("forward", "backward", "both")
# init_state is patched while it runs (see ``_new_state``); one at a time.
_INIT_LOCK = threading.Lock()

Frames = Iterator[tuple[int, list[int], np.ndarray]]


class FrameStream:
    """The frames of one propagation run, as they finish: ``(frame_index, object_ids, masks)``.

    An iterator that also knows its length (the number of items it will yield, for a progress
    bar and an ETA) and stops the work when closed (a GUI's Cancel).
    """

    def __init__(self, frames: Frames, total: int):
        self._frames = frames
        self.total = total

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> tuple[int, list[int], np.ndarray]:
        return next(self._frames)

    def close(self) -> None:
        self._frames.close()


class ModelFrames:
    """Frames of a ``FrameSource`` as sam2's video predictor reads them, prepared on demand.

    ``frames[i]`` is a (3, S, S) float32 tensor (S the model's image size), normalised the
    way sam2 expects. Only ``cache_size`` prepared frames are held; after each access the next
    ``read_ahead`` frames in the direction of travel are prepared by ``workers`` background
    threads, so reading (dask, zarr, video decoding) overlaps with the model. On a GPU, read
    at least a batch of the image encoder ahead, with several workers: the tracking loop must
    never wait for a frame.
    """

    def __init__(
        self,
        source: FrameSource,
        image_size: int,
        cache_size: int = 4,
        read_ahead: int = 2,
        device: torch.device | str = "cpu",
        workers: int = 1,
    ):
        self.source = source
        self.image_size = image_size
        self.device = torch.device(device)
        self.cache_size = max(cache_size, read_ahead + 1)
        self.read_ahead = read_ahead
        self.step = 1  # +1 while tracking forward, -1 backward: where to read ahead
        self.frames_prepared = 0
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="napari-sam2-frames")

    def __len__(self) -> int:
        return len(self.source)

    @property
    def held(self) -> int:
        """How many prepared frames are in memory now (cached or being read)."""
        return len(self._cache) + len(self._pending)

    def prepare(self, index: int) -> torch.Tensor:
        """Read, normalise, resize and standardise one frame (no caching).

        On a GPU the raw pixels are copied there and all float work runs there: the reader
        threads then only read, and hold Python's lock (which the tracking loop needs) briefly.
        """
        plane = self.source.raw_plane(index)
        frame = model_input(plane, self.source.normalization, self.image_size, self.device)
        with self._lock:
            self.frames_prepared += 1
        return frame

    def __getitem__(self, index: int) -> torch.Tensor:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index in self._cache:
            self._cache.move_to_end(index)
            tensor = self._cache[index]
        else:
            future = self._pending.pop(index, None)
            tensor = future.result() if future is not None else self.prepare(index)
            self._cache[index] = tensor
        self._read_ahead(index)
        while len(self._cache) + len(self._pending) > self.cache_size and self._cache:
            self._cache.popitem(last=False)
        return tensor

    def _read_ahead(self, index: int) -> None:
        wanted = {index + self.step * k for k in range(1, self.read_ahead + 1)}
        for stale in [i for i in self._pending if i not in wanted]:
            self._pending.pop(stale).cancel()
        for i in sorted(wanted, key=lambda i: abs(i - index)):
            if 0 <= i < len(self) and i not in self._cache and i not in self._pending:
                self._pending[i] = self._pool.submit(self.prepare, i)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pending.clear()
        self._cache.clear()


def install_memory_dtype_fix(model: torch.nn.Module) -> None:
    """Make memory attention accept sam2's bfloat16 memories where no autocast runs (CPU, MPS).

    sam2 always stores memory features as bfloat16. When a frame's memory also holds object
    pointers (float32) the concatenation is promoted to float32, but when it holds none — an
    object whose only prompted frame lies ahead of the frame being tracked — the memory stays
    bfloat16 and, without autocast, attention fails with "mat1 and mat2 must have the same
    dtype". This hook casts the memory to the dtype of the current frame's features. It is
    installed once per model and does nothing when the dtypes already agree or autocast is on.
    """
    attention = model.memory_attention
    if getattr(attention, "_napari_sam2_dtype_fix", False):
        return

    def cast_memory(module, args, kwargs):
        curr, memory = kwargs.get("curr"), kwargs.get("memory")
        if isinstance(curr, list):
            curr = curr[0]
        if (
            isinstance(curr, torch.Tensor)
            and isinstance(memory, torch.Tensor)
            and memory.dtype != curr.dtype
            and not torch.is_autocast_enabled(memory.device.type)
        ):
            kwargs["memory"] = memory.to(curr.dtype)
        return args, kwargs

    attention.register_forward_pre_hook(cast_memory, with_kwargs=True)
    attention._napari_sam2_dtype_fix = True


class _SharedFeatures:
    """Image-encoder outputs for the frames about to be tracked, computed once for all objects.

    On a miss the next ``batch_size`` frames in the direction of travel are encoded together
    (batching helps on a GPU, where the encoder does not depend on the tracking memory).
    Frames are forgotten once tracking has moved past them. (Encoding the next batch in a
    background thread while one is tracked was measured, and gained nothing: both halves are
    bound by Python on the host; see ``bench/diagnostics.py pipeline``.) A compiled encoder
    gets every batch padded to full size: each new input shape would compile for a minute.
    """

    def __init__(self, model, frames: ModelFrames, batch_size: int):
        self.model = model
        self.frames = frames
        self.batch_size = batch_size
        self.pad = is_compiled(model)
        self._store: dict[int, tuple[torch.Tensor, dict]] = {}

    def get(self, index: int, step: int, last: int) -> tuple[torch.Tensor, dict]:
        if index not in self._store:
            self._store.clear()
            batch = list(range(index, last + step, step))[: self.batch_size]
            device = self.model.device
            images = torch.stack([self.frames[i] for i in batch]).to(device).float()
            missing = self.batch_size - len(batch)
            if self.pad and missing:
                images = torch.cat([images, images[-1:].expand(missing, -1, -1, -1)])
            out = self.model.forward_image(images)
            for k, i in enumerate(batch):
                self._store[i] = (
                    images[k : k + 1],
                    {
                        "backbone_fpn": [x[k : k + 1] for x in out["backbone_fpn"]],
                        "vision_pos_enc": [x[k : k + 1] for x in out["vision_pos_enc"]],
                    },
                )
        return self._store[index]

    def put(self, index: int, features: tuple[torch.Tensor, dict]) -> None:
        self._store[index] = features

    def forget_before(self, index: int, step: int) -> None:
        for i in [i for i in self._store if (i - index) * step < 0]:
            del self._store[i]

    def clear(self) -> None:
        self._store.clear()


@dataclass(frozen=True)
class Step:
    """One frame of a planned run: which objects are tracked there, and in which direction."""

    frame: int
    reverse: bool
    object_ids: tuple[int, ...]


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
    with the clicks to edit a given mask instead.

    Memory: per object, the session keeps the outputs of its prompted frames and of the frames
    within ``memory_window`` of them or of the frame being tracked (the model attends to at most
    ``num_maskmem`` previous memories and ``max_obj_ptrs_in_encoder`` object pointers); the rest
    is dropped as tracking moves on.

    Speed on CUDA: ``batch_size`` frames are encoded at once (default 8), and with
    ``cuda_graphs`` (default) the tracking step's memory attention, mask heads and memory
    encoder are replayed as CUDA graphs once their input shapes repeat (see ``cuda_graphs``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        source: FrameSource,
        frame_range: tuple[int, int] | None = None,
        batch_size: int | None = None,
        cuda_graphs: bool = True,
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
        self._features = _SharedFeatures(model, self.frames, batch_size)
        self.memory_window = (
            max(
                model.num_maskmem * model.memory_temporal_stride_for_eval + 1,
                model.max_obj_ptrs_in_encoder,
            )
            + 1
        )
        self._states: dict[int, dict] = {}
        self._anchors: dict[int, set[int]] = {}
        self._pending: list[tuple[int, int, PromptSet]] = []  # checked, not yet in the model
        self._running = False
        install_memory_dtype_fix(model)

    # ----------------------------------------------------------------------------- prompts
    @property
    def object_ids(self) -> list[int]:
        return list(self._anchors)

    def prompted_frames(self, object_id: int) -> list[int]:
        return sorted(self._anchors.get(object_id, ()))

    def add_prompts(self, prompts: Mapping[int, Mapping[int, dict | PromptSet]]) -> None:
        """Add prompts: {frame index: {object id: dict(points=, point_labels=, box=, mask=)}}.

        Points are (row, col), a box (min_row, min_col, max_row, max_col), a mask a boolean
        (H, W) array, as for ``Segmenter.predict``. All prompts are checked here, before any
        is used; the model reads them when the next run starts, in the thread that consumes
        it (the prompted frames' image encoding takes seconds on a CPU, so a GUI must not
        wait for it). A prompt replaces that object's earlier prompts on that frame.
        """
        self._check_idle()
        checked = []
        for frame, objects in prompts.items():
            frame = self._check_frame(frame)
            for object_id, prompt in objects.items():
                if not isinstance(object_id, (int, np.integer)) or object_id < 1:
                    raise SAM2Error(
                        f"Object id {object_id!r} is not a positive integer: ids are label "
                        "values, and 0 is the background."
                    )
                if not isinstance(prompt, PromptSet):
                    prompt = PromptSet.from_arguments(**prompt)
                checked.append((frame, int(object_id), prompt.validate(self.source.plane_shape)))
        for frame, object_id, prompt in checked:
            self._pending.append((frame, object_id, prompt))
            self._anchors.setdefault(object_id, set()).add(frame)

    def _check_frame(self, frame) -> int:
        start, stop = self.frame_range
        if not isinstance(frame, (int, np.integer)) or not start <= frame < stop:
            raise SAM2Error(
                f"Prompts on frame {frame!r} lie outside the frames {start}..{stop - 1} being "
                "propagated: move them or widen the frame range."
            )
        return int(frame)

    def _add(self, frame: int, object_id: int, prompt: PromptSet) -> None:
        state = self._states.get(object_id)
        if state is None:
            state = self._states[object_id] = self._new_state()
        # A prompted frame is always a conditioning frame of its object (an anchor), also when
        # it was tracked before: forget that it was tracked so sam2 treats it as one.
        for tracked in state["frames_tracked_per_obj"].values():
            tracked.pop(frame, None)
        with _OutOfMemoryAdvice(self.device), inference_context(self.device):
            if prompt.mask is not None:
                self.model.add_new_mask(state, frame, object_id, prompt.mask)
            if prompt.points is not None or prompt.box is not None:
                # The previous step's mask (if any) seeds the decoder with the clicks.
                sam = PromptSet(prompt.points, prompt.point_labels, prompt.box).to_sam()
                self.model.add_new_points_or_box(
                    state,
                    frame,
                    object_id,
                    points=sam.get("point_coords"),
                    labels=sam.get("point_labels"),
                    box=sam.get("box"),
                    clear_old_points=True,
                )

    def _new_state(self) -> dict:
        """A fresh sam2 inference state whose frames are this session's lazy ``ModelFrames``.

        The first state comes from the stock ``init_state``, with its whole-video loader replaced
        for the duration of the call by one returning our lazy frames; later objects get an
        empty copy of it (same frames and settings, empty containers) rather than re-running
        init_state's warm-up encoding of frame 0.
        """
        if self._states:
            template = next(iter(self._states.values()))
            return {
                key: type(value)() if isinstance(value, (dict, list)) else value
                for key, value in template.items()
            }
        height, width = self.source.plane_shape

        def lazy_frames(**kwargs):
            return self.frames, height, width

        with (
            _INIT_LOCK,
            mock.patch.object(_video_predictor(), "load_video_frames", lazy_frames),
            inference_context(self.device),
        ):
            return self.model.init_state(video_path="<napari-sam2 frames>")

    # ------------------------------------------------------------------------- propagation
    def plan(
        self,
        direction: str = "both",
        objects=None,
        start_frame: int | None = None,
        stop_at_next_prompt: bool = False,
    ) -> list[Step]:
        """The frames ``propagate`` will yield with these arguments, in order (for progress)."""
        if direction not in DIRECTIONS:
            raise SAM2Error(f"Direction must be one of {DIRECTIONS}, got {direction!r}.")
        ids = self._pick_objects(objects)
        if start_frame is not None:
            start_frame = self._check_frame(start_frame)
        first, stop = self.frame_range
        steps: list[Step] = []
        done: set[tuple[int, int]] = set()
        for reverse in (False, True):
            if direction == ("backward" if not reverse else "forward"):
                continue
            spans = {}
            for oid in ids:
                anchors = sorted(self._anchors[oid])
                if start_frame is not None:
                    begin = start_frame
                elif not reverse:
                    begin = anchors[0]
                elif direction == "both":
                    begin = anchors[0] - 1  # anchors[0] itself was yielded going forward
                else:
                    begin = anchors[-1]
                if reverse:
                    end = first
                    if stop_at_next_prompt:
                        end = max([a + 1 for a in anchors if a < begin], default=first)
                else:
                    end = stop - 1
                    if stop_at_next_prompt:
                        end = min([a - 1 for a in anchors if a > begin], default=stop - 1)
                # An object is tracked from a frame only with an anchor at or behind it.
                behind = any((a >= begin) if reverse else (a <= begin) for a in anchors)
                if behind and (begin >= end if reverse else begin <= end):
                    spans[oid] = (begin, end)
            if not spans:
                continue
            if reverse:
                frames = range(max(b for b, _ in spans.values()), first - 1, -1)
            else:
                frames = range(min(b for b, _ in spans.values()), stop)
            for t in frames:
                here = tuple(
                    oid
                    for oid, (b, e) in spans.items()
                    if min(b, e) <= t <= max(b, e) and (t, oid) not in done
                )
                if here:
                    steps.append(Step(t, reverse, here))
            # Going backward after forward, a frame already done for an object is not redone.
            done = {(step.frame, oid) for step in steps for oid in step.object_ids}
        return steps

    def _pick_objects(self, objects) -> list[int]:
        if not self._anchors:
            raise SAM2Error(
                "No prompts: add points, a box or a mask for at least one object on one frame "
                "before propagating."
            )
        if objects is None:
            return list(self._anchors)
        ids = [int(o) for o in objects]
        unknown = [o for o in ids if o not in self._anchors]
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

    def remove_object(self, object_id: int) -> None:
        """Forget an object: its prompts and tracking memory (labels are the caller's)."""
        self._check_idle()
        self._states.pop(object_id, None)
        self._anchors.pop(object_id, None)
        self._pending = [p for p in self._pending if p[1] != object_id]

    def run(self, steps: list[Step]) -> FrameStream:
        """Yield the frames of ``steps`` (from ``plan``) as ``propagate`` does."""
        self._check_idle()
        return FrameStream(self._run(steps), len(steps))

    def _check_idle(self) -> None:
        if self._running:
            raise SAM2Error(
                "A propagation is already running on this stack: wait for it to finish or "
                "cancel it before starting another or adding prompts."
            )

    def _run(self, steps: list[Step]) -> Frames:
        self._check_idle()
        self._running = True
        running: dict[tuple[int, bool], tuple[Iterator, int]] = {}
        try:
            with tracking_graphs(self.model, self.cuda_graphs), _attention_kernels(self.device):
                while self._pending:  # each kept until the model has it (a failure retries it)
                    self._add(*self._pending[0])
                    self._pending.pop(0)
                # On a GPU a frame is handed out once the next one is queued: its masks reach
                # the host while the GPU works on, instead of the GPU idling while Python
                # prepares each frame.
                lag = 1 if self.device.type == "cuda" else 0
                copying: list[_MasksToHost] = []
                for i, step in enumerate(steps):
                    direction = -1 if step.reverse else 1
                    self.frames.step = direction
                    masks = []
                    for oid in step.object_ids:
                        key = (oid, step.reverse)
                        if key not in running or running[key][1] != step.frame:
                            running[key] = (self._track(oid, steps, i), step.frame)
                        with _OutOfMemoryAdvice(self.device), inference_context(self.device):
                            masks.append(next(running[key][0]))
                        running[key] = (running[key][0], step.frame + direction)
                    self._features.forget_before(step.frame + direction, direction)
                    copying.append(_MasksToHost(step, masks))
                    while len(copying) > lag:
                        yield copying.pop(0).result()
                while copying:
                    yield copying.pop(0).result()
        finally:
            running.clear()
            self._features.clear()
            self._running = False

    def _track(self, oid: int, steps: list[Step], i: int) -> Iterator[torch.Tensor]:
        """Masks of one object over its run of consecutive frames starting at ``steps[i]``
        (boolean, on the device)."""
        first = steps[i]
        direction = -1 if first.reverse else 1
        last = first.frame
        for s in steps[i + 1 :]:
            if s.reverse != first.reverse:
                break
            if oid in s.object_ids:
                if s.frame != last + direction:
                    break
                last = s.frame
        state = self._states[oid]
        # sam2 skips a reverse run that starts on frame 0; that single frame runs forward.
        inner = self.model.propagate_in_video(
            state,
            start_frame_idx=first.frame,
            max_frame_num_to_track=abs(last - first.frame),
            reverse=first.reverse and first.frame > 0,
        )
        for frame in range(first.frame, last + direction, direction):
            # Give sam2 the shared features of the frame it is about to track (or share the
            # ones it computed itself for this frame, when a prompt was just added there).
            own = state["cached_features"].get(frame)
            if own is not None:
                self._features.put(frame, own)
            state["cached_features"] = {frame: self._features.get(frame, direction, last)}
            if frame == first.frame:
                # The first step starts sam2's loop, which wraps the frames in a tqdm bar: keep
                # the terminal quiet (progress is what this generator yields).
                with mock.patch.object(_video_predictor(), "tqdm", _no_progress_bar):
                    index, _, masks = next(inner)
            else:
                index, _, masks = next(inner)
            if index != frame:
                raise RuntimeError(f"sam2 tracked frame {index} where {frame} was expected.")
            self._forget(oid, frame)
            yield masks[0, 0] > 0

    def _forget(self, oid: int, head: int) -> None:
        """Drop outputs of frames the model will not attend to again (see class docstring)."""
        state = self._states[oid]
        keep = self.memory_window
        near = sorted(self._anchors[oid]) + [head]

        def needed(f: int) -> bool:
            return any(abs(f - a) <= keep for a in near)

        for outputs in state["output_dict_per_obj"].values():
            stored = outputs["non_cond_frame_outputs"]
            for f in [f for f in stored if not needed(f)]:
                del stored[f]
        for tracked in state["frames_tracked_per_obj"].values():
            for f in [f for f in tracked if not needed(f)]:
                del tracked[f]
        state["cached_features"] = {}

    def stored_frames(self, object_id: int) -> int:
        """How many frames' outputs the session holds for an object (tests memory bounds)."""
        outputs = self._states[object_id]["output_dict_per_obj"].values()
        return sum(
            len(o["cond_frame_outputs"]) + len(o["non_cond_frame_outputs"]) for o in outputs
        )

    def close(self) -> None:
        """Free the frames, features and states."""
        self.frames.close()
        self._features.clear()
        self._states.clear()
        self._anchors.clear()
        self._pending.clear()

    def __enter__(self) -> PropagationSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _attention_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """On CUDA, attention without cuDNN's kernels while tracking.

    cuDNN builds a plan for every new input shape (tens of milliseconds), and memory
    attention gets a new shape on each of the first 16 tracked frames while the memory bank
    fills: measured on an H100 with tiny over 100 frames, 43 frames/s with cuDNN, 84 with
    flash attention. (The setting is process-wide while a run lasts.)
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(
        [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    )


class _MasksToHost:
    """The masks of one step on their way to the host, copied without waiting for the device."""

    def __init__(self, step: Step, masks: list[torch.Tensor]):
        self.step = step
        stacked = torch.stack(masks)
        self.masks = stacked.to("cpu", non_blocking=True)  # pinned memory when from CUDA
        self.copied = None
        if stacked.is_cuda:
            self.copied = torch.cuda.Event()
            self.copied.record()

    def result(self) -> tuple[int, list[int], np.ndarray]:
        if self.copied is not None:
            self.copied.synchronize()
        return self.step.frame, list(self.step.object_ids), self.masks.numpy()


def warm_up(model: torch.nn.Module) -> None:
    """Run clicks and tracked frames once on a tiny blank clip.

    An accelerator loads each kernel and library handle the first time it is used, which
    makes the first click or propagation about a second slower than the next. Loading a model
    on CUDA or MPS ends with this, so that cost is paid while the user waits for the load.
    The clip is long enough for one full batch of the image encoder.
    """
    from .frames import Normalization

    clip = np.zeros((9, 64, 64), np.uint8)
    blank = FrameSource(clip, normalization=Normalization((0.0,), (1.0,)))
    with PropagationSession(model, blank) as session:
        session.add_prompts({0: {1: dict(points=[(32, 32)])}})
        for _ in session.propagate("forward"):
            pass


def _video_predictor():
    import sam2.sam2_video_predictor

    return sam2.sam2_video_predictor


def _no_progress_bar(iterable, *args, **kwargs):
    return iterable


class _OutOfMemoryAdvice:
    """Turns an out-of-memory error of the accelerator into a SAM2Error that says what to do."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None:
            return False
        oom = isinstance(err, torch.OutOfMemoryError) or (
            isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
        )
        if oom:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise SAM2Error(
                f"The {self.device.type.upper()} ran out of memory while propagating. Try a "
                "smaller model (e.g. sam2.1_hiera_tiny), a shorter frame range, fewer objects "
                "at once, or device='cpu'. The frames finished so far are kept."
            ) from err
        return False


def frame_source_for(
    stack,
    frame_axis: int = 0,
    contrast_limits=None,
    channel_axis: int | None = None,
    channels=None,
) -> FrameSource:
    """A ``FrameSource`` for a stack, with the checks and defaults of ``Segmenter.propagate``."""
    from .frames import Normalization

    if not hasattr(stack, "ndim") or not hasattr(stack, "shape"):
        stack = np.asarray(stack)
    if stack.ndim < 3:
        raise SAM2Error(
            f"Propagation needs a stack (frames × rows × cols), but the image has shape "
            f"{stack.shape}: use predict() for a single image, or pick a 3D layer."
        )
    if not -stack.ndim <= frame_axis < stack.ndim:
        raise SAM2Error(
            f"frame_axis {frame_axis} does not exist in an array of {stack.ndim} axes."
        )
    frame_axis %= stack.ndim
    if channel_axis is None and stack.ndim == 4 and stack.shape[-1] in (3, 4) and frame_axis != 3:
        channel_axis = -1  # (T, H, W, RGB[A]) like napari's rgb layers
    if stack.ndim - 1 - (channel_axis is not None) != 2:
        raise SAM2Error(
            f"A stack of shape {stack.shape} has more than one frame axis: pick one plane "
            "of the other axes first (e.g. stack[channel]), or pass channel_axis=."
        )
    normalization = None if contrast_limits is None else Normalization.from_limits(contrast_limits)
    return FrameSource(stack, frame_axis, channel_axis, channels, normalization)


def paint_objects(
    plane: np.ndarray, object_ids, masks: np.ndarray, overwrite: bool = True
) -> np.ndarray:
    """``plane`` with each object's old pixels cleared and its new mask painted with its id.

    Where objects overlap, the one listed later wins. With ``overwrite=False`` a mask takes
    only background pixels (and its own), so ids of objects not listed are never painted over.
    """
    for object_id, mask in zip(object_ids, masks, strict=True):
        plane[plane == object_id] = 0
        plane[mask & (overwrite | (plane == 0))] = object_id
    return plane


def write_labels(
    stream: Frames, labels, frame_axis: int = 0, overwrite: bool = True
) -> Iterator[int]:
    """Write a propagation stream into a labels array (numpy, zarr, ...), frame by frame.

    A generator: it yields each frame index once that frame is written, so a GUI can show
    progress and cancel by closing it (the stream is closed with it). Each frame is read,
    updated — every yielded object's old pixels cleared, its new mask painted with its id —
    and written back in one assignment, so no frame is ever half-written, and frames never
    yielded are never touched. Overlaps follow ``paint_objects`` (``overwrite=False`` keeps
    other objects' pixels).
    In a script: ``for _ in write_labels(stream, labels): pass``.
    """
    axis = frame_axis % labels.ndim
    dtype = np.dtype(labels.dtype)
    largest = np.iinfo(dtype).max if dtype.kind in "iu" else None
    try:
        for frame, object_ids, masks in stream:
            if largest is not None and max(object_ids, default=0) > largest:
                raise SAM2Error(
                    f"Object id {max(object_ids)} does not fit the {dtype} labels: use a labels "
                    "array of a larger integer type (e.g. uint32)."
                )
            index = (slice(None),) * axis + (frame,)
            labels[index] = paint_objects(np.array(labels[index]), object_ids, masks, overwrite)
            yield frame
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
