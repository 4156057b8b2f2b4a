"""Propagation wiring with random weights (ids, frames written, order, cancel, memory, errors).

Random weights say nothing about quality, so these tests check only what the engine controls.
They use the micro architecture at a 128-pixel model input: the same code paths as at 1024,
about 50 times faster on a CPU. The tracking-quality tests at the end use the packaged micro
model and are skipped while its checkpoint is missing or cannot track (image mode only).
"""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam2 import SAM2Error
from napari_sam2.engine import models
from napari_sam2.engine.holes import fill_small_holes
from napari_sam2.engine.prompts import PromptSet
from napari_sam2.engine.video.reading import ModelFrames, frame_source_for
from napari_sam2.engine.video.runtime import install_memory_dtype_fix
from napari_sam2.engine.video.session import PropagationSession
from napari_sam2.engine.video.stream import write_labels

from .masks import centre, iou

H = W = 64


def small_video_model(image_size: int = 128, seed: int = 0):
    """A random-weight micro SAM2VideoPredictor with a small model input (wiring only)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    spec = models.MODELS[models.MICRO_MODEL]
    overrides = models._VIDEO_OVERRIDES + [f"model.image_size={image_size}"]
    cfg = OmegaConf.merge(
        OmegaConf.load(models.config_path(spec)), OmegaConf.from_dotlist(overrides)
    )
    torch.manual_seed(seed)
    return instantiate(cfg.model, _recursive_=True).eval()


def downsampler_layer_types(model, index: int) -> set[type]:
    """The classes the memory encoder's mask-downsampler layer ``index`` had while a short
    propagation ran (to see what the engine swaps in during a run)."""
    seen = set()
    hook = model.memory_encoder.register_forward_hook(
        lambda module, args, out: seen.add(type(module.mask_downsampler.encoder[index]))
    )
    stack = (np.random.default_rng(0).random((4, 64, 64)) * 255).astype(np.uint8)
    session = PropagationSession(model, frame_source_for(stack))
    session.add_prompts({0: {1: dict(points=[(30, 30)])}})
    assert len(list(session.propagate("forward"))) == 4
    hook.remove()
    return seen


@pytest.fixture(scope="module")
def model():
    return small_video_model()


@pytest.fixture
def stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((12, H, W)) * 1000 + 100).astype(np.uint16)


def run_session(model, stack, prompts, frame_range=None):
    session = PropagationSession(model, frame_source_for(stack), frame_range)
    session.add_prompts(prompts)
    return session


TWO_OBJECTS = {4: {1: dict(points=[(30, 30)])}, 6: {2: dict(box=(10, 10, 40, 40))}}


def test_both_directions_yield_every_frame_with_known_ids(model, stack):
    session = run_session(model, stack, TWO_OBJECTS)
    out = [(f, ids, m) for f, ids, m in session.propagate("both")]
    frames = [f for f, _, _ in out]
    # forward from each object's first prompt, then backward from just before it
    assert frames[:8] == list(range(4, 12)) and frames[8:] == list(range(5, -1, -1))
    for _, ids, masks in out:
        assert set(ids) <= {1, 2} and masks.shape == (len(ids), H, W) and masks.dtype == bool
    seen = {(f, i) for f, ids, _ in out for i in ids}
    assert seen == {(f, i) for f in range(12) for i in (1, 2)}  # each frame once per object


def test_forward_and_backward_touch_only_their_frames(model, stack):
    for direction, done in (("forward", range(4, 12)), ("backward", range(0, 5))):
        labels = np.full((12, H, W), 7, np.uint16)
        session = run_session(model, stack, {4: {1: dict(points=[(30, 30)])}})
        written = list(write_labels(session.propagate(direction), labels))
        assert written == (list(done) if direction == "forward" else list(done)[::-1])
        untouched = [f for f in range(12) if f not in done]
        assert (labels[untouched] == 7).all()
        for f in done:  # old pixels of other ids stay, the object's id is painted
            assert set(np.unique(labels[f])) <= {1, 7}


def test_frame_range_limits_propagation(model, stack):
    session = run_session(model, stack, {5: {1: dict(points=[(30, 30)])}}, frame_range=(3, 9))
    assert sorted({f for f, _, _ in session.propagate("both")}) == list(range(3, 9))


def test_each_tracked_frame_is_encoded_once_and_no_other(model, stack, monkeypatch):
    """Prompted on frame 5 and tracked forward: frames 5-11 are encoded, each once, and not
    frame 0 (sam2's init_state encodes frame 0 to warm up: on a CPU 0.1-0.2 s of the first
    mask with micro, 3 s with tiny)."""
    encoded = []
    stock = model.forward_image

    def spy(images):
        encoded.append(images.shape[0])
        return stock(images)

    monkeypatch.setattr(model, "forward_image", spy)
    session = run_session(model, stack, {5: {1: dict(points=[(30, 30)])}})
    assert [f for f, _, _ in session.propagate("forward")] == list(range(5, 12))
    assert sum(encoded) == 7


def test_cancel_keeps_done_frames_and_touches_nothing_else(model, stack):
    labels = np.full((12, H, W), 9, np.uint16)
    session = run_session(model, stack, {0: {1: dict(points=[(30, 30)])}})
    writer = write_labels(session.propagate("forward"), labels)
    done = [next(writer) for _ in range(3)]
    writer.close()  # what a GUI's Cancel does
    assert done == [0, 1, 2]
    assert (labels[3:] == 9).all()
    assert session.frames.frames_prepared <= 3 + 1 + session.frames.read_ahead + 1


def test_write_labels_into_zarr_with_frame_axis(model, stack):
    zarr = pytest.importorskip("zarr")
    labels = zarr.zeros(shape=(H, 12, W), chunks=(H, 1, W), dtype="uint16")
    frames = np.moveaxis(stack, 0, 1)  # time on axis 1
    session = PropagationSession(model, frame_source_for(frames, frame_axis=1))
    session.add_prompts({2: {3: dict(points=[(20, 20)])}})
    written = list(write_labels(session.propagate("forward"), labels, frame_axis=1))
    assert written == list(range(2, 12))
    assert set(np.unique(labels[:, :2])) == {0}


def test_correction_reruns_only_to_next_prompt(model, stack):
    session = run_session(
        model, stack, {0: {1: dict(points=[(30, 30)])}, 8: {1: dict(points=[(32, 30)])}}
    )
    labels = np.zeros((12, H, W), np.uint16)
    list(write_labels(session.propagate("forward"), labels))
    before = labels.copy()
    steps = session.correct(4, {1: dict(points=[(30, 30), (5, 5)], point_labels=[1, 0])})
    written = list(write_labels(steps, labels))
    assert written == [4, 5, 6, 7, 3, 2, 1]  # forward to the anchor on 8, back to the one on 0
    assert (labels[[0, 8, 9, 10, 11]] == before[[0, 8, 9, 10, 11]]).all()
    assert session.prompted_frames(1) == [0, 4, 8]
    fwd = session.propagate("forward", start_frame=5, stop_at_next_prompt=True)
    assert [f for f, _, _ in fwd] == [5, 6, 7]


def test_confidence_per_object_per_frame_comes_with_the_masks(model, stack):
    session = run_session(model, stack, TWO_OBJECTS, frame_range=(2, 10))
    stream = session.propagate("forward")
    for result in stream:  # each item carries its objects' confidence, already in the stream's
        frame, ids, _ = result
        assert [stream.confidence[i][frame] for i in ids] == list(result.confidence)
    copy = pickle.loads(pickle.dumps(result))  # e.g. to another process
    assert (copy.confidence == result.confidence).all() and copy[0] == result[0]
    conf = stream.confidence
    assert sorted(conf) == [1, 2] and all(len(c) == 12 for c in conf.values())
    assert np.isnan(conf[1][:4]).all() and np.isnan(conf[2][:6]).all()  # before their prompts
    assert np.isnan(conf[1][10:]).all()  # outside the range
    done = np.concatenate([conf[1][4:10], conf[2][6:10]])
    assert ((done >= 0) & (done <= 1)).all()
    before = {k: v.copy() for k, v in conf.items()}
    list(session.correct(5, {1: dict(points=[(20, 20)])}, "forward"))
    assert np.array_equal(conf[2], before[2], equal_nan=True)
    assert np.array_equal(conf[1][:5], before[1][:5], equal_nan=True)


def test_jumps_in_area_or_position_lower_the_confidence():
    from napari_sam2.engine.video.confidence import jump, summary

    def disc(row, col, radius):
        rr, cc = np.ogrid[:64, :64]
        return torch.from_numpy((rr - row) ** 2 + (cc - col) ** 2 <= radius**2)

    cell = summary(disc(30, 30, 8))
    assert jump(cell, summary(disc(31, 31, 8))) == 1  # an ordinary step
    assert jump(cell, summary(disc(30, 30, 3))) < 0.3  # lost most of its area
    assert jump(cell, summary(disc(30, 50, 8))) == 0  # jumped to a neighbour
    assert jump(cell, summary(disc(30, 30, 0) & False)) == 1  # gone: presence speaks for that


def test_object_added_later_runs_alone(model, stack):
    session = run_session(model, stack, {0: {1: dict(points=[(30, 30)])}})
    list(session.propagate("forward"))
    session.add_prompts({5: {2: dict(box=(5, 5, 30, 30))}})
    out = list(session.propagate("both", objects=[2]))
    assert all(ids == [2] for _, ids, _ in out)
    assert sorted(f for f, _, _ in out) == list(range(12))


def test_mask_prompt_and_rgb_stack(model):
    rgb = np.random.default_rng(1).integers(0, 255, (5, H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), bool)
    mask[20:40, 20:40] = True
    session = PropagationSession(model, frame_source_for(rgb))
    session.add_prompts({2: {4: dict(mask=mask)}, 3: {5: dict(points=[(5, 5)], mask=mask)}})
    out = list(session.propagate("both"))
    assert {f for f, _, _ in out} == set(range(5))


def test_bf16_memory_without_object_pointers_on_cpu(model, stack):
    """sam2 tracks an object from a frame before its only prompt (its memory then holds no
    object pointer and stays bfloat16): with the fix installed this runs in float32 on CPU."""
    session = run_session(model, stack, {5: {1: dict(points=[(30, 30)])}})
    list(session.run(session.plan("forward")[:1]))  # a run gives the model its prompts first
    state = session._states[1]
    with torch.inference_mode():
        frames = [f for f, _, _ in model.propagate_in_video(state, start_frame_idx=0)]
    assert frames == list(range(12))
    stored = state["output_dict_per_obj"][0]["cond_frame_outputs"][5]["maskmem_features"]
    assert stored.dtype == torch.bfloat16  # sam2 still stores bf16; attention gets float32


def test_dtype_fix_is_installed_once(model):
    install_memory_dtype_fix(model)
    install_memory_dtype_fix(model)
    assert len(model.memory_attention._forward_pre_hooks) == 1


@pytest.mark.parametrize(
    "prompts, kwargs, message",
    [
        ({}, {}, "No prompts"),
        ({50: {1: dict(points=[(3, 3)])}}, {}, "outside the frames 0..11"),
        ({0: {1: dict(points=[(3, 3)])}}, {"frame_range": (2, 8)}, "outside the frames 2..7"),
        ({0: {1: dict(points=[(300, 3)])}}, {}, "outside the 64×64 image"),
        ({0: {1: dict(points=[(3, 3)])}}, {"direction": "sideways"}, "Direction"),
        ({0: {1: dict(points=[(3, 3)])}}, {"frame_range": (5, 50)}, "Frame range"),
    ],
)
def test_bad_input_gets_clear_errors(segmenter, stack, prompts, kwargs, message):
    with pytest.raises(SAM2Error, match=message):
        segmenter.propagate(stack, prompts, **kwargs)


def test_2d_and_multi_axis_stacks_are_refused(segmenter):
    with pytest.raises(SAM2Error, match="single image"):
        segmenter.propagate(np.zeros((H, W)), {0: {1: dict(points=[(3, 3)])}})
    with pytest.raises(SAM2Error, match="more than one frame axis"):
        segmenter.propagate(np.zeros((2, 3, H, W)), {0: {1: dict(points=[(3, 3)])}})
    with pytest.raises(SAM2Error, match="complex"):  # never cast silently to real
        segmenter.propagate(np.zeros((2, H, W), complex), {0: {1: dict(points=[(3, 3)])}})


@pytest.fixture(scope="module")
def segmenter(model):
    """A Segmenter whose model is the small random video model (wiring tests only)."""
    from napari_sam2 import Segmenter

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("napari_sam2.engine.segmenter.build_model", lambda *a, **k: model)
        return Segmenter(models.MICRO_MODEL, device="cpu")


def test_segmenter_propagate_streams_into_labels(segmenter, stack):
    stream = segmenter.propagate(stack, TWO_OBJECTS, direction="both", contrast_limits=(0, 2000))
    labels = np.zeros(stack.shape, np.uint16)
    written = list(write_labels(stream, labels))
    assert sorted(set(written)) == list(range(12))


def test_out_of_memory_is_reported_with_advice_and_labels_kept(segmenter, stack, monkeypatch):
    labels = np.zeros(stack.shape, np.uint16)
    stream = segmenter.propagate(stack, {0: {1: dict(points=[(30, 30)])}}, "forward")
    writer = write_labels(stream, labels)
    assert [next(writer), next(writer)] == [0, 1]
    done = labels[:2].copy()

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(segmenter.model, "forward_image", out_of_memory)
    with pytest.raises(SAM2Error, match="smaller model"):
        list(writer)
    assert (labels[:2] == done).all() and not labels[2:].any()


def test_model_frames_prepare_on_demand_and_hold_few():
    import dask.array as da

    lazy = da.random.default_rng(0).random((50, H, W), chunks=(1, H, W))
    frames = ModelFrames(frame_source_for(lazy, contrast_limits=(0, 1)), image_size=32)
    assert frames.frames_prepared == 0
    for i in range(20):
        assert frames[i].shape == (3, 32, 32)
        assert frames.held <= frames.cache_size
    frames.close()
    assert frames.frames_prepared <= 20 + frames.read_ahead


def test_on_a_cpu_the_readers_only_read(monkeypatch):
    """On a CPU the frames read ahead are normalised and resized in the thread that asks for
    them, not in the reader threads, whose torch work would take the model's cores; the
    frames are the same."""
    import threading

    from napari_sam2.engine.video import reading

    threads = []
    model_input = reading.model_input

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return model_input(*args, **kwargs)

    monkeypatch.setattr(reading, "model_input", recording)
    stack = np.random.default_rng(0).random((12, H, W))
    frames = ModelFrames(frame_source_for(stack, contrast_limits=(0, 1)), image_size=32)
    got = [frames[i] for i in range(12)]
    frames.close()
    assert threads and all(t is threading.main_thread() for t in threads)
    for i, frame in enumerate(got):
        torch.testing.assert_close(frame, frames.prepare(i))


def test_memory_stays_flat_over_a_long_lazy_stack(model):
    """1,000 lazy 64×64 frames on CPU: the state holds a bounded number of frames' outputs, the
    frame reader a few frames, and the process's RSS grows by little between frame 200 and the
    end. (The exact figures, at 1024² and on the GPU, are in bench/propagation.py.)"""
    import dask.array as da
    import psutil

    n = int(os.environ.get("NAPARI_SAM2_LONG_FRAMES", 1000))
    lazy = da.random.default_rng(0).random((n, H, W), chunks=(1, H, W)).astype(np.float32)
    session = PropagationSession(model, frame_source_for(lazy, contrast_limits=(0, 1)))
    session.add_prompts({0: {1: dict(points=[(30, 30)])}})
    process = psutil.Process()
    stored, rss = [], {}
    for frame, _, _ in session.propagate("forward"):
        stored.append(session.stored_frames(1))
        assert session.frames.held <= session.frames.cache_size
        if frame in (200, n - 1):
            rss[frame] = process.memory_info().rss
    assert max(stored) <= 2 * session.memory_window + 2
    growth_mb = (rss[n - 1] - rss[200]) / 2**20
    assert growth_mb < 40, f"RSS grew by {growth_mb:.1f} MB from frame 200 to {n}"


# ---------------------------------------------------------------- quality, packaged micro model
MICRO = Path(__file__).parents[2] / "src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt"
needs_micro = pytest.mark.skipif(
    not MICRO.exists(), reason=f"the trained micro checkpoint {MICRO.name} is not packaged"
)


@pytest.fixture(scope="module")
def micro():
    from napari_sam2 import Segmenter

    return Segmenter(models.MICRO_MODEL, device="cpu", checkpoint=MICRO)


@needs_micro
def test_cell_that_leaves_and_returns_keeps_its_id_and_is_doubted_while_away(micro):
    from napari_sam2.engine.synthetic import synthetic_clip

    frames, truth = synthetic_clip(12, (256, 256), n_cells=2, seed=3, absent=(5, 8))
    prompts = {0: {k: dict(points=[centre(truth[0] == k)]) for k in (1, 2)}}
    labels = np.zeros(truth.shape, np.uint16)
    stream = micro.propagate(frames, prompts, "forward")
    list(write_labels(stream, labels))
    away = [5, 6, 7]
    here = [t for t in range(12) if t not in away]
    assert (stream.confidence[1][away] < 0.2).all() and (stream.confidence[1][here] > 0.8).all()
    assert (stream.confidence[2] > 0.8).all()  # never left
    for t in range(12):
        for k in (1, 2):
            if (truth[t] == k).any():
                assert iou(labels[t] == k, truth[t] == k) > 0.6, (t, k)
            else:
                assert (labels[t] == k).sum() < 0.2 * (truth[0] == k).sum(), (t, k)
    assert iou(labels[9] == 1, truth[9] == 1) > 0.6  # back after 3 absent frames, same id


@needs_micro
def test_correction_changes_only_frames_up_to_next_anchor(micro):
    from napari_sam2.engine.synthetic import synthetic_clip

    frames, truth = synthetic_clip(10, (256, 256), n_cells=1, seed=4)
    session = micro.propagation_session(frames)
    session.add_prompts({t: {1: dict(points=[centre(truth[t] == 1)])} for t in (0, 7)})
    labels = np.zeros(truth.shape, np.uint16)
    list(write_labels(session.propagate("forward"), labels))
    before = labels.copy()
    fix = dict(mask=truth[3] == 1, points=[centre(truth[3] == 1)])
    written = list(write_labels(session.correct(3, {1: fix}, "forward"), labels))
    assert written == [3, 4, 5, 6]
    keep = [0, 1, 2, 7, 8, 9]
    assert (labels[keep] == before[keep]).all()
    assert iou(labels[3] == 1, truth[3] == 1) > 0.7


@pytest.mark.parametrize("batch_size", [None, 3], ids=["cpu", "gpu-batches"])
def test_same_masks_as_the_stock_predictor_holding_every_frame(model, batch_size):
    """Lazy frames, shared features and forgotten memories change nothing: over 40 frames
    (more than twice the memory window) the masks equal those of sam2's own loop on a state
    that holds every frame and every output (on the prompted frames, kept inside their box and
    with their small holes filled). Also with frames encoded in batches, as on a GPU.
    """
    from unittest import mock

    import sam2.sam2_video_predictor as video_predictor

    rng = np.random.default_rng(2)
    stack = (rng.random((40, H, W)) * 255).astype(np.uint8)
    stack[:, 20:40, 20:40] += 60  # something to track
    prompts = {2: {1: dict(points=[(30, 30)])}, 20: {1: dict(box=(18, 18, 42, 42))}}
    session = PropagationSession(model, frame_source_for(stack), batch_size=batch_size)
    session.add_prompts(prompts)
    ours = {f: m[0] for f, _, m in session.propagate("both")}
    assert session.stored_frames(1) < 40

    every_frame = torch.stack([session.frames.prepare(i) for i in range(40)])
    with mock.patch.object(video_predictor, "load_video_frames", lambda **k: (every_frame, H, W)):
        state = model.init_state(video_path="in memory")
    with torch.inference_mode():
        model.add_new_points_or_box(state, 2, 1, points=[[30, 30]], labels=[1])
        model.add_new_points_or_box(state, 20, 1, box=[18, 18, 42, 42])
        stock = {f: m[0, 0].numpy() > 0 for f, _, m in model.propagate_in_video(state)}
        for f, _, m in model.propagate_in_video(state, reverse=True):
            stock[f] = m[0, 0].numpy() > 0
    for f in prompts:  # masks made from clicks or a box: kept in the box, small holes filled
        PromptSet.from_arguments(**prompts[f][1]).keep_inside_box(stock[f])
        fill_small_holes(stock[f])
    assert sorted(ours) == sorted(stock) == list(range(40))
    assert all((ours[f] == stock[f]).all() for f in range(40))
    session.close()


class FrameByFrameOnly:
    """An array-like (as zarr is to numpy) that refuses to be read whole."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        return self.array[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole stack was read")


def test_stacks_are_read_frame_by_frame(model, stack):
    lazy = FrameByFrameOnly(np.concatenate([stack] * 3))  # 36 frames: percentiles over 16
    session = PropagationSession(model, frame_source_for(lazy))
    session.add_prompts({0: {1: dict(points=[(30, 30)])}})
    assert len(list(session.propagate("forward"))) == 36


def test_second_run_while_one_runs_is_refused(model, stack):
    session = run_session(model, stack, {0: {1: dict(points=[(30, 30)])}})
    first = session.propagate("forward")
    next(first)
    with pytest.raises(SAM2Error, match="already running"):
        session.propagate("backward")
    with pytest.raises(SAM2Error, match="already running"):
        session.add_prompts({3: {2: dict(points=[(3, 3)])}})
    first.close()
    assert len(list(session.propagate("backward"))) == 1


def test_both_from_a_start_frame_yields_it_once_and_objects_can_be_removed(model, stack):
    session = run_session(
        model, stack, {3: {1: dict(points=[(30, 30)])}, 9: {2: dict(box=(5, 5, 30, 30))}}
    )
    steps = session.plan("both", start_frame=6)
    pairs = [(s.frame, o) for s in steps for o in s.object_ids]
    assert len(pairs) == len(set(pairs))
    assert [s.frame for s in steps if 1 in s.object_ids] == [6, 7, 8, 9, 10, 11]  # anchor 3 < 6
    assert [s.frame for s in steps if 2 in s.object_ids] == [6, 5, 4, 3, 2, 1, 0]  # anchor 9 > 6
    session.remove_object(2)
    assert session.object_ids == [1] and {i for _, ids, _ in session.propagate() for i in ids} == {
        1
    }


def test_streams_know_their_length_for_progress(segmenter, stack):
    stream = segmenter.propagate(stack, TWO_OBJECTS, "both")
    total = len(stream)
    assert total == 14 and len(list(stream)) == total
    session = run_session(segmenter.model, stack, {0: {1: dict(points=[(30, 30)])}})
    assert len(session.propagate("forward")) == 12


def test_object_ids_must_be_positive_and_fit_the_labels(model, stack):
    session = PropagationSession(model, frame_source_for(stack))
    for bad in (0, -3, 1.5):
        with pytest.raises(SAM2Error, match="positive integer"):
            session.add_prompts({0: {bad: dict(points=[(3, 3)])}})
    session.add_prompts({0: {300: dict(points=[(30, 30)])}})
    labels = np.zeros(stack.shape, np.uint8)
    with pytest.raises(SAM2Error, match="uint32"):
        list(write_labels(session.propagate("forward"), labels))
    assert not labels.any()


@pytest.mark.skipif(not MICRO.exists(), reason=f"{MICRO.name} is not packaged yet")
def test_prompted_frames_match_predict_with_the_packaged_micro_model(micro):
    """On the frames the user prompted, propagation gives what a click in the widget gives."""
    from napari_sam2.engine.synthetic import synthetic_clip

    frames, truth = synthetic_clip(4, (256, 256), n_cells=2, seed=3)
    clicks = {k: centre(truth[2] == k) for k in (1, 2)}
    session = micro.propagation_session(frames)
    session.add_prompts({2: {k: dict(points=[p]) for k, p in clicks.items()}})
    frame, ids, masks = next(iter(session.propagate("forward")))
    micro.set_image(frames[2])
    for k, mask in zip(ids, masks, strict=True):
        clicked = micro.predict(points=[clicks[k]])
        assert frame == 2 and iou(mask, clicked) > 0.95 and iou(mask, truth[2] == k) > 0.8, k


@needs_micro
def test_reliable_memory_finds_a_cell_again_after_a_long_absence(micro):
    """With doubtful frames kept out of memory, a cell away for 15 frames is found again
    (docs/propagation.md: with every frame remembered this clip loses it for good)."""
    from napari_sam2.engine.synthetic import synthetic_clip

    frames, truth = synthetic_clip(60, (192, 192), n_cells=3, seed=3, absent=(20, 35))
    labels = np.zeros(truth.shape, np.uint16)
    prompts = {0: {1: dict(points=[centre(truth[0] == 1)])}}
    stream = micro.propagate(frames, prompts, "forward", reliable_memory=True)
    list(write_labels(stream, labels))
    assert (stream.confidence[1][22:35] < 0.5).all()  # away: doubted, so not remembered
    back = [iou(labels[t] == 1, truth[t] == 1) for t in range(35, 60)]
    assert np.mean(back) > 0.5, back


@needs_micro
def test_a_region_of_large_frames_is_tracked_at_native_resolution(micro):
    """A 256² clip placed in 3072² frames: tracked in a region around it, the cell is found
    as in the small clip; the labels outside the region are never touched."""
    from napari_sam2.engine.synthetic import synthetic_clip

    clip, truth = synthetic_clip(5, (256, 256), n_cells=2, seed=3)
    frames = np.full((5, 3072, 3072), np.median(clip), clip.dtype)
    frames[:, 2000:2256, 1000:1256] = clip
    row, col = centre(truth[0] == 1)
    prompts = {0: {1: dict(points=[(2000 + row, 1000 + col)])}}
    limits = tuple(np.percentile(clip, [0.5, 99.8]))
    labels = np.full(frames.shape, 7, np.uint16)
    stream = micro.propagate(
        frames, prompts, "forward", contrast_limits=limits, roi=(1900, 900, 2356, 1356)
    )
    assert stream.region.shape == (456, 456)
    list(write_labels(stream, labels))
    assert (labels[:, :1900] == 7).all() and (labels[:, :, 1356:] == 7).all()
    small = np.zeros(truth.shape, np.uint16)
    list(write_labels(micro.propagate(clip, {0: {1: dict(points=[(row, col)])}}, "forward",
                                      contrast_limits=limits), small))  # fmt: skip
    for t in range(5):
        got = labels[t, 2000:2256, 1000:1256] == 1
        assert iou(got, truth[t] == 1) > 0.95 * iou(small[t] == 1, truth[t] == 1) - 0.02, t
