"""Divisions: the mother's track ends where two daughters begin, and the lineage is kept."""

import numpy as np
import pytest

from napari_sam2 import SAM2Error, export_ctc, load_annotation, save_annotation, write_labels
from napari_sam2.engine.video.reading import frame_source_for
from napari_sam2.engine.video.session import PropagationSession

from .masks import centre
from .test_video import small_video_model


def test_mother_ends_where_the_daughters_begin(micro_segmenter, tmp_path):
    from napari_sam2.engine.synthetic import synthetic_clip

    frames, truth = synthetic_clip(8, (256, 256), n_cells=2, seed=3)
    session = micro_segmenter.propagation_session(frames)
    session.add_prompts({0: {1: dict(points=[centre(truth[0] == 1)])}})
    labels = np.zeros(truth.shape, np.uint16)
    list(write_labels(session.propagate("forward"), labels))
    before = labels.copy()

    daughters = {k + 1: dict(points=[centre(truth[5] == k)]) for k in (1, 2)}
    stream = session.divide(1, 5, daughters)
    assert list(write_labels(stream, labels)) == [5, 6, 7]  # the daughters' frames
    assert np.array_equal(labels[:5], before[:5]) and (before[5:] == 1).any()
    for t in (5, 6, 7):  # the mother's pixels are cleared, the daughters painted
        assert set(np.unique(labels[t])) == {0, 2, 3}, t
    assert session.parents == {2: 1, 3: 1}
    assert np.isnan(session.confidence[1][5:]).all() and (session.confidence[2][5:] > 0.5).all()

    # Later runs keep the mother before the division and the daughters after it.
    steps = session.plan("both")
    assert {s.frame for s in steps if 1 in s.object_ids} == set(range(5))
    assert {s.frame for s in steps if 2 in s.object_ids} == {5, 6, 7}
    with pytest.raises(SAM2Error, match="frames 0..4 only"):
        session.add_prompts({6: {1: dict(points=[(5, 5)])}})

    export_ctc(labels, tmp_path / "ctc", session.parents)
    tracks = (tmp_path / "ctc" / "man_track.txt").read_text().split("\n")
    assert tracks[:3] == ["1 0 4 0", "2 5 7 1", "3 5 7 1"]

    save_annotation(tmp_path / "cells", session, labels)
    reopened, _ = load_annotation(tmp_path / "cells", micro_segmenter, frames)
    assert reopened.parents == {2: 1, 3: 1} and reopened.plan("both") == steps


def test_impossible_divisions_are_refused(micro_segmenter):
    from napari_sam2.engine.synthetic import synthetic_clip

    frames, truth = synthetic_clip(3, (256, 256), n_cells=2, seed=3)
    session = micro_segmenter.propagation_session(frames)
    session.add_prompts({0: {1: dict(points=[centre(truth[0] == 1)])}})
    click = {2: dict(points=[(10, 10)]), 3: dict(points=[(20, 20)])}
    with pytest.raises(SAM2Error, match="not labelled on frame 1"):
        session.divide(1, 2, click)  # not tracked there yet
    list(session.propagate("forward"))
    for frame, object_id, daughters, message in [
        (0, 1, click, "first frame"),
        (2, 9, click, "no prompts"),
        (2, 1, {1: dict(points=[(10, 10)]), 3: dict(points=[(5, 5)])}, "two new object ids"),
        (2, 1, {2: dict(points=[(10, 10)])}, "two new object ids"),
    ]:
        with pytest.raises(SAM2Error, match=message):
            session.divide(object_id, frame, daughters)
    assert session.parents == {} and session.object_ids == [1]


def test_an_object_that_is_absent_cannot_divide():
    """Here the mother's mask is empty on the frame before the division (random weights: the
    mask prompt is the mask)."""
    stack = (np.random.default_rng(0).random((3, 64, 64)) * 255).astype(np.uint8)
    session = PropagationSession(small_video_model(), frame_source_for(stack), (0, 2))
    session.add_prompts({0: {1: dict(mask=np.zeros((64, 64), bool))}})
    list(session.propagate("forward"))
    with pytest.raises(SAM2Error, match="not labelled on frame 0"):
        session.divide(1, 1, {2: dict(points=[(10, 10)]), 3: dict(points=[(20, 20)])})
