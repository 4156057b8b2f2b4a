"""Object extraction and background replacement from the widget, checked pixel-wise."""

import numpy as np

from .driving import start


def _annotated(viewer_widget, data):
    viewer, widget = viewer_widget
    layer = viewer.add_image(data)
    session = start(widget, layer)
    labels = np.zeros(session.labels_layer.data.shape, np.int32)
    labels[..., 5:15, 6:20] = 1
    labels[..., 20:30, 25:35] = 2
    session.labels_layer.data = labels
    return viewer, widget, labels


def test_extract_objects_as_transparent_layers(viewer_widget):
    image = (np.random.default_rng(0).random((40, 50)) * 1000).astype(np.uint16)
    viewer, widget, labels = _annotated(viewer_widget, image)
    widget.apps.extract_button.native.click()
    crop = viewer.layers["object 2"]
    assert crop.data.shape == (10, 10, 4)
    np.testing.assert_array_equal(crop.data[..., 0], image[20:30, 25:35])
    assert (crop.data[..., 3] > 0).all()
    np.testing.assert_allclose(crop.translate, [20, 25])


def test_background_replaced_by_a_colour(viewer_widget):
    image = (np.random.default_rng(1).random((40, 50)) * 1000 + 10).astype(np.uint16)
    viewer, widget, labels = _annotated(viewer_widget, image)
    widget.apps.color.value = 0
    widget.apps.replace_button.native.click()
    replaced = np.asarray(viewer.layers["SAM2 background replaced"].data)
    np.testing.assert_array_equal(replaced[labels > 0], image[labels > 0])
    assert (replaced[labels == 0] == 0).all()


def test_export_replaced_video(viewer_widget, qtbot, tmp_path):
    import av

    frames = (np.random.default_rng(2).random((4, 40, 48)) * 200).astype(np.uint8)
    viewer, widget, labels = _annotated(viewer_widget, frames)
    widget.apps.mode.value = "blur"
    widget.apps.video_path.value = tmp_path / "out.mp4"
    widget.apps.export_button.native.click()
    qtbot.waitUntil(lambda: widget.apps.worker is None, timeout=60_000)
    with av.open(str(tmp_path / "out.mp4")) as video:
        assert sum(1 for _ in video.decode(video=0)) == 4
