"""Large images at native resolution: clicks on mosaics and a huge zarr, tiled segment everything.

One JSON line per measurement (stdout, and ``--out``), with the packaged (trained) micro model
unless ``--model`` names another (random weights: speed only):

* ``clicks``: a ``--size``² mosaic of 512² synthetic images (``engine.mosaic``), and with
  ``--real DIR`` one of rotated real nuclei slices: one click per object of a few tiles; the
  first click in a window (embedding it) and the next clicks in it, each object's IoU against
  the same click on its tile alone (``miou_mosaic`` / ``miou_native``), resident memory before
  and after; and a click on a cached 1024² image for comparison;
* ``zarr``: a 40,000 × 20,000 uint16 zarr written to a temporary folder, opened lazily: RSS
  before ``set_image``, after it, after the first click and after ``--zarr-clicks`` clicks
  spread over the plane, and the click latencies;
* ``everything``: tiled segment everything on a ``--everything-size``² mosaic: seconds per
  megapixel, and F1 at IoU 0.5 against the same on three of its tiles alone;
* ``wide``: tiled segment everything on a ``--wide-size``² plane of ``--wide-cells`` cells of
  radius ``--wide-radius`` (wider than the tiles' 96 px overlap): objects lost (no label at
  IoU 0.5) and F1, with the cut objects segmented again (``engine.cut_objects``) and without
  (run only when named in ``--parts``).

Examples::

    python bench/large_images.py --device cpu --real ../shared/data/real-nuclei-3d
    python bench/large_images.py --device cuda --parts zarr everything --out results.jsonl
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import MODEL_NAMES, Recorder, base_parser, checkpoint_for, environment

TILE = 512


def rss_gib() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def synthetic_tiles(count: int) -> tuple[np.ndarray, np.ndarray]:
    from napari_sam2.engine.synthetic import synthetic_cells

    cells = [synthetic_cells((TILE, TILE), n_cells=10, seed=seed) for seed in range(count)]
    return tuple(np.stack(parts) for parts in zip(*cells, strict=True))


def real_tiles(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    import tifffile
    from scipy.ndimage import binary_fill_holes

    labels = tifffile.imread(folder / "nuclei_label.tif")[28:38]
    for plane in labels:  # the labels have small holes: fill them before scoring
        for k in np.unique(plane)[1:]:
            plane[binary_fill_holes(plane == k)] = k
    return tifffile.imread(folder / "nuclei.tif")[28:38], labels


def bench_clicks(seg, name, images, labels, size, record, fields) -> None:
    from scipy.ndimage import distance_transform_edt

    from napari_sam2.engine.mosaic import crop_iou, make_mosaic

    grid = size // images.shape[-1]
    mosaic = make_mosaic(images, labels, grid, seed=1)
    limits = tuple(np.percentile(images[:, ::4, ::4], [0.5, 99.8]))
    tiles = [(grid - 1, grid - 1), (grid // 2, grid // 2), (0, grid // 3), (grid // 3, 0)]
    before = rss_gib()
    seg.set_image(mosaic.image, contrast_limits=limits)
    first, nxt, on_mosaic, native, clicks = [], [], [], [], []
    for tile in tiles:
        r0, c0 = mosaic.origin(*tile)
        tile_labels = mosaic.tile_labels(*tile)
        for k in np.unique(tile_labels)[1:]:
            truth = tile_labels == k
            if truth[0].any() or truth[-1].any() or truth[:, 0].any() or truth[:, -1].any():
                continue  # cut by the tile border: not the same object in the mosaic
            r, c = np.unravel_index(np.argmax(distance_transform_edt(truth)), truth.shape)
            embedded = seg.session.embeddings_computed
            start = time.perf_counter()
            crop = seg.predict_crop(points=[(r + r0, c + c0)])
            seconds = time.perf_counter() - start
            (first if seg.session.embeddings_computed > embedded else nxt).append(seconds)
            on_mosaic.append(crop_iou(crop, truth, (r0, c0)))
            clicks.append((tile, (r, c), truth))
    after = rss_gib()
    for tile in tiles:
        seg.set_image(mosaic.tile_image(*tile), contrast_limits=limits)
        for _, (r, c), truth in (click for click in clicks if click[0] == tile):
            mask = seg.predict(points=[(r, c)])
            native.append((mask & truth).sum() / (mask | truth).sum())
    here = dict(fields, data=name, size=size, objects=len(on_mosaic))
    record.timings("click_new_window", first, **here)
    record.timings("click_same_window", nxt, **here)
    record("miou_mosaic", round(float(np.mean(on_mosaic)), 4), "IoU", **here)
    record("miou_native", round(float(np.mean(native)), 4), "IoU", **here)
    record("rss_before", round(before, 3), "GiB", **here)
    record("rss_after", round(after, 3), "GiB", **here)


def bench_small_click(seg, images, record, fields) -> None:
    small = np.tile(images[0], (2, 2))  # 1024²: segmented whole, as before
    seg.set_image(small)
    seconds = []
    for i in range(10):
        start = time.perf_counter()
        seg.predict(points=[(100 + 80 * i, 500)])
        seconds.append(time.perf_counter() - start)
    record.timings("click_small_image", seconds, **dict(fields, data="whole image", size=1024))


def bench_zarr(seg, images, clicks, record, fields) -> None:
    import zarr

    shape, chunk = (40_000, 20_000), 1024
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="sam2-large-") as folder:
        plane = zarr.create_array(
            Path(folder) / "plane.zarr", shape=shape, chunks=(chunk, chunk), dtype=np.uint16
        )
        strip = np.tile(images[0], (chunk // TILE, shape[1] // TILE + 1))[:, : shape[1]]
        for row in range(0, shape[0], chunk):
            plane[row : row + chunk] = strip[: min(chunk, shape[0] - row)]
        del strip
        lazy = zarr.open_array(Path(folder) / "plane.zarr", mode="r")
        here = dict(fields, data="zarr", size=f"{shape[0]}x{shape[1]}")
        record("rss_before", round(rss_gib(), 3), "GiB", **here)
        start = time.perf_counter()
        seg.set_image(lazy)
        record("set_image", round((time.perf_counter() - start) * 1000, 1), "ms", **here)
        record("rss_after_set_image", round(rss_gib(), 3), "GiB", **here)
        seconds = []
        for i in range(clicks):
            point = (int(rng.integers(shape[0])), int(rng.integers(shape[1])))
            start = time.perf_counter()
            seg.predict_crop(points=[point])
            seconds.append(time.perf_counter() - start)
            if i == 0:
                record("rss_after_first_click", round(rss_gib(), 3), "GiB", **here)
        record.timings("click_new_window", seconds, **here)
        record("rss_after_clicks", round(rss_gib(), 3), "GiB", clicks=clicks, **here)


def bench_everything(seg, images, labels, size, points, record, fields) -> None:
    from napari_sam2.engine.mosaic import f1_at_half, make_mosaic

    mosaic = make_mosaic(images, labels, size // TILE, seed=1)
    truth = mosaic.truth()
    limits = tuple(np.percentile(images[:, ::4, ::4], [0.5, 99.8]))
    seg.set_image(mosaic.image, contrast_limits=limits)
    start = time.perf_counter()
    tiled = seg.segment_everything(points_per_side=points)
    seconds = time.perf_counter() - start
    native = []
    for tile in [(0, 0), (1, 1), (2, 0)]:
        seg.set_image(mosaic.tile_image(*tile), contrast_limits=limits)
        r0, c0 = mosaic.origin(*tile)
        here = truth[r0 : r0 + TILE, c0 : c0 + TILE]
        native.append(f1_at_half(seg.segment_everything(points_per_side=points), here))
    here = dict(fields, data="synthetic", size=size, points_per_side=points)
    record("everything_s_per_mpix", round(seconds / (size * size / 1e6), 2), "s/Mpx", **here)
    record("f1_mosaic", round(f1_at_half(tiled, truth, mosaic.cut_ids(truth)), 4), "F1", **here)
    record("f1_native", round(float(np.mean(native)), 4), "F1", **here)


def bench_wide(seg, size, cells, radius, points, record, fields) -> None:
    from napari_sam2.engine.automatic import AutomaticOptions
    from napari_sam2.engine.cut_objects import resegment_cut
    from napari_sam2.engine.mosaic import f1_at_half
    from napari_sam2.engine.plane import LazyPlane
    from napari_sam2.engine.synthetic import synthetic_cells
    from napari_sam2.engine.tiled import iter_tile, stitch_tiles, tile_grid

    image, truth = synthetic_cells((size, size), n_cells=cells, seed=0, radius=radius)
    plane, options = LazyPlane(image), AutomaticOptions(points_per_side=points)
    normalization = plane.normalization()
    found = []
    start = time.perf_counter()
    for n in range(len(tile_grid(plane.shape, 384))):
        work = iter_tile(seg.model, plane, normalization, options, n)
        while True:
            try:
                next(work)
            except StopIteration as done:
                found.append(done.value)
                break
    seconds = time.perf_counter() - start
    here = dict(fields, data="wide cells", size=size, radius=radius, points_per_side=points)
    record("tiles_s", round(seconds, 1), "s", tiles=len(found), **here)
    for again in (False, True):

        def resegment(extents):
            return resegment_cut(seg.model, plane, normalization, extents, options)

        start = time.perf_counter()
        labels = stitch_tiles(found, plane.shape, options, resegment if again else lambda e: [])
        lost = sum(not _matched(labels, truth == k) for k in np.unique(truth)[1:])
        kind = dict(here, cut_objects_again=again, stitch_s=round(time.perf_counter() - start, 1))
        record("lost_objects", int(lost), "objects", of=int(truth.max()), **kind)
        record("f1", round(f1_at_half(labels, truth), 4), "F1", **kind)


def _matched(labels: np.ndarray, truth: np.ndarray) -> bool:
    """Whether one label covers ``truth`` at IoU 0.5."""
    ids, counts = np.unique(labels[truth], return_counts=True)
    return any(
        i and c / (truth | (labels == i)).sum() >= 0.5 for i, c in zip(ids, counts, strict=True)
    )


def tables(lines: list[dict]) -> str:
    """The performance page's tables of this benchmark's JSON lines (``bench/report.py``)."""
    runs: dict = {}
    for line in lines:
        if line.get("bench") == "large_images":
            key = (line["device"], line["data"], str(line["size"]))
            runs.setdefault(key, {})[line["metric"]] = line
    head = (
        "| device | plane | objects | click, new window (ms) | click, same window (ms) | "
        "mIoU mosaic | mIoU native | RSS before → after (GiB) |"
    )
    clicks = [head, "|" + "---|" * head.count(" | ") + "---|"]
    zarr = ["| device | plane | set_image (ms) | click (ms) | RSS before → after clicks (GiB) |"]
    zarr.append("|---|---|---|---|---|")
    everything = ["| device | plane | points per side | s / Mpx | F1 mosaic | F1 native |"]
    everything.append("|---|---|---|---|---|---|")
    for (device, data, size), m in sorted(runs.items()):
        if "miou_mosaic" in m:
            clicks.append(
                f"| {device} | {data} {size}² | {m['miou_mosaic']['objects']} | "
                f"{_ms(m['click_new_window'])} | {_ms(m['click_same_window'])} | "
                f"{m['miou_mosaic']['value']:.3f} | {m['miou_native']['value']:.3f} | "
                f"{m['rss_before']['value']:.2f} → {m['rss_after']['value']:.2f} |"
            )
        if "click_small_image" in m:
            small = _ms(m["click_small_image"])
            clicks.append(f"| {device} | {data} {size}² | – | – | {small} | – | – | – |")
        if "rss_after_clicks" in m:
            zarr.append(
                f"| {device} | zarr {size} uint16 | {m['set_image']['value']:.0f} | "
                f"{_ms(m['click_new_window'])} | {m['rss_before']['value']:.2f} → "
                f"{m['rss_after_clicks']['value']:.2f} ({m['rss_after_clicks']['clicks']}) |"
            )
        if "f1_mosaic" in m:
            everything.append(
                f"| {device} | {data} {size}² | {m['f1_mosaic']['points_per_side']} | "
                f"{m['everything_s_per_mpix']['value']:.1f} | {m['f1_mosaic']['value']:.3f} | "
                f"{m['f1_native']['value']:.3f} |"
            )
    return "\n\n".join("\n".join(table) for table in (clicks, zarr, everything))


def _ms(line: dict) -> str:
    return f"{line['value']:.0f} (min {line['min']:.0f}, n {line['n']})"


def main() -> None:
    parser = base_parser(__doc__)
    parser.add_argument("--model", default="micro", choices=sorted(MODEL_NAMES))
    parser.add_argument("--parts", nargs="+", default=["clicks", "zarr", "everything"])
    parser.add_argument("--size", type=int, default=4096, help="click mosaic side")
    parser.add_argument("--real", type=Path, default=None, help="real-nuclei-3d folder")
    parser.add_argument("--zarr-clicks", type=int, default=10)
    parser.add_argument("--everything-size", type=int, default=2048)
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--wide-size", type=int, default=1152)
    parser.add_argument("--wide-cells", type=int, default=30)
    parser.add_argument("--wide-radius", type=float, default=60)
    args = parser.parse_args()

    from napari_sam2 import Segmenter
    from napari_sam2.engine.models import MICRO_MODEL, compute_dtype

    name = MODEL_NAMES[args.model]
    with checkpoint_for(name, args.micro_checkpoint) as (checkpoint, weights):
        if name == MICRO_MODEL and not args.micro_checkpoint:
            checkpoint, weights = None, "micro"  # the packaged trained weights
        seg = Segmenter(name, device=args.device, checkpoint=checkpoint)
    record = Recorder("large_images", environment(seg.device), args.out)
    fields = dict(
        model=name, device=seg.device.type, dtype=compute_dtype(seg.device), weights=weights
    )
    images, labels = synthetic_tiles(4)
    if "clicks" in args.parts:
        if args.real is not None:
            bench_clicks(seg, "real", *real_tiles(args.real), args.size, record, fields)
        bench_clicks(seg, "synthetic", images, labels, args.size, record, fields)
        bench_small_click(seg, images, record, fields)
    if "zarr" in args.parts:
        bench_zarr(seg, images, args.zarr_clicks, record, fields)
    if "everything" in args.parts:
        size, points = args.everything_size, args.points_per_side
        bench_everything(seg, images, labels, size, points, record, fields)
    if "wide" in args.parts:
        wide = args.wide_size, args.wide_cells, args.wide_radius, args.points_per_side
        bench_wide(seg, *wide, record, fields)


if __name__ == "__main__":
    main()
