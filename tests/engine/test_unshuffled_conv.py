"""The mask downsampler's four-channel convolution computed on pixel blocks gives sam2's
values, and only while the engine runs."""

import pytest
import torch
from torch import nn

from napari_sam2.engine.unshuffled_conv import UnshuffledConv2d, blocked_conv, unshuffled_convs

from .test_video import downsampler_layer_types, small_video_model


def test_same_values_as_the_strided_convolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 16, 3, stride=2, padding=1)
    x = torch.randn(3, 4, 32, 40)
    torch.testing.assert_close(
        blocked_conv(x, conv.weight, conv.bias), conv(x), rtol=1e-5, atol=1e-5
    )


def test_on_the_cpu_the_layer_computes_as_it_is():
    """The block form is the slower one there (67 vs 22 ms for 32 objects at a 512 input)."""
    conv = nn.Conv2d(4, 16, 3, stride=2, padding=1)
    x = torch.randn(2, 4, 32, 40)
    expected = conv(x)
    conv.__class__ = UnshuffledConv2d
    assert torch.equal(conv(x), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_the_layer_computes_on_pixel_blocks():
    conv = nn.Conv2d(4, 16, 3, stride=2, padding=1).cuda()
    x = torch.randn(3, 4, 32, 40, device="cuda")
    expected = conv(x)
    conv.__class__ = UnshuffledConv2d
    torch.testing.assert_close(conv(x), expected, rtol=1e-4, atol=1e-4)
    odd = torch.randn(1, 4, 31, 40, device="cuda")  # no whole pixel blocks: computed as it is
    torch.testing.assert_close(conv(odd), nn.Conv2d.forward(conv, odd))


def test_only_the_four_channel_convolution_swapped_while_a_run_lasts():
    model = small_video_model()
    convs = [m for m in model.memory_encoder.mask_downsampler.modules() if type(m) is nn.Conv2d]
    with unshuffled_convs(model):
        assert [type(m) is UnshuffledConv2d for m in convs] == [c.in_channels == 4 for c in convs]
        assert sum(type(m) is UnshuffledConv2d for m in convs) == 1
    assert all(type(m) is nn.Conv2d for m in convs)

    assert downsampler_layer_types(model, 3) == {UnshuffledConv2d}
    assert all(type(m) is nn.Conv2d for m in convs)  # sam2's own predictor gets sam2's
