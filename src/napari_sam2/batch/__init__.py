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

from .files import FORMATS, read_image, rle_decode, rle_encode, write_labels
from .job import BatchJob, BatchProgress, FileResult, PostProcessing, PromptTable
from .run import iter_batch, run_batch

__all__ = [
    "FORMATS",
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
