"""The packaged micro checkpoint: its format, the training forward, and that it segments."""

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam2.engine.synthetic import synthetic_cells

from ..conftest import tools_module as _tools_module

ROOT = Path(__file__).resolve().parents[2]
# Joint image + video training (issue 5): one checkpoint for clicks and tracking.
WEIGHTS = ROOT / "src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt"


def test_checkpoint_is_small_float32_state_dict():
    assert WEIGHTS.stat().st_size <= 20 * 1024 * 1024
    ckpt = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert list(ckpt) == ["model"]
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())
    model = _tools_module("micro_model").build_model(video=True, inference=True)
    model.load_state_dict(ckpt["model"], strict=True)


def test_training_forward_matches_image_predictor():
    worst = _tools_module("micro_model").check_against_predictor(checkpoint=WEIGHTS)
    assert worst < 1e-4  # logits reach +-32; float32 rounding only


def test_one_click_segments_a_synthetic_cell():
    from scipy.ndimage import distance_transform_edt

    from napari_sam2.engine.image import image_predictor

    mm = _tools_module("micro_model")
    model = mm.build_model(video=True, inference=True)
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True)["model"])
    predictor = image_predictor(model.eval())
    image, labels = synthetic_cells((256, 320), n_cells=5, seed=12345)
    frame = mm.normalise(image)
    with torch.inference_mode():
        predictor.set_image(np.repeat(frame[..., None], 3, -1))
        for k in (1, 2):
            truth = labels == k
            r, c = np.unravel_index(np.argmax(distance_transform_edt(truth)), truth.shape)
            masks, scores, _ = predictor.predict(
                point_coords=np.array([[c, r]], np.float32), point_labels=np.array([1])
            )
            mask = masks[np.argmax(scores)] > 0
            iou = (mask & truth).sum() / (mask | truth).sum()
            assert iou > 0.8, f"cell {k}: IoU {iou:.2f}"


@pytest.mark.parametrize("seed", [0])
def test_training_sample_is_well_formed(seed):
    mm, mi = _tools_module("micro_model"), _tools_module("micro_images")
    sample = mi.make_image_sample(np.random.default_rng(seed))
    assert sample["image"].shape == (1, mm.INPUT_SIZE, mm.INPUT_SIZE)
    assert sample["points"].shape == (mi.N_PROMPTS, 2, 2)
    assert sample["targets"].shape == (mi.N_PROMPTS, mm.low_res(), mm.low_res())
    assert (sample["targets"].flatten(1).amax(1) > 0).all()  # every prompt has an object


def test_training_at_a_512_input_draws_the_same_cells_and_runs(tmp_path, monkeypatch):
    """Issue 17's CPU-first input: ``--image-size 512`` resizes the same synthetic cells (drawn
    at the same native sizes) to 512 (targets 128², prompts in its pixels) and trains from the
    packaged 1024 weights."""
    import json

    mm, mi = _tools_module("micro_model"), _tools_module("micro_images")
    train = _tools_module("train_micro")
    monkeypatch.setattr(mm, "INPUT_SIZE", mm.INPUT_SIZE)  # main sets these for its workers
    monkeypatch.setattr(mi, "NUCLEI_SHARE", mi.NUCLEI_SHARE)
    full = mi.make_image_sample(np.random.default_rng(1))
    mm.INPUT_SIZE = 512
    small = mi.make_image_sample(np.random.default_rng(1))
    assert small["image"].shape == (1, 512, 512)
    assert small["targets"].shape == (mi.N_PROMPTS, 128, 128)
    np.testing.assert_array_equal(small["points"], full["points"] / 2)
    area = small["targets"].float().sum((1, 2)) * 4 / full["targets"].float().sum((1, 2))
    assert ((area > 0.9) & (area < 1.1)).all()

    out = tmp_path / "run"
    argv = ["--image-size", "512", "--init", str(WEIGHTS), "--out", str(out), "--batch", "2"]
    train.main(
        [*argv, "--workers", "1", "--max-steps", "1", "--total-steps", "1", "--log-every", "1"]
    )
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert np.isfinite(steps[0]["loss"])
    model = mm.build_model(mm.config_at_size(mm.DEFAULT_CONFIG, 512))
    model.load_state_dict(mm.load_weights(out / "model.pt"))
    assert model.image_size == 512


def test_a_pairs_negative_click_lies_in_a_touching_neighbour(monkeypatch):
    """Training pairs teach the correction of a click that took a cluster (issue 17)."""
    mi = _tools_module("micro_images")
    monkeypatch.setattr(mi, "TOUCH_NEGATIVE", 1.0)
    _, labels = synthetic_cells((256, 256), n_cells=6, seed=5, touching=True)
    rng = np.random.default_rng(0)
    for k in range(1, labels.max() + 1):
        m = labels == k
        touching = mi.touching_neighbours(labels, m, k)
        for _ in range(5):
            r, c = mi.negative_pixel(rng, labels, m, k)
            hit = labels[int(round(r)), int(round(c))]
            if len(touching):
                assert hit in touching, (k, hit, touching)
            else:
                assert hit != k


@pytest.mark.parametrize("nuclei_share", [0.0, 1.0])
def test_long_zstack_clip_runs_both_ways_from_the_widest_slice(nuclei_share, monkeypatch):
    """make_zstack_sample: the widest slice first, up the stack, then down it (issue 17)."""
    md = _tools_module("micro_data")
    monkeypatch.setattr(_tools_module("micro_images"), "NUCLEI_SHARE", nuclei_share)
    sample = md.make_zstack_sample(np.random.default_rng(3), 5)
    order = sample["frame_idx"].tolist()
    assert order == [4, 5, 6, 7, 8, 3, 2, 1, 0]
    assert sample["reverse"].tolist() == [False] * 5 + [True] * 4
    assert sample["frames"].shape[:2] == (9, 1)
    assert int(sample["kind"][0]) >= 0  # nucleus 1 is tracked
    area = sample["targets"][0].float().flatten(1).sum(1)
    assert area[0] > 0 and area[0] >= area.max() * 0.9  # prompted on (about) its widest slice
    one_way = md.make_zstack_sample(np.random.default_rng(3), 5, both_ways=False)
    assert one_way["frame_idx"].tolist() == list(range(5)) and not one_way["reverse"].any()


def test_stock_video_predictor_tracks_a_moving_cell():
    from napari_sam2.engine.synthetic import synthetic_clip

    em, emv = _tools_module("evaluate_micro"), _tools_module("evaluate_micro_video")
    frames, labels = synthetic_clip(5, (160, 160), 2, seed=4321, speed=2.0)
    truth = labels == 1
    video = emv.VideoModel(WEIGHTS, device="cpu")
    masks = video.track(emv.clip_norm(frames), 0, emv.deepest_point_torch(truth[0]))
    ious = [em.iou(masks[t], truth[t]) for t in range(len(truth))]
    assert min(ious) > 0.8, ious


def test_blended_weights_lie_between_the_two_checkpoints(tmp_path):
    """tools/interpolate_weights.py: alpha 0 gives A, 1 gives B, 0.5 their mean, and the
    blend loads into the micro model as the packaged weights do."""
    iw, mm = _tools_module("interpolate_weights"), _tools_module("micro_model")
    a = torch.load(WEIGHTS, map_location="cpu", weights_only=True)["model"]
    gen = torch.Generator().manual_seed(0)
    b = {
        k: v + torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
        for k, v in a.items()
    }
    key = next(k for k, v in a.items() if v.is_floating_point())
    assert torch.equal(iw.interpolate(a, b, 0.0)[key], a[key])
    assert torch.equal(iw.interpolate(a, b, 1.0)[key], b[key])
    torch.testing.assert_close(iw.interpolate(a, b, 0.5)[key], (a[key] + b[key]) / 2)
    b_path, out = tmp_path / "b.pt", tmp_path / "half.pt"
    torch.save({"model": b}, b_path)
    iw.main([str(WEIGHTS), str(b_path), "0.5", str(out)])
    half = torch.load(out, map_location="cpu", weights_only=True)
    assert list(half) == ["model"]
    mm.build_model(video=True, inference=True).load_state_dict(half["model"], strict=True)
    with pytest.raises(ValueError, match="different parameters"):
        iw.interpolate(a, {key: a[key]}, 0.5)
