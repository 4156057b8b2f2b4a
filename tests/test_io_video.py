"""Lazy video reading with PyAV: exact frames, seeking both ways, bounded cache, bad files."""

import numpy as np
import pytest

from napari_sam2 import SAM2Error
from napari_sam2.io.video import VideoFile, napari_get_reader

av = pytest.importorskip("av")

N, H, W = 30, 48, 64


def frame_image(i: int) -> np.ndarray:
    """Frame ``i``: its red channel encodes ``i`` (8 grey levels apart), plus a moving bar."""
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = (8 * i) % 256
    img[10:20, 2 * i % W] = 255
    return img


def write_video(path, codec: str = "libx264", n: int = N, gop: int = 8) -> str:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.gop_size = W, H, gop
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "5", "bf": "2"}  # B-frames: decode order ≠ display order
        for i in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame_image(i), "rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


def decode_all(path: str) -> list[np.ndarray]:
    """Every frame, decoded straight through: the reference for random access."""
    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def frame_number(frame: np.ndarray) -> int:
    return int(round(float(np.median(frame[25:, :, 0])) / 8))


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> str:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.mark.parametrize(
    "suffix, codec", [(".mp4", "libx264"), (".avi", "mpeg4"), (".mov", "mjpeg")]
)
def test_every_frame_in_order_forward_backward_and_random(tmp_path, suffix, codec):
    path = write_video(tmp_path / f"clip{suffix}", codec)
    truth = decode_all(path)
    video = VideoFile(path, cache_bytes=4 * H * W * 3)
    assert video.shape == (N, H, W, 3) and video.dtype == np.uint8 and video.ndim == 4
    assert video.cache_size == 4 and len(truth) == N
    for order in (range(N), reversed(range(N)), (17, 3, 29, 0, 11, -1, 12, 12, 5)):
        for i in order:
            assert (video[i] == truth[i]).all(), i
    if codec == "libx264":  # near-lossless: the pixels say which frame it is
        assert [frame_number(video[i]) for i in range(N)] == list(range(N))
    assert len(video._cache) <= video.cache_size  # never the whole file


def test_forward_reading_decodes_each_frame_once(mp4):
    video = VideoFile(mp4, cache_bytes=2 * H * W * 3)
    for i in range(N):
        video[i]
    assert video.frames_decoded == N


def test_numpy_style_indexing(mp4):
    video = VideoFile(mp4)
    assert video[2:5].shape == (3, H, W, 3)
    assert video[[1, 4]].shape == (2, H, W, 3)
    assert video[3, :5, :6, 0].shape == (5, 6)
    assert video[..., 0].shape == (N, H, W)
    assert np.take(video, 4, axis=0).shape == (H, W, 3)
    assert video[0:0].shape == (0, H, W, 3)
    with pytest.raises(IndexError):
        video[N]


def test_reader_contribution(mp4, tmp_path):
    reader = napari_get_reader(mp4)
    [(data, meta, kind)] = reader(mp4)
    assert kind == "image" and meta["rgb"] is True and meta["name"] == "clip"
    assert isinstance(data, VideoFile) and data.shape == (N, H, W, 3)
    assert meta["metadata"]["fps"] == pytest.approx(10)
    assert napari_get_reader([mp4]) is reader
    assert napari_get_reader(str(tmp_path / "image.tif")) is None
    assert napari_get_reader([mp4, mp4]) is None


def test_corrupt_truncated_and_missing_files(tmp_path, mp4):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 40)
    with pytest.raises(SAM2Error, match="corrupt"):
        VideoFile(garbage)
    data = open(mp4, "rb").read()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SAM2Error, match="corrupt|no video"):
        VideoFile(truncated)
    with pytest.raises(SAM2Error, match="does not exist"):
        VideoFile(tmp_path / "missing.mov")


def test_video_propagates_like_any_stack(mp4):
    """A VideoFile feeds the engine's FrameSource frame by frame (uint8 RGB: 0-255)."""
    from napari_sam2.engine.video.reading import ModelFrames, frame_source_for

    video = VideoFile(mp4)
    source = frame_source_for(video)
    assert source.channel_axis == 3 and len(source) == N
    assert source.normalization.low == (0.0,) and source.normalization.high == (255.0,)
    frames = ModelFrames(source, image_size=32)
    assert frames[5].shape == (3, 32, 32)
    frames.close()


def test_manifest_declares_the_reader():
    npe2 = pytest.importorskip("npe2")
    from importlib.resources import files

    manifest = npe2.PluginManifest.from_file(str(files("napari_sam2") / "napari.yaml"))
    [reader] = manifest.contributions.readers
    command = next(c for c in manifest.contributions.commands if c.id == reader.command)
    assert command.python_name == "napari_sam2.io.video:napari_get_reader"
    assert {"*.mp4", "*.avi", "*.mov"} <= set(reader.filename_patterns)


def test_io_imports_no_napari_or_qt():
    import subprocess
    import sys

    code = (
        "import sys, napari_sam2.io.video, napari_sam2.measure; "
        "assert not {'napari', 'qtpy', 'PyQt6'} & set(sys.modules), 'GUI module imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_napari_shows_a_video_layer_decoding_only_what_it_shows(tmp_path):
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    path = write_video(tmp_path / "long.mp4", n=60, gop=10)
    [(data, meta, kind)] = napari_get_reader(path)(path)
    viewer = ViewerModel()
    layer = viewer.add_image(data, **meta)
    assert layer.rgb and layer.data.shape == (60, H, W, 3)
    viewer.dims.set_point(0, 55)
    layer.refresh()
    assert data.frames_decoded < 60 and len(data._cache) <= data.cache_size
