"""Background work for the widget: model loading and segmentation off the GUI thread."""

from __future__ import annotations

import sys

import torch

# torchvision imports torch._dynamo, which loads triton when it is installed (the PyPI torch
# wheels bring it). Triton only compiles GPU kernels, and its bundled LLVM crashes the process
# when loaded next to Mesa's software OpenGL (llvmpipe), which napari may already be drawing
# with on machines without a GPU. Without CUDA it is never needed, so keep it out.
if not torch.cuda.is_available():
    sys.modules.setdefault("triton", None)

# Import the model code's large extensions now, in the GUI thread, not first inside a worker.
import hydra.utils  # noqa: E402, F401
import sam2.sam2_image_predictor  # noqa: E402, F401
import sam2.sam2_video_predictor  # noqa: E402, F401
import torchvision  # noqa: E402, F401
from napari.qt.threading import thread_worker  # noqa: E402

from ..engine.segmenter import Segmenter
from ..layers import segmentation


# ignore_errors: the widget connects ``errored`` to a notification instead of a re-raise.
@thread_worker(progress={"total": 0, "desc": "SAM2: loading model"}, ignore_errors=True)
def load_model(model: str, device: str | None, checkpoint: str | None) -> Segmenter:
    return Segmenter(model, device=device, checkpoint=checkpoint)


@thread_worker(progress={"total": 0, "desc": "SAM2: segmenting"}, ignore_errors=True)
def segment(segmenter: Segmenter, request: segmentation.SegmentationRequest) -> dict:
    return segmentation.compute(segmenter, request)
