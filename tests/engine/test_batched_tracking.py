"""Objects tracked together in one batched step get the masks each gets when tracked alone.

Random weights at a 128-pixel model input (as in test_video.py): the masks mean nothing, but
they must be the same whichever way the objects are run.
"""

from unittest import mock

import numpy as np
import pytest
import torch

from napari_sam2.engine.holes import fill_small_holes
from napari_sam2.engine.prompts import PromptSet
from napari_sam2.engine.video import batching, tracking
from napari_sam2.engine.video import session as video_session
from napari_sam2.engine.video.batching import graph_limit, size_class
from napari_sam2.engine.video.reading import frame_source_for
from napari_sam2.engine.video.session import PropagationSession

from .test_video import small_video_model

H = W = 64


@pytest.fixture(scope="module")
def model():
    return small_video_model()


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    rng = np.random.default_rng(2)
    stack = (rng.random((14, H, W)) * 255).astype(np.uint8)
    stack[:, 20:40, 20:40] += 60
    return stack


def per_object_masks(stream) -> list[tuple[int, int, np.ndarray]]:
    """(frame, object id, mask) of each object of each item of a propagation stream."""
    return [(f, i, m) for f, ids, masks in stream for i, m in zip(ids, masks, strict=True)]


def passes_and_masks(model, stack, prompts, direction: str, per_object: bool):
    """Propagate ``prompts`` (objects tracked together or ``per_object``): the batch sizes of
    the model's frame passes before the first mask, each (frame, object, mask), and the
    confidences."""
    session = PropagationSession(model, frame_source_for(stack))
    session._per_object = per_object
    session.add_prompts(prompts)
    passes = []
    infer = model._run_single_frame_inference

    def counting(**kwargs):
        passes.append(kwargs["batch_size"])
        return infer(**kwargs)

    with mock.patch.object(model, "_run_single_frame_inference", counting):
        stream = iter(session.propagate(direction))
        first = next(stream)
        before_first = list(passes)
        rest = list(stream)
    return before_first, per_object_masks([first, *rest]), session.confidence


def annotate(model, stack, per_object: bool) -> tuple[list, dict, list[int]]:
    """Three objects prompted on frame 3 and one on frame 8, tracked both ways; a fifth added
    later on frame 6; then object 2 corrected on frame 6. Returns each yielded (run, frame,
    object, mask), the confidences, and the number of objects of each batched step."""
    session = PropagationSession(model, frame_source_for(stack))
    session._per_object = per_object
    session.add_prompts(
        {
            3: {
                1: dict(points=[(30, 30)]),
                2: dict(box=(5, 5, 25, 25)),
                3: dict(points=[(50, 12)]),
            },
            8: {4: dict(box=(30, 30, 60, 60))},
        }
    )
    batches = []

    def counting(model, states, *args, **kwargs):
        batches.append(len(states))
        return track_batch(model, states, *args, **kwargs)

    track_batch = tracking.track_batch
    fix = {2: dict(points=[(15, 15), (40, 40)], point_labels=[1, 0])}
    with mock.patch.object(tracking, "track_batch", counting):
        out = [("all", *x) for x in per_object_masks(session.propagate("both"))]
        session.add_prompts({6: {5: dict(points=[(10, 50)])}})
        out += [("added", *x) for x in per_object_masks(session.propagate("both", objects=[5]))]
        out += [("fix", *x) for x in per_object_masks(session.correct(6, fix))]
    return out, session.confidence, batches


def assert_annotated_alike(ours, confidence, theirs, their_confidence) -> None:
    """Two ``annotate`` results: the same runs, frames and objects, equal masks, and
    confidences equal up to float rounding."""
    assert [x[:3] for x in ours] == [x[:3] for x in theirs]
    for (*where, a), (*_, b) in zip(ours, theirs, strict=True):
        assert (a == b).all(), where
    for oid in their_confidence:
        np.testing.assert_allclose(confidence[oid], their_confidence[oid], atol=1e-5)


def test_batched_objects_get_the_masks_of_per_object_tracking(model, stack):
    batched, confidence, sizes = annotate(model, stack, per_object=False)
    alone, alone_confidence, alone_sizes = annotate(model, stack, per_object=True)
    assert max(sizes) == 3 and set(alone_sizes) == {1}  # the three on frame 3 went together
    assert len(sizes) < len(alone_sizes)
    # On this CPU the masks are equal; confidences differ in float rounding only.
    assert_annotated_alike(batched, confidence, alone, alone_confidence)
    # The correction re-ran only object 2; the later object joined without the others.
    assert {i for run, _, i, _ in batched if run == "fix"} == {2}
    assert {i for run, _, i, _ in batched if run == "added"} == {5}


def test_a_smaller_input_takes_more_objects_in_a_cuda_graph():
    """A step's GPU work goes with objects × image tokens: 16 objects at a 1024 input, four
    times as many at 512 (where 64 steps without graphs were bound by the host's launches)."""
    assert [graph_limit(small_video_model(side)) for side in (1024, 512, 128)] == [16, 64, 64]


def test_batches_padded_for_cuda_graphs_give_the_same_masks(model, stack):
    """While CUDA graphs replay the step, batches are padded to a size class (one graph per
    class): the padding changes no object's mask. (Run here without graphs, on the CPU.)"""
    assert [size_class(n, 16) for n in (1, 3, 5, 9, 16, 17)] == [1, 4, 8, 16, 16, None]
    unpadded, _, _ = annotate(model, stack, per_object=False)

    class FakeGraphs:
        def __init__(self, model, enabled):
            pass

        def __enter__(self):
            return ["a graph"]  # what makes a run pad its batches

        def __exit__(self, *exc):
            return False

    with mock.patch.object(video_session, "tracking_graphs", FakeGraphs):
        padded, _, sizes = annotate(model, stack, per_object=False)
    assert max(sizes) == 3  # the batch of three ran padded to four
    for (*where, ours), (*_, theirs) in zip(padded, unpadded, strict=True):
        assert (ours == theirs).all(), where


def test_same_masks_as_the_official_predictor_for_several_objects(model, stack):
    """Several objects prompted on one frame, tracked in one batch both ways, against sam2's own
    predictor holding every frame (which tracks them one by one)."""
    from sam2 import sam2_video_predictor

    prompts = {
        5: {1: dict(points=[(30, 30)]), 2: dict(box=(5, 5, 25, 25)), 3: dict(points=[(50, 12)])}
    }
    session = PropagationSession(model, frame_source_for(stack))
    session.add_prompts(prompts)
    ours = {(f, i): m for f, i, m in per_object_masks(session.propagate("both"))}

    every_frame = torch.stack([session.frames.prepare(i) for i in range(len(stack))])
    load = mock.patch.object(
        sam2_video_predictor, "load_video_frames", lambda **k: (every_frame, H, W)
    )
    with load:
        state = model.init_state(video_path="in memory")
    with torch.inference_mode():
        model.add_new_points_or_box(state, 5, 1, points=[[30, 30]], labels=[1])
        model.add_new_points_or_box(state, 5, 2, box=[5, 5, 25, 25])
        model.add_new_points_or_box(state, 5, 3, points=[[12, 50]], labels=[1])
        stock = {}
        for reverse in (False, True):
            for f, i, logits in per_object_masks(model.propagate_in_video(state, reverse=reverse)):
                stock[f, i] = logits[0].numpy() > 0
    for i in prompts[5]:  # masks made from clicks or a box: kept in the box, holes filled
        PromptSet.from_arguments(**prompts[5][i]).keep_inside_box(stock[5, i])
        fill_small_holes(stock[5, i])
    assert sorted(ours) == sorted(stock)
    for key, mask in stock.items():
        assert (ours[key] == mask).all(), key


def test_groups_larger_than_a_batch_are_split_without_changing_masks(model, stack):
    whole, _, _ = annotate(model, stack, per_object=False)
    with mock.patch.object(batching, "CPU_BATCH", 2):
        split, _, sizes = annotate(model, stack, per_object=False)
    assert max(sizes) == 2
    for (*where, ours), (*_, theirs) in zip(split, whole, strict=True):
        assert (ours == theirs).all(), where


def test_clicks_of_many_objects_on_a_frame_are_decoded_in_one_pass(model, stack):
    """Segment-everything-like prompting: six cells clicked once each on one frame (and a box)
    reach the first mask after one decoder pass for the clicks and one for the box, not seven,
    and every object's masks are those of prompting it alone."""
    prompts = {k: dict(points=[(8 + 8 * k, 10 + 7 * k)]) for k in range(1, 7)}
    prompts[7] = dict(box=(30, 30, 60, 60))
    passes, together, _ = passes_and_masks(model, stack, {2: prompts}, "forward", False)
    alone_passes, alone, _ = passes_and_masks(model, stack, {2: prompts}, "forward", True)
    assert passes == [6, 1] and alone_passes == [1] * 7
    assert [x[:2] for x in together] == [x[:2] for x in alone]
    for (frame, oid, ours), (*_, theirs) in zip(together, alone, strict=True):
        assert (ours == theirs).all(), (frame, oid)


def test_masks_of_many_objects_on_a_frame_are_given_in_one_pass(model, stack):
    """Segment everything → propagate: five objects given as masks on one frame reach the
    first mask after one pass for all five (sam2's ``add_new_mask`` makes one each), and every
    object is tracked as when it is given alone."""
    prompts = {}
    for k in range(1, 6):
        mask = np.zeros((H, W), bool)
        mask[6 + 10 * (k - 1) : 14 + 10 * (k - 1), 8 + 9 * k : 16 + 9 * k] = True
        prompts[k] = dict(mask=mask)
    passes, together, confidence = passes_and_masks(model, stack, {4: prompts}, "both", False)
    alone_passes, alone, alone_confidence = passes_and_masks(
        model, stack, {4: prompts}, "both", True
    )
    assert passes == [5] and alone_passes == [1] * 5
    assert [x[:2] for x in together] == [x[:2] for x in alone]
    for (frame, oid, ours), (*_, theirs) in zip(together, alone, strict=True):
        assert (ours == theirs).all(), (frame, oid)
    for oid in prompts:
        np.testing.assert_allclose(confidence[oid], alone_confidence[oid], atol=1e-5)
