"""Memory attention with its activations object by object (``object_major``) tracks as sam2's
own layout does. The engine lays them out so for batches larger than CUDA graphs take; here
the limit is lowered so that this CPU's batches of a few objects go that way."""

from unittest import mock

import torch

from napari_sam2.engine.video import object_major

from . import test_memory_keys
from .test_batched_tracking import annotate, assert_annotated_alike

model, stack = test_memory_keys.model, test_memory_keys.stack  # the same fixtures


def counted(calls: list):
    def noting(x):
        calls.append(tuple(x.shape))
        return relaid(x)

    relaid = object_major.object_major
    return mock.patch.object(object_major, "object_major", noting)


def test_a_token_major_view_of_object_major_memory():
    x = torch.arange(24.0).reshape(4, 3, 2).expand(4, 3, 2)  # (tokens, objects, channels)
    out = object_major.object_major(x)
    assert torch.equal(out, x)
    assert out.transpose(0, 1).is_contiguous()


def test_object_major_activations_give_sam2s_masks(model, stack):
    """Objects tracked together both ways, one added later, one corrected: the same masks and
    confidences with the activations object by object as in sam2's layout."""
    theirs, their_confidence, _ = annotate(model, stack, per_object=False)
    calls = []
    with mock.patch.object(object_major, "graph_limit", lambda model: 1), counted(calls):
        ours, confidence, sizes = annotate(model, stack, per_object=False)
    assert max(sizes) > 1 and calls  # batches of several objects went object by object
    assert all(shape[1] > 1 for shape in calls)  # and single objects as sam2 lays them out
    assert_annotated_alike(ours, confidence, theirs, their_confidence)


def test_batches_that_cuda_graphs_take_keep_sam2s_layout(model, stack):
    calls = []
    with counted(calls):
        annotate(model, stack, per_object=False)
    assert not calls
    assert type(model.memory_attention).__name__ == "MemoryAttention"  # after the run
