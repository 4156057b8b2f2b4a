"""CUDA graphs of the tracking step: same masks as plain tracking, model left as it was.

These need a CUDA GPU (CI has none; they run on the GPU machine, see docs/performance.md).
"""

import contextlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from napari_sam2.engine import models
from napari_sam2.engine.cuda_graphs import GraphedCall, tracking_graphs
from napari_sam2.engine.holes import fill_small_holes
from napari_sam2.engine.video import session as video_session
from napari_sam2.engine.video.reading import frame_source_for
from napari_sam2.engine.video.session import PropagationSession
from napari_sam2.engine.video.stream import write_labels

from .masks import centre, iou

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MICRO = Path(__file__).parents[2] / "src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt"


@pytest.fixture(scope="module")
def model():
    return models.build_model(models.MICRO_MODEL, MICRO, "cuda")


@pytest.fixture(scope="module")
def clip():
    from napari_sam2.engine.synthetic import synthetic_clip

    # Prompted in the middle, tracked both ways for longer than the memory bank takes to fill
    # (16 object pointers), so the memory attention's shapes settle and it is replayed too.
    # Three cells: tracked in one batch, padded to the size class of four.
    return synthetic_clip(50, (256, 256), n_cells=3, seed=3)


def track(model, frames, prompts, cuda_graphs: bool) -> np.ndarray:
    session = PropagationSession(model, frame_source_for(frames), cuda_graphs=cuda_graphs)
    session.add_prompts(prompts)
    labels = np.zeros(frames.shape, np.uint16)
    list(write_labels(session.propagate("both"), labels))
    session.close()
    return labels


def track_with_graphs(model, frames, prompts) -> tuple[np.ndarray, list[GraphedCall]]:
    """``track`` with CUDA graphs, and the graphed calls that were installed for it."""
    installed = []

    @contextlib.contextmanager
    def spy(model, enabled):
        with tracking_graphs(model, enabled) as calls:
            installed.extend(calls)
            yield calls

    with mock.patch.object(video_session, "tracking_graphs", spy):
        return track(model, frames, prompts, cuda_graphs=True), installed


def two_in_a_graph(model):
    """CUDA graphs take at most two objects of ``model`` a step while this lasts."""
    from napari_sam2.engine.video import batching

    return mock.patch.object(batching, "GRAPH_MAX_TOKENS", 2 * model.sam_image_embedding_size**2)


def test_tracking_with_cuda_graphs_gives_the_masks_of_plain_tracking(model, clip):
    frames, truth = clip
    prompts = {25: {k: dict(box=bbox(truth[25] == k)) for k in (1, 2, 3)}}
    plain = track(model, frames, prompts, cuda_graphs=False)
    graphed, installed = track_with_graphs(model, frames, prompts)
    # Memory attention, mask heads and memory encoder were all replayed, both ways (once a
    # frame for the three objects together).
    assert len(installed) == 3 and all(call.replays >= 2 * 5 for call in installed)
    for t in range(len(frames)):
        for k in (1, 2, 3):
            assert iou(graphed[t] == k, plain[t] == k) > 0.98, (t, k)
            assert iou(graphed[t] == k, truth[t] == k) > 0.7, (t, k)


def test_batches_above_the_graph_limit_run_without_graphs(model, clip):
    """A step of more objects than ``graph_limit`` is GPU-bound: it runs as it is, with the
    masks of plain tracking, and nothing is recorded for it."""
    frames, truth = clip
    prompts = {25: {k: dict(box=bbox(truth[25] == k)) for k in (1, 2, 3)}}
    plain = track(model, frames, prompts, cuda_graphs=False)
    with two_in_a_graph(model):
        large, installed = track_with_graphs(model, frames, prompts)
    assert len(installed) == 3 and all(call.replays == 0 for call in installed)
    assert all(not call._graphs for call in installed)
    for t in range(len(frames)):
        for k in (1, 2, 3):
            assert iou(large[t] == k, plain[t] == k) > 0.98, (t, k)


def test_large_batches_with_a_full_memory_bank_attend_with_cudnn(model, clip):
    """Memory attention of more objects than CUDA graphs take runs cuDNN's kernel once the
    memory bank is full (its shape then stays), with the masks of flash attention: the same
    objects tracked one by one (one object a step, never cuDNN)."""
    from torch.profiler import ProfilerActivity, profile

    frames, truth = clip
    prompts = {25: {k: dict(box=bbox(truth[25] == k)) for k in (1, 2, 3)}}

    def run(per_object: bool):
        session = PropagationSession(model, frame_source_for(frames))
        session._per_object = per_object
        session.add_prompts(prompts)
        labels = np.zeros(frames.shape, np.uint16)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            list(write_labels(session.propagate("both"), labels))
        session.close()
        return labels, {e.key: e.count for e in prof.key_averages()}

    with two_in_a_graph(model):
        batched, ops = run(per_object=False)
        alone, alone_ops = run(per_object=True)
    cudnn = "aten::_scaled_dot_product_cudnn_attention"
    # 2 layers x (self + cross) a frame, on the 2 x 9 frames tracked after the bank filled.
    assert ops.get(cudnn, 0) >= 2 * 2 * 2 * 9 and cudnn not in alone_ops
    assert "forward" not in vars(model.memory_attention)
    for t in range(len(frames)):
        for k in (1, 2, 3):
            assert iou(batched[t] == k, alone[t] == k) > 0.98, (t, k)


def test_the_model_is_left_as_it_was_also_after_a_cancel(model, clip):
    frames, truth = clip
    session = PropagationSession(model, frame_source_for(frames))
    session.add_prompts({0: {1: dict(box=bbox(truth[0] == 1))}})
    stream = session.propagate("forward")
    for i, _ in enumerate(stream):
        if i == 0:
            assert isinstance(vars(model).get("_forward_sam_heads"), GraphedCall)
        if i == 25:
            break
    stream.close()
    assert "_forward_sam_heads" not in vars(model)
    assert "_encode_new_memory" not in vars(model)
    assert "forward" not in vars(model.memory_attention)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return rows.min(), cols.min(), rows.max(), cols.max()


def test_clicks_replayed_as_graphs_give_the_official_predictors_masks():
    """Clicks on two images in turn, in bfloat16 as the plugin runs: once graphs replay,
    each mask is still the one sam2's own ``predict`` ranks first on *that* image (of one
    click's three, the one the decoder keeps), holes filled."""
    from napari_sam2 import Segmenter
    from napari_sam2.engine.synthetic import synthetic_cells

    seg = Segmenter(models.MICRO_MODEL, device="cuda", checkpoint=MICRO)
    scenes = []
    for seed in (1, 2):
        image, labels = synthetic_cells((256, 320), n_cells=6, seed=seed)
        inside = [centre(labels == k) for k in (1, 2, 3)]
        scenes.append((image, [inside[:1], inside[:2], inside]))  # 1, 2 and 3 clicks
    for _ in range(4):  # the third call of a kind records its graph, later ones replay it
        for image, clicks in scenes:
            seg.set_image(image)
            for points in clicks:
                ours = seg.predict(points=points)
                xy = np.array(points, np.float32)[:, ::-1].copy()
                with models.inference_context(seg.device):
                    masks, scores, _ = seg.session.predictor.predict(
                        xy, np.ones(len(points)), multimask_output=len(points) == 1
                    )
                official = masks[np.argmax(scores)] > 0
                fill_small_holes(official)  # as the engine hands masks out
                assert official.any() and iou(ours, official) > 0.999
    assert seg.session._decode_clicks.replays >= 2 * 3


def test_recording_graphs_does_not_leak_gpu_memory():
    """Every recording once ran on a new stream, and each new stream that multiplies
    matrices keeps a cuBLAS workspace (32 MiB on an H100) for the life of the process."""
    weight = torch.randn(64, 64, device="cuda")
    before = None
    for rows in range(1, 9):
        call = GraphedCall(lambda x: x @ weight, record_after=0)
        with torch.inference_mode():
            call(torch.randn(rows, 64, device="cuda"))
        assert len(call._graphs) == 1
        del call
        if before is None:  # the first recording sets up what every later one reuses
            before = torch.cuda.memory_allocated()
    assert torch.cuda.memory_allocated() - before < 4 * 2**20
