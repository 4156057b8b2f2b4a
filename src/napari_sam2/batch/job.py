"""What a batch is asked to do and what it reports: post-processing, prompt tables from CSV,
the per-file job a worker gets, and each file's result."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.automatic import AutomaticOptions
from ..engine.errors import SAM2Error
from .files import output_stem


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
        stem = output_stem(source)
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
    for name in (f"{output_stem(source)}.csv", f"{output_stem(source)}{suffix}.csv"):
        if (path / name).is_file():
            return path / name
    raise SAM2Error(f"No prompt file {output_stem(source)}.csv for {source.name} in {path}.")


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
    """``done`` of ``total`` files finished; ``result`` is the one that just finished, or None
    when a tile of a large file finished: ``tile`` is then (file, tiles done, its tiles)."""

    done: int
    total: int
    result: FileResult | None
    tile: tuple[str, int, int] | None = None
