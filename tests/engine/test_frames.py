"""Array → model frames: one normalisation per stack, channels, odd dtypes, laziness."""

import numpy as np
import pytest

from napari_sam2 import SAM2Error
from napari_sam2.engine.frames import (
    FrameSource,
    Normalization,
    select_channels,
    shrink_factor,
    to_model_frame,
)


def test_uint16_is_scaled_by_percentiles_not_full_range():
    rng = np.random.default_rng(1)
    image = (rng.random((64, 64)) * 1000 + 100).astype(np.uint16)  # a dim 16-bit image
    norm = Normalization.for_data(image)
    frame = to_model_frame(image, norm)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.float32
    assert frame.max() == pytest.approx(1.0) and frame.min() == pytest.approx(0.0)
    assert np.median(frame) > 0.3  # with 0-65535 scaling it would be ~0.01


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32])
def test_default_limits_are_numpys_percentiles(dtype):
    """8- and 16-bit data take their percentiles from a histogram: the same values as
    ``np.percentile`` (linear interpolation between ranks), including negative and odd counts."""
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.iinfo(np.int16)
    image = rng.integers(info.min // 3, info.max // 5, (37, 41)).astype(dtype)
    norm = Normalization.for_data(image)
    low, high = np.percentile(image.astype(np.float64), [0.5, 99.8])
    assert norm.low[0] == pytest.approx(low, abs=1e-9)
    assert norm.high[0] == pytest.approx(high, abs=1e-9)


def test_one_normalisation_for_the_whole_stack():
    stack = np.stack([np.full((8, 8), v, np.uint16) for v in (100, 200, 300, 400)])
    stack[:, 0, 0] = 0
    source = FrameSource(stack)
    means = [source[i][1:, 1:].mean() for i in range(4)]
    assert means[0] < means[1] < means[2] < means[3]  # per-frame min-max would make them equal


def test_contrast_limits_are_used_as_given():
    norm = Normalization.from_limits((100, 300))
    frame = to_model_frame(np.array([[100, 200, 300, 400]], np.uint16), norm)
    np.testing.assert_allclose(frame[0, :, 0], [0, 0.5, 1, 1])


@pytest.mark.parametrize("limits", [(5, 5), (10, 2), (0, np.inf), (1, 2, 3)])
def test_bad_contrast_limits(limits):
    with pytest.raises(SAM2Error):
        Normalization.from_limits(limits)


def test_rgba_drops_alpha_and_uint8_colour_uses_full_range():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 7
    plane = select_channels(rgba, -1, None)
    assert plane.shape == (4, 4, 3)
    frame = to_model_frame(plane, Normalization.for_data(rgba))
    np.testing.assert_allclose(frame[0, 0], [1, 0, 0])


def test_multichannel_picks_channels_into_rgb():
    data = np.stack([np.full((4, 4), i * 10, np.float32) for i in range(5)])  # (C, H, W)
    plane = select_channels(data, 0, [4, 1])
    frame = to_model_frame(plane, Normalization.from_limits((0, 40)))
    np.testing.assert_allclose(frame[0, 0], [1.0, 0.25, 0.0])
    with pytest.raises(SAM2Error, match="Pick 1 to 3 channels"):
        select_channels(data, 0, [0, 9])


def test_nan_and_inf_pixels_become_finite():
    image = np.array([[0.0, np.nan], [np.inf, 1.0]], np.float32)
    frame = to_model_frame(image, Normalization.for_data(image))
    assert np.isfinite(frame).all() and frame.min() >= 0 and frame.max() <= 1
    with pytest.raises(SAM2Error, match="no finite"):
        Normalization.for_data(np.full((3, 3), np.nan))


def test_huge_plane_is_shrunk_before_the_model():
    plane = np.zeros((5000, 300), np.uint8)
    assert shrink_factor(plane.shape) == 3
    assert to_model_frame(plane, Normalization.from_limits((0, 255))).shape == (1666, 100, 3)


def test_frame_source_reads_only_the_requested_frame():
    data = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)
    source = FrameSource(data, normalization=Normalization.from_limits((0, 210)))
    assert len(source) == 5 and source.plane_shape == (6, 7)
    np.testing.assert_allclose(source[2][..., 0], data[2] / 210, rtol=1e-6)

    import dask.array as da

    lazy = da.from_array(data, chunks=(1, 6, 7))
    source = FrameSource(lazy, normalization=Normalization.from_limits((0, 210)))
    np.testing.assert_allclose(source[4][..., 0], data[4] / 210, rtol=1e-6)
    with pytest.raises(IndexError):
        source[5]


def test_stack_without_two_spatial_axes_is_refused():
    with pytest.raises(SAM2Error, match="two spatial axes"):
        FrameSource(np.zeros((2, 3, 4, 5)))


@pytest.mark.parametrize(
    "plane, limits",
    [
        (np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500, [(200, 40000)]),
        (np.arange(12 * 10 * 3, dtype=np.uint8).reshape(12, 10, 3), [(0, 255)]),
        (np.linspace(-1, 3, 12 * 10 * 2).reshape(12, 10, 2), [(0, 1), (1, 2)]),
        (np.where(np.eye(12, 10) > 0, np.nan, 7.0).astype(np.float32), [(0, 10)]),
        (np.eye(12, 10, dtype=bool), [(0, 1)]),
    ],
    ids=["uint16", "rgb", "two-channel float64", "float with NaN", "bool"],
)
def test_frames_normalised_as_tensors_equal_the_numpy_frames(plane, limits):
    """Propagation normalises frames as torch tensors (on the GPU there): the model must see
    the same picture as through the numpy path that clicks use."""
    from napari_sam2.engine.frames import to_rgb, to_tensor

    norm = Normalization.from_limits(limits)
    as_tensor = to_rgb(norm.apply(to_tensor(plane)))
    np.testing.assert_allclose(as_tensor.numpy(), to_model_frame(plane, norm), atol=1e-6)


def test_a_device_without_antialiased_resize_resizes_on_the_cpu(monkeypatch):
    """MPS before torch 2.7 has no antialiased bilinear kernel (NotImplementedError): the
    frame must still reach the model, resized on the CPU exactly as on the device."""
    import torch

    from napari_sam2.engine import frames

    plane = (np.arange(40 * 60, dtype=np.uint16).reshape(40, 60) * 7) % 1000
    norm = Normalization.from_limits((0, 1000))
    expected = frames.model_input(plane, norm, 32, torch.device("cpu"))
    real = frames.F.interpolate

    def missing_on_the_device(x, **kwargs):
        if not missing_on_the_device.failed:
            missing_on_the_device.failed = True
            raise NotImplementedError("aten::_upsample_bilinear2d_aa is not implemented")
        return real(x, **kwargs)

    missing_on_the_device.failed = False
    monkeypatch.setattr(frames.F, "interpolate", missing_on_the_device)
    resized = frames.model_input(plane, norm, 32, torch.device("cpu"))
    assert missing_on_the_device.failed
    assert resized.shape == (3, 32, 32)
    torch.testing.assert_close(resized, expected)
