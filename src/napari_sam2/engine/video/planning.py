"""Which frames a propagation run visits, for which objects, in which order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SAM2Error

DIRECTIONS = ("forward", "backward", "both")


@dataclass(frozen=True)
class Step:
    """One frame of a planned run: which objects are tracked there, and in which direction."""

    frame: int
    reverse: bool
    object_ids: tuple[int, ...]


def run_objects(steps: list[Step]) -> set[int]:
    """The ids of every object tracked on some step of a run."""
    return {oid for step in steps for oid in step.object_ids}


def check_frame(frame_range: tuple[int, int], frame) -> int:
    """``frame`` as an int, refused where it lies outside ``frame_range`` (first, stop)."""
    start, stop = frame_range
    if not isinstance(frame, (int, np.integer)) or not start <= frame < stop:
        raise SAM2Error(
            f"Prompts on frame {frame!r} lie outside the frames {start}..{stop - 1} being "
            "propagated: move them or widen the frame range."
        )
    return int(frame)


def plan_steps(
    anchors: dict[int, list[int]],
    spans: dict[int, tuple[int, int]],
    direction: str,
    start_frame: int | None = None,
    stop_at_next_prompt: bool = False,
) -> list[Step]:
    """The steps of a run over the objects of ``anchors`` ({object id: sorted prompted frames}),
    each within its ``spans`` (first, stop) frames.

    See ``PropagationSession.propagate`` for what the other arguments mean.
    """
    if direction not in DIRECTIONS:
        raise SAM2Error(f"Direction must be one of {DIRECTIONS}, got {direction!r}.")
    steps: list[Step] = []
    done: set[tuple[int, int]] = set()
    for reverse in (False, True):
        if direction == ("backward" if not reverse else "forward"):
            continue
        runs = {}
        for oid, prompted in anchors.items():
            first, stop = spans[oid]
            if start_frame is not None:
                begin = start_frame
            elif not reverse:
                begin = prompted[0]
            elif direction == "both":
                begin = prompted[0] - 1  # prompted[0] itself was yielded going forward
            else:
                begin = prompted[-1]
            if reverse:
                end = first
                if stop_at_next_prompt:
                    end = max([a + 1 for a in prompted if a < begin], default=first)
            else:
                end = stop - 1
                if stop_at_next_prompt:
                    end = min([a - 1 for a in prompted if a > begin], default=stop - 1)
            # An object is tracked from a frame only with an anchor at or behind it.
            behind = any((a >= begin) if reverse else (a <= begin) for a in prompted)
            if behind and (begin >= end if reverse else begin <= end):
                runs[oid] = (begin, end)
        if not runs:
            continue
        if reverse:
            frames = range(
                max(b for b, _ in runs.values()), min(e for _, e in runs.values()) - 1, -1
            )
        else:
            frames = range(min(b for b, _ in runs.values()), max(e for _, e in runs.values()) + 1)
        for t in frames:
            here = tuple(
                oid
                for oid, (b, e) in runs.items()
                if min(b, e) <= t <= max(b, e) and (t, oid) not in done
            )
            if here:
                steps.append(Step(t, reverse, here))
        # Going backward after forward, a frame already done for an object is not redone.
        done = {(step.frame, oid) for step in steps for oid in step.object_ids}
    return steps


def run_end(steps: list[Step], i: int, object_id: int) -> int:
    """The last frame of ``object_id``'s run of consecutive frames starting at ``steps[i]``."""
    first = steps[i]
    direction = -1 if first.reverse else 1
    last = first.frame
    for step in steps[i + 1 :]:
        if step.reverse != first.reverse:
            break
        if object_id in step.object_ids:
            if step.frame != last + direction:
                break
            last = step.frame
    return last
