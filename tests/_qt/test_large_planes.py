"""A click on a plane larger than the model input: the view decides the scale, and says so."""

import numpy as np

from napari_sam2.layers.segmentation import field_of_view

from .driving import settle, start


def _expected(widget, image, layer, point, region):
    seg = widget.session.segmenter
    seg.set_image(image, contrast_limits=widget.session.intensities().limits)
    return seg.predict_crop(points=[point], region=region).full(image.shape)


def test_zoomed_out_segments_the_view_and_zoomed_in_native_pixels(shown_viewer_widget, qtbot):
    viewer, widget = shown_viewer_widget
    rng = np.random.default_rng(0)
    image = (rng.random((3072, 3072)) * 300 + 200).astype(np.uint16)
    image[1000:1400, 1000:1400] += 3000
    image[2000:2030, 2500:2530] += 3000  # a 30 px nucleus
    layer = viewer.add_image(image)
    session = start(widget, layer)
    viewer.reset_view()
    qtbot.wait(200)  # the canvas has drawn: the layer knows what is on screen
    view = field_of_view(layer, session.plane_request().plane)
    assert view is not None and view[2] - view[0] > 3000  # the whole plane is on screen

    session.points_layer.add([[1200, 1200]])
    settle(widget, qtbot)
    assert widget.status.value == "segmented on the field of view at 1:3.0"
    want = _expected(widget, image, layer, (1200, 1200), view)
    np.testing.assert_array_equal(session.labels_layer.data == 1, want)

    viewer.camera.center, viewer.camera.zoom = (2015, 2515), 4  # close up on the nucleus
    qtbot.wait(200)
    close = field_of_view(layer, session.plane_request().plane)
    assert close[2] - close[0] < 1024
    widget.object_button.native.click()
    session.points_layer.add([[2015, 2515]])
    settle(widget, qtbot)
    assert widget.status.value.startswith("segmented at native resolution")
    want = _expected(widget, image, layer, (2015, 2515), None)
    np.testing.assert_array_equal(
        session.labels_layer.data == 2, want & (session.labels_layer.data != 1)
    )
