"""CTC export: the masks and man_track.txt read back agree with the labels and the format."""

import numpy as np
import pytest
import tifffile

from napari_sam2 import SAM2Error, export_ctc


@pytest.fixture
def labels() -> np.ndarray:
    """Object 1 leaves on frames 3-4 and returns; 2 divides into 4 and 5 on frame 4."""
    out = np.zeros((7, 20, 30), np.uint32)
    for t in range(7):
        if t not in (3, 4):
            out[t, 2:6, 2 + t : 6 + t] = 1
        if t < 4:
            out[t, 10:18, 10:20] = 2
        else:
            out[t, 10:18, 10:14] = 4
            out[t, 10:18, 16:20] = 5
    return out


def read_back(folder):
    masks = np.stack([tifffile.imread(folder / f"mask{t:03d}.tif") for t in range(7)])
    lines = (folder / "man_track.txt").read_text().split("\n")
    tracks = [tuple(int(v) for v in line.split()) for line in lines if line]
    return masks, tracks


def test_tracks_split_at_gaps_and_divisions_keep_their_parents(labels, tmp_path):
    export_ctc(labels, tmp_path / "01_RES", parents={4: 2, 5: 2})
    masks, tracks = read_back(tmp_path / "01_RES")
    assert masks.dtype == np.uint16
    # 1's return is a new track (6), parented to its first run; 4 and 5 to their mother 2
    assert tracks == [(1, 0, 2, 0), (2, 0, 3, 0), (4, 4, 6, 2), (5, 4, 6, 2), (6, 5, 6, 1)]
    for t in range(7):  # on each frame, exactly the tracks spanning it, where the labels are
        spanning = {label for label, begin, end, _ in tracks if begin <= t <= end}
        assert set(np.unique(masks[t])) - {0} == spanning, t
        for oid in np.unique(labels[t])[1:]:
            (label,) = np.unique(masks[t][labels[t] == oid])
            assert (masks[t] == label).sum() == (labels[t] == oid).sum()
    assert ((masks == 6) == ((labels == 1) & (np.arange(7) >= 5)[:, None, None])).all()


@pytest.mark.parametrize(
    "parents, message",
    [
        ({5: 1}, "still labelled"),  # 1 is present after 5 appears
        ({4: 4}, "still labelled"),  # an id reused for its own daughter
        ({9: 2}, "object 9 is in no frame"),
    ],
)
def test_impossible_divisions_are_refused(labels, tmp_path, parents, message):
    with pytest.raises(SAM2Error, match=message):
        export_ctc(labels, tmp_path / "out", parents)
    assert not (tmp_path / "out").exists()


def test_bad_labels_and_folders_are_refused(labels, tmp_path):
    with pytest.raises(SAM2Error, match="16-bit"):
        export_ctc(labels * 40_000, tmp_path / "big")
    with pytest.raises(SAM2Error, match="integer"):
        export_ctc(labels.astype(float), tmp_path / "float")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(SAM2Error, match="not empty"):
        export_ctc(labels, tmp_path / "used")
