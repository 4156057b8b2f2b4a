"""The crowded time-lapse generator: divisions, cells entering and leaving, ids as a tracker
would need them, labels that match the image."""

import numpy as np
import pytest

from napari_sam2.engine.synthetic_timelapse import synthetic_timelapse

SMALL = dict(n_frames=30, shape=(160, 160), n_cells=14, divisions=2, entering=2, leaving=2)


@pytest.fixture(scope="module", params=[0, 1, 2])
def clip(request):
    return synthetic_timelapse(**SMALL, seed=request.param)


def _spans(labels):
    """{id: (first frame, last frame)} and {id: the frames it is on}."""
    frames = {}
    for t, lab in enumerate(labels):
        for k in np.unique(lab[lab > 0]).tolist():
            frames.setdefault(k, []).append(t)
    return {k: (f[0], f[-1]) for k, f in frames.items()}, frames


def _touches_border(mask):
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_shapes_dtypes_and_same_seed_same_output():
    frames, labels, lineage = synthetic_timelapse(**SMALL, seed=5, dtype=np.uint8)
    assert frames.shape == labels.shape == (30, 160, 160)
    assert frames.dtype == np.uint8 and labels.dtype == np.int32
    again = synthetic_timelapse(**SMALL, seed=5, dtype=np.uint8)
    assert np.array_equal(frames, again[0]) and np.array_equal(labels, again[1])
    assert lineage == again[2]
    assert not np.array_equal(labels, synthetic_timelapse(**SMALL, seed=6)[1])


def test_ids_are_never_reused(clip):
    _, labels, _ = clip
    spans, frames = _spans(labels)
    for k, (first, last) in spans.items():
        assert frames[k] == list(range(first, last + 1)), k  # one unbroken stretch per id
    firsts = [spans[k][0] for k in sorted(spans)]
    assert firsts == sorted(firsts)  # new cells get the next ids in the order they appear


def test_daughters_start_where_the_mother_ends(clip):
    _, labels, lineage = clip
    spans, _ = _spans(labels)
    mothers = sorted(set(lineage.values()))
    assert len(mothers) == SMALL["divisions"]
    for m in mothers:
        daughters = [d for d, mm in lineage.items() if mm == m]
        assert len(daughters) == 2
        last = spans[m][1]
        mother = labels[last] == m
        for d in daughters:  # born on the next frame, mostly where she was
            assert spans[d][0] == last + 1, (m, d)
            born = labels[last + 1] == d
            assert (born & mother).sum() > 0.6 * born.sum(), (m, d)
        # Together the daughters cover about what she covered; then they move apart.
        both = np.isin(labels[last + 1], daughters)
        assert (both & mother).sum() / (both | mother).sum() > 0.6
        a, b = daughters
        later = min(last + 4, len(labels) - 1)
        gap = [
            np.argwhere(labels[t] == a).mean(0) - np.argwhere(labels[t] == b).mean(0)
            for t in (last + 1, later)
        ]
        assert np.linalg.norm(gap[1]) >= np.linalg.norm(gap[0]) - 1


def test_cells_enter_and_leave_through_the_borders(clip):
    _, labels, lineage = clip
    spans, _ = _spans(labels)
    end = len(labels) - 1
    entering = [k for k, (first, _) in spans.items() if first > 0 and k not in lineage]
    leaving = [k for k, (_, last) in spans.items() if last < end and k not in lineage.values()]
    assert len(entering) == SMALL["entering"] and len(leaving) == SMALL["leaving"]
    area = np.stack([np.bincount(lab.ravel(), minlength=labels.max() + 1) for lab in labels])
    for k in entering:  # first seen cut by a border, then growing into the field
        first = spans[k][0]
        assert _touches_border(labels[first] == k)
        assert (
            area[first, k] < 0.8 * area[first + 4, k] and area[first, k] < 0.6 * area[:, k].max()
        )
    for k in leaving:  # shrinking out of the field, last seen at a border
        last = spans[k][1]
        assert _touches_border(labels[last] == k)
        assert area[last, k] < 0.7 * area[last - 4, k] and area[last, k] < 0.5 * area[:, k].max()


def test_cells_change_size_smoothly(clip):
    """From one frame to the next a typical cell keeps its area (a division keeps it too)."""
    _, labels, _ = clip
    area = np.stack([np.bincount(lab.ravel(), minlength=labels.max() + 1) for lab in labels])
    both = (area[1:] > 0) & (area[:-1] > 0)
    both[:, 0] = False
    ratio = [np.median(area[t + 1][both[t]] / area[t][both[t]]) for t in range(len(labels) - 1)]
    assert 0.93 < min(ratio) and max(ratio) < 1.07


def test_fields_are_crowded(clip):
    _, labels, _ = clip
    touching = []
    for lab in labels:
        near = set()
        for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1], lab[1:])):
            shared = (a > 0) & (b > 0) & (a != b)
            near |= set(a[shared].tolist()) | set(b[shared].tolist())
        touching.append(len(near) / len(np.unique(lab[lab > 0])))
    assert np.mean(touching) > 1 / 3


def test_labels_are_the_bright_objects(clip):
    frames, labels, _ = clip
    for img, lab in zip(frames.astype(np.float64), labels, strict=True):
        background = np.median(img[lab == 0])
        cells = [np.median(img[lab == k]) for k in np.unique(lab[lab > 0])]
        assert np.mean(cells) > 1.3 * background
        assert np.mean(np.array(cells) > background) > 0.9


def test_too_many_events_raise():
    with pytest.raises(ValueError):
        synthetic_timelapse(n_frames=30, shape=(64, 64), n_cells=3, divisions=3, leaving=1)
