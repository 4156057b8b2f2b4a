"""Training images for the micro SAM2: synthetic cells and nuclei with their prompts (clicks,
boxes, positive + negative pairs, mask prompts) and 256 x 256 targets, and the endless stream
the DataLoader workers draw them from."""

from __future__ import annotations

import math

import micro_model as mm
import numpy as np
import torch
import torch.nn.functional as F
from micro_model import normalise
from scipy import ndimage
from train_echo import echoed, turn_image_sample

from napari_sam2.engine.synthetic import synthetic_cells
from napari_sam2.engine.synthetic_nuclei import synthetic_nuclei

PROMPTS = {"click": 7, "box": 3, "pair": 5, "mask": 3}  # per image
# Share of positive + negative pairs whose negative lies inside a touching neighbour, where the
# object has one: the correction a user makes when a click takes a cluster (issue 17: without
# it the model learned to ignore a negative click on a touching cell).
TOUCH_NEGATIVE = 0.7
N_PROMPTS = sum(PROMPTS.values())
# Share of training images (and z-stack clips) drawn by ``synthetic_nuclei`` (``--nuclei-share``:
# train_micro.main sets it here; the DataLoader workers fork after that).
NUCLEI_SHARE = 0.0


class ImageStream(torch.utils.data.IterableDataset):
    """Endless synthetic images with their prompts; each worker has its own seed. ``echo``:
    each image trains that many times, turned or mirrored (tools/train_echo.py)."""

    def __init__(self, seed: int, echo: int = 1, pool: int = 1):
        self.seed, self.echo, self.pool = seed, echo, pool

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = 0 if info is None else info.id
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, wid])
        box_slots = slice(PROMPTS["click"], PROMPTS["click"] + PROMPTS["box"])
        yield from echoed(
            iter(lambda: make_image_sample(rng), None),
            rng,
            self.echo,
            self.pool,
            lambda sample, k: turn_image_sample(sample, k, box_slots),
        )


def random_nuclei(rng: np.random.Generator):
    """One confocal nuclei image (``synthetic_nuclei``): crowded, sizes and optics at random."""
    h, w = (int(v) for v in rng.integers(160, 641, 2))
    r_model = math.exp(rng.uniform(math.log(12), math.log(150)))
    radius = max(3.0, r_model * math.sqrt(h * w) / mm.SIZE_REFERENCE)
    n = int(np.clip(rng.uniform(0.15, 0.6) * h * w / (math.pi * radius**2), 1, 150))
    while True:
        image, labels = synthetic_nuclei(
            (h, w),
            n_cells=n,
            dtype=np.uint8 if rng.random() < 0.4 else np.uint16,
            seed=int(rng.integers(1 << 31)),
            radius=radius,
            touching=rng.uniform(0.2, 0.8),
            out_of_focus=rng.uniform(0.0, 0.4),
        )
        if labels.max():
            return image, labels


def random_cells(rng: np.random.Generator):
    """One training image: sizes, densities and shapes drawn at random (see train_micro's
    docstring); a share ``NUCLEI_SHARE`` of them confocal nuclei (issue 17)."""
    if rng.random() < NUCLEI_SHARE:
        return random_nuclei(rng)
    h, w = (int(v) for v in rng.integers(160, 769, 2))
    r_model = math.exp(rng.uniform(math.log(10), math.log(150)))  # radius at 1024 input
    radius = max(4.0, r_model * math.sqrt(h * w) / mm.SIZE_REFERENCE)
    coverage = rng.uniform(0.05, 0.4)
    n = int(np.clip(coverage * h * w / (math.pi * radius**2), 1, 60))
    return synthetic_cells(
        (h, w),
        n_cells=n,
        dtype=np.uint8 if rng.random() < 0.4 else np.uint16,
        seed=int(rng.integers(1 << 31)),
        touching=bool(rng.random() < 0.5),
        radius=radius,
        irregularity=rng.uniform(0.0, 0.25),
        max_elongation=rng.uniform(1.0, 2.5),
    )


def pick_pixel(rng, mask: np.ndarray, interior: bool) -> tuple[float, float]:
    """(row, col) of a pixel in ``mask``; ``interior`` favours pixels far from the border."""
    ys, xs = np.nonzero(mask)
    if interior and len(ys) > 20:
        # Depth inside the object: the local fill of a window half the object's size.
        y0, x0 = ys.min(), xs.min()
        crop = np.pad(mask[y0 : ys.max() + 1, x0 : xs.max() + 1], 1).astype(np.float32)
        k = max(1, int(math.sqrt(len(ys)) * 0.25))
        box = np.pad(crop, k).cumsum(0).cumsum(1)  # integral image: k-box sums in O(1)
        box = np.pad(box, ((1, 0), (1, 0)))
        n = 2 * k + 1
        sums = box[n:, n:] - box[:-n, n:] - box[n:, :-n] + box[:-n, :-n]
        d = sums[ys - y0 + 1, xs - x0 + 1]
        p = d**4 / (d**4).sum()
        i = rng.choice(len(ys), p=p)
    else:
        i = rng.integers(len(ys))
    return float(ys[i]) + rng.uniform(-0.4, 0.4), float(xs[i]) + rng.uniform(-0.4, 0.4)


def touching_neighbours(labels: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Ids of the objects within 2 px of ``mask`` (object ``k``)."""
    grown = ndimage.binary_dilation(mask, iterations=2)
    ids = np.unique(labels[grown])
    return ids[(ids > 0) & (ids != k)]


def negative_pixel(rng, labels: np.ndarray, m: np.ndarray, k: int) -> tuple[float, float]:
    """(row, col) of the negative click of a pair for object ``k`` (mask ``m``): inside a
    touching neighbour (share TOUCH_NEGATIVE), else inside another object or the background
    around it."""
    h, w = labels.shape
    ys, xs = np.nonzero(m)
    pad_y = max(4, int(0.5 * (ys.max() - ys.min())))
    pad_x = max(4, int(0.5 * (xs.max() - xs.min())))
    y0, y1 = max(0, ys.min() - pad_y), min(h, ys.max() + pad_y + 1)
    x0, x1 = max(0, xs.min() - pad_x), min(w, xs.max() + pad_x + 1)
    win = labels[y0:y1, x0:x1]
    touching = touching_neighbours(win, m[y0:y1, x0:x1], k)
    if len(touching) and rng.random() < TOUCH_NEGATIVE:
        neg, interior = win == rng.choice(touching), rng.random() < 0.8
    else:
        other = (win > 0) & (win != k)
        neg = other if other.any() and rng.random() < 0.6 else (win == 0)
        if not neg.any():
            neg = win != k
        interior = rng.random() < 0.5
    r, c = pick_pixel(rng, neg, interior)
    return r + y0, c + x0


def make_image_sample(rng: np.random.Generator) -> dict:
    """An image resized to the model input and N_PROMPTS prompts with their low-resolution
    targets (1024 and 256 for the packaged micro)."""
    image, labels = random_cells(rng)
    h, w = labels.shape
    frame = torch.from_numpy(normalise(image, rng))[None, None]
    side, low = mm.INPUT_SIZE, mm.low_res()
    frame = F.interpolate(
        frame, (side, side), mode="bilinear", align_corners=False, antialias=True
    )[0]
    n_obj = int(labels.max())
    objs = rng.permutation(np.tile(np.arange(1, n_obj + 1), N_PROMPTS // n_obj + 1))[:N_PROMPTS]
    sy, sx = side / h, side / w  # pixel (row, col) → model input (x, y): x * sx
    kinds = np.repeat(np.arange(len(PROMPTS)), list(PROMPTS.values()))
    points = np.zeros((N_PROMPTS, 2, 2), np.float32)  # (x, y) in model input pixels
    targets = np.zeros((N_PROMPTS, low, low), np.uint8)
    for j, (k, kind) in enumerate(zip(objs, kinds, strict=True)):
        m = labels == k
        t = F.interpolate(
            torch.from_numpy(m.astype(np.float32))[None, None], (low, low), mode="area"
        )
        targets[j] = (t[0, 0].numpy() * 255).round().astype(np.uint8)
        name = list(PROMPTS)[kind]
        if name in ("click", "pair", "mask"):
            r, c = pick_pixel(rng, m, interior=rng.random() < 0.6)
            points[j, 0] = (c * sx, r * sy)
        if name == "pair":
            r, c = negative_pixel(rng, labels, m, k)
            points[j, 1] = (c * sx, r * sy)
        if name == "box":
            ys, xs = np.nonzero(m)
            bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            jit = rng.normal(0, 0.05, 4) * np.array([bw, bh, bw, bh])
            x0 = np.clip(xs.min() + jit[0], 0, w - 1)
            y0 = np.clip(ys.min() + jit[1], 0, h - 1)
            x1 = np.clip(xs.max() + jit[2], x0 + 1, w)
            y1 = np.clip(ys.max() + jit[3], y0 + 1, h)
            points[j] = ((x0 * sx, y0 * sy), (x1 * sx, y1 * sy))
    return {
        "image": frame.half(),
        "points": torch.from_numpy(points),
        "targets": torch.from_numpy(targets),
    }
