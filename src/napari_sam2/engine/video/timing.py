"""How long a propagation will take, from the runs of the same model measured so far.

The objects of a frame are tracked in one batched step (``batching``), so a frame's time grows
with its objects by much less than in proportion where launching kernels bounds the step (a
GPU; H200, micro: 1 object 6-10 ms a frame, 8 objects 13 ms, 64 objects 53 ms) and about in
proportion where arithmetic bounds it (a CPU). The measured runs' seconds per frame are fitted
as ``a + b × objects``; from runs of one object count only, the time per object and frame is
scaled, which is about right on a CPU, and on a GPU an upper bound for more objects and a lower
bound for fewer. Only the latest ``RECENT`` runs count: they show the machine as it is now (its
load, the plane size in use), and the history stays bounded over a long session.
"""

from __future__ import annotations

from collections import deque
from statistics import linear_regression, mean

RECENT = 20


class RunTimes:
    """The runs measured with one model on one device: (objects per frame, seconds per frame)."""

    def __init__(self) -> None:
        self.runs: deque[tuple[float, float]] = deque(maxlen=RECENT)

    def add(self, frames: int, object_frames: int, seconds: float) -> None:
        """A run that made ``object_frames`` masks on ``frames`` frames in ``seconds``."""
        if frames and object_frames:
            self.runs.append((object_frames / frames, seconds / frames))

    def estimate(self, frames: int, objects: int) -> tuple[str, float] | None:
        """("about", "at most" or "at least", seconds) for ``frames`` frames of ``objects``
        objects; None before any run."""
        if not self.runs:
            return None
        counts = [n for n, _ in self.runs]
        times = [t for _, t in self.runs]
        if len(set(counts)) == 1:
            n = counts[0]
            word = "about" if objects == n else "at most" if objects > n else "at least"
            return word, frames * mean(times) * objects / n
        slope, intercept = linear_regression(counts, times)
        if slope < 0:  # noise: a frame costs no less with more objects
            slope, intercept = 0.0, mean(times)
        elif intercept < 0:  # nor more than in proportion
            slope, intercept = linear_regression(counts, times, proportional=True)
        return "about", frames * (intercept + slope * objects)
