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
from .tiles import model_image_size, segment_here, tiled_file


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

    image_size = model_image_size(model) if segmenter is None else segmenter.model.image_size
    tiled = {source: tiled_file(source, job, image_size) for source in todo}

    if scheduler is None and workers == 0:
        if segmenter is None:
            from ..engine.segmenter import Segmenter

            segmenter = Segmenter(model, device, checkpoint)
        for source in todo:
            if tiled[source] is None:
                results.append(process_file(segmenter, source, job))
            else:

                def progress(tile):
                    return BatchProgress(len(results), total, None, tile)

                results.append((yield from segment_here(segmenter.model, tiled[source], progress)))
            yield BatchProgress(len(results), total, results[-1])
        return results

    from distributed import as_completed

    from .workers import SegmenterPlugin, connect, cut_on_worker, process_on_worker, tile_on_worker

    threads = None
    if scheduler is None and processes:
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
    client, cluster = connect(scheduler, workers, processes)
    done_tiled: set = set()
    work: dict = {}  # future → the file it processes, or (TiledFile, TileTask) of a tile

    def cut_objects(task, extents):
        futures = [client.submit(cut_on_worker, task, [e], pure=False) for e in extents]
        return [crop for crops in client.gather(futures) for crop in crops]

    try:
        client.register_plugin(SegmenterPlugin(model, checkpoint, device, threads))
        for source in todo:
            if tiled[source] is None:
                work[client.submit(process_on_worker, str(source), job, pure=False)] = source
            for task in tiled[source].tasks if tiled[source] is not None else ():
                work[client.submit(tile_on_worker, task, pure=False)] = (tiled[source], task)
        for future in as_completed(list(work)):
            what, result = work.pop(future), None
            try:
                if not isinstance(what, tuple):
                    result = future.result()
                elif what[0].source in done_tiled:
                    continue  # a tile of a file that already failed
                else:
                    complete = what[0].add(what[1], future.result())
                    yield BatchProgress(len(results), total, None, what[0].tiles_done)
                    if not complete:
                        continue
                    result = what[0].finish(cut_objects)
            except Exception as err:  # a worker died or the task could not run
                source = what[0].source if isinstance(what, tuple) else what
                message = f"{type(err).__name__}: {err}"
                result = FileResult(str(source), "failed", error=message)
            if isinstance(what, tuple):
                done_tiled.add(what[0].source)
            results.append(result)
            yield BatchProgress(len(results), total, result)
    finally:
        if work:
            client.cancel(list(work))
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
