"""Cell Tracking Challenge (CTC) export: ``maskTTT.tif`` per frame and ``man_track.txt``.

In the CTC format a track is one label over an unbroken run of frames: ``man_track.txt`` has a
line ``L B E P`` per track (label, first and last frame, parent label or 0), and on every frame
the labels in the mask are exactly the tracks spanning that frame. So an object that
disappears and comes back is split: each return starts a new track, with a new label, whose
parent is the run before it (as the CTC's own ground truth links a cell across a gap). A
division (``parents``: daughter id → mother id) makes the mother's last run the parent of each
daughter's first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine.errors import SAM2Error
from ..engine.frames import read_frame

_LARGEST = np.iinfo(np.uint16).max


def export_ctc(labels, folder, parents: dict[int, int] | None = None) -> Path:
    """Write (T, [Z,] Y, X) ``labels`` (numpy, zarr, dask; read a frame at a time) into
    ``folder`` (new or empty) in the CTC format; ``parents`` maps daughter to mother ids."""
    import tifffile

    if labels.ndim not in (3, 4) or np.dtype(labels.dtype).kind not in "iu":
        raise SAM2Error(
            f"CTC export needs integer (frames, [z,] rows, cols) labels, got {labels.shape} "
            f"{labels.dtype}."
        )
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise SAM2Error(f"{folder} is not empty: export into a new or empty folder.")
    n = labels.shape[0]
    present = [np.unique(read_frame(labels, t, 0)) for t in range(n)]
    present = [ids[ids > 0].tolist() for ids in present]
    tracks, label_at = _tracks(present, dict(parents or {}))
    folder.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(n - 1)))
    for t in range(n):
        plane = read_frame(labels, t, 0)
        ids, inverse = np.unique(plane, return_inverse=True)
        new = np.array([label_at.get((int(i), t), 0) for i in ids], np.uint16)
        mask = new[inverse].reshape(plane.shape)
        tifffile.imwrite(folder / f"mask{t:0{width}d}.tif", mask)
    lines = [f"{label} {begin} {end} {parent}\n" for label, begin, end, parent in tracks]
    (folder / "man_track.txt").write_text("".join(lines))
    return folder


def _tracks(
    present: list[list[int]], parents: dict[int, int]
) -> tuple[list[tuple[int, int, int, int]], dict[tuple[int, int], int]]:
    """CTC tracks (L, B, E, P) and the label of each (object id, frame), from the ids present
    on each frame."""
    frames: dict[int, list[int]] = {}
    for t, ids in enumerate(present):
        for i in ids:
            frames.setdefault(i, []).append(t)
    for daughter, mother in parents.items():
        for oid in (daughter, mother):
            if oid not in frames:
                raise SAM2Error(
                    f"Division {mother} → {daughter}: object {oid} is in no frame of the labels."
                )
        if frames[mother][-1] >= frames[daughter][0]:
            raise SAM2Error(
                f"Object {daughter} starts on frame {frames[daughter][0]}, but its mother "
                f"{mother} is still labelled on frame {frames[mother][-1]}: a mother's track must "
                "end before its daughters' begin (give daughters ids of their own)."
            )
    next_label = max(frames, default=0) + 1
    runs: dict[int, list[tuple[int, int, int]]] = {}  # object id → (label, begin, end)
    for oid, ts in sorted(frames.items()):
        breaks = [k for k in range(1, len(ts)) if ts[k] != ts[k - 1] + 1]
        starts, ends = [0] + breaks, breaks + [len(ts)]
        for n, (a, b) in enumerate(zip(starts, ends, strict=True)):
            label = oid if n == 0 else next_label
            next_label += n > 0
            runs.setdefault(oid, []).append((label, ts[a], ts[b - 1]))
    if next_label - 1 > _LARGEST:
        raise SAM2Error(
            f"The tracks need labels up to {next_label - 1}, more than the 16-bit CTC masks "
            "hold: relabel the objects with smaller ids first."
        )
    tracks, label_at = [], {}
    for oid, object_runs in runs.items():
        for n, (label, begin, end) in enumerate(object_runs):
            if n > 0:
                parent = object_runs[n - 1][0]
            elif oid in parents:
                parent = runs[parents[oid]][-1][0]
            else:
                parent = 0
            tracks.append((label, begin, end, parent))
            label_at.update({(oid, t): label for t in range(begin, end + 1)})
    return sorted(tracks), label_at
