"""The micro SAM2 as training sees it: built from its YAML, frames prepared as the plugin and
``SAM2ImagePredictor`` prepare them, the predictor's image forward, and a check of that forward
against the stock predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_sam2.engine.synthetic import synthetic_cells

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "src/napari_sam2/engine/configs/sam2.1_hiera_micro.yaml"
# The model's input side: train_micro.main sets it from the config's image_size (the DataLoader
# workers fork after that). The generator states cell sizes at a 1024 input (SIZE_REFERENCE)
# whatever the model reads, so cells keep their native sizes at any input size.
INPUT_SIZE = 1024
SIZE_REFERENCE = 1024
MASK_LOGIT = 10.0  # as napari_sam2.engine.prompts.mask_to_logits
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def low_res() -> int:
    """Side of the mask decoder's low-resolution logits (and of the training targets)."""
    return INPUT_SIZE // 4


def load_weights(checkpoint: str | Path) -> dict:
    """The state dict of a checkpoint in the packaged format (``{"model": state_dict}``)."""
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]


def config_at_size(config: str | Path, image_size: int) -> str:
    """A copy of ``config`` with another input size (and memory attention's RoPE grid), for
    training and measuring at the CPU-first input sizes of issue 17."""
    import tempfile

    from omegaconf import OmegaConf

    side = image_size // 16
    layer = "model.memory_attention.layer"
    cfg = OmegaConf.merge(
        OmegaConf.load(str(config)),
        OmegaConf.from_dotlist(
            [
                f"model.image_size={image_size}",
                f"{layer}.self_attention.feat_sizes=[{side},{side}]",
                f"{layer}.cross_attention.feat_sizes=[{side},{side}]",
            ]
        ),
    )
    path = Path(tempfile.mkdtemp()) / f"micro_{image_size}.yaml"
    OmegaConf.save(cfg, path)
    return str(path)


def config_image_size(config: str | Path) -> int:
    """The model input size a config builds."""
    from omegaconf import OmegaConf

    return int(OmegaConf.load(str(config)).model.image_size)


def build_model(config: str | Path = DEFAULT_CONFIG, video: bool = False, inference=False):
    """The micro SAM2 built from its YAML, as napari_sam2.engine.models does (no weights)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from napari_sam2.engine import models

    cfg = OmegaConf.load(str(config))
    over = []
    if video:
        over += ["model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor"]
    if inference:  # what sam2's builders add for inference, as the plugin builds its models
        over = models.config_overrides(video)
    if over:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(over))
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    if inference:  # the plugin's rules for the micro model (its choice of a click's masks)
        models.apply_model_rules(model, models.MICRO_MODEL)
    return model


def load_model(checkpoint, config: str | Path = DEFAULT_CONFIG, device="cpu"):
    """The micro SAM2 of ``config`` with a checkpoint's weights, built for inference as the
    plugin builds it (the video predictor class, which image predictors accept too), on
    ``device`` in eval mode."""
    model = build_model(config, video=True, inference=True)
    model.load_state_dict(load_weights(checkpoint), strict=True)
    return model.to(device).eval()


def normalise(plane: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Plane to float32 0..1 as the plugin does (0.5 / 99.8 percentiles, see engine/frames.py).

    With ``rng``, 30 % of planes get another contrast instead (min/max, or a gamma), so the
    model does not depend on one exact normalisation.
    """
    x = plane.astype(np.float32)
    lo, hi = np.percentile(x[::2, ::2], [0.5, 99.8])
    if rng is not None:
        u = rng.random()
        if u < 0.15:
            lo, hi = float(x.min()), float(x.max())
        elif u < 0.2:
            lo, hi = 0.0, float(np.iinfo(plane.dtype).max) * rng.uniform(0.1, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    if rng is not None and rng.random() < 0.1:
        x = x ** rng.uniform(0.6, 1.6)
    return x.astype(np.float32)


def to_model_input(frames01: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """(B, 1 or 3, H, W) 0..1 → (B, 3, size, size) as SAM2Transforms (resize, ImageNet norm);
    ``size`` defaults to ``INPUT_SIZE``."""
    size = size or INPUT_SIZE
    x = frames01.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=True)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def image_features(model, images: torch.Tensor) -> dict:
    """Backbone features exactly as ``SAM2ImagePredictor.set_image_batch`` computes them."""
    backbone_out = model.forward_image(images)
    _, vision_feats, _, feat_sizes = model._prepare_backbone_features(backbone_out)
    if model.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    b = images.shape[0]
    feats = [
        f.permute(1, 2, 0).reshape(b, -1, *s)
        for f, s in zip(vision_feats, feat_sizes, strict=True)
    ]
    return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}


def decode(model, feats, index, coords=None, labels=None, mask_input=None, multimask=False):
    """Mask decoder for prompts on images ``index`` (one per prompt), as the predictor's _predict.

    ``coords`` are (N, P, 2) in model-input pixels (x, y), box corners first with labels 2, 3.
    Returns low-res logits (N, M, low_res, low_res), IoU predictions (N, M), object-score logits
    (N, 1).
    """
    points = None if coords is None else (coords, labels)
    sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
    logits, iou, _, obj = model.sam_mask_decoder(
        image_embeddings=feats["image_embed"][index],
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=False,
        high_res_features=[f[index] for f in feats["high_res_feats"]],
    )
    return logits, iou, obj


def check_against_predictor(config=DEFAULT_CONFIG, checkpoint=None) -> float:
    """Largest difference between the training forward and the stock SAM2ImagePredictor (CPU),
    at the input size ``config`` builds (the predictor told its feature sizes, as the plugin
    tells it)."""
    from napari_sam2.engine.image import image_predictor

    torch.manual_seed(0)
    model = build_model(config).eval()
    if checkpoint:
        model.load_state_dict(load_weights(checkpoint))
    size = model.image_size
    image, labels = synthetic_cells((300, 420), n_cells=5, seed=7)
    frame01 = normalise(image)
    pred = image_predictor(model)
    worst = 0.0
    with torch.no_grad():
        pred.set_image(np.repeat(frame01[..., None], 3, -1))
        feats = image_features(model, to_model_input(torch.from_numpy(frame01)[None, None], size))
        for a, b in zip(
            [feats["image_embed"], *feats["high_res_feats"]],
            [pred._features["image_embed"], *pred._features["high_res_feats"]],
            strict=True,
        ):
            worst = max(worst, (a - b).abs().max().item())
        h, w = labels.shape
        s = torch.tensor([size / w, size / h])
        idx = torch.zeros(1, dtype=torch.long)
        click = np.array([[210.0, 140.0]], np.float32)  # (x, y) pixels
        box = np.array([100.0, 80.0, 260.0, 200.0], np.float32)
        mask = np.where(labels == 1, MASK_LOGIT, -MASK_LOGIT).astype(np.float32)
        mask_hw = model.sam_prompt_encoder.mask_input_size
        mask = F.interpolate(torch.from_numpy(mask)[None, None], mask_hw)[0].numpy()
        cases = [
            (dict(point_coords=click, point_labels=[1]), True),
            (dict(box=box), False),
            (
                dict(
                    point_coords=np.array([[210, 140], [50, 60]], np.float32), point_labels=[1, 0]
                ),
                False,
            ),
            (dict(mask_input=mask), False),
        ]
        for kwargs, mm in cases:
            _, _, low = pred.predict(**kwargs, multimask_output=mm, return_logits=True)
            if "box" in kwargs:
                coords = torch.from_numpy(box).view(1, 2, 2) * s
                labels_t = torch.tensor([[2, 3]], dtype=torch.int32)
            elif "point_coords" in kwargs:
                coords = torch.from_numpy(kwargs["point_coords"])[None] * s
                labels_t = torch.tensor([kwargs["point_labels"]], dtype=torch.int32)
            else:
                coords = labels_t = None
            mi = torch.from_numpy(mask)[None] if "mask_input" in kwargs else None
            lg, _, _ = decode(model, feats, idx, coords, labels_t, mi, multimask=mm)
            worst = max(worst, (lg.clamp(-32, 32)[0] - torch.from_numpy(low)).abs().max().item())
    return worst
