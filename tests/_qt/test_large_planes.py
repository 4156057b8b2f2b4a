"""A click on a plane larger than the model input: the view decides the scale, and says so.

Scales, levels and sizes are stated against the input size of the model loaded (1024 for the
packaged micro model), so that the tests hold for a model of another input size.
"""

import numpy as np
import pytest

from napari_sam2.layers.segmentation import field_of_view

from .driving import settle, start


def _input_size(widget) -> int:
    return widget.session.segmenter.model.image_size


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
    view = field_of_view(layer, session.plane_request().plane, viewer)
    assert view is not None and view[2] - view[0] > 3000  # the whole plane is on screen

    session.points_layer.add([[1200, 1200]])
    settle(widget, qtbot)
    size = _input_size(widget)
    assert widget.status.value == f"segmented on the field of view at 1:{3072 / size:.1f}"
    want = _expected(widget, image, layer, (1200, 1200), view)
    np.testing.assert_array_equal(session.labels_layer.data == 1, want)

    viewer.camera.center, viewer.camera.zoom = (2015, 2515), 4  # close up on the nucleus
    qtbot.wait(200)
    close = field_of_view(layer, session.plane_request().plane, viewer)
    assert close[2] - close[0] < size
    widget.object_button.native.click()
    session.points_layer.add([[2015, 2515]])
    settle(widget, qtbot)
    assert widget.status.value.startswith("segmented at native resolution")
    want = _expected(widget, image, layer, (2015, 2515), None)
    np.testing.assert_array_equal(
        session.labels_layer.data == 2, want & (session.labels_layer.data != 1)
    )


def test_zoomed_in_on_a_chunked_pyramid_native_pixels_are_segmented(shown_viewer_widget, qtbot):
    """napari reads a chunked multiscale layer in whole chunks, and its corner pixels are those
    chunks, not the view: a view narrower than the model input that crosses chunk borders is
    still segmented at native resolution, and a zoomed-out view as what is on screen."""
    import dask.array as da

    viewer, widget = shown_viewer_widget
    size = _input_size(widget)
    side, chunk = 4 * size, size // 2
    rng = np.random.default_rng(4)
    full = (rng.random((side, side)) * 300 + 200).astype(np.uint16)
    levels = [da.from_array(full, chunks=chunk), da.from_array(full[::4, ::4], chunks=chunk)]
    layer = viewer.add_image(levels, multiscale=True, contrast_limits=(200, 3500))
    session = start(widget, layer)
    plane = session.plane_request().plane
    height, width = viewer.canvas.viewbox_size(viewer.layers)
    # About 0.9 of the model input on screen, from a quarter of a chunk before a chunk border
    # (so it spans three chunks: more than the model input).
    centre = 2 * chunk - chunk // 4 + 0.45 * size
    viewer.camera.center, viewer.camera.zoom = (centre, centre), max(height, width) / (0.9 * size)
    qtbot.wait(300)
    view = field_of_view(layer, plane, viewer)
    seen = max(view[2] - view[0], view[3] - view[1])
    assert 0.85 * size < seen < size, view
    chunks = field_of_view(layer, plane)  # the layer's corner pixels: whole chunks
    assert max(chunks[2] - chunks[0], chunks[3] - chunks[1]) > size, chunks
    session.points_layer.add([[centre, centre]])
    settle(widget, qtbot)
    assert widget.status.value.startswith("segmented at native resolution")

    viewer.reset_view()
    qtbot.wait(300)
    view = field_of_view(layer, plane, viewer)
    assert view[2] - view[0] > 0.9 * side and view[3] - view[1] > 0.9 * side


def test_propagation_tracks_the_region_drawn_at_native_resolution(viewer_widget, qtbot):
    from napari_sam2.engine.video.stream import write_labels

    from .driving import propagate_and_wait

    viewer, widget = viewer_widget
    rng = np.random.default_rng(1)
    stack = (rng.random((3, 2048, 2048)) * 300 + 200).astype(np.uint16)
    stack[:, 1100:1140, 1100:1140] += 3000
    layer = viewer.add_image(stack)
    session = start(widget, layer)
    controls = widget.propagation
    viewer.dims.set_current_step(0, 0)
    session.points_layer.add([[0, 1120, 1120]])
    settle(widget, qtbot)
    assert f"shrunk to {_input_size(widget)}: draw a region" in controls.estimate.value

    controls.region_button.native.click()
    region = viewer.layers["SAM2 region"]
    assert region.mode == "add_rectangle"
    region.add_rectangles([[0, 1000, 1000], [0, 1000, 1299], [0, 1299, 1299], [0, 1299, 1000]])
    controls.update_estimate()
    assert "region 300 × 300 px at native resolution" in controls.estimate.value
    propagate_and_wait(widget, qtbot)

    want = np.zeros(stack.shape, np.int32)
    seg = session.segmenter
    stream = seg.propagate(
        stack,
        {0: {1: dict(points=[(1120, 1120)])}},
        "both",
        contrast_limits=session.intensities().limits,
        roi=(1000, 1000, 1300, 1300),
    )
    list(write_labels(stream, want, overwrite=False))
    labels = session.labels_layer.data
    np.testing.assert_array_equal(labels[:, 1000:1300, 1000:1300], want[:, 1000:1300, 1000:1300])
    # Beside the click's own mask on frame 0, nothing outside the region was written.
    np.testing.assert_array_equal(labels[1:], want[1:])
    assert not labels[1:, :1000].any()


def test_a_multiscale_layer_is_clicked_on_its_full_resolution_level(
    viewer_widget, qtbot, notifications
):
    import dask.array as da

    viewer, widget = viewer_widget
    # Twice the model input, and a level 1 half the model input: the view of the whole plane
    # is segmented on level 0.
    side = 2 * _input_size(widget)
    rng = np.random.default_rng(2)
    full = (rng.random((side, side)) * 300 + 200).astype(np.uint16)
    full[900:940, 900:940] += 3000
    levels = [da.from_array(full, chunks=512), da.from_array(full[::4, ::4], chunks=512)]
    layer = viewer.add_image(levels, multiscale=True, contrast_limits=(200, 3500))
    session = start(widget, layer)
    session.points_layer.add([[920, 920]])
    settle(widget, qtbot)
    assert widget.status.value == "segmented on the field of view at 1:2.0"  # no level named
    region = session.plane_request().region  # what the view decided, on level 0's pixels
    want = _expected(widget, full, layer, (920, 920), region)
    np.testing.assert_array_equal(session.labels_layer.data == 1, want)

    grown = viewer.add_image([full[::2, ::2], full], multiscale=True, name="levels grow")
    start(widget, grown)
    session.points_layer.add([[100, 100]])
    qtbot.waitUntil(lambda: any("disagree" in m for m in notifications), timeout=10_000)


class ReadRecorder:
    """A numpy array behind a lazy array's interface that records each index read from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads: list[tuple] = []

    def __getitem__(self, index):
        self.reads.append(index)
        return self.data[index]


@pytest.fixture(scope="module")
def pyramid():
    """A 3000 × 5001 plane with three cells ~550 px across and a 40 px nucleus, its truth,
    and three antialiased levels halving it, rounded up (factors 2.0 × 1.9996, ...)."""
    from skimage.draw import disk
    from skimage.transform import resize

    from napari_sam2.engine.synthetic import synthetic_cells

    full, truth = synthetic_cells((3000, 5001), n_cells=3, seed=5, radius=300)
    nucleus = np.zeros(full.shape, bool)
    nucleus[disk((600, 1000), 20)] = True
    full[nucleus] = np.median(full[truth > 0])
    levels = [full]
    for _ in range(3):
        shape = tuple(-(-n // 2) for n in levels[-1].shape)
        levels.append(resize(levels[-1], shape, preserve_range=True).astype(full.dtype))
    return levels, truth, nucleus


def test_zoomed_out_a_pyramid_is_read_at_a_coarse_level_zoomed_in_at_level_0_near_the_click(
    shown_micro_viewer_widget, qtbot, pyramid
):
    import dask.array as da

    from ..engine.masks import centre, iou

    viewer, widget = shown_micro_viewer_widget
    levels, truth, nucleus = pyramid
    level0 = ReadRecorder(levels[0])
    # napari rounds the view of a chunked level out to whole chunks: zoomed in below, the view
    # is two chunks wide, the model input.
    chunk = _input_size(widget) // 2
    data = [da.from_array(level0, chunks=chunk, asarray=False), *levels[1:]]
    layer = viewer.add_image(data, multiscale=True, contrast_limits=(1000, 35000))
    session = start(widget, layer)
    viewer.reset_view()
    qtbot.wait(200)  # the canvas has drawn: the whole plane is on screen
    level0.reads.clear()
    session.points_layer.add([centre(truth == 3)])  # the cell that touches no other
    settle(widget, qtbot, timeout=60_000)
    said, size = widget.status.value, _input_size(widget)
    assert said.startswith(f"segmented on the field of view at 1:{5001 / size:.1f}"), said
    # The coarsest level at least the model input wide: 2 (750 × 1251) at a 1024 input.
    coarsest = max(n for n, level in enumerate(levels) if level.shape[1] >= size)
    assert coarsest > 0 and said.endswith(f"(pyramid level {coarsest})"), said
    assert level0.reads == []  # not one chunk of the full-resolution level
    assert iou(session.labels_layer.data == 1, truth == 3) > 0.9

    viewer.camera.center, viewer.camera.zoom = (600, 1000), 4  # close up on the nucleus
    qtbot.wait(200)
    widget.object_button.native.click()
    level0.reads.clear()
    session.points_layer.add([[600, 1000]])
    settle(widget, qtbot, timeout=60_000)
    assert widget.status.value.startswith("segmented at native resolution")
    assert level0.reads  # the full-resolution level, only in chunks around the click
    for rows, cols in level0.reads:
        assert rows.start >= 600 - size and rows.stop <= 600 + size, rows
        assert cols.start >= 1000 - size and cols.stop <= 1000 + size, cols
    assert iou(session.labels_layer.data == 2, nucleus) > 0.7
