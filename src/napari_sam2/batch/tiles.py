"""Segment everything on planes larger than the model's tile, one task per tile.

A file whose planes are larger than the model input is opened lazily (TIFF through tifffile's
zarr store, zarr directly, NPY memory-mapped); a single plane is normalised from a grid of
patches (``LazyPlane.normalization``, as an image set in the viewer), a stack stack-wide. Each
tile of each plane is a task (``TileTask``) that reads only its tile, runs the automatic mask
generator on it once and returns the masks it owns and the pieces it cut, as crops
(``engine.tiled.iter_tile``); on Dask these tasks spread over the workers. ``TiledFile``
collects them on the driver and stitches each plane with the engine's own rule
(``engine.tiled.stitch_tiles``; the objects every tile cut are segmented once more, a task
each).

Labels of a file whose int32 labels exceed ``LABELS_IN_MEMORY_BYTES`` are painted into a
memory-mapped scratch file in the output folder instead of memory, and written from it (TIFF
and zarr chunk by chunk, NPY as is); post-processing needs the labels in memory, so such a file
refuses it before any work, with what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.automatic import AutomaticOptions, row_bands
from ..engine.errors import SAM2Error
from ..engine.frames import Normalization
from ..engine.plane import LazyPlane, unread
from ..engine.tiled import TileMasks, iter_tile, stitch_tiles, tile_grid
from ..engine.window import base_side
from .files import plane_layout, read_image, temporary_path, write_coco, write_labels
from .job import BatchJob, FileResult, PostProcessing

LABELS_IN_MEMORY_BYTES = 1 << 30


@dataclass(frozen=True)
class TileTask:
    """One tile of one plane of a file: what a worker needs to segment it (picklable)."""

    source: str
    plane: int
    tile: int
    normalization: Normalization
    options: AutomaticOptions


def model_image_size(model: str) -> int:
    """The input side of ``model`` from its config (no model is built)."""
    from omegaconf import OmegaConf

    from ..engine.models import config_path, model_spec

    return int(OmegaConf.load(config_path(model_spec(model))).model.image_size)


def open_plane(source: str | Path, index: int) -> LazyPlane:
    """Plane ``index`` of a file (0 for a single plane), opened lazily."""
    return plane_of(read_image(source, lazy=True), index)


def plane_of(data, index: int) -> LazyPlane:
    """Plane ``index`` of a file's array (``read_image(..., lazy=True)``) as a lazy plane."""
    stack, rgb = plane_layout(data)
    data = unread(data)
    plane = data[index] if stack else data
    return LazyPlane(plane[..., :3] if rgb else plane, -1 if rgb else None)


def reading_here():
    """Context in which dask reads pixels in this thread, not on a cluster a client may be
    connected to (a task's reads are its own; tifffile's stores hold locks that do not pickle)."""
    import dask

    return dask.config.set(scheduler="synchronous")


def run_tile(model, task: TileTask) -> TileMasks:
    """Segment one tile (reading only its pixels)."""
    with reading_here():
        plane = open_plane(task.source, task.plane)
        work = iter_tile(model, plane, task.normalization, task.options, task.tile)
        while True:
            try:
                next(work)
            except StopIteration as done:
                return done.value


def run_cut(model, task: TileTask, extents: list) -> list:
    """Segment the objects the tiles of ``task``'s plane cut, from their extents."""
    from ..engine.cut_objects import resegment_cut

    with reading_here():
        plane = open_plane(task.source, task.plane)
        return resegment_cut(model, plane, task.normalization, extents, task.options)


def tiled_file(source: Path, job: BatchJob, image_size: int) -> TiledFile | None:
    """The ``TiledFile`` of an automatic-mask file (TIFF, zarr or NPY, opened lazily) whose
    planes are larger than the model input; None for the others, which run as one task each
    (on one worker, or here: PNG and JPEG are read whole anyway)."""
    lazy = (".tif", ".tiff", ".npy", ".zarr")
    if job.points or job.boxes or not source.name.lower().endswith(lazy):
        return None
    try:
        data = read_image(source, lazy=True)
        stack, _ = plane_layout(data)
    except SAM2Error:
        return None  # unreadable: the file's own task reports it
    planes = tuple(data.shape[:3]) if stack else (1, *data.shape[:2])
    if max(planes[1:]) <= image_size:
        return None
    if not _fits_in_memory(planes) and job.postprocessing != PostProcessing():
        raise SAM2Error(
            f"The labels of {source.name} ({np.prod(planes) * 4 / 2**30:.1f} GiB) are written "
            "without holding them in memory, and post-processing needs them there: run "
            "without --min-size/--fill-holes/--remove-border/--relabel, or batch it apart."
        )
    try:
        return TiledFile(source, job, image_size, data)
    except Exception:  # its pixels cannot be read: the file's own task reports it
        return None


def segment_here(model, tiled: TiledFile, progress: Callable) -> Generator:
    """Every tile of ``tiled`` in this process, yielding ``progress(tiled.tiles_done)`` after
    each, then its outputs; returns the file's result."""
    try:
        for task in tiled.tasks:
            tiled.add(task, run_tile(model, task))
            yield progress(tiled.tiles_done)
    except Exception as err:
        return tiled.failed(err)
    return tiled.finish(lambda task, extents: run_cut(model, task, extents))


class TiledFile:
    """The driver's side of one tiled file: its tasks, their results, and the stitching."""

    def __init__(self, source: Path, job: BatchJob, image_size: int, data):
        self.source, self.job, self.start = source, job, time.perf_counter()
        self.stack, _ = plane_layout(data)
        planes = data if self.stack else data[None]
        self.shape = tuple(int(n) for n in planes.shape[:3])
        with reading_here():  # a stack: one normalisation for all, as for small files
            if self.stack:
                normalization = Normalization.for_data(planes, frame_axis=0)
            else:  # a plane: from a grid of patches, so the driver reads a bounded part
                normalization = plane_of(data, 0).normalization()
        count = len(tile_grid(self.shape[1:], base_side(image_size)))
        self.tasks = [
            TileTask(str(source), t, n, normalization, job.automatic)
            for t in range(self.shape[0])
            for n in range(count)
        ]
        self.found: dict[TileTask, TileMasks] = {}

    @property
    def tiles_done(self) -> tuple[str, int, int]:
        """(file, tiles done, tiles in all), for ``BatchProgress.tile``."""
        return str(self.source), len(self.found), len(self.tasks)

    def add(self, task: TileTask, masks: TileMasks) -> bool:
        """Record a finished tile; True once every tile is in."""
        self.found[task] = masks
        return len(self.found) == len(self.tasks)

    def finish(self, resegment: Callable[[TileTask, list], list]) -> FileResult:
        """Stitch every plane, write the outputs; any error becomes a 'failed' result."""
        scratch = None
        try:
            labels, scratch = self._labels_array()
            for t in range(self.shape[0]):
                tasks = [task for task in self.tasks if task.plane == t]
                found = [self.found[task] for task in tasks]

                def cut(extents, task=tasks[0]):
                    return resegment(task, extents)

                stitch_tiles(found, self.shape[1:], self.job.automatic, cut, labels[t])
                if scratch is None:
                    labels[t] = self.job.postprocessing.apply(labels[t])
            labels = labels if self.stack else labels[0]
            labels_path, json_path = self.job.outputs(self.source)
            write_labels(labels, labels_path, self.job.fmt)
            write_coco(labels, json_path, self.source.name)
            objects = sum(_count_objects(p) for p in labels.reshape(-1, *self.shape[1:]))
        except Exception as err:
            return self.failed(err)
        finally:
            if scratch is not None:
                scratch.unlink(missing_ok=True)
        seconds = time.perf_counter() - self.start
        outputs = (str(labels_path), str(json_path))
        return FileResult(str(self.source), "done", outputs, objects, seconds)

    def failed(self, err: Exception) -> FileResult:
        message = str(err) if isinstance(err, SAM2Error) else f"{type(err).__name__}: {err}"
        return FileResult(str(self.source), "failed", error=message)

    def _labels_array(self) -> tuple[np.ndarray, Path | None]:
        """Zeros for the labels: in memory, or a scratch memory map if they are too large."""
        if _fits_in_memory(self.shape):
            return np.zeros(self.shape, np.int32), None
        scratch = temporary_path(self.job.outputs(self.source)[0].with_suffix(".npy"))
        return np.lib.format.open_memmap(scratch, "w+", np.int32, self.shape), scratch


def _fits_in_memory(shape: tuple[int, ...]) -> bool:
    """Whether int32 labels of ``shape`` are held in memory (else in a memory map)."""
    return int(np.prod(shape)) * 4 <= LABELS_IN_MEMORY_BYTES


def _count_objects(plane: np.ndarray) -> int:
    """Distinct non-zero ids of a plane, read a band of rows at a time."""
    ids: set[int] = set()
    for band in row_bands(plane.shape):
        ids.update(np.unique(plane[band]).tolist())
    return len(ids - {0})
