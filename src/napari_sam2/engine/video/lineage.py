"""Divisions: an object ends where it divides, and its daughters begin there."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SAM2Error


@dataclass(frozen=True)
class Division:
    """``mother`` is labelled up to ``frame - 1``; ``daughters`` from ``frame`` on."""

    mother: int
    frame: int
    daughters: tuple[int, ...]


class Lineage:
    """The divisions marked so far, and the frames each object may be tracked on."""

    def __init__(self):
        self.divisions: dict[int, Division] = {}  # by mother

    @property
    def parents(self) -> dict[int, int]:
        """{daughter id: mother id}, as ``export_ctc`` takes it."""
        return {d: m.mother for m in self.divisions.values() for d in m.daughters}

    def span(self, object_id: int, frame_range: tuple[int, int]) -> tuple[int, int]:
        """(first, stop) frames ``object_id`` may be tracked on within ``frame_range``."""
        first, stop = frame_range
        if object_id in self.divisions:
            stop = self.divisions[object_id].frame
        mother = self.parents.get(object_id)
        if mother is not None:
            first = self.divisions[mother].frame
        return first, stop

    def check_prompt(self, object_id: int, frame: int, frame_range: tuple[int, int]) -> None:
        first, stop = self.span(object_id, frame_range)
        if not first <= frame < stop:
            raise SAM2Error(
                f"Object {object_id} exists on frames {first}..{stop - 1} only (a division "
                f"bounds it): prompt frame {frame} with the object that is there."
            )

    def check(self, division: Division, record, frame_range: tuple[int, int]) -> None:
        """Refuse a division that cannot be, given the session's ``AnnotationRecord``."""
        mother, frame, daughters = division.mother, division.frame, division.daughters
        known = list(record.prompts)
        area = record.area.get(mother)
        if frame <= frame_range[0]:
            raise SAM2Error(
                f"A division on frame {frame}, the first frame, has no mother before it: mark "
                "it on the first frame where the daughters are two."
            )
        if mother not in known:
            raise SAM2Error(f"Object {mother} has no prompts: it cannot divide.")
        if mother in self.divisions:
            raise SAM2Error(
                f"Object {mother} already divides on frame {self.divisions[mother].frame}."
            )
        if area is None or not area[frame - 1] > 0:
            raise SAM2Error(
                f"Object {mother} is not labelled on frame {frame - 1}, just before the "
                "division: propagate it there first, or mark the division where it is."
            )
        if len(set(daughters)) != 2 or set(daughters) & {*known, mother}:
            raise SAM2Error(
                f"A division needs two new object ids for the daughters, got {list(daughters)}: "
                "ids already in use cannot be daughters."
            )
        later = [f for f in record.frames(mother) if f >= frame]
        if later:
            raise SAM2Error(
                f"Object {mother} has prompts on frames {later}, at or after its division on "
                f"frame {frame}: move them to the daughters first."
            )
        self.check_prompt(mother, frame - 1, frame_range)

    def remove(self, object_id: int) -> None:
        """Forget the divisions ``object_id`` takes part in."""
        for mother, division in list(self.divisions.items()):
            if object_id == mother or object_id in division.daughters:
                del self.divisions[mother]
