"""``compile=True``: the image encoder compiles once, in the model load, and segments as the
plain one does.

These need a CUDA GPU (CI has none; they run on the GPU machine, see docs/performance.md).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam2 import Segmenter
from napari_sam2.engine import models
from napari_sam2.engine.synthetic import synthetic_clip
from napari_sam2.engine.video.stream import write_labels

from .masks import centre, iou

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MICRO = Path(__file__).parents[2] / "src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt"


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@pytest.fixture(scope="module")
def segmenters():
    plain = Segmenter(models.MICRO_MODEL, "cuda", checkpoint=MICRO)
    compiled = Segmenter(models.MICRO_MODEL, "cuda", checkpoint=MICRO, compile=True)
    assert models.is_compiled(compiled.model) and compiled_graphs() > 0
    return plain, compiled


@pytest.fixture(scope="module")
def clip():
    return synthetic_clip(30, (256, 256), n_cells=2, seed=3)


def test_clicks_match_the_plain_model_and_compile_nothing(segmenters, clip):
    frames, truth = clip
    graphs = compiled_graphs()
    masks = {}
    for name, seg in zip(("plain", "compiled"), segmenters, strict=True):
        masks[name] = []  # frame 0 twice: the second time from the embedding cache
        for t in (0, 7, 0):
            seg.set_image(frames[t])
            masks[name].append(seg.predict(points=[centre(truth[t] == 1)]))
    for n, t in enumerate((0, 7, 0)):
        assert iou(masks["compiled"][n], masks["plain"][n]) > 0.98, t
        assert iou(masks["compiled"][n], truth[t] == 1) > 0.7, t
    assert compiled_graphs() == graphs, "clicks compiled the encoder"


def test_propagation_matches_the_plain_encoder_without_compiling_again(segmenters, clip):
    frames, truth = clip
    graphs = compiled_graphs()
    labels = {}
    for name, seg in zip(("plain", "compiled"), segmenters, strict=True):
        with seg.propagation_session(frames) as session:
            session.add_prompts({0: {1: dict(points=[centre(truth[0] == 1)])}})
            labels[name] = np.zeros(frames.shape, np.uint16)
            list(write_labels(session.propagate("forward"), labels[name]))
    for t in range(len(frames)):
        assert iou(labels["compiled"][t] == 1, labels["plain"][t] == 1) > 0.95, t
        assert iou(labels["compiled"][t] == 1, truth[t] == 1) > 0.7, t
    assert compiled_graphs() == graphs, "propagation compiled the encoder again"
