"""Segmenter wiring with random weights: shapes, cache hits, prompt checks (no quality claims)."""

import numpy as np
import pytest
import torch

from napari_sam2 import SAM2Error
from napari_sam2.engine.holes import fill_small_holes
from napari_sam2.engine.prompts import PromptSet


def test_info_reports_model_device_dtype(random_segmenter):
    info = random_segmenter.info
    assert info["model"] == "sam2.1_hiera_micro"
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    assert 1_000_000 < info["parameters"] < 2_000_000


def test_mask_has_image_shape_and_embedding_is_cached(random_segmenter, gray_image):
    seg = random_segmenter
    seg.set_image(gray_image)
    before = seg.session.embeddings_computed
    mask = seg.predict(points=[(40, 60)])
    assert mask.shape == gray_image.shape and mask.dtype == bool
    seg.set_image(gray_image.copy())  # same pixels: no new embedding
    seg.predict(points=[(40, 60)], point_labels=[1])
    assert seg.session.embeddings_computed == before
    seg.set_image(gray_image, contrast_limits=(0, 10_000))  # another normalisation: re-embed
    assert seg.session.embeddings_computed == before + 1


def test_an_edited_pixel_is_embedded_again(random_segmenter, gray_image):
    """The cache is keyed by the pixels: a plane edited in place must not reuse its old
    embedding (napari layers' data can be changed in place)."""
    seg = random_segmenter
    seg.set_image(gray_image)
    before = seg.session.embeddings_computed
    gray_image[50, 70] += 1
    seg.set_image(gray_image)
    assert seg.session.embeddings_computed == before + 1


def test_all_prompt_kinds_are_accepted(random_segmenter, gray_image):
    seg = random_segmenter
    seg.set_image(gray_image)
    box_mask = seg.predict(box=(10, 20, 60, 90))
    both = seg.predict(points=[(30, 50), (5, 5)], point_labels=[1, 0], box=(10, 20, 60, 90))
    from_mask = seg.predict(mask=box_mask)
    for mask in (box_mask, both, from_mask):
        assert mask.shape == gray_image.shape


def test_embedding_is_the_official_predictors(random_segmenter, gray_image):
    """The engine prepares the encoder's input with torch (on the GPU there) and runs the
    encoder itself: its features must be those of SAM2's ``set_image`` on the same frame
    (sam2's predictor told the feature sizes of the model's input, as the engine tells it)."""
    from napari_sam2.engine.image import image_predictor

    seg = random_segmenter
    seg.set_image(gray_image)
    ours, hw = seg.session.embedding()
    official = image_predictor(seg.model)
    with torch.inference_mode():
        official.set_image(seg.current_frame())
    assert hw == official._orig_hw[0] == gray_image.shape
    theirs = official._features
    for a, b in zip(
        [ours["image_embed"], *ours["high_res_feats"]],
        [theirs["image_embed"], *theirs["high_res_feats"]],
        strict=True,
    ):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "points, labels, box",
    [([(40, 60)], [1], None), (None, None, (10, 20, 60, 90)), ([(30, 50), (5, 5)], [1, 0], None)],
)
def test_mask_is_the_official_predictors_best(random_segmenter, gray_image, points, labels, box):
    """Our click path picks the mask on the device; it must be the one SAM2's own ``predict``
    ranks first (one click: three proposals, of which the decoder hands out the one it keeps;
    otherwise one), kept inside its box and with its small holes filled."""
    seg = random_segmenter
    seg.set_image(gray_image)
    ours = seg.predict(points=points, point_labels=labels, box=box)
    xy = None if points is None else np.array(points, np.float32)[:, ::-1].copy()
    xyxy = None if box is None else np.array(box, np.float32)[[1, 0, 3, 2]]
    with torch.inference_mode():
        masks, scores, _ = seg.session.predictor.predict(
            xy,
            None if labels is None else np.array(labels),
            xyxy,
            multimask_output=points is not None and len(points) == 1 and box is None,
        )
    official = masks[np.argmax(scores)] > 0
    assert 0 < official.sum() < official.size  # a real mask, not an empty or full one
    PromptSet.from_arguments(points, labels, box).keep_inside_box(official)
    fill_small_holes(official)
    np.testing.assert_array_equal(ours, official)


def test_a_box_bounds_its_mask_but_not_its_positive_clicks():
    """A mask that fills the image keeps the pixels whose centres lie in the box (napari's
    rectangle from pixel 2 to pixel 5 is the box 2.5..5.5), widened to a positive click
    outside it, not to a negative one."""
    mask = np.ones((10, 10), bool)
    box = PromptSet.from_arguments(box=(2.5, 3.5, 5.5, 7.5))
    assert box.keep_inside_box(mask) == 100 - 4 * 5
    assert np.array_equal(np.argwhere(mask.any(1)).ravel(), [2, 3, 4, 5])
    assert np.array_equal(np.argwhere(mask.any(0)).ravel(), [3, 4, 5, 6, 7])

    mask = np.ones((10, 10), bool)
    clicks = PromptSet.from_arguments([(8, 1), (0, 9)], [1, 0], box=(2.5, 3.5, 5.5, 7.5))
    clicks.keep_inside_box(mask)
    assert mask[8, 1] and not mask[0, 9]
    assert np.array_equal(np.argwhere(mask.any(1)).ravel(), [2, 3, 4, 5, 6, 7, 8])
    assert np.array_equal(np.argwhere(mask.any(0)).ravel(), [1, 2, 3, 4, 5, 6, 7])

    clicks_only = np.ones((10, 10), bool)
    assert PromptSet.from_arguments([(8, 1)], [1]).keep_inside_box(clicks_only) == 0


@pytest.mark.parametrize(
    "prompt, message",
    [
        ({"points": [(200, 5)]}, "outside"),
        ({"points": [(-3, 5)]}, "outside"),
        ({}, "No prompt"),
        ({"points": []}, "No prompt"),
        ({"box": (50, 50, 50, 80)}, "smaller than a pixel"),
        ({"box": (60, 50, 10, 80)}, r"Box \(60, 50, 10, 80\) is inverted"),
        ({"points": [(1, 2, 3)]}, r"\(row, col\) pairs .* shape \(1, 3\)"),
        ({"points": [1, 2, 3]}, r"\(row, col\) pairs .* shape \(3,\)"),
        ({"points": [("a", "b")]}, "Points must be numbers"),
        ({"points": [(1, 1)], "point_labels": ["yes"]}, "Point labels must be numbers"),
        ({"box": "0 0 5 5"}, "A box must be numbers"),
        ({"box": (500, 500, 600, 600)}, "outside the image"),
        ({"points": [(1, 1)], "point_labels": [2]}, "1 \\(positive\\) or 0"),
        ({"mask": np.ones((5, 5), bool)}, "does not match"),
    ],
)
def test_bad_prompts_get_clear_errors(random_segmenter, gray_image, prompt, message):
    random_segmenter.set_image(gray_image)
    with pytest.raises(SAM2Error, match=message):
        random_segmenter.predict(**prompt)


def test_one_pixel_and_huge_images(random_segmenter):
    seg = random_segmenter
    seg.set_image(np.full((1, 1), 7, np.uint16))
    assert seg.predict(points=[(0, 0)]).shape == (1, 1)
    huge = np.zeros((20000, 20000), np.uint8)
    huge[9000:11000, 9000:11000] = 200
    seg.set_image(huge)
    assert seg.predict(points=[(10000, 10000)]).shape == (20000, 20000)


def test_rgb_rgba_and_multichannel_images(random_segmenter):
    seg = random_segmenter
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    seg.set_image(rgb)
    assert seg.predict(points=[(10, 10)]).shape == (40, 50)
    rgba = np.concatenate([rgb, np.full((40, 50, 1), 255, np.uint8)], axis=-1)
    seg.set_image(rgba)
    assert seg.predict(points=[(10, 10)]).shape == (40, 50)
    multi = np.random.default_rng(0).random((5, 40, 50)).astype(np.float32)
    seg.set_image(multi, channel_axis=0, channels=[0, 2, 4])
    assert seg.predict(points=[(10, 10)]).shape == (40, 50)
    with pytest.raises(SAM2Error, match="channel_axis"):
        seg.set_image(multi)


def test_predict_before_set_image(random_checkpoint):
    from napari_sam2 import Segmenter

    seg = Segmenter("sam2.1_hiera_micro", device="cpu", checkpoint=random_checkpoint)
    with pytest.raises(SAM2Error, match="set_image"):
        seg.predict(points=[(1, 1)])


def test_a_model_of_another_input_size_segments_clicks_and_everything(gray_image):
    """sam2's image predictor assumes a 1024 input's feature sizes (and a mask prompt of 256²);
    a model made for another input size (issue 17's CPU-first micro) still segments a click, a
    box, a mask prompt and everything."""
    from napari_sam2.engine.automatic import AutomaticOptions, iter_mask_proposals
    from napari_sam2.engine.frames import Normalization, model_input
    from napari_sam2.engine.image import ImageSession
    from napari_sam2.engine.prompts import PromptSet

    from .test_automatic import _drain
    from .test_video import small_video_model

    image_size = 512
    model = small_video_model(image_size)
    session = ImageSession(model)
    frame = model_input(gray_image, Normalization.for_data(gray_image), image_size, session.device)
    session.set_frame(frame, gray_image.shape, "plane")
    label = np.zeros(gray_image.shape, bool)
    label[20:50, 30:70] = True
    for prompt in (
        PromptSet.from_arguments([(40, 60)], [1]),
        PromptSet(box=(10, 20, 60, 90)),
        PromptSet.from_arguments([(40, 60)], [1], mask=label),
    ):
        mask, _ = session.predict(prompt)
        assert mask.shape == gray_image.shape
    rgb = np.repeat((gray_image / gray_image.max())[..., None], 3, -1).astype(np.float32)
    options = AutomaticOptions(points_per_side=4, crop_n_layers=1, pred_iou_thresh=0, min_area=0)
    _, proposals = _drain(iter_mask_proposals(model, rgb, options))
    assert all(p.mask.shape == gray_image.shape for p in proposals)
