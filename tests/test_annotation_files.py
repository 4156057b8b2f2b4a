"""Saved annotations: reopened identical, corrected as before, refused when they do not fit."""

import json
from pathlib import Path

import numpy as np
import pytest

from napari_sam2 import SAM2Error, load_annotation, save_annotation, write_labels
from napari_sam2.engine import models

from .engine.masks import centre, iou
from .engine.test_video import small_video_model


@pytest.fixture
def stack() -> np.ndarray:
    return (np.random.default_rng(0).random((6, 48, 64)) * 4000).astype(np.uint16)


MASK = np.zeros((48, 64), bool)
MASK[10:20, 30:44] = True
PROMPTS = {
    1: {1: dict(points=[(12.5, 20), (30, 30)], point_labels=[1, 0])},
    4: {1: dict(box=(5, 6, 30, 40)), 3: dict(mask=MASK, points=[(15, 35)])},
}


def saved(segmenter, stack, folder) -> tuple:
    session = segmenter.propagation_session(stack, frame_range=(1, 6))
    session.add_prompts(PROMPTS)
    session.names[3] = "daughter"
    labels = np.zeros(stack.shape, np.uint16)
    labels[4][MASK] = 3
    save_annotation(folder, session, labels)
    return session, labels


def same_prompts(a, b) -> bool:
    fields = ("points", "point_labels", "box", "mask")
    return a.keys() == b.keys() and all(
        a[f].keys() == b[f].keys()
        and all(
            all(np.array_equal(getattr(a[f][o], k), getattr(b[f][o], k)) for k in fields)
            for o in a[f]
        )
        for f in a
    )


def test_reopened_annotation_has_the_same_labels_prompts_and_settings(
    random_segmenter, stack, tmp_path
):
    session, labels = saved(random_segmenter, stack, tmp_path / "cells")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells"]  # no temporary left
    reopened, loaded = load_annotation(tmp_path / "cells", random_segmenter, stack)
    assert np.array_equal(loaded, labels) and loaded.dtype == labels.dtype
    assert same_prompts(reopened.record.by_frame(), session.record.by_frame())
    assert reopened.frame_range == (1, 6) and reopened.names == {3: "daughter"}
    assert reopened.source.normalization == session.source.normalization


def test_rgb_stacks_and_other_frame_axes_keep_their_layout(random_segmenter, tmp_path):
    """Labels are the stack without its channel axis, in the stack's order (time on axis 1)."""
    rgb = (np.random.default_rng(2).random((48, 5, 64, 3)) * 255).astype(np.uint8)
    session = random_segmenter.propagation_session(rgb, frame_axis=1, channel_axis=3)
    session.add_prompts({2: {1: dict(points=[(10, 10)])}})
    labels = np.zeros((48, 5, 64), np.uint16)
    labels[:, 2][MASK] = 1
    save_annotation(tmp_path / "rgb", session, labels)
    reopened, loaded = load_annotation(tmp_path / "rgb", random_segmenter, rgb)
    assert np.array_equal(loaded, labels)
    assert (reopened.source.frame_axis, reopened.source.channel_axis) == (1, 3)
    assert reopened.prompted_frames(1) == [2]


def test_saving_never_overwrites_unless_asked(random_segmenter, stack, tmp_path):
    session, labels = saved(random_segmenter, stack, tmp_path / "cells")
    with pytest.raises(SAM2Error, match="already exists"):
        save_annotation(tmp_path / "cells", session, labels)
    labels[0, :5, :5] = 9
    save_annotation(tmp_path / "cells", session, labels, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells"]
    _, loaded = load_annotation(tmp_path / "cells", random_segmenter, stack)
    assert (loaded[0, :5, :5] == 9).all()
    with pytest.raises(SAM2Error, match="do not fit the stack"):
        save_annotation(tmp_path / "other", session, labels[:, :10])
    run = session.propagate("forward")
    next(run)
    with pytest.raises(SAM2Error, match="propagation is running"):
        save_annotation(tmp_path / "other", session, labels)
    run.close()
    assert not (tmp_path / "other").exists()


def edit_json(path: Path, change) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda f: edit_json(f / "annotation.json", lambda c: c.update(format_version=2)),
            "newer",
        ),
        (lambda f: (f / "annotation.json").write_text('{"format": "napari-sam2 ann'), "damaged"),
        (lambda f: (f / "annotation.json").unlink(), "did not finish"),
        (lambda f: (f / "prompts.json").write_text((f / "prompts.json").read_text()[:50]), "cut"),
        (
            lambda f: edit_json(f / "prompts.json", lambda c: c["prompts"][0].update(frame=2)),
            "edited",
        ),
    ],
    ids=["newer-version", "broken-settings", "unfinished", "truncated-prompts", "edited-prompts"],
)
def test_damaged_folders_are_refused(random_segmenter, stack, tmp_path, damage, message):
    saved(random_segmenter, stack, tmp_path / "cells")
    damage(tmp_path / "cells")
    with pytest.raises(SAM2Error, match=message):
        load_annotation(tmp_path / "cells", random_segmenter, stack)


def test_other_image_data_or_labels_are_refused(random_segmenter, stack, tmp_path):
    import zarr

    saved(random_segmenter, stack, tmp_path / "cells")
    other = stack.copy()
    other[3, 0, 0] += 1  # one pixel of a sampled frame
    with pytest.raises(SAM2Error, match="other image data"):
        load_annotation(tmp_path / "cells", random_segmenter, other)
    with pytest.raises(SAM2Error, match="shape"):
        load_annotation(tmp_path / "cells", random_segmenter, stack[:, :40])
    zarr.open_array(store=str(tmp_path / "cells/labels.zarr"), mode="w", shape=(6, 8, 8))
    with pytest.raises(SAM2Error, match="labels"):
        load_annotation(tmp_path / "cells", random_segmenter, stack)


def test_reopened_annotation_corrects_only_up_to_the_next_prompt_as_before(
    micro_segmenter, tmp_path
):
    from napari_sam2.engine.synthetic import synthetic_clip

    frames, truth = synthetic_clip(8, (256, 256), n_cells=1, seed=4)
    session = micro_segmenter.propagation_session(frames)
    session.add_prompts({t: {1: dict(points=[centre(truth[t] == 1)])} for t in (0, 6)})
    labels = np.zeros(truth.shape, np.uint16)
    list(write_labels(session.propagate("forward"), labels))
    save_annotation(tmp_path / "cells", session, labels)
    reopened, loaded = load_annotation(tmp_path / "cells", micro_segmenter, frames)
    assert np.array_equal(loaded, labels)
    assert np.array_equal(reopened.confidence[1], session.confidence[1], equal_nan=True)

    fix = {1: dict(mask=truth[3] == 1, points=[centre(truth[3] == 1)])}
    written = list(write_labels(reopened.correct(3, fix, "forward"), loaded))
    assert written == [3, 4, 5]  # from the correction to the next prompted frame only
    keep = [0, 1, 2, 6, 7]
    assert np.array_equal(loaded[keep], labels[keep])
    list(write_labels(session.correct(3, fix, "forward"), labels))  # the same, unsaved
    for t in (3, 4, 5):
        assert iou(loaded[t] == 1, labels[t] == 1) > 0.9, t


class ReadLog:
    """An array-like that notes which frames are read."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim
        self.read: set[int] = set()

    def __getitem__(self, key):
        self.read.add(key[0] if isinstance(key, tuple) else key)
        return self.array[key]


def test_a_correction_after_reopening_reads_only_its_objects_frames(tmp_path, monkeypatch):
    """Reopening a 30-frame annotation of two objects and correcting one reads that object's
    frames only: the other's prompted frames (20, 29) wait for its own run."""
    from napari_sam2 import Segmenter

    model = small_video_model()
    monkeypatch.setattr("napari_sam2.engine.segmenter.build_model", lambda *a, **k: model)
    segmenter = Segmenter(models.MICRO_MODEL, device="cpu")
    stack = ReadLog((np.random.default_rng(1).random((30, 64, 64)) * 255).astype(np.uint8))
    click = dict(points=[(30, 30)])
    session = segmenter.propagation_session(stack, contrast_limits=(0, 255))
    session.add_prompts({0: {1: click}, 10: {1: click}, 20: {2: click}, 29: {2: click}})
    save_annotation(tmp_path / "cells", session, np.zeros((30, 64, 64), np.uint16))
    reopened, labels = load_annotation(tmp_path / "cells", segmenter, stack)
    stack.read.clear()
    written = list(write_labels(reopened.correct(5, {1: click}, "forward"), labels))
    assert written == [5, 6, 7, 8, 9]
    assert max(stack.read) <= 12  # anchors 0 and 10, frames 5-9, and a little read-ahead
