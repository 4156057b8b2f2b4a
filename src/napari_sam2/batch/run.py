"""The batch itself: ``iter_batch`` over files, in this process or on Dask workers."""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from pathlib import Path

from ..engine.automatic import AutomaticOptions
from ..engine.errors import SAM2Error
from .files import FORMATS, check_writable, find_inputs
from .job import BatchJob, BatchProgress, FileResult, PostProcessing
from .segment import process_file


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
        from ..engine.models import select_device

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
            from ..engine.segmenter import Segmenter

            segmenter = Segmenter(model, device, checkpoint)
        for source in todo:
            results.append(process_file(segmenter, source, job))
            yield BatchProgress(len(results), total, results[-1])
        return results

    from distributed import as_completed

    from .workers import SegmenterPlugin, connect, process_on_worker

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
    from ..engine.models import model_spec

    model_spec(model)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise SAM2Error(f"Checkpoint {checkpoint} does not exist.")
