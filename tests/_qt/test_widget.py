"""The dock widget as a user drives it: clicks and boxes become labels, per object and plane."""

import numpy as np
import pytest

from .driving import WIDGET, expected_mask, settle, start


def test_widget_opens_from_plugins_menu_and_shows_the_model(viewer_widget):
    viewer, widget = viewer_widget
    assert "sam2.1_hiera_micro" in widget.model_info.value
    assert "M parameters" in widget.model_info.value and "cpu" in widget.model_info.value
    assert "float32" in widget.model_info.value
    assert WIDGET[1] in [name for name, _ in viewer.window._dock_widgets.items()][0]


def test_click_writes_the_predicted_mask_with_the_object_id(viewer_widget, cells_image, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    session = start(widget, layer)
    labels = session.labels_layer
    assert labels.data.shape == cells_image.shape and not labels.data.any()
    session.points_layer.add([[30, 35]])
    want = expected_mask(widget, cells_image, layer, points=[(30, 35)])
    assert want.any()
    qtbot.waitUntil(lambda: (labels.data == 1).any(), timeout=30_000)
    np.testing.assert_array_equal(labels.data == 1, want)
    assert set(np.unique(labels.data)) <= {0, 1}


def test_box_on_shapes_layer_is_a_box_prompt(viewer_widget, cells_image, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    session = start(widget, layer)
    session.shapes_layer.add_rectangles([[18, 22], [41, 47]])
    want = expected_mask(widget, cells_image, layer, box=(18.5, 22.5, 41.5, 47.5))
    qtbot.waitUntil(lambda: (session.labels_layer.data == 1).any(), timeout=30_000)
    np.testing.assert_array_equal(session.labels_layer.data == 1, want)


def test_plane_of_a_scaled_stack(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(0)
    stack = (rng.random((5, 48, 64)) * 1000).astype(np.uint16)
    layer = viewer.add_image(stack, scale=(3, 0.5, 0.5), translate=(0, 10, -4))
    session = start(widget, layer)
    viewer.dims.set_current_step(0, 3)
    world = layer.data_to_world([3, 20, 30])
    session.points_layer.add([session.points_layer.world_to_data(world)])
    want = expected_mask(widget, stack[3], layer, points=[(20, 30)])
    labels = session.labels_layer
    qtbot.waitUntil(lambda: (labels.data == 1).any(), timeout=30_000)
    np.testing.assert_array_equal(labels.data[3] == 1, want)
    assert not np.delete(labels.data, 3, axis=0).any()
    np.testing.assert_allclose(labels.scale, layer.scale)
    np.testing.assert_allclose(labels.translate, layer.translate)


def test_new_object_and_editing_one_object_leaves_the_other(viewer_widget, cells_image, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    session = start(widget, layer)
    labels = session.labels_layer
    session.points_layer.add([[30, 35]])
    qtbot.waitUntil(lambda: (labels.data == 1).any(), timeout=30_000)
    widget.object_button.native.click()
    assert session.object_id == 2 and widget.object_id.value == 2
    session.points_layer.add([[5, 70]])
    qtbot.waitUntil(lambda: (labels.data == 2).any(), timeout=30_000)
    object2 = labels.data == 2
    assert not (object2 & (labels.data == 1)).any()

    # Move object 1's click: object 1 is recomputed, object 2 keeps every pixel.
    data = session.points_layer.data.copy()
    data[0] = [50, 10]
    session.points_layer.data = data
    settle(widget, qtbot)
    want = expected_mask(widget, cells_image, layer, points=[(50, 10)])
    np.testing.assert_array_equal(labels.data == 1, want & ~object2)
    np.testing.assert_array_equal(labels.data == 2, object2)


def test_masks_do_not_overwrite_other_objects_unless_asked(viewer_widget, cells_image, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    labels_layer = viewer.add_labels(np.zeros(cells_image.shape, np.int32))
    labels_layer.data[:, :40] = 9  # a user's object
    session = start(widget, layer, labels_layer)
    assert session.object_id == 10  # new ids start above those in use
    session.shapes_layer.add_rectangles([[0, 0], [63, 79]])
    qtbot.waitUntil(lambda: (labels_layer.data == 10).any(), timeout=30_000)
    assert (labels_layer.data[:, :40] == 9).all()

    widget.overwrite.value = True
    widget.object_button.native.click()
    session.shapes_layer.add_rectangles([[0, 0], [63, 79]])
    want = expected_mask(widget, cells_image, layer, box=(0.5, 0.5, 63.5, 79.5))
    qtbot.waitUntil(lambda: (labels_layer.data == 11).any(), timeout=30_000)
    np.testing.assert_array_equal(labels_layer.data == 11, want)


def test_ctrl_z_in_the_labels_layer_removes_a_mask(viewer_widget, cells_image, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    session = start(widget, layer)
    labels = session.labels_layer
    session.points_layer.add([[30, 35]])
    qtbot.waitUntil(lambda: (labels.data == 1).any(), timeout=30_000)
    labels.undo()
    assert not labels.data.any()


def test_negative_clicks_toggle(viewer_widget, cells_image, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    session = start(widget, layer)
    session.points_layer.add([[30, 35]])
    widget.polarity_button.native.click()
    assert "Negative" in widget.polarity_button.text
    session.points_layer.add([[32, 38]])
    features = session.points_layer.features
    assert list(features["positive"]) == [True, False]
    assert list(session.points_layer.symbol) == ["disc", "x"]  # a negative click is a cross
    want = expected_mask(
        widget, cells_image, layer, points=[(30, 35), (32, 38)], point_labels=[1, 0]
    )
    qtbot.waitUntil(lambda: np.array_equal(session.labels_layer.data == 1, want), timeout=30_000)
    # In select mode the toggle flips the selected point instead of the next click.
    session.points_layer.mode = "select"
    session.points_layer.selected_data = {1}
    session.toggle_polarity()
    assert list(session.points_layer.features["positive"]) == [True, True]


def test_revisiting_a_plane_does_not_re_embed(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    stack = (np.random.default_rng(1).random((3, 32, 32)) * 500).astype(np.uint16)
    layer = viewer.add_image(stack)
    session = start(widget, layer)
    seg = session.segmenter
    labels = session.labels_layer
    for z in (0, 1, 0):
        viewer.dims.set_current_step(0, z)
        session.points_layer.add([[z, 10 + z, 12]])
        settle(widget, qtbot)
    assert seg.session.embeddings_computed == 2
    assert labels.data[2].sum() == 0


def test_multichannel_layer_uses_the_chosen_channels(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(2)
    data = (rng.random((4, 40, 50)) * 100).astype(np.float32)  # (channel, y, x)
    layer = viewer.add_image(data)
    widget.image.value = layer
    widget.channel_axis.value = "0"
    widget.channels.value = "3,1"
    session = start(widget, layer)
    assert session.labels_layer.data.shape == (40, 50)
    session.points_layer.add([[0, 20, 25]])
    seg = session.segmenter
    seg.set_image(data, channel_axis=0, channels=[3, 1], contrast_limits=layer.contrast_limits)
    want = seg.predict(points=[(20, 25)])
    qtbot.waitUntil(lambda: (session.labels_layer.data == 1).any(), timeout=30_000)
    np.testing.assert_array_equal(session.labels_layer.data == 1, want)


def test_rgb_layer(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    rgba = np.random.default_rng(4).integers(0, 255, (40, 50, 4), dtype=np.uint8)
    layer = viewer.add_image(rgba, rgb=True)
    session = start(widget, layer)
    assert session.labels_layer.data.shape == (40, 50)
    session.points_layer.add([[20, 25]])
    settle(widget, qtbot)
    want = expected_mask(widget, rgba[..., :3], layer, points=[(20, 25)])
    np.testing.assert_array_equal(session.labels_layer.data == 1, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_other_dtypes(viewer_widget, qtbot, dtype):
    viewer, widget = viewer_widget
    image = (np.random.default_rng(5).random((30, 30)) * 200).astype(dtype)
    layer = viewer.add_image(image)
    session = start(widget, layer)
    session.points_layer.add([[15, 15]])
    settle(widget, qtbot)
    want = expected_mask(widget, image, layer, points=[(15, 15)])
    np.testing.assert_array_equal(session.labels_layer.data == 1, want)


def test_existing_label_as_mask_prompt(viewer_widget, cells_image, qtbot):
    viewer, widget = viewer_widget
    layer = viewer.add_image(cells_image)
    labels_layer = viewer.add_labels(np.zeros(cells_image.shape, np.int32))
    session = start(widget, layer, labels_layer)
    painted = np.zeros(cells_image.shape, bool)
    painted[22:38, 27:43] = True
    labels_layer.data[painted] = 1
    session.set_object(1)
    widget.refine_button.native.click()
    want = expected_mask(widget, cells_image, layer, mask=painted)
    qtbot.waitUntil(lambda: np.array_equal(labels_layer.data == 1, want), timeout=30_000)


def test_refining_an_object_without_pixels_says_so(viewer_widget, cells_image, notifications):
    viewer, widget = viewer_widget
    session = start(widget, viewer.add_image(cells_image))
    widget.refine_button.native.click()
    assert any("has no pixels" in m for m in notifications)
    assert not session.labels_layer.data.any()


def test_clicking_a_sample_cell_labels_that_cell(make_napari_viewer, qtbot):
    """With the packaged micro model, as in the demo: the label covers the clicked cell."""
    from napari_sam2.demo import cell_centres
    from napari_sam2.engine.synthetic import synthetic_cells
    from napari_sam2.sample_data import CELLS, cells

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    session = start(widget, viewer.add_image(cells()[0][0]))
    qtbot.waitUntil(lambda: session.segmenter is not None, timeout=60_000)
    _, truth = synthetic_cells(**CELLS)
    for k, point in enumerate(cell_centres(3), start=1):
        session.set_object(k)
        session.points_layer.add([point])
        settle(widget, qtbot)
        got, want = session.labels_layer.data == k, truth == k
        assert (got & want).sum() / (got | want).sum() > 0.8, k


def test_starting_on_another_image_keeps_the_first_images_layers(
    viewer_widget, cells_image, qtbot
):
    viewer, widget = viewer_widget
    first = viewer.add_image(cells_image, name="first")
    session = start(widget, first)
    session.points_layer.add([[30, 35]])
    settle(widget, qtbot)
    first_labels = session.labels_layer.data.copy()
    second = viewer.add_image(cells_image[:40, :50].copy(), name="second")
    start(widget, second)
    assert len(session.points_layer.data) == 0
    assert session.labels_layer.data.shape == (40, 50) and not session.labels_layer.data.any()
    kept = viewer.layers["SAM2 labels (first)"]
    np.testing.assert_array_equal(kept.data, first_labels)
    assert len(viewer.layers["SAM2 points (first)"].data) == 1


def test_only_clicks_that_embed_show_a_progress_bar(viewer_widget, qtbot):
    """A click on the plane just segmented takes milliseconds: a progress bar in napari's
    activity dock would cost the GUI thread more than the click."""
    from napari.utils import progress

    viewer, widget = viewer_widget
    stack = (np.random.default_rng(2).random((2, 32, 32)) * 500).astype(np.uint16)
    layer = viewer.add_image(stack)
    session = start(widget, layer)
    bars = []
    progress._all_instances.events.changed.connect(lambda event: bars.extend(event.added))
    for z, clicks in ((0, [(10, 12), (20, 22)]), (1, [(10, 12)])):
        viewer.dims.set_current_step(0, z)
        for row, col in clicks:
            session.points_layer.add([[z, row, col]])
            settle(widget, qtbot)
    assert [bar.desc for bar in bars] == ["SAM2: segmenting"] * 2
    assert session.segmenter.session.embeddings_computed == 2
    assert (session.labels_layer.data[0] > 0).any() and (session.labels_layer.data[1] > 0).any()


def test_clicks_on_a_dask_image_read_its_plane_once(viewer_widget, cells_image, qtbot):
    import dask.array as da

    viewer, widget = viewer_widget
    reads = []

    def read(block):
        reads.append(block.shape)
        return block

    lazy = da.from_array(np.stack([cells_image] * 3), chunks=(1, 32, 40)).map_blocks(read)
    layer = viewer.add_image(lazy, contrast_limits=(200, 3500))
    session = start(widget, layer)
    viewer.dims.set_current_step(0, 1)
    reads.clear()
    session.points_layer.add([[1, 30, 35]])
    settle(widget, qtbot)
    first = len(reads)
    session.points_layer.add([[1, 25, 30]])
    settle(widget, qtbot)
    assert (session.labels_layer.data[1] == 1).any()
    assert len(reads) == first  # the second click read nothing from the dask array
