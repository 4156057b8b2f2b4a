"""Background replacement checked pixel by pixel against the masks; mp4 and TIFF export."""

import numpy as np
import pytest
import tifffile

from napari_sam2 import SAM2Error
from napari_sam2.background import (
    export_replaced,
    iter_replaced,
    lazy_replaced,
    replace_frame,
)


@pytest.fixture
def video():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4000, (4, 24, 30), dtype=np.uint16)
    labels = np.zeros((4, 24, 30), np.int32)
    for t in range(4):
        labels[t, 5:15, 4 + t : 14 + t] = 1
        labels[t, 18:22, 20:28] = 2
    return frames, labels


def test_colour_background_keeps_object_pixels(video):
    frames, labels = video
    out = list(iter_replaced(frames, labels, mode="color", color=123))
    for t, frame in enumerate(out):
        objects = labels[t] > 0
        assert frame.dtype == np.uint16
        assert np.array_equal(frame[objects], frames[t][objects])
        assert (frame[~objects] == 123).all()
    kept = replace_frame(frames[0], labels[0], color=7, keep=[2])
    assert (kept[labels[0] == 1] == 7).all()
    assert np.array_equal(kept[labels[0] == 2], frames[0][labels[0] == 2])


def test_blur_and_other_image_and_video(video):
    from skimage.filters import gaussian

    frames, labels = video
    objects = labels[1] > 0
    blurred = replace_frame(frames[1], labels[1], mode="blur", sigma=2)
    expected = np.round(gaussian(frames[1].astype(np.float32), 2, preserve_range=True))
    assert np.array_equal(blurred[~objects], expected[~objects].astype(np.uint16))
    assert np.array_equal(blurred[objects], frames[1][objects])

    backdrop = np.full((24, 30), 999, np.uint16)
    other_video = np.stack([np.full((24, 30), v, np.uint16) for v in (10, 20)])
    for t, frame in enumerate(iter_replaced(frames, labels, mode="image", other=backdrop)):
        assert (frame[labels[t] == 0] == 999).all()
    for t, frame in enumerate(iter_replaced(frames, labels, mode="image", other=other_video)):
        assert (frame[labels[t] == 0] == (10, 20)[t % 2]).all()  # a shorter video loops


def test_rgb_frames_and_static_labels():
    rgb = np.random.default_rng(3).integers(0, 255, (2, 10, 12, 3), dtype=np.uint8)
    labels = np.zeros((10, 12), np.int32)
    labels[2:6, 3:9] = 4
    for t, frame in enumerate(iter_replaced(rgb, labels, color=(0, 255, 0))):
        assert np.array_equal(frame[labels == 4], rgb[t][labels == 4])
        assert (frame[labels == 0] == (0, 255, 0)).all()
    small = np.full((5, 6, 3), 50, np.uint8)  # resized to the frame
    frame = replace_frame(rgb[0], labels, mode="image", other=small)
    assert (frame[labels == 0] == 50).all()


def test_lazy_array_equals_the_generator(video):
    frames, labels = video
    lazy = lazy_replaced(frames, labels, mode="blur", sigma=1.5)
    assert lazy.shape == frames.shape and lazy.dtype == frames.dtype
    eager = np.stack(list(iter_replaced(frames, labels, mode="blur", sigma=1.5)))
    assert np.array_equal(lazy[2].compute(), eager[2])
    assert np.array_equal(lazy.compute(), eager)


def test_export_tiff_stack_and_mp4(tmp_path, video):
    import av

    frames, labels = video
    tif = export_replaced(frames, labels, tmp_path / "out.tif", color=0)
    assert np.array_equal(tifffile.imread(tif), np.where(labels > 0, frames, 0))
    bright = np.where(labels > 0, 60000, 0).astype(np.uint16)  # a clear picture for a lossy codec
    mp4 = export_replaced(bright, labels, tmp_path / "out.mp4", fps=5, color=0)
    with av.open(str(mp4)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 4 and decoded[0].shape == (24, 30, 3)
    for t, frame in enumerate(decoded):
        gray = frame.mean(axis=-1)
        assert gray[labels[t] > 0].mean() > 200 and gray[labels[t] == 0].mean() < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "out.tif"]


def test_bad_inputs(video):
    frames, labels = video
    with pytest.raises(SAM2Error, match="one per channel"):
        replace_frame(frames[0], labels[0], color=(1, 2, 3))
    with pytest.raises(SAM2Error, match="needs other"):
        replace_frame(frames[0], labels[0], mode="image")
    with pytest.raises(SAM2Error, match="label frames"):
        list(iter_replaced(frames, labels[:2]))
    with pytest.raises(SAM2Error, match="use a .mp4, .tif"):
        export_replaced(frames, labels, "out.avi")
