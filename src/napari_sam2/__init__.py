"""napari-sam2: Segment Anything 2 in napari, and the same engine for scripts.

Importing this package pulls in no Qt and no napari; the public scripting API is below.
"""

from .annotation_files import load_annotation, save_annotation
from .engine.errors import SAM2Error
from .engine.models import available_models
from .engine.segmenter import Segmenter
from .engine.video.stream import write_labels
from .export.ctc import export_ctc

__version__ = "0.1.0"
__all__ = [
    "SAM2Error",
    "Segmenter",
    "available_models",
    "export_ctc",
    "load_annotation",
    "save_annotation",
    "write_labels",
    "__version__",
]
