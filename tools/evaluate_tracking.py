"""Evaluate tracking on long crowded synthetic clips (issue 17), beside an Otsu tracker.

Clips (``--kinds``): ``clip`` is ``synthetic_clip(frames, (size, size), cells, seed=3)`` with
its default ``"smooth"`` motion, as the issue measured it (100 frames, 512², 64 cells: tracked
mIoU 0.30 to 0.52); ``timelapse`` is ``synthetic_timelapse`` (crowded, touching cells that
divide, enter and leave) for each ``--seeds``. Both for each ``--cells``.

The packaged micro model tracks through the project's engine (``PropagationSession``, whose
masks agree with sam2's stock ``SAM2VideoPredictor`` at mean IoU >= 0.98, docs/performance.md),
on frames normalised stack-wide as the plugin does: one positive click at the deepest point of
each of the first N cells (by id) of frame 0, propagated forward to the end. The largest N is
tracked once and each smaller N scored on its first objects: objects have memories of their
own, and batching them gives each the masks it gets alone (tests/engine/test_batched_tracking.py).

Per clip and N, one JSON line on stdout, over the (object, frame) pairs:

* ``miou``: mean IoU with the true cell where its id is in the truth;
* ``followed``: share of those pairs whose mask's centroid lies within 10 px of the true one
  (native pixels; an empty mask is not followed), the blind test's "track points followed";
* ``absent_empty``: where the id is not in the truth (the cell left, or divided: a mother's id
  ends where her daughters begin), the share with an empty mask;
* ``divided_on_daughter``: a mother after her division, the share of frames whose mask lies
  on her descendants (``lineage``; at least half its pixels, on one daughter or spread over
  both): following them is what a user would expect, so it is reported apart, not as a miss;
* ``per_frame_iou``: mean IoU over the present objects of each frame (``--plot`` draws it);
* ``otsu_*``: the same for a classical tracker: a stack-wide Otsu threshold of the normalised
  frames, and on each frame the connected component under the object's previous position (the
  mask's pixel nearest its centroid; the click on frame 0).

Command (on an H200 the engine tracks 64 objects at about 19 frames/s, docs/performance.md)::

    PYTHONPATH=src python tools/evaluate_tracking.py --device cuda --frames 100 --size 512 \
        --cells 32 64 --objects 1 8 32 64 --seeds 0 1 --plot tracking-iou.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate_micro as em  # noqa: E402
import micro_model as mm  # noqa: E402

FOLLOW_PX = 10.0  # a track point is followed within this distance of the true centroid

Masks = Iterator[tuple[int, np.ndarray]]  # (frame, (objects, H, W) bool) in the objects' order


def clips(args) -> Iterator[tuple[dict, np.ndarray, np.ndarray, dict]]:
    """(description, frames, labels, lineage) of each clip asked for."""
    from napari_sam2.engine.synthetic import synthetic_clip
    from napari_sam2.engine.synthetic_timelapse import synthetic_timelapse

    shape = (args.size, args.size)
    for cells in args.cells:
        about = {"frames": args.frames, "size": args.size, "cells": cells}
        if "clip" in args.kinds:
            frames, labels = synthetic_clip(args.frames, shape, cells, seed=3)
            yield (
                {"clip": "synthetic_clip", "seed": 3, "motion": "smooth", **about},
                frames,
                labels,
                {},
            )
        if "timelapse" in args.kinds:
            events = dict(divisions=args.divisions, entering=args.entering, leaving=args.leaving)
            for seed in args.seeds:
                frames, labels, lineage = synthetic_timelapse(
                    args.frames, shape, cells, seed=seed, **events
                )
                yield (
                    {"clip": "synthetic_timelapse", "seed": seed, **events, **about},
                    frames,
                    labels,
                    lineage,
                )


def first_clicks(labels0: np.ndarray, n: int | None) -> tuple[list[int], list[tuple[int, int]]]:
    """The first ``n`` cell ids of frame 0 (all with None) and a click (row, col) at the
    deepest point of each."""
    ids = [int(k) for k in np.unique(labels0) if k][:n]
    return ids, [em.deepest_point(labels0 == k) for k in ids]


def engine_masks(model, frames: np.ndarray, ids: list[int], clicks: list) -> Masks:
    """The engine's masks of the clicked objects, frame by frame, as the plugin tracks them."""
    from napari_sam2.engine.video.reading import frame_source_for
    from napari_sam2.engine.video.session import PropagationSession

    with PropagationSession(model, frame_source_for(frames)) as session:
        session.add_prompts({0: {k: dict(points=[c]) for k, c in zip(ids, clicks, strict=True)}})
        for t, got, masks in session.propagate("forward"):
            out = np.zeros((len(ids), *frames.shape[1:]), bool)
            where = {k: j for j, k in enumerate(got)}
            for j, k in enumerate(ids):
                if k in where:
                    out[j] = masks[where[k]]
            yield t, out


def otsu_masks(frames: np.ndarray, clicks: list) -> Masks:
    """The Otsu tracker: components of a stack-wide threshold, each object taking the one
    under its previous position (normalised as the engine normalises the stack)."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    from napari_sam2.engine.frames import Normalization

    norm = Normalization.for_data(frames, 0).apply(frames)
    level = threshold_otsu(norm[:, ::2, ::2])
    at = np.array(clicks, int).reshape(-1, 2)
    for t, frame in enumerate(norm):
        comp = label(frame > level, connectivity=1)
        under = comp[at[:, 0], at[:, 1]]
        masks = (comp[None] == under[:, None, None]) & (under[:, None, None] > 0)
        for k in np.unique(under[under > 0]):  # once per component: crowded cells share them
            ys, xs = np.nonzero(masks[np.argmax(under == k)])
            near = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
            at[under == k] = ys[near], xs[near]
        yield t, masks


def descendants(lineage: dict[int, int]) -> dict[int, list[int]]:
    """Mother id → the ids of all her daughters, granddaughters, ..."""
    out: dict[int, set[int]] = {}
    for daughter, mother in lineage.items():
        while mother is not None:
            out.setdefault(mother, set()).add(daughter)
            mother = lineage.get(mother)
    return {m: sorted(d) for m, d in out.items()}


class TrackScores:
    """Per (object, frame) figures of tracked objects against the true labels."""

    def __init__(self, ids: list[int], labels: np.ndarray, lineage: dict[int, int]):
        n, n_frames = len(ids), len(labels)
        self.ids = np.asarray(ids, int)
        self.n_labels = int(labels.max()) + 1
        self.kids = {
            m: [d for d in kids if d < self.n_labels] for m, kids in descendants(lineage).items()
        }
        self.iou = np.full((n, n_frames), np.nan)
        self.present = np.zeros((n, n_frames), bool)
        self.followed = np.zeros((n, n_frames), bool)
        self.empty = np.zeros((n, n_frames), bool)
        self.on_daughter = np.full((n, n_frames), np.nan)
        rows, cols = np.indices(labels.shape[1:])
        self._rows, self._cols = rows.ravel(), cols.ravel()

    def add(self, t: int, truth: np.ndarray, masks: np.ndarray) -> None:
        """Score frame ``t``: ``masks`` (objects, H, W) against ``truth`` (H, W) labels."""
        n, n_labels = len(self.ids), self.n_labels
        truth = truth.ravel()
        obj, pixel = np.divmod(np.flatnonzero(masks.reshape(n, -1)), truth.size)
        # inter[j, k]: pixels of object j's mask on true cell k (0: background).
        inter = np.bincount(obj * n_labels + truth[pixel], minlength=n * n_labels)
        inter = inter.reshape(n, n_labels)
        area = inter.sum(1)
        sizes = np.bincount(truth, minlength=n_labels)
        with np.errstate(invalid="ignore", divide="ignore"):
            mask_at = (
                np.stack([np.bincount(obj, w[pixel], n) for w in (self._rows, self._cols)], 1)
                / area[:, None]
            )
            true_at = (
                np.stack([np.bincount(truth, w, n_labels) for w in (self._rows, self._cols)], 1)
                / sizes[:, None]
            )
            hit = inter[np.arange(n), self.ids]
            iou = hit / (area + sizes[self.ids] - hit)
        present = sizes[self.ids] > 0
        near = np.hypot(*(mask_at - true_at[self.ids]).T) <= FOLLOW_PX
        self.present[:, t] = present
        self.iou[:, t] = np.where(present, iou, np.nan)
        self.followed[:, t] = present & (area > 0) & near
        self.empty[:, t] = area == 0
        for j, k in enumerate(self.ids):
            kids = self.kids.get(int(k))
            if kids and not present[j] and sizes[kids].any():
                self.on_daughter[j, t] = area[j] > 0 and 2 * inter[j, kids].sum() >= area[j]

    def summary(self, n: int, prefix: str = "") -> dict:
        """The figures of the first ``n`` objects (keys start with ``prefix``)."""
        present, absent = self.present[:n], ~self.present[:n]
        divided = self.on_daughter[:n]
        out = {
            "miou": _mean(self.iou[:n][present]),
            "followed": _mean(self.followed[:n][present]),
            "absent_empty": _mean(self.empty[:n][absent]),
            "absent_pairs": int(absent.sum()),
            "divided_on_daughter": _mean(divided[~np.isnan(divided)]),
            "divided_pairs": int((~np.isnan(divided)).sum()),
            "per_frame_iou": [_mean(column[~np.isnan(column)]) for column in self.iou[:n].T],
        }
        return {prefix + key: value for key, value in out.items()}


def _mean(values: np.ndarray) -> float | None:
    return round(float(np.mean(values)), 4) if values.size else None


def score(masks: Masks, labels: np.ndarray, lineage: dict, ids: list[int]):
    """(scores, seconds the masks took to come, scoring left out) of one tracking run."""
    scores = TrackScores(ids, labels, lineage)
    scoring = 0.0
    start = time.perf_counter()
    for t, frame_masks in masks:
        begin = time.perf_counter()
        scores.add(t, labels[t], frame_masks)
        scoring += time.perf_counter() - begin
    return scores, time.perf_counter() - start - scoring


def evaluate(model, about: dict, frames, labels, lineage, objects: list) -> list[dict]:
    """One row per object count (``None``: all the cells of frame 0) on one clip."""
    every = len(first_clicks(labels[0], None)[0])
    counts = sorted({min(every, n or every) for n in objects})
    ids, clicks = first_clicks(labels[0], counts[-1])
    ours, seconds = score(engine_masks(model, frames, ids, clicks), labels, lineage, ids)
    otsu, _ = score(otsu_masks(frames, clicks), labels, lineage, ids)
    fps = round(len(frames) / seconds, 2)
    return [
        {**about, "objects": n, "engine_fps": fps, **ours.summary(n), **otsu.summary(n, "otsu_")}
        for n in counts
    ]


def plot(rows: list[dict], path: Path) -> None:
    """Per-frame mean IoU: a panel per object count, a colour per clip (dotted: Otsu)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({r["objects"] for r in rows})
    fig, axes = plt.subplots(
        1, len(counts), figsize=(4.5 * len(counts), 3.8), sharey=True, squeeze=False
    )
    for ax, n in zip(axes[0], counts, strict=True):
        for i, row in enumerate(r for r in rows if r["objects"] == n):
            name = f"{row['clip'].removeprefix('synthetic_')} {row['cells']} cells s{row['seed']}"
            nan = [np.nan if v is None else v for v in row["per_frame_iou"]]
            ax.plot(nan, color=f"C{i}", label=name)
            otsu = [np.nan if v is None else v for v in row["otsu_per_frame_iou"]]
            ax.plot(otsu, color=f"C{i}", linestyle=":")
        ax.set_title(f"N = {n} tracked (dotted: Otsu)")
        ax.set_xlabel("frame")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean IoU with the true cells")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def object_count(text: str) -> int | None:
    return None if text == "all" else int(text)


def main(argv=None) -> None:
    from napari_sam2.engine import models
    from napari_sam2.engine.video.warmup import warm_up

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(em.DEFAULT_CHECKPOINT))
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the best there is)")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=512, help="frame side, pixels")
    ap.add_argument("--cells", type=int, nargs="+", default=[32, 64])
    ap.add_argument(
        "--objects", type=object_count, nargs="+", default=[1, 8, 32, 64], help="N or all"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="of the time-lapses")
    ap.add_argument(
        "--kinds", nargs="+", default=["clip", "timelapse"], choices=["clip", "timelapse"]
    )
    ap.add_argument("--divisions", type=int, default=4)
    ap.add_argument("--entering", type=int, default=3)
    ap.add_argument("--leaving", type=int, default=3)
    ap.add_argument("--plot", type=Path, default=None, help="PNG of the per-frame mean IoU")
    ap.add_argument("--image-size", type=int, help="run the model at this input size")
    args = ap.parse_args(argv)
    if args.image_size:  # a candidate for another input size (issue 17's CPU-first 512)
        config = mm.config_at_size(mm.DEFAULT_CONFIG, args.image_size)
        model = mm.load_model(args.checkpoint, config, models.select_device(args.device))
    else:
        model = models.build_model(models.MICRO_MODEL, args.checkpoint, args.device)
    if model.device.type == "cuda":
        warm_up(model)
    device = {
        "device": model.device.type,
        "checkpoint": Path(args.checkpoint).name,
        "image_size": model.image_size,
    }
    rows = []
    for about, frames, labels, lineage in clips(args):
        for row in evaluate(model, about, frames, labels, lineage, args.objects):
            rows.append({**row, **device, "torch": torch.__version__})
            print(json.dumps(rows[-1]), flush=True)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
