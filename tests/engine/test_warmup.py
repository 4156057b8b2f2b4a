"""The accelerator warm-up runs the paths a user's first click and propagation take."""

from unittest import mock

from napari_sam2.engine.video import shown_masks, warmup

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
