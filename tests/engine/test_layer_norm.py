"""The engine's channel layer norm gives sam2's values, and only while the engine runs."""

import pytest
import torch
from sam2.modeling.sam2_utils import LayerNorm2d

from napari_sam2.engine.layer_norm import (
    FewerPassLayerNorm2d,
    channels_last_norm,
    fewer_pass_norms,
    var_mean_norm,
)

from .test_video import downsampler_layer_types, small_video_model


def norm(channels: int) -> LayerNorm2d:
    torch.manual_seed(0)
    module = LayerNorm2d(channels)
    module.weight.data.uniform_(0.5, 1.5)
    module.bias.data.uniform_(-0.5, 0.5)
    return module


@pytest.mark.parametrize("form", [var_mean_norm, channels_last_norm])
def test_same_values_as_sam2s_norm(form):
    """The GPU's form and the CPU's (the module's on this machine), on 4 and 16 channels."""
    for channels in (4, 16):
        module = norm(channels)
        x = torch.randn(3, channels, 20, 24) * 4 + 2
        expected = module(x)
        got = form(x, module.weight, module.bias, module.eps)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        module.__class__ = FewerPassLayerNorm2d
        torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", [var_mean_norm, channels_last_norm])
def test_bfloat16_activations_stay_bfloat16(form):
    """sam2's float32 weights promote bfloat16 activations to float32 (twice the bytes for
    what follows); here the output keeps the input's dtype, within its rounding."""
    module = norm(4)
    x = torch.randn(2, 4, 32, 32) * 3
    expected = module(x)
    assert module(x.bfloat16()).dtype == torch.float32
    out = form(x.bfloat16(), module.weight, module.bias, module.eps)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.02, atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bfloat16_under_cuda_autocast():
    """Autocast runs rsqrt in float32 on a GPU; the norm's output stays bfloat16 all the same."""
    module = norm(4).cuda()
    x = torch.randn(2, 4, 32, 32, device="cuda") * 3
    expected = module(x)
    module.__class__ = FewerPassLayerNorm2d
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = module(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.02, atol=0.05)


def test_norms_swapped_only_while_a_run_lasts():
    model = small_video_model()
    norms = [m for m in model.modules() if isinstance(m, LayerNorm2d)]
    assert len(norms) >= 6  # memory encoder, mask decoder, prompt encoder
    with fewer_pass_norms(model):
        assert all(type(m) is FewerPassLayerNorm2d for m in norms)
    assert all(type(m) is LayerNorm2d for m in norms)

    assert downsampler_layer_types(model, 1) == {FewerPassLayerNorm2d}
    assert all(type(m) is LayerNorm2d for m in norms)  # sam2's own predictor gets sam2's
