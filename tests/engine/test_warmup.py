"""The accelerator warm-up runs the paths a user's first click and propagation take."""

from unittest import mock

from napari_sam2.engine.video import shown_masks, warmup
from napari_sam2.engine.window import base_side, choose_window, whole_side

from .test_video import small_video_model


def test_the_warm_up_segments_a_click_in_a_window_as_on_a_large_field():
    """A click on a frame larger than ``whole_side`` is segmented in a window by the image
    path before tracking starts (``ShownMasks``); the warm-up runs that path once, so its
    kernels load with the model instead of at the user's first propagation (H200, a 512 input,
    512² frames: first mask 5-7 s without it, docs/performance.md)."""
    model = small_video_model()
    windowed = []
    predict_many = shown_masks.WindowedPlane.predict_many

    def spy(self, prompts):
        windowed.extend(prompts)
        return predict_many(self, prompts)

    with mock.patch.object(shown_masks.WindowedPlane, "predict_many", spy):
        warmup.warm_up(model)
    assert len(windowed) == 1


def test_the_warm_up_clicks_fill_every_batch_of_windows():
    """On CUDA each new batch shape costs cuDNN its plans on first use: the warm-up's clicks
    for 1, 2, 4 and 8 or more objects fall in as many windows (at most 8 are embedded
    together), for the packaged micro model's input and SAM2's."""
    for image_size in (512, 1024):
        side = max(whole_side(image_size) + 1, 2 * base_side(image_size))
        assert side > whole_side(image_size)
        for count, expected in ((1, 1), (2, 2), (4, 4), (8, 8), (64, 9)):
            clicks = warmup.spread_clicks(count, side)
            assert len(set(clicks)) == count
            windows = {
                choose_window((*c, c[0] + 1, c[1] + 1), (side, side), image_size) for c in clicks
            }
            assert len(windows) == expected, (image_size, count, windows)
