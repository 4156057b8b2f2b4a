"""tools/evaluate_tracking.py: its figures are high for a good track and fall for a wrong one."""

import numpy as np
import pytest

from napari_sam2.engine.synthetic import synthetic_clip

from .conftest import MICRO_CHECKPOINT, tools_module


@pytest.fixture(scope="module")
def et():
    return tools_module("evaluate_tracking")


def test_packaged_model_follows_isolated_cells_and_a_shifted_track_scores_low(et):
    from napari_sam2.engine import models

    if not MICRO_CHECKPOINT.exists():
        pytest.skip("the trained micro checkpoint is not packaged")
    model = models.build_model(models.MICRO_MODEL, MICRO_CHECKPOINT, "cpu")
    frames, labels = synthetic_clip(6, (128, 128), 3, seed=3)
    ids, clicks = et.first_clicks(labels[0], None)
    tracked = list(et.engine_masks(model, frames, ids, clicks))
    good = et.score(iter(tracked), labels, {}, ids)[0].summary(len(ids))
    assert len(ids) == 3 and good["miou"] > 0.7 and good["followed"] == 1.0, good
    assert len(good["per_frame_iou"]) == 6
    shifted = [(t, np.roll(masks, 15, axis=-1)) for t, masks in tracked]
    wrong = et.score(iter(shifted), labels, {}, ids)[0].summary(len(ids))
    assert wrong["miou"] < good["miou"] - 0.3 and wrong["followed"] < 0.5, wrong


def test_a_mother_followed_onto_her_daughter_is_counted_apart(et):
    """Cell 1 divides into 2 and 3 after frame 1; cell 4 leaves after frame 0. The mask of 1
    stays on daughter 2, the mask of 4 goes empty: both are right, and said so."""
    labels = np.zeros((3, 40, 40), np.int32)
    labels[:2, 5:15, 5:15] = 1
    labels[2, 5:15, 5:10], labels[2, 5:15, 10:15] = 2, 3
    labels[0, 25:35, 25:35] = 4
    masks = np.zeros((3, 2, 40, 40), bool)
    masks[:2, 0, 5:15, 5:15] = True
    masks[2, 0, 5:15, 5:10] = True
    masks[0, 1, 25:35, 25:35] = True
    scores = et.score(enumerate(masks), labels, {2: 1, 3: 1}, [1, 4])[0].summary(2)
    assert scores["miou"] == 1.0 and scores["followed"] == 1.0
    assert scores["absent_pairs"] == 3 and scores["absent_empty"] == 0.6667
    assert scores["divided_pairs"] == 1 and scores["divided_on_daughter"] == 1.0
    assert scores["per_frame_iou"] == [1.0, 1.0, None]


def test_a_candidate_runs_at_another_input_size(et, capsys):
    """``--image-size 512``: the packaged weights tracked by the engine at a 512 input (how a
    CPU-first candidate of issue 17 is measured), reported with its input size."""
    import json

    if not MICRO_CHECKPOINT.exists():
        pytest.skip("the trained micro checkpoint is not packaged")
    argv = ["--checkpoint", str(MICRO_CHECKPOINT), "--image-size", "512", "--device", "cpu"]
    argv += ["--frames", "3", "--size", "128", "--cells", "3", "--objects", "all"]
    et.main([*argv, "--kinds", "clip"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all(row["image_size"] == 512 and row["miou"] > 0.5 for row in rows)
