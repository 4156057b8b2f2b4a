"""Where the model looks on a large plane: window choice for clicks, boxes and edges."""

import numpy as np
import pytest

from napari_sam2.engine.prompts import PromptSet
from napari_sam2.engine.window import (
    LevelWindow,
    MaskCrop,
    Window,
    choose_window,
    covering_window,
    in_windows,
    prompt_extent,
    whole_side,
)

SIZE = 1024  # the model's input side; the smallest window is 384 image pixels


def window_for(shape, **prompt):
    prompts = PromptSet.from_arguments(**prompt).validate(shape)
    return choose_window(prompt_extent(prompts), shape, SIZE), prompts


def holds(window, prompts) -> bool:
    r0, c0, r1, c1 = prompt_extent(prompts)
    rows, cols = window.slices
    return rows.start <= r0 and r1 <= rows.stop and cols.start <= c0 and c1 <= cols.stop


def test_a_click_gets_a_native_window_that_holds_it_away_from_inner_borders():
    shape = (4096, 4096)
    window, prompts = window_for(shape, points=[(1000, 2900)])
    assert (window.rows, window.cols, window.step) == (384, 384, 1)
    r, c = 1000, 2900
    assert window.row0 + 32 <= r < window.row0 + 384 - 32
    assert window.col0 + 32 <= c < window.col0 + 384 - 32
    # A click a few pixels away lands in the same window: its embedding is reused.
    assert window_for(shape, points=[(1010, 2890)])[0] == window


@pytest.mark.parametrize("point", [(0, 0), (4095, 4095), (4095, 0), (0, 4095)])
def test_prompts_on_the_far_edges_get_windows_inside_the_plane(point):
    window, prompts = window_for((4096, 4096), points=[point])
    assert holds(window, prompts)
    assert 0 <= window.row0 and window.row0 + window.rows <= 4096
    assert 0 <= window.col0 and window.col0 + window.cols <= 4096


def test_a_larger_box_gets_a_larger_window_read_at_most_twice_the_model_input():
    shape = (40_000, 20_000)
    window, prompts = window_for(shape, box=(10_000, 5_000, 13_000, 9_000))
    assert holds(window, prompts) and window.rows >= 3 * 4_000
    assert -(-window.rows // window.step) <= 2 * SIZE


def test_a_box_larger_than_the_image_gets_the_whole_image():
    shape = (3000, 1500)
    window, prompts = window_for(shape, box=(-500, -500, 9000, 9000))
    assert window.slices == (slice(0, 3000), slice(0, 1500)) and window.step == 2


def test_a_one_pixel_high_image_gets_a_one_row_window():
    shape = (1, 100_000)
    window, prompts = window_for(shape, points=[(0, 99_999)])
    assert window.slices == (slice(0, 1), slice(100_000 - 384, 100_000))


def test_a_field_of_view_is_used_as_the_window_and_grown_to_hold_the_prompts():
    shape = (8000, 8000)
    window = covering_window((1000, 1000, 3000, 2500), shape, SIZE)
    assert window.slices == (slice(1000, 3000), slice(1000, 2500)) and window.step == 1
    partly_outside = covering_window((7000, -300, 9000, 500), shape, SIZE)
    assert partly_outside.slices == (slice(7000, 8000), slice(0, 500))


def test_a_window_read_from_a_coarser_level_maps_prompts_and_masks_between_them():
    """A 1000 × 3000 plane and a level of 334 × 1000 (factors 2.994 and 3, as a pyramid of
    rounded-up halvings gives): what lies at a level pixel lies at the plane pixels it
    covers."""
    factors = (1000 / 334, 3.0)
    on_level = LevelWindow.covering(Window(100, 0, 800, 3000), factors, (334, 1000), SIZE)
    assert on_level.slices == (slice(100, 900), slice(0, 3000))
    assert on_level.read_slices == (slice(33, 301, 1), slice(0, 1000, 1))
    mask = np.zeros((1000, 3000), bool)
    mask[449:452, 1500:1503] = True  # plane pixels under level pixel (150, 500)
    local = on_level.local(PromptSet.from_arguments(points=[(450.1, 1501)], mask=mask))
    np.testing.assert_allclose(local.points, [[150 - 33, 500]], atol=0.01)
    assert np.argwhere(local.mask).tolist() == [[150 - 33, 500]]
    level_mask = np.zeros((268, 1000), bool)
    level_mask[150 - 33, 500] = True
    plane_mask = on_level.upscaled(level_mask)
    assert plane_mask.shape == (800, 3000)
    rows, cols = np.nonzero(plane_mask)
    assert (rows.min() + 100, rows.max() + 100) == (449, 451)  # centres in 449.1-452.1
    assert (cols.min(), cols.max()) == (1500, 1502)


def test_a_crop_is_trimmed_to_its_mask_and_pastes_back():
    mask = np.zeros((10, 12), bool)
    mask[3:5, 4:9] = True
    crop = MaskCrop(slice(20, 30), slice(40, 52), mask).trimmed()
    assert crop.rows == slice(23, 25) and crop.cols == slice(44, 49) and crop.mask.all()
    full = crop.full((50, 60))
    assert full.sum() == 10 and full[23:25, 44:49].all()


def test_clicks_on_a_plane_over_twice_the_smallest_window_get_a_window_boxes_do_not():
    """Resized whole, a 1024² plane shows its objects at their own size, too small for a click
    (a box says the extent): clicks alone get a window there, boxes and masks the whole plane;
    on a plane larger than the model input everything gets a window."""
    click = PromptSet.from_arguments(points=[(10, 10)])
    clicks = PromptSet.from_arguments(points=[(10, 10), (20, 20)], point_labels=[1, 0])
    box = PromptSet.from_arguments(points=[(10, 10)], box=(0, 0, 30, 30))
    mask = PromptSet.from_arguments(points=[(10, 10)], mask=np.ones((1024, 1024), bool))
    assert whole_side(1024) == 768 and whole_side(512) == 384
    assert not in_windows(click, (768, 768), 1024)
    assert in_windows(click, (769, 300), 1024) and in_windows(clicks, (1024, 1024), 1024)
    assert not in_windows(box, (1024, 1024), 1024) and not in_windows(mask, (1024, 1024), 1024)
    assert in_windows(box, (1025, 1025), 1024)
    assert in_windows(click, (512, 512), 512) and not in_windows(click, (384, 384), 512)
