"""On a CPU the memory encoder encodes a batch's objects one at a time, with the batch's values,
and only while the engine runs."""

import numpy as np
import torch
from sam2.modeling.memory_encoder import MemoryEncoder

from napari_sam2.engine.memory_encoder import OneByOneMemoryEncoder
from napari_sam2.engine.video.faster import faster_forms
from napari_sam2.engine.video.reading import frame_source_for
from napari_sam2.engine.video.session import PropagationSession

from .test_video import small_video_model


def test_one_by_one_gives_the_batchs_values():
    model = small_video_model()
    encoder = model.memory_encoder
    torch.manual_seed(0)
    feats = torch.randn(3, model.hidden_dim, 8, 8)
    masks = torch.randn(3, 1, 128, 128) * 4
    with torch.inference_mode():
        expected = encoder(feats, masks)
        sizes = []
        hook = encoder.mask_downsampler.register_forward_hook(
            lambda module, args, out: sizes.append(len(args[0]))
        )
        encoder.__class__ = OneByOneMemoryEncoder
        got = encoder(feats, masks)
        encoder.__class__ = MemoryEncoder
        hook.remove()
    assert sizes == [1, 1, 1]
    torch.testing.assert_close(got["vision_features"], expected["vision_features"])
    torch.testing.assert_close(got["vision_pos_enc"][0], expected["vision_pos_enc"][0])


def test_objects_encoded_one_by_one_only_while_a_run_lasts():
    model = small_video_model()
    sizes = []
    model.memory_encoder.mask_downsampler.register_forward_hook(
        lambda module, args, out: sizes.append(len(args[0]))
    )
    stack = (np.random.default_rng(0).random((4, 64, 64)) * 255).astype(np.uint8)
    session = PropagationSession(model, frame_source_for(stack))
    session.add_prompts({0: {k: dict(points=[(10 + 12 * k, 30)]) for k in (1, 2, 3)}})
    assert len(list(session.propagate("forward"))) == 4
    assert sizes and set(sizes) == {1}
    assert type(model.memory_encoder) is MemoryEncoder
    with faster_forms(model):
        assert type(model.memory_encoder) is OneByOneMemoryEncoder
    assert type(model.memory_encoder) is MemoryEncoder
