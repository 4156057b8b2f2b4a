"""Segment everything, then propagate, on a real field larger than the model input (issue 19).

A ``--grid`` × ``--grid`` mosaic of tiles of the real nuclei stack (``engine.mosaic``: every
tile cut from the same slice, the frames are the slices ``--slices``), segmented everything
on its middle frame through the plugin's ``Segmenter`` (packaged micro by default); the
objects lying on a real nucleus there (IoU > 0.5) are propagated both ways as mask prompts,
over the whole field (shrunk to the model input where larger) and, as the control, those
inside the top-left model-input-sized region tracked in it at native resolution (``roi``).
Printed per frame, as JSON lines: the share of objects still on their nucleus (IoU > 0.5)
and their mean IoU.

    PYTHONPATH=src python tools/evaluate_field.py     # about 4 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from evaluate_real import DEFAULT_DATA, load_stack


def field(frames01: np.ndarray, labels: np.ndarray, slices: list[int], grid: int):
    """The mosaic of each slice and its labels, each tile's nuclei numbered apart."""
    from napari_sam2.engine.mosaic import make_mosaic

    images, truths = [], []
    for z in slices:
        mosaic = make_mosaic(frames01[[z]], labels[[z]], grid, seed=grid * 256)
        truth = np.zeros(mosaic.image.shape[:2], np.int32)
        for k in range(grid * grid):
            tile = mosaic.tile_labels(*divmod(k, grid))
            r0, c0 = mosaic.origin(*divmod(k, grid))
            view = truth[r0 : r0 + tile.shape[0], c0 : c0 + tile.shape[1]]
            view[tile > 0] = tile[tile > 0] + 1000 * k
        images.append(mosaic.image)
        truths.append(truth)
    return np.stack(images), np.stack(truths)


def on_nucleus(mask: np.ndarray, truth: np.ndarray) -> tuple[int, float]:
    """The nucleus of ``truth`` that most of ``mask`` lies on, and their IoU (0, 0 if none)."""
    ids, counts = np.unique(truth[mask], return_counts=True)
    nucleus = int(ids[np.argmax(counts)]) if len(ids) else 0
    if nucleus == 0:
        return 0, 0.0
    other = truth == nucleus
    return nucleus, float((mask & other).sum() / (mask | other).sum())


def followed(segmenter, stack, truths, objects, start, roi=None) -> list[dict]:
    """Propagate ``objects`` (id → (mask on ``start``, its nucleus)) both ways; per frame the
    share still on their nucleus and their mean IoU with it."""
    prompts = {start: {i: dict(mask=mask) for i, (mask, _) in objects.items()}}
    rows, (r0, c0) = [], (0, 0) if roi is None else roi[:2]
    began = time.perf_counter()
    stream = segmenter.propagate(stack, prompts, "both", contrast_limits=(0, 1), roi=roi)
    for frame, ids, masks in stream:
        truth = truths[frame][r0:, c0:][: masks.shape[1], : masks.shape[2]]
        ious = []
        for object_id, mask in zip(ids, masks, strict=True):
            nucleus = truth == objects[object_id][1]
            ious.append((mask & nucleus).sum() / max((mask | nucleus).sum(), 1))
        rows.append(
            {
                "frame": frame,
                "on_nucleus": round(float(np.mean(np.array(ious) > 0.5)), 3),
                "miou": round(float(np.mean(ious)), 3),
            }
        )
    return sorted(rows, key=lambda r: r["frame"]) + [
        {"seconds": round(time.perf_counter() - began, 1)}
    ]


def main(argv=None) -> None:
    from napari_sam2 import Segmenter
    from napari_sam2.engine import models

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--model", default=models.MICRO_MODEL)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", type=int, default=4, help="tiles a side (256 px each)")
    ap.add_argument("--slices", type=int, nargs="+", default=[28, 29, 30, 31, 32])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, frames01, labels = load_stack(args.data)
    stack, truths = field(frames01, labels, args.slices, args.grid)
    segmenter = Segmenter(args.model, device=args.device, checkpoint=args.checkpoint)
    start = len(args.slices) // 2
    segmenter.set_image(stack[start], contrast_limits=(0, 1))
    began = time.perf_counter()
    found = segmenter.segment_everything()
    objects = {}
    for object_id in np.unique(found)[1:]:
        mask = found == object_id
        nucleus, iou = on_nucleus(mask, truths[start])
        if iou > 0.5:
            objects[int(object_id)] = mask, nucleus
    size = segmenter.model.image_size
    tag = {"model": args.model, "field": list(stack.shape[1:3]), "slices": args.slices}
    print(
        json.dumps(
            {
                **tag,
                "found": int(found.max()),
                "on_a_nucleus": len(objects),
                "segment_everything_s": round(time.perf_counter() - began, 1),
            }
        ),
        flush=True,
    )
    whole = followed(segmenter, stack, truths, objects, start)
    print(
        json.dumps({**tag, "tracked": "whole field", "objects": len(objects), "rows": whole}),
        flush=True,
    )
    inside = {
        i: entry
        for i, entry in objects.items()
        if not entry[0][size:].any() and not entry[0][:, size:].any()
    }
    region = followed(segmenter, stack, truths, inside, start, roi=(0, 0, size, size))
    print(
        json.dumps(
            {
                **tag,
                "tracked": f"region {size}² at native resolution",
                "objects": len(inside),
                "rows": region,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
