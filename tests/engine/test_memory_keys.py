"""Memory attention with each memory frame's keys and values kept (``memory_keys``) tracks as
sam2's own memory attention does. The engine keeps them on a GPU only; here they are switched
on for the CPU, where the masks must come out equal.
"""

from unittest import mock

import numpy as np
import pytest

from napari_sam2.engine.video import memory_keys, tracking
from napari_sam2.engine.video.reading import frame_source_for
from napari_sam2.engine.video.session import PropagationSession

from .test_batched_tracking import annotate, assert_annotated_alike
from .test_video import small_video_model


@pytest.fixture(scope="module")
def model():
    return small_video_model()


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    rng = np.random.default_rng(5)
    stack = (rng.random((16, 64, 64)) * 255).astype(np.uint8)
    stack[:, 10:30, 25:45] += 70
    return stack


def kept_keys(enabled: bool):
    return mock.patch.object(tracking, "fits", lambda model, objects, prompted: enabled)


def test_kept_keys_give_the_masks_and_confidences_of_sam2s_attention(model, stack):
    """Objects tracked together both ways, one added later, one corrected: the same masks with
    kept keys as without, and later frames did take the keys kept on earlier ones."""
    reused = []
    kept = memory_keys._kept

    def noting(attention, index, sources, *args):
        reused.append(all(memory_keys.KEY in s and index in s[memory_keys.KEY] for s in sources))
        return kept(attention, index, sources, *args)

    with kept_keys(True), mock.patch.object(memory_keys, "_kept", noting):
        ours, confidence, _ = annotate(model, stack, per_object=False)
    with kept_keys(False):
        theirs, their_confidence, _ = annotate(model, stack, per_object=False)
    assert sum(reused) > len(reused) / 2  # most memory frames of a step were kept ones
    assert_annotated_alike(ours, confidence, theirs, their_confidence)


def test_kept_keys_stay_within_the_frames_attended_to(model, stack):
    """Over a long run an object keeps keys for its prompted frame and the last few frames
    only, however many frames its state still holds for their object pointers."""
    session = PropagationSession(model, frame_source_for(stack))
    session.add_prompts({0: {1: dict(points=[(35, 20)]), 2: dict(box=(2, 40, 20, 60))}})
    with kept_keys(True):
        frames = list(session.propagate("forward"))
    assert len(frames) == len(stack)
    for oid in (1, 2):
        outputs = session._states[oid]["output_dict_per_obj"][0]
        tracked = outputs["non_cond_frame_outputs"]
        keeping = [f for f, out in tracked.items() if memory_keys.KEY in out]
        assert len(tracked) > model.num_maskmem
        assert len(keeping) <= model.num_maskmem - 1
        assert min(keeping) > len(stack) - model.num_maskmem
        assert memory_keys.KEY in outputs["cond_frame_outputs"][0]


def test_no_keys_kept_on_a_cpu(model):
    assert memory_keys.usable(model)
    assert not memory_keys.fits(model, 1, 1)


def test_keys_are_kept_for_tiny_and_not_for_a_model_that_skips_frames():
    """tiny's cross-attention (256 wide, as every official model's) keeps its keys; a model
    whose memories sam2 numbers otherwise (a temporal stride of 2) runs as sam2's."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from napari_sam2.engine import models

    spec = models.model_spec("sam2.1_hiera_tiny")
    cfg = OmegaConf.load(models.config_path(spec))
    tiny = instantiate(cfg.model.memory_attention, _recursive_=True)
    model = mock.Mock(memory_temporal_stride_for_eval=1, max_cond_frames_in_attn=-1)
    model.memory_attention = tiny
    assert memory_keys.usable(model)
    model.memory_temporal_stride_for_eval = 2
    assert not memory_keys.usable(model)
