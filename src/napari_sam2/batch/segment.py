"""One file through the model: every plane segmented (automatic masks, tiled on planes larger
than the model input, or prompted objects), post-processed, written."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..engine.automatic import AutomaticOptions
from ..engine.errors import SAM2Error
from .files import plane_layout, read_image, write_coco, write_labels
from .job import BatchJob, FileResult, PromptTable


def segment_array(segmenter, data, job: BatchJob, prompts: PromptTable | None) -> np.ndarray:
    """int32 labels of an image or stack (one plane at a time, one normalisation for all)."""
    from ..engine.frames import Normalization

    stack, rgb = plane_layout(data)
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
    crops = [(obj, segmenter.predict_crop(**kwargs)) for obj, kwargs in objects.items()]
    for obj, crop in sorted(crops, key=lambda item: -int(item[1].mask.sum())):
        labels[crop.rows, crop.cols][crop.mask] = obj
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
