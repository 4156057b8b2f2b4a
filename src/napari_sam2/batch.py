"""Segment many files headlessly: automatic masks or prompts from CSV, on one machine or a cluster.

``iter_batch`` is a generator of ``BatchProgress`` (one per finished file) so a progress bar or a
GUI worker can follow it and cancel it by closing it; ``run_batch`` runs it to the end. Each file
is read, segmented plane by plane, post-processed and written as labels (TIFF, PNG, NPY or zarr)
plus a COCO-style RLE JSON. Outputs are written under a hidden temporary name and renamed when
complete, so an interrupted run never leaves a file that looks done, and a re-run skips every
file whose outputs are both there (resumable). A file that fails is reported and skipped.

With ``workers=0`` the files are processed in this process. Otherwise the work goes to Dask
distributed: a ``LocalCluster`` of ``workers`` workers, or the scheduler at ``scheduler``. Each
worker loads the model once (``SegmenterPlugin``) and writes its results itself, so input and
output paths must be visible to the workers (a shared filesystem on a real cluster).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import time
import uuid
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .engine.automatic import AutomaticOptions
from .engine.errors import SAM2Error

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy")
ZARR_SUFFIXES = (".zarr",)
FORMATS = ("tif", "png", "npy", "zarr")
_TEMP_PREFIX = ".~napari-sam2-"


# --------------------------------------------------------------------------- settings and results


@dataclass(frozen=True)
class PostProcessing:
    """Clean-up applied to each plane's labels, in this order (scikit-image / scipy)."""

    min_size: int = 0
    fill_holes: bool = False
    remove_border: bool = False
    relabel: bool = False

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Post-processed copy of a 2D int label image."""
        from scipy import ndimage
        from skimage.segmentation import clear_border, relabel_sequential

        labels = np.array(labels, dtype=np.int32)
        if self.min_size > 1 and labels.any():
            areas = np.bincount(labels.ravel())
            labels[areas[labels] < self.min_size] = 0
        if self.fill_holes:
            for label, box in enumerate(ndimage.find_objects(labels), start=1):
                if box is None:
                    continue
                window = labels[box]
                filled = ndimage.binary_fill_holes(window == label)
                window[filled & (window == 0)] = label
        if self.remove_border:
            labels = clear_border(labels)
        if self.relabel:
            labels = relabel_sequential(labels)[0].astype(np.int32)
        return labels


@dataclass(frozen=True)
class PromptTable:
    """Objects to segment, read from a napari Points CSV and/or a napari Shapes CSV.

    A points CSV has napari's columns ``index, axis-0, axis-1[, ...]``; with an ``object_id``
    column points sharing an id form one object, otherwise every positive point is an object.
    A ``positive`` column (1/0, true/false) marks negative clicks; negative points without an
    object id apply to every object. A shapes CSV (``index, shape-type, vertex-index, axis-0,
    ...``) gives one box per shape: the bounding box of its vertices. With three axes the first
    is the plane of a stack; with two the prompts apply to every plane.
    """

    points: np.ndarray  # (n, 3): plane (-1: every plane), row, col
    point_objects: np.ndarray  # (n,) object id, 0: every object (negative clicks only)
    point_positive: np.ndarray  # (n,) bool
    boxes: np.ndarray  # (m, 5): plane (-1: every plane), min_row, min_col, max_row, max_col
    box_objects: np.ndarray  # (m,)

    @classmethod
    def from_csv(cls, points: str | Path | None, boxes: str | Path | None) -> PromptTable:
        pts, pt_obj, positive = np.zeros((0, 3)), np.zeros(0, int), np.zeros(0, bool)
        if points is not None:
            pts, pt_obj, positive = _read_points_csv(Path(points))
        bxs, bx_obj = np.zeros((0, 5)), np.zeros(0, int)
        if boxes is not None:
            first = int(pt_obj.max()) + 1 if len(pt_obj) else 1
            bxs, bx_obj = _read_shapes_csv(Path(boxes), first)
        if not (positive.any() or len(bxs)):
            raise SAM2Error(
                f"No object prompts in {points or boxes}: it needs positive points or shapes."
            )
        return cls(pts, pt_obj, positive, bxs, bx_obj)

    def objects(self, plane: int) -> dict[int, dict]:
        """``Segmenter.predict`` keyword arguments of each object on ``plane``, by object id."""
        on_plane = (self.points[:, 0] == plane) | (self.points[:, 0] < 0)
        prompts: dict[int, dict] = {}
        for obj in np.unique(self.point_objects[on_plane & (self.point_objects > 0)]):
            mine = on_plane & ((self.point_objects == obj) | (self.point_objects == 0))
            if not (mine & self.point_positive).any():
                continue
            prompts[int(obj)] = {
                "points": self.points[mine, 1:],
                "point_labels": self.point_positive[mine].astype(int),
            }
        for box, obj in zip(self.boxes, self.box_objects, strict=True):
            if box[0] == plane or box[0] < 0:
                prompts.setdefault(int(obj), {})["box"] = box[1:]
        return prompts


def _read_table(path: Path) -> tuple[list[str], list[dict]]:
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except OSError as err:
        raise SAM2Error(f"Cannot read the prompt file {path}: {err}.") from err


def _axes(path: Path, columns: list[str], rows: list[dict]) -> np.ndarray:
    axes = sorted((c for c in columns if c.startswith("axis-")), key=lambda c: int(c[5:]))
    if len(axes) not in (2, 3):
        raise SAM2Error(
            f"{path} needs columns axis-0, axis-1 (and axis-2 for stacks), as napari writes "
            f"them; found {columns}."
        )
    try:
        coords = np.array([[float(row[a]) for a in axes] for row in rows]).reshape(-1, len(axes))
    except ValueError as err:
        raise SAM2Error(f"{path} has a coordinate that is not a number ({err}).") from err
    if len(axes) == 2:
        coords = np.concatenate([np.full((len(coords), 1), -1.0), coords], axis=1)
    else:
        coords[:, 0] = np.round(coords[:, 0])
    return coords


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "1.0", "true", "yes", "positive")


def _read_points_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    columns, rows = _read_table(path)
    coords = _axes(path, columns, rows)
    positive = np.array(
        [_truthy(r["positive"]) if "positive" in columns else True for r in rows], bool
    )
    if "object_id" in columns:
        try:
            objects = np.array([int(float(r["object_id"])) for r in rows], int)
        except ValueError as err:
            raise SAM2Error(f"{path}: object_id must be an integer ({err}).") from err
        if (objects < 1).any():
            raise SAM2Error(f"{path}: object ids start at 1 (0 is the background).")
    else:
        objects = np.where(positive, np.cumsum(positive), 0)
    return coords, objects, positive


def _read_shapes_csv(path: Path, first_id: int) -> tuple[np.ndarray, np.ndarray]:
    columns, rows = _read_table(path)
    if "index" not in columns:
        raise SAM2Error(f"{path} is not a napari Shapes CSV: it has no 'index' column.")
    coords = _axes(path, columns, rows)
    index = np.array([int(float(r["index"])) for r in rows])
    boxes = []
    for shape in np.unique(index):
        vertices = coords[index == shape]
        low, high = vertices[:, 1:].min(0), vertices[:, 1:].max(0)
        boxes.append([vertices[0, 0], low[0], low[1], high[0], high[1]])
    boxes = np.array(boxes, float).reshape(-1, 5)
    return boxes, np.arange(first_id, first_id + len(boxes))


@dataclass(frozen=True)
class BatchJob:
    """Everything a worker needs to process one file (small and picklable)."""

    output: Path
    fmt: str = "tif"
    automatic: AutomaticOptions = field(default_factory=AutomaticOptions)
    points: str | None = None
    boxes: str | None = None
    postprocessing: PostProcessing = field(default_factory=PostProcessing)

    def outputs(self, source: Path) -> tuple[Path, Path]:
        """The labels file and the COCO JSON written for ``source``."""
        stem = _stem(source)
        return self.output / f"{stem}.{self.fmt}", self.output / f"{stem}.json"

    def is_complete(self, source: Path) -> bool:
        return all(path.exists() for path in self.outputs(source))

    def prompts_for(self, source: Path) -> PromptTable | None:
        """The prompt table of ``source``: one CSV for all files, or ``DIR/<stem>.csv``."""
        if self.points is None and self.boxes is None:
            return None
        return PromptTable.from_csv(
            _per_file(self.points, source, "_points"), _per_file(self.boxes, source, "_shapes")
        )


def _per_file(path: str | None, source: Path, suffix: str) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_dir():
        return path
    for name in (f"{_stem(source)}.csv", f"{_stem(source)}{suffix}.csv"):
        if (path / name).is_file():
            return path / name
    raise SAM2Error(f"No prompt file {_stem(source)}.csv for {source.name} in {path}.")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif", *ZARR_SUFFIXES, *IMAGE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file: ``status`` is 'done', 'skipped' or 'failed'."""

    source: str
    status: str
    outputs: tuple[str, ...] = ()
    objects: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class BatchProgress:
    """``done`` of ``total`` files finished; ``result`` is the one that just finished."""

    done: int
    total: int
    result: FileResult


# --------------------------------------------------------------------------- reading


def find_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named by paths, folders (their supported files) or glob patterns, sorted."""
    found: list[Path] = []
    for item in inputs:
        item = str(item)
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            raise SAM2Error(f"No file matches {item!r}.")
        for match in map(Path, matches):
            if match.is_dir() and not _is_zarr(match):
                found += sorted(p for p in match.iterdir() if _is_supported(p))
            elif match.exists():
                found.append(match)
            else:
                raise SAM2Error(f"Input {match} does not exist.")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    stems: dict[str, Path] = {}
    for path in unique:
        if _stem(path) in stems:
            raise SAM2Error(
                f"{stems[_stem(path)]} and {path} would write the same output name "
                f"{_stem(path)!r}: batch them into separate output folders."
            )
        stems[_stem(path)] = path
    return unique


def _is_zarr(path: Path) -> bool:
    return path.name.lower().endswith(ZARR_SUFFIXES)


def _is_supported(path: Path) -> bool:
    return not path.name.startswith(".") and (
        _is_zarr(path) or path.suffix.lower() in IMAGE_SUFFIXES
    )


def read_image(path: str | Path):
    """The array in an image file (numpy) or an (OME-)Zarr store (lazy dask), squeezed."""
    path = Path(path)
    try:
        if _is_zarr(path):
            data = _read_zarr(path)
        elif path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        elif path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            import imageio.v3 as iio

            data = iio.imread(path)
    except SAM2Error:
        raise
    except Exception as err:  # readers raise many types for truncated or foreign files
        raise SAM2Error(
            f"Cannot read {path.name}: {type(err).__name__}: {err}. Is the file complete?"
        ) from err
    if data.size == 0 or data.ndim < 2:
        raise SAM2Error(f"Cannot read {path.name}: it holds no image data. Is it truncated?")
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    return data


def _read_zarr(path: Path):
    import dask.array as da
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        return da.from_zarr(node)
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if multiscales:
        return da.from_zarr(node[multiscales[0]["datasets"][0]["path"]])
    arrays = sorted(name for name, _ in node.arrays())
    if not arrays:
        raise SAM2Error(f"The zarr store {path.name} holds no array.")
    return da.from_zarr(node[arrays[0]])


def _layout(data) -> tuple[bool, bool]:
    """(is_stack, is_rgb) of an array: (H, W), (H, W, 3|4), (T, H, W) or (T, H, W, 3|4)."""
    rgb = data.ndim in (3, 4) and data.shape[-1] in (3, 4)
    spatial = data.ndim - rgb
    if spatial not in (2, 3):
        raise SAM2Error(
            f"Cannot segment an array of shape {data.shape}: expected (H, W), (H, W, RGB), "
            "(T, H, W) or (T, H, W, RGB)."
        )
    return spatial == 3, rgb


# --------------------------------------------------------------------------- segmenting one file


def segment_array(segmenter, data, job: BatchJob, prompts: PromptTable | None) -> np.ndarray:
    """int32 labels of an image or stack (one plane at a time, one normalisation for all)."""
    from .engine.frames import Normalization

    stack, rgb = _layout(data)
    planes = data if stack else data[None]
    normalization = Normalization.for_data(planes, frame_axis=0)
    out = np.zeros(planes.shape[:3], dtype=np.int32)
    for t in range(len(planes)):
        plane = np.asarray(planes[t])
        if rgb:
            plane = plane[..., :3]
        segmenter.set_plane(plane, normalization)
        if prompts is None:
            labels = segmenter.segment_everything(**_as_kwargs(job.automatic))
        else:
            labels = _paint_prompted(segmenter, prompts.objects(t if stack else 0), plane.shape)
        out[t] = job.postprocessing.apply(labels)
    return out if stack else out[0]


def _as_kwargs(options: AutomaticOptions) -> dict:
    return {f: getattr(options, f) for f in options.__dataclass_fields__}


def _paint_prompted(segmenter, objects: dict[int, dict], shape) -> np.ndarray:
    """Each prompted object's mask under its id; larger masks under smaller ones."""
    labels = np.zeros(shape[:2], dtype=np.int32)
    masks = [(obj, segmenter.predict(**kwargs)) for obj, kwargs in objects.items()]
    for obj, mask in sorted(masks, key=lambda item: -int(item[1].sum())):
        labels[mask] = obj
    return labels


def process_file(segmenter, source: str | Path, job: BatchJob) -> FileResult:
    """Segment one file and write its outputs; any error becomes a 'failed' result."""
    source = Path(source)
    start = time.perf_counter()
    try:
        labels = segment_array(segmenter, read_image(source), job, job.prompts_for(source))
        labels_path, json_path = job.outputs(source)
        write_labels(labels, labels_path, job.fmt)
        write_coco(labels, json_path, source.name)
    except Exception as err:
        message = str(err) if isinstance(err, SAM2Error) else f"{type(err).__name__}: {err}"
        return FileResult(str(source), "failed", error=message)
    objects = sum(len(np.unique(p[p > 0])) for p in labels.reshape(-1, *labels.shape[-2:]))
    return FileResult(
        str(source),
        "done",
        (str(labels_path), str(json_path)),
        objects,
        time.perf_counter() - start,
    )


# --------------------------------------------------------------------------- writing


def _temporary(path: Path) -> Path:
    return path.with_name(f"{_TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")


def _commit(temporary: Path, path: Path) -> None:
    """Move a finished temporary output to its final name (replacing an older one)."""
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(temporary, path)


def write_labels(labels: np.ndarray, path: str | Path, fmt: str) -> Path:
    """Write labels as TIFF, PNG (2D, ids < 65536), NPY or zarr, atomically."""
    path = Path(path)
    if fmt not in FORMATS:
        raise SAM2Error(f"Unknown output format {fmt!r}: choose one of {', '.join(FORMATS)}.")
    if fmt == "png" and (labels.ndim != 2 or labels.max(initial=0) > 65535):
        raise SAM2Error(
            "PNG holds one 2D plane with ids below 65536: use --format tif for stacks."
        )
    temporary = _temporary(path)
    try:
        if fmt == "tif":
            import tifffile

            tifffile.imwrite(temporary, labels, compression="zlib")
        elif fmt == "png":
            import imageio.v3 as iio

            iio.imwrite(temporary, labels.astype(np.uint16), extension=".png")
        elif fmt == "npy":
            with open(temporary, "wb") as handle:
                np.save(handle, labels)
        else:
            import zarr

            chunks = (1, *labels.shape[-2:]) if labels.ndim == 3 else labels.shape
            array = zarr.create_array(
                str(temporary), shape=labels.shape, dtype=labels.dtype, chunks=chunks
            )
            array[...] = labels
        _commit(temporary, path)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()
    return path


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a boolean (H, W) mask: column-major runs, starting with 0s."""
    height, width = mask.shape
    cols, rows = np.nonzero(mask.T)  # column-major order, as COCO counts run
    index = cols * height + rows
    if index.size == 0:
        return {"size": [height, width], "counts": [height * width]}
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = index[np.r_[0, breaks]]
    ends = index[np.r_[breaks - 1, index.size - 1]] + 1
    edges = np.column_stack([starts, ends]).ravel()
    counts = np.diff(np.r_[0, edges, height * width])
    if counts[-1] == 0:  # the mask runs to the last pixel: no closing run of zeros
        counts = counts[:-1]
    return {"size": [height, width], "counts": counts.tolist()}


def rle_decode(rle: dict) -> np.ndarray:
    """Boolean mask of a COCO uncompressed RLE (the inverse of ``rle_encode``)."""
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(width, height).T


def coco_annotations(labels: np.ndarray, file_name: str) -> dict:
    """A COCO-style dict: one image per plane, one RLE annotation per object and plane."""
    from scipy import ndimage

    planes = labels.reshape(-1, *labels.shape[-2:])
    height, width = planes.shape[1:]
    images, annotations = [], []
    for t, plane in enumerate(planes):
        image = {"id": t + 1, "file_name": file_name, "height": height, "width": width}
        if labels.ndim == 3:
            image["frame"] = t
        images.append(image)
        for label, box in enumerate(ndimage.find_objects(plane), start=1):
            if box is None:
                continue
            mask = plane == label
            rows, cols = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": t + 1,
                    "category_id": 1,
                    "label": label,
                    "segmentation": rle_encode(mask),
                    "area": int(mask.sum()),
                    "bbox": _xywh(rows, cols),
                    "iscrowd": 0,
                }
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object"}],
    }


def _xywh(rows: slice, cols: slice) -> list[int]:
    return [cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start]


def write_coco(labels: np.ndarray, path: str | Path, file_name: str) -> Path:
    path = Path(path)
    temporary = _temporary(path)
    try:
        temporary.write_text(json.dumps(coco_annotations(labels, file_name)))
        _commit(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written there."""
    folder = Path(folder).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = _temporary(folder / "probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise SAM2Error(
            f"The output folder {folder} is not writable ({err.strerror or err}): choose "
            "another --output or fix its permissions."
        ) from err
    return folder


# --------------------------------------------------------------------------- the batch


def iter_batch(
    inputs: Sequence[str | Path] | str | Path,
    output: str | Path,
    *,
    fmt: str = "tif",
    model: str = "sam2.1_hiera_tiny",
    checkpoint: str | Path | None = None,
    device: str | None = None,
    automatic: AutomaticOptions | dict | None = None,
    points: str | Path | None = None,
    boxes: str | Path | None = None,
    postprocessing: PostProcessing | None = None,
    scheduler: str | None = None,
    workers: int = 1,
    processes: bool = True,
    overwrite: bool = False,
    segmenter=None,
) -> Generator[BatchProgress, None, list[FileResult]]:
    """Segment every input file; yield a ``BatchProgress`` as each one finishes.

    ``inputs``: files, folders or glob patterns. Without ``points``/``boxes`` (a CSV for all
    files, or a folder of ``<stem>.csv``) automatic masks are made with ``automatic`` options.
    ``workers=0`` runs here, on ``segmenter`` if one is given (an already loaded model: then
    ``model``, ``checkpoint`` and ``device`` are not used); otherwise on a LocalCluster of
    ``workers`` workers (threads if ``processes`` is False), or on ``scheduler``. Files whose
    outputs exist are skipped unless ``overwrite``. Returns every file's ``FileResult``.
    """
    if fmt not in FORMATS:
        raise SAM2Error(f"Unknown output format {fmt!r}: choose one of {', '.join(FORMATS)}.")
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if isinstance(automatic, dict):
        automatic = AutomaticOptions.from_kwargs(**automatic)
    for prompt_file in (points, boxes):
        if prompt_file is not None and not Path(prompt_file).exists():
            raise SAM2Error(f"The prompt file {prompt_file} does not exist.")
    _check_model(model, checkpoint)
    if scheduler is None and segmenter is None:
        from .engine.models import select_device

        select_device(device)  # local workers have this machine's devices: check it now
    sources = find_inputs(inputs)
    job = BatchJob(
        check_writable(output),
        fmt,
        (automatic or AutomaticOptions()).validate(),
        None if points is None else str(Path(points).resolve()),
        None if boxes is None else str(Path(boxes).resolve()),
        postprocessing or PostProcessing(),
    )
    results: list[FileResult] = []
    total = len(sources)
    todo = []
    for source in sources:
        if not overwrite and job.is_complete(source):
            done = tuple(map(str, job.outputs(source)))
            results.append(FileResult(str(source), "skipped", done))
            yield BatchProgress(len(results), total, results[-1])
        else:
            todo.append(source)
    if not todo:
        return results
    checkpoint = None if checkpoint is None else str(Path(checkpoint).resolve())

    if scheduler is None and workers == 0:
        if segmenter is None:
            from .engine.segmenter import Segmenter

            segmenter = Segmenter(model, device, checkpoint)
        for source in todo:
            results.append(process_file(segmenter, source, job))
            yield BatchProgress(len(results), total, results[-1])
        return results

    from distributed import as_completed

    from .dask_workers import SegmenterPlugin, connect, process_on_worker

    threads = None
    if scheduler is None and processes:
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    client, cluster = connect(scheduler, workers, processes)
    futures = []
    try:
        client.register_plugin(SegmenterPlugin(model, checkpoint, device, threads))
        sources_of = {
            client.submit(process_on_worker, str(s), job, pure=False): str(s) for s in todo
        }
        futures = list(sources_of)
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as err:  # a worker died or the task could not run
                message = f"{type(err).__name__}: {err}"
                result = FileResult(sources_of[future], "failed", error=message)
            results.append(result)
            yield BatchProgress(len(results), total, result)
    finally:
        if futures:
            client.cancel(futures)
        client.close()
        if cluster is not None:
            cluster.close()
    return results


def run_batch(*args, **kwargs) -> list[FileResult]:
    """``iter_batch`` run to the end; returns each file's ``FileResult``."""
    work = iter_batch(*args, **kwargs)
    while True:
        try:
            next(work)
        except StopIteration as done:
            return done.value


def _check_model(model: str, checkpoint) -> None:
    """Fail before starting any worker if the model name or checkpoint path is wrong."""
    from .engine.models import model_spec

    model_spec(model)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise SAM2Error(f"Checkpoint {checkpoint} does not exist.")


__all__ = [
    "BatchJob",
    "BatchProgress",
    "FileResult",
    "PostProcessing",
    "PromptTable",
    "iter_batch",
    "run_batch",
    "read_image",
    "write_labels",
    "rle_encode",
    "rle_decode",
]
