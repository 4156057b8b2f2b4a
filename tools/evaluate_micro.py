"""Evaluate the micro SAM2 on held-back synthetic data, beside a classical Otsu baseline.

The images come from ``napari_sam2.engine.synthetic`` with seeds (10 000 and up), sizes
(300 x 420 to 900 x 700) and shape parameters (irregularity 0.18, elongation up to 2.0) that
training never drew. The model runs through the stock ``SAM2ImagePredictor`` built as the
plugin builds it (napari_sam2.engine.models: inference overrides, strict state-dict load) and
frames are normalised as the plugin does (0.5 / 99.8 percentiles). Prints JSON lines:

* ``click``: one positive click at the centre (deepest point) of each isolated cell, the mask
  with the highest predicted IoU of the three (as the plugin does);
* ``box``: the cell's bounding box; ``click3``: the centre click plus two correction clicks,
  each at the deepest point of the largest error (positive if missed, negative if extra);
* ``touching``: one click on each cell of a touching pair; ``separated`` counts the cells
  whose mask has IoU > 0.5 with the cell and covers < 20 % of the neighbour;
* the Otsu baseline: the connected component under the click; the foreground inside the box;
* ``latency``: CPU time of one click on a cached embedding (2 threads), and of the embedding;
* ``video``: held-back clips through the stock ``SAM2VideoPredictor``
  (tools/evaluate_micro_video.py);
* ``--real``: also the real confocal nuclei stack (``tools/evaluate_real.py``: 2D clicks and
  boxes on its slices, z-propagation, Otsu columns).

Command::

    PYTHONPATH=src python tools/evaluate_micro.py \
        --checkpoint src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_sam2.engine.image import image_predictor
from napari_sam2.engine.prompts import PromptSet
from napari_sam2.engine.synthetic import synthetic_cells

sys.path.insert(0, str(Path(__file__).resolve().parent))
import micro_model as mm  # noqa: E402

DEFAULT_CHECKPOINT = mm.ROOT / "src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt"
SHAPES = [(300, 420), (512, 512), (640, 480), (900, 700)]


def held_back_images(n: int, touching: bool):
    """Synthetic images the training never saw (seeds >= 10 000, other sizes and shapes)."""
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        n_cells = [6, 10, 16][i % 3]
        dtype = np.uint8 if i % 2 else np.uint16
        yield synthetic_cells(
            shape,
            n_cells=n_cells,
            dtype=dtype,
            seed=10_000 + i + (5000 if touching else 0),
            touching=touching,
            irregularity=0.18,
            max_elongation=2.0,
        )


def deepest_point(mask: np.ndarray) -> tuple[int, int]:
    """(row, col) farthest from the mask's border: where a person clicks."""
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(np.argmax(d), d.shape)
    return int(r), int(c)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def touching_neighbour(labels: np.ndarray, k: int) -> int | None:
    """The labelled object sharing the longest border with object ``k`` (None: isolated)."""
    m = labels == k
    grown = np.zeros_like(m)
    grown[1:] |= m[:-1]
    grown[:-1] |= m[1:]
    grown[:, 1:] |= m[:, :-1]
    grown[:, :-1] |= m[:, 1:]
    ids, counts = np.unique(labels[grown & (labels > 0) & ~m], return_counts=True)
    return int(ids[np.argmax(counts)]) if len(ids) else None


def touches_others(labels: np.ndarray, k: int) -> bool:
    return touching_neighbour(labels, k) is not None


class Model:
    """The stock image predictor on the micro model, used as the plugin uses it."""

    def __init__(self, checkpoint, config=mm.DEFAULT_CONFIG, device="cpu"):
        """``device`` other than the CPU runs float32 there too (no autocast)."""
        model = mm.load_model(checkpoint, config, device)
        self.predictor = image_predictor(model)

    def set_image(self, image: np.ndarray) -> None:
        self.set_frame(mm.normalise(image))

    def set_frame(self, frame: np.ndarray) -> None:
        """A frame already normalised to 0..1 (a slice of a stack normalised stack-wide)."""
        self.frame = frame
        with torch.inference_mode():
            self.predictor.set_image(np.repeat(frame[..., None], 3, -1))

    def predict(self, points=None, labels=None, box=None) -> np.ndarray:
        """Points as (row, col); box as (r0, c0, r1, c1), pixel i spanning [i, i + 1] (the
        bounding box of ``bounding_box``); the plugin's multimask rule, its mask kept inside
        the box."""
        prompt = PromptSet.from_arguments(points, labels, box)
        single_click = prompt.is_single_click
        with torch.inference_mode():
            masks, scores, _ = self.predictor.predict(
                **prompt.to_sam(), multimask_output=single_click
            )
        mask = masks[int(np.argmax(scores))] > 0
        prompt.keep_inside_box(mask)
        return mask


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(min_row, min_col, max_row, max_col) of ``mask``, the max exclusive, as the plugin and
    scikit-image's ``regionprops`` give boxes."""
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def otsu_foreground(frame: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    return frame > threshold_otsu(frame)


def otsu_click(fg: np.ndarray, point) -> np.ndarray:
    from skimage.measure import label

    comp = label(fg, connectivity=1)
    k = comp[point]
    return comp == k if k else np.zeros_like(fg)


def correction(pred: np.ndarray, truth: np.ndarray):
    """Deepest point of the largest error region and its label (1: missed, 0: extra)."""
    from skimage.measure import label

    err = pred ^ truth
    if not err.any():
        return None
    comp = label(err, connectivity=1)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    region = comp == np.argmax(sizes)
    r, c = deepest_point(region)
    return (r, c), int(truth[r, c])


def evaluate_images(model: Model, n_images: int) -> dict:
    scores = {k: [] for k in ("click", "box", "click3", "otsu_click", "otsu_box")}
    for image, labels in held_back_images(n_images, touching=False):
        model.set_image(image)
        fg = otsu_foreground(model.frame)
        for k in range(1, labels.max() + 1):
            truth = labels == k
            if truth.sum() < 30 or touches_others(labels, k):
                continue
            p = deepest_point(truth)
            scores["click"].append(iou(model.predict([p], [1]), truth))
            scores["otsu_click"].append(iou(otsu_click(fg, p), truth))
            box = bounding_box(truth)
            scores["box"].append(iou(model.predict(box=box), truth))
            inside = np.zeros_like(truth)
            inside[box[0] : box[2], box[1] : box[3]] = True
            scores["otsu_box"].append(iou(fg & inside, truth))
            points, plabels = [p], [1]
            pred = model.predict(points, plabels)
            for _ in range(2):
                fix = correction(pred, truth)
                if fix is None:
                    break
                points.append(fix[0])
                plabels.append(fix[1])
                pred = model.predict(points, plabels)
            scores["click3"].append(iou(pred, truth))
    return {k: (round(float(np.mean(v)), 4), len(v)) for k, v in scores.items()}


def evaluate_touching(model: Model, n_images: int) -> dict:
    ious, sep, otsu = [], [], []
    for image, labels in held_back_images(n_images, touching=True):
        model.set_image(image)
        fg = otsu_foreground(model.frame)
        for k in range(1, labels.max() + 1):
            truth = labels == k
            if truth.sum() < 30 or not touches_others(labels, k):
                continue
            p = deepest_point(truth)
            pred = model.predict([p], [1])
            v = iou(pred, truth)
            ious.append(v)
            others = (labels > 0) & ~truth
            spill = (pred & others).sum() / max(1, others.sum())
            # Spill measured on the neighbours only: the pixels of other touching cells.
            nbr_ids = np.unique(labels[pred & others])
            nbr = np.isin(labels, nbr_ids[nbr_ids > 0])
            spill = (pred & nbr).sum() / max(1, nbr.sum())
            sep.append(v > 0.5 and spill < 0.2)
            otsu.append(iou(otsu_click(fg, p), truth))
    return {
        "touching_click_miou": round(float(np.mean(ious)), 4),
        "touching_separated": round(float(np.mean(sep)), 4),
        "otsu_touching_click_miou": round(float(np.mean(otsu)), 4),
        "n": len(ious),
    }


def latency(model: Model, repeats: int = 50) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    image, labels = synthetic_cells((512, 512), n_cells=10, seed=99_999)
    t = time.perf_counter()
    model.set_image(image)
    embed = time.perf_counter() - t
    p = deepest_point(labels == 1)
    for _ in range(5):
        model.predict([p], [1])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.predict([p], [1])
        times.append(time.perf_counter() - t)
    torch.set_num_threads(threads)
    return {
        "click_ms_min": round(1000 * float(np.min(times)), 1),
        "click_ms_median": round(1000 * float(np.median(times)), 1),
        "click_ms_p90": round(1000 * float(np.percentile(times, 90)), 1),
        "embed_s": round(embed, 3),
        "threads": 2,
        "load_avg_1min": round(__import__("os").getloadavg()[0], 2),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--config", default=str(mm.DEFAULT_CONFIG))
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--clips", type=int, default=8, help="held-back clips of each kind")
    ap.add_argument("--device", default="cpu", help="for the video evaluation")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (latency always 2)")
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["image", "touching", "latency", "video"]
    )
    ap.add_argument("--real", action="store_true", help="also the real nuclei stack")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.real:
        import evaluate_real

        evaluate_real.main(
            ["--checkpoint", args.checkpoint, "--config", args.config, "--device", args.device]
            + ["--threads", str(args.threads)]
        )
    if "video" not in args.skip:
        from evaluate_micro_video import VideoModel, evaluate_video

        vm = VideoModel(args.checkpoint, args.config, args.device)
        print(json.dumps({"metric": "video", **evaluate_video(vm, args.clips)}), flush=True)
    if set(args.skip) >= {"image", "touching", "latency"}:
        return
    model = Model(args.checkpoint, args.config)
    if "image" not in args.skip:
        s = evaluate_images(model, args.images)
        print(
            json.dumps(
                {"metric": "image", **{k: v[0] for k, v in s.items()}, "n_objects": s["click"][1]}
            ),
            flush=True,
        )
    if "touching" not in args.skip:
        print(
            json.dumps({"metric": "touching", **evaluate_touching(model, args.images)}), flush=True
        )
    if "latency" not in args.skip:
        print(json.dumps({"metric": "latency", **latency(model)}), flush=True)


if __name__ == "__main__":
    main()
