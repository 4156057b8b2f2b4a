"""Evaluate the micro SAM2 on the real confocal nuclei stack (issue 17), beside Otsu.

The stack is ``../shared/data/real-nuclei-3d`` (60 x 256 x 256 uint16, 20 labelled nuclei;
label holes filled before scoring). It is normalised stack-wide (0.5 / 99.8 percentiles), as
the plugin normalises a z-stack. Measures, printed as JSON lines:

* ``real2d``: on every ``--step``-th slice, every labelled cross-section of ``--min-area`` px
  or more: one click at its deepest pixel (the plugin's three-output rule) and its bounding
  box, with mIoU also split into isolated / touching (sharing a border with another labelled
  nucleus) / small (< 100 px) cross-sections and the median predicted / true area; on the
  touching ones also the correction a user makes where the mask spills into the neighbour: the
  click plus a negative click at the deepest pixel of the neighbour with the longest shared
  border (``negative``: mIoU, ``leak_before`` / ``leak_after``: share of the neighbour's pixels
  inside the mask, summed over the cross-sections); also split into a nucleus' end sections
  (``ends``: within ``END_SHARE`` of its labelled depth from its first or last slice, where
  the 3D label is a cap and the slice shows the nucleus' axial blur) and the others
  (``inner``); the Otsu
  columns are the connected component under the click and the foreground inside the box,
  after a global Otsu threshold of that slice;
* ``real3d``: for every nucleus, one click at the deepest pixel of its widest slice and
  propagation both ways through the stock ``SAM2VideoPredictor``, over the slices the nucleus
  spans plus ``--margin`` on each side; 3D IoU over that range. Otsu: the 3D connected
  component under the click after a stack-wide Otsu threshold.

On CUDA 2D runs in float32 and 3D in bfloat16 autocast (as the plugin runs them there).
Command (2D on 2 CPU threads takes a few minutes; 3D is faster on a GPU)::

    PYTHONPATH=src python tools/evaluate_real.py --skip 3d
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate_micro as em  # noqa: E402
import evaluate_micro_video as emv  # noqa: E402
import micro_model as mm  # noqa: E402

DEFAULT_DATA = mm.ROOT.parent / "shared/data/real-nuclei-3d"
SMALL_AREA = 100  # px at native resolution: issue 17's "small nuclei"
END_SHARE = 0.2  # of a nucleus' labelled depth, from either end: its "end sections"


def load_stack(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw stack, the stack normalised to 0..1 stack-wide, and the labels with holes filled."""
    import tifffile
    from scipy.ndimage import binary_fill_holes

    folder = Path(folder)
    raw = tifffile.imread(folder / "nuclei.tif")
    labels = tifffile.imread(folder / "nuclei_label.tif").astype(np.int32)
    for k in range(1, labels.max() + 1):
        for z in np.nonzero((labels == k).any((1, 2)))[0]:
            filled = binary_fill_holes(labels[z] == k)
            labels[z][filled & (labels[z] == 0)] = k
    return raw, emv.clip_norm(raw).astype(np.float32), labels


def cross_sections(labels: np.ndarray, step: int, min_area: int) -> dict[int, list[int]]:
    """Slice index -> labelled nuclei on it with at least ``min_area`` px (every step-th)."""
    out = {}
    for z in range(0, len(labels), step):
        ids, counts = np.unique(labels[z], return_counts=True)
        keep = [int(k) for k, c in zip(ids, counts, strict=True) if k and c >= min_area]
        if keep:
            out[z] = keep
    return out


def inner_depths(labels: np.ndarray) -> dict[int, tuple[float, float]]:
    """Per nucleus, the depths (slice indices) between which its cross-sections are inner
    ones; those outside lie within ``END_SHARE`` of its labelled depth from one of its ends."""
    out = {}
    for k in range(1, labels.max() + 1):
        zs = np.nonzero((labels == k).any((1, 2)))[0]
        if zs.size:
            margin = END_SHARE * (zs[-1] - zs[0] + 1)
            out[k] = (zs[0] + margin, zs[-1] - margin)
    return out


def _mean(values) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def evaluate_2d(
    model: em.Model, frames01: np.ndarray, labels: np.ndarray, step: int, min_area: int
) -> dict:
    rows = []
    inner = inner_depths(labels)
    for z, ids in cross_sections(labels, step, min_area).items():
        frame = frames01[z]
        model.set_frame(frame)
        fg = em.otsu_foreground(frame)
        for k in ids:
            truth = labels[z] == k
            p = em.deepest_point(truth)
            box = em.bounding_box(truth)
            inside = np.zeros_like(truth)
            inside[box[0] : box[2], box[1] : box[3]] = True
            click = model.predict([p], [1])
            extra = {}
            j = em.touching_neighbour(labels[z], k)
            if j is not None:
                other = labels[z] == j
                corrected = model.predict([p, em.deepest_point(other)], [1, 0])
                extra = dict(
                    negative=em.iou(corrected, truth),
                    leak_before=int((click & other).sum()),
                    leak_after=int((corrected & other).sum()),
                    neighbour_px=int(other.sum()),
                )
            rows.append(
                dict(
                    **extra,
                    click=em.iou(click, truth),
                    box=em.iou(model.predict(box=box), truth),
                    otsu_click=em.iou(em.otsu_click(fg, p), truth),
                    otsu_box=em.iou(fg & inside, truth),
                    area_ratio=click.sum() / truth.sum(),
                    touching=j is not None,
                    small=truth.sum() < SMALL_AREA,
                    end=not inner[k][0] <= z <= inner[k][1],
                )
            )
    res: dict = {"n": len(rows)}
    for key in ("click", "box", "otsu_click", "otsu_box"):
        res[key] = _mean([r[key] for r in rows])
    for name, pick in (
        ("isolated", lambda r: not r["touching"]),
        ("touching", lambda r: r["touching"]),
        ("small", lambda r: r["small"]),
        ("ends", lambda r: r["end"]),
        ("inner", lambda r: not r["end"]),
    ):
        sel = [r for r in rows if pick(r)]
        res[f"{name}_n"] = len(sel)
        for key in ("click", "box", "otsu_click"):
            res[f"{name}_{key}"] = _mean([r[key] for r in sel])
        ratios = [r["area_ratio"] for r in sel]
        if name == "touching" and sel:
            res["touching_negative"] = _mean([r["negative"] for r in sel])
            px = sum(r["neighbour_px"] for r in sel)
            res["touching_leak_before"] = round(sum(r["leak_before"] for r in sel) / px, 4)
            res["touching_leak_after"] = round(sum(r["leak_after"] for r in sel) / px, 4)
        res[f"{name}_area_ratio_median"] = round(float(np.median(ratios)), 3) if sel else None
    return res


def evaluate_3d(
    vm: emv.VideoModel,
    frames01: np.ndarray,
    labels: np.ndarray,
    margin: int,
    nuclei: list[int] | None = None,
) -> dict:
    from scipy.ndimage import label as label_3d
    from skimage.filters import threshold_otsu

    comp, _ = label_3d(frames01 > threshold_otsu(frames01[:, ::2, ::2]))
    ious, otsu, per_nucleus = [], [], {}
    for k in nuclei or range(1, labels.max() + 1):
        truth = labels == k
        zs = np.nonzero(truth.any((1, 2)))[0]
        z0, z1 = max(0, zs[0] - margin), min(len(labels), zs[-1] + margin + 1)
        widest = int(np.argmax(truth.reshape(len(truth), -1).sum(1)))
        point = em.deepest_point(truth[widest])
        masks = vm.track(frames01[z0:z1], widest - z0, point, both_ways=True)
        v = em.iou(masks, truth[z0:z1])
        ious.append(v)
        per_nucleus[k] = round(v, 3)
        c = comp[widest][point]
        otsu.append(em.iou((comp == c)[z0:z1] if c else np.zeros_like(masks), truth[z0:z1]))
    return {
        "zprop_3d_miou": _mean(ious),
        "otsu_3d_miou": _mean(otsu),
        "n": len(ious),
        "margin": margin,
        "per_nucleus": per_nucleus,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(em.DEFAULT_CHECKPOINT))
    ap.add_argument("--config", default=str(mm.DEFAULT_CONFIG))
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--step", type=int, default=3, help="every step-th slice in 2D")
    ap.add_argument("--min-area", type=int, default=20, help="smallest cross-section, px")
    ap.add_argument("--margin", type=int, default=4, help="slices beyond a nucleus in 3D")
    ap.add_argument("--nuclei", type=int, nargs="*", help="3D: only these labels")
    ap.add_argument("--device", default="cpu", help="2D float32; 3D bfloat16 on CUDA")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], choices=["2d", "3d"])
    ap.add_argument("--image-size", type=int, help="run the model at this input size")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.image_size:
        args.config = mm.config_at_size(args.config, args.image_size)
    _, frames01, labels = load_stack(args.data)
    tag = {"checkpoint": Path(args.checkpoint).name, "image_size": args.image_size or 1024}
    if "2d" not in args.skip:
        model = em.Model(args.checkpoint, args.config, args.device)
        res = evaluate_2d(model, frames01, labels, args.step, args.min_area)
        print(json.dumps({"metric": "real2d", **tag, "step": args.step, **res}), flush=True)
    if "3d" not in args.skip:
        vm = emv.VideoModel(args.checkpoint, args.config, args.device)
        res = evaluate_3d(vm, frames01, labels, args.margin, args.nuclei)
        print(json.dumps({"metric": "real3d", **tag, **res}), flush=True)


if __name__ == "__main__":
    main()
