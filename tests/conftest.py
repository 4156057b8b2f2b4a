"""Shared fixtures: model checkpoints the tests make themselves, and ready Segmenters."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam2.engine import models


def random_micro_state(seed: int = 0) -> dict:
    """State dict of a randomly initialised micro model (wiring tests only)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    cfg = OmegaConf.load(models.config_path(models.MODELS[models.MICRO_MODEL]))
    return instantiate(cfg.model, _recursive_=True).state_dict()


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> str:
    """A micro-architecture checkpoint with random weights, saved like an official one."""
    path = tmp_path_factory.mktemp("ckpt") / "micro_random.pt"
    torch.save({"model": random_micro_state()}, path)
    return str(path)


@pytest.fixture(scope="session")
def random_segmenter(random_checkpoint):
    from napari_sam2 import Segmenter

    return Segmenter(models.MICRO_MODEL, device="cpu", checkpoint=random_checkpoint)


def tools_module(name: str):
    """A module of tools/ (the training and evaluation scripts import their neighbours by name)."""
    tools = str(Path(__file__).parents[1] / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    return importlib.import_module(name)


MICRO_CHECKPOINT = (
    Path(__file__).parents[1] / "src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt"
)


@pytest.fixture(scope="session")
def micro_segmenter():
    """The packaged, trained micro model on the CPU (skips where it is not packaged)."""
    from napari_sam2 import Segmenter

    if not MICRO_CHECKPOINT.exists():
        pytest.skip(f"the trained micro checkpoint {MICRO_CHECKPOINT.name} is not packaged")
    return Segmenter(models.MICRO_MODEL, device="cpu", checkpoint=MICRO_CHECKPOINT)


@pytest.fixture
def gray_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((96, 128)) * 3000 + 500).astype(np.uint16)
