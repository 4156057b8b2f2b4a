"""The decoder keeps one of a click's three masks by predicted IoU + stability, everywhere."""

from unittest import mock

import numpy as np
import pytest
import torch
from sam2.utils.amg import calculate_stability_score
from scipy.ndimage import distance_transform_edt

from napari_sam2.engine.holes import fill_small_holes
from napari_sam2.engine.image import image_predictor
from napari_sam2.engine.mask_choice import (
    STABILITY_OFFSET,
    StableChoiceMaskDecoder,
    all_candidates,
)
from napari_sam2.engine.synthetic import synthetic_cells


@pytest.fixture(scope="module")
def clicked(micro_segmenter):
    """The segmenter on touching synthetic cells (a plane it reads whole at a 512 input, as the
    predictor does: no larger than ``whole_side``), sam2's image predictor on the same frame,
    and a click (row, col) at the deepest point of each cell."""
    image, labels = synthetic_cells(
        (300, 384), n_cells=12, seed=7, touching=True, irregularity=0.18
    )
    micro_segmenter.set_image(image)
    predictor = image_predictor(micro_segmenter.model)
    with torch.inference_mode():
        predictor.set_image(micro_segmenter.current_frame())
    clicks = []
    for k in range(1, labels.max() + 1):
        depth = distance_transform_edt(np.pad(labels == k, 1))[1:-1, 1:-1]
        clicks.append(np.unravel_index(np.argmax(depth), depth.shape))
    return micro_segmenter, predictor, clicks


def _three_and_kept(predictor, click):
    """sam2's three masks of a click with their IoUs and low-resolution logits, and the mask
    the model hands out for it."""
    r, c = click
    prompt = dict(point_coords=np.array([[c, r]], np.float32), point_labels=np.array([1]))
    with torch.inference_mode():
        with all_candidates():
            three = predictor.predict(**prompt, multimask_output=True)
        kept = predictor.predict(**prompt, multimask_output=True)
    return three, kept


def test_a_click_keeps_the_mask_of_highest_predicted_iou_plus_stability(clicked):
    segmenter, predictor, clicks = clicked
    assert isinstance(segmenter.model.sam_mask_decoder, StableChoiceMaskDecoder)
    differs = 0
    for click in clicks:
        (masks, ious, low_res), (one, iou, _) = _three_and_kept(predictor, click)
        assert len(masks) == 3 and len(one) == 1
        stability = calculate_stability_score(torch.from_numpy(low_res), 0.0, STABILITY_OFFSET)
        best = int(np.argmax(ious + stability.numpy()))
        differs += best != int(np.argmax(ious))
        assert iou[0] == pytest.approx(ious[best], abs=1e-5)  # its own predicted IoU
        np.testing.assert_array_equal(one[0], masks[best])
        shown = masks[best] > 0
        fill_small_holes(shown)  # as the engine hands masks out
        np.testing.assert_array_equal(segmenter.predict(points=[click]), shown)
    assert differs  # these clicks tell the rule from sam2's own (highest predicted IoU)


def test_training_gets_all_three_masks(clicked):
    _, predictor, clicks = clicked
    decoder = predictor.model.sam_mask_decoder
    decoder.train()
    try:
        (_, _, _), (masks, _, _) = _three_and_kept(predictor, clicks[0])
    finally:
        decoder.eval()
    assert len(masks) == 3


def test_segment_everything_filters_all_three_masks_of_each_point(clicked):
    """sam2's automatic generator keeps or drops each of a grid point's three masks itself."""
    segmenter, _, _ = clicked
    shapes = []
    forward = StableChoiceMaskDecoder.forward

    def spy(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        shapes.append(out[0].shape[1])
        return out

    with mock.patch.object(StableChoiceMaskDecoder, "forward", spy):
        labels = segmenter.segment_everything(points_per_side=4)
    assert shapes and set(shapes) == {3}
    assert labels.max() > 0


def test_official_checkpoints_keep_sam2s_own_choice(tmp_path):
    """The rule is measured on the micro model only: an official architecture (tiny, with
    weights of its shape) is built with sam2's own decoder."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from sam2.modeling.sam.mask_decoder import MaskDecoder

    from napari_sam2.engine import models

    name = "sam2.1_hiera_tiny"
    cfg = OmegaConf.load(models.config_path(models.model_spec(name)))
    path = tmp_path / "tiny.pt"
    torch.save({"model": instantiate(cfg.model, _recursive_=True).state_dict()}, path)
    model = models.build_model(name, path, "cpu")
    assert type(model.sam_mask_decoder) is MaskDecoder
