"""The propagation estimate's arithmetic, from recorded run times."""

import pytest

from napari_sam2.engine.video.timing import RECENT, RunTimes


def test_one_object_count_measured_bounds_the_others():
    times = RunTimes()
    assert times.estimate(10, 4) is None  # nothing measured yet
    times.add(frames=10, object_frames=80, seconds=20)  # 8 objects, 2 s a frame
    assert times.estimate(10, 8) == ("about", pytest.approx(20))
    assert times.estimate(10, 16) == ("at most", pytest.approx(40))
    assert times.estimate(10, 2) == ("at least", pytest.approx(5))


def test_a_line_through_the_runs_never_falls_with_objects_nor_grows_past_proportion():
    compute_bound = RunTimes()  # a CPU: 1 s an object and frame
    for objects in (1, 4, 8):
        compute_bound.add(frames=5, object_frames=5 * objects, seconds=5 * objects)
    assert compute_bound.estimate(10, 64) == ("about", pytest.approx(640))
    noisy = RunTimes()  # two objects measured faster than one
    noisy.add(frames=10, object_frames=10, seconds=11)
    noisy.add(frames=10, object_frames=20, seconds=9)
    assert noisy.estimate(10, 30) == ("about", pytest.approx(10))
    steep = RunTimes()  # the line would give zero objects less than zero seconds
    steep.add(frames=1, object_frames=1, seconds=1)
    steep.add(frames=1, object_frames=2, seconds=3)
    assert steep.estimate(1, 4) == ("about", pytest.approx(4 * 1.4))  # through the origin


def test_only_the_latest_runs_count():
    """Runs on a loaded machine early in a session stop weighing on the estimate."""
    times = RunTimes()
    for _ in range(5):
        times.add(frames=10, object_frames=10, seconds=50.0)  # 5 s a frame
    for _ in range(RECENT):
        times.add(frames=10, object_frames=10, seconds=10.0)  # 1 s a frame
    assert times.estimate(100, 1) == ("about", 100.0)
    assert len(times.runs) == RECENT
