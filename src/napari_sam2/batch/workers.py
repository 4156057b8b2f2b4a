"""Dask distributed for the batch: a worker plugin holding one model per worker, and the client.

Imported only when a batch runs on Dask (by ``run``); the class lives in an importable module
so workers can unpickle it.
"""

from __future__ import annotations

import logging
import threading

from distributed import Client, LocalCluster, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from ..engine.errors import SAM2Error
from .job import BatchJob, FileResult
from .segment import process_file
from .tiles import TileTask, run_cut, run_tile

PLUGIN_NAME = "napari-sam2-segmenter"
SCHEDULER_TIMEOUT_S = 5.0


class SegmenterPlugin(WorkerPlugin):
    """Dask worker plugin: each worker builds one ``Segmenter`` the first time it needs it.

    A worker with several threads shares its model, so its tasks take turns on it.
    """

    name = PLUGIN_NAME

    def __init__(self, model: str, checkpoint: str | None, device: str | None, threads=None):
        self.model, self.checkpoint, self.device, self.threads = model, checkpoint, device, threads
        self._segmenter = None
        self.lock = threading.Lock()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_segmenter", "lock")}

    def __setstate__(self, state):
        self.__dict__.update(state, _segmenter=None, lock=threading.Lock())

    def setup(self, worker=None):
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)

    def teardown(self, worker=None):
        self._segmenter = None

    def segmenter(self):
        if self._segmenter is None:
            from ..engine.segmenter import Segmenter

            self._segmenter = Segmenter(self.model, self.device, self.checkpoint)
        return self._segmenter


def process_on_worker(source: str, job: BatchJob) -> FileResult:
    plugin = get_worker().plugins[PLUGIN_NAME]
    with plugin.lock:
        try:
            segmenter = plugin.segmenter()
        except Exception as err:
            return FileResult(source, "failed", error=f"Model could not be loaded: {err}")
        return process_file(segmenter, source, job)


def tile_on_worker(task: TileTask):
    """One tile of a large plane, on this worker's model (``tiles.run_tile``)."""
    plugin = get_worker().plugins[PLUGIN_NAME]
    with plugin.lock:
        return run_tile(plugin.segmenter().model, task)


def cut_on_worker(task: TileTask, extents: list) -> list:
    """Objects the tiles of ``task``'s plane cut, segmented on this worker's model."""
    plugin = get_worker().plugins[PLUGIN_NAME]
    with plugin.lock:
        return run_cut(plugin.segmenter().model, task, extents)


def connect(scheduler: str | None, workers: int, processes: bool = True):
    """A Dask client: to ``scheduler`` (failing fast if it does not answer) or a LocalCluster.

    Returns (client, cluster or None); the caller closes both.
    """
    if scheduler is not None:
        try:
            return Client(scheduler, timeout=SCHEDULER_TIMEOUT_S), None
        except Exception as err:
            raise SAM2Error(
                f"The Dask scheduler at {scheduler!r} did not answer within "
                f"{SCHEDULER_TIMEOUT_S:g} s ({type(err).__name__}: {err}). Start it with "
                "`dask scheduler` and check the address, or leave --scheduler out to use a "
                "local cluster."
            ) from err
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=None,
        silence_logs=logging.WARNING,
    )
    return Client(cluster), cluster
