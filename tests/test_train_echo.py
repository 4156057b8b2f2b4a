"""Data echoing of the micro model's training (tools/train_echo.py): a turned or mirrored
sample must still prompt the same pixels, or training would teach clicks beside the cell."""

import numpy as np
import torch
import torch.nn.functional as F

from .conftest import tools_module


def _at(image: torch.Tensor, xy) -> float:
    return float(image[..., int(round(float(xy[1]))), int(round(float(xy[0])))].flatten()[0])


def test_every_symmetry_keeps_clicks_and_boxes_on_their_pixels():
    echo = tools_module("train_echo")
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1024, 1024, generator=g)
    targets = (torch.rand(4, 256, 256, generator=g) > 0.5).to(torch.uint8)
    points = torch.tensor(
        [
            [[10.0, 700.0], [0.0, 0.0]],  # a click
            [[100.0, 200.0], [300.0, 900.0]],  # a box: top-left, bottom-right
            [[1000.0, 3.0], [512.0, 511.0]],  # a positive + negative pair
            [[0.0, 1023.0], [0.0, 0.0]],
        ]
    )
    sample = {"image": image, "points": points, "targets": targets}
    box = image[0, 200:901, 100:301]
    seen = set()
    for k in range(8):
        out = echo.turn_image_sample(sample, k, slice(1, 2))
        seen.add(out["image"].numpy().tobytes()[:4096])
        for j in (0, 2, 3):
            for p_old, p_new in zip(points[j], out["points"][j], strict=True):
                assert _at(out["image"], p_new) == _at(image, p_old)
        (x0, y0), (x1, y1) = out["points"][1].tolist()
        assert x0 <= x1 and y0 <= y1
        turned_box = out["image"][0, int(y0) : int(y1) + 1, int(x0) : int(x1) + 1]
        assert turned_box.numel() == box.numel()
        assert torch.isclose(turned_box.sum(), box.sum())
        # Targets turn with the image: the 1024 image pooled to 256 matches the turned targets'
        # orientation (checked through a target made from the image itself).
        made = echo.turn_image_sample(
            {**sample, "targets": F.avg_pool2d(image[None], 4)[0]}, k, slice(1, 2)
        )
        assert torch.allclose(F.avg_pool2d(made["image"][None], 4)[0], made["targets"])
    assert len(seen) == 8


def test_clip_prompts_follow_non_square_frames_at_the_model_input():
    echo = tools_module("train_echo")
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(3, 1, 40, 64, generator=g)
    prompt = torch.tensor([[[300.0, 500.0], [0.0, 0.0]], [[64.0, 128.0], [512.0, 896.0]]])
    sample = {
        "frames": frames,
        "targets": torch.zeros(2, 3, 256, 256, dtype=torch.uint8),
        "prompt": prompt,
        "kind": torch.tensor([0, 1]),
    }

    def model_input(f):  # as micro_model.to_model_input resizes
        return F.interpolate(f, (1024, 1024), mode="bilinear", align_corners=False, antialias=True)

    before = model_input(frames)
    for k in range(8):
        out = echo.turn_clip_sample(sample, k)
        assert out["frames"].shape[-2:] == ((64, 40) if k & 1 else (40, 64))
        after = model_input(out["frames"])
        old, new = prompt[0, 0], out["prompt"][0, 0]
        assert abs(_at(after[0], new) - _at(before[0], old)) < 1e-5
        (x0, y0), (x1, y1) = out["prompt"][1].tolist()
        assert x0 <= x1 and y0 <= y1
        area = (x1 - x0) * (y1 - y0)
        assert area == (512 - 64) * (896 - 128)


def test_each_sample_comes_back_in_as_many_different_symmetries():
    echo = tools_module("train_echo")
    rng = np.random.default_rng(0)
    counter = iter(range(10**6))
    samples = ({"id": next(counter)} for _ in iter(int, 1))
    drawn = echo.echoed(samples, rng, 3, 5, lambda s, k: (s["id"], k))
    got = [next(drawn) for _ in range(60)]
    by_id: dict[int, list[int]] = {}
    for i, k in got:
        by_id.setdefault(i, []).append(k)
    full = [ks for i, ks in by_id.items() if len(ks) == 3]
    assert len(full) >= 10
    assert all(len(set(ks)) == 3 for ks in full)
    assert max(len(ks) for ks in by_id.values()) == 3
    # Copies of one sample spread out rather than coming back to back.
    assert sum(a[0] == b[0] for a, b in zip(got, got[1:], strict=False)) < 30
    once = echo.echoed(iter([{"id": 7}]), rng, 1, 5, lambda s, k: None)
    assert list(once) == [{"id": 7}]
