"""Model registry: names → config, checkpoint URL and hash; download, device choice, building.

Official checkpoints are fetched with pooch into a cache folder (``NAPARI_SAM2_CACHE``
overrides it). The micro model ships inside the package. Every model is built the same way:
its YAML config through OmegaConf and Hydra's ``instantiate``, then a strict state-dict load.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch

from .errors import SAM2Error

_OFFICIAL_URL = "https://dl.fbaipublicfiles.com/segment_anything_2"
MICRO_MODEL = "sam2.1_hiera_micro"


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's config and weights live.

    ``config`` is a path inside the package ``config_package``. ``url`` None means the
    checkpoint ships inside this package (``engine/weights``). ``sha256`` and ``size_bytes`` are
    checked after every download; ``None`` means that value is not published and pooch only
    logs the hash it found.
    """

    name: str
    config: str
    url: str | None
    sha256: str | None
    size_mb: float
    config_package: str = "sam2"
    size_bytes: int | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"


def _official(
    name: str,
    release: str,
    config: str,
    size_mb: float,
    sha256: str | None = None,
    size_bytes: int | None = None,
) -> ModelSpec:
    url = f"{_OFFICIAL_URL}/{release}/{name}.pt"
    return ModelSpec(name, config, url, sha256, size_mb, size_bytes=size_bytes)


# SHA-256 and sizes of the SAM2.1 checkpoints as published (micro-sam's registry checks the
# same); none are published for the SAM2.0 ones.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _official(
            "sam2.1_hiera_tiny",
            "092824",
            "configs/sam2.1/sam2.1_hiera_t.yaml",
            149,
            "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
            156_008_466,
        ),
        _official(
            "sam2.1_hiera_small",
            "092824",
            "configs/sam2.1/sam2.1_hiera_s.yaml",
            176,
            "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
            184_416_285,
        ),
        _official(
            "sam2.1_hiera_base_plus",
            "092824",
            "configs/sam2.1/sam2.1_hiera_b+.yaml",
            309,
            "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
            323_606_802,
        ),
        _official(
            "sam2.1_hiera_large",
            "092824",
            "configs/sam2.1/sam2.1_hiera_l.yaml",
            857,
            "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
            898_083_611,
        ),
        _official("sam2_hiera_tiny", "072824", "configs/sam2/sam2_hiera_t.yaml", 149),
        _official("sam2_hiera_small", "072824", "configs/sam2/sam2_hiera_s.yaml", 176),
        _official("sam2_hiera_base_plus", "072824", "configs/sam2/sam2_hiera_b+.yaml", 309),
        _official("sam2_hiera_large", "072824", "configs/sam2/sam2_hiera_l.yaml", 857),
        ModelSpec(
            MICRO_MODEL,
            "configs/sam2.1_hiera_micro.yaml",
            None,
            "dfad2ed5b7da87330308ee209d56e7bf98e622d3c43a73d2999a3c45f94f2e20",
            6,
            "napari_sam2.engine",
        ),
    )
}

# Overrides that sam2's own builders apply for inference (build_sam.py, apply_postprocessing).
_IMAGE_OVERRIDES = [
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
]
_VIDEO_OVERRIDES = [
    "model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
    "model.binarize_mask_from_pts_for_mem_enc=true",
]


def config_overrides(video: bool = True) -> list[str]:
    """Hydra overrides every model is built with: sam2's own for its image and video
    predictors, except hole filling where sam2's compiled extension is missing (sam2 would
    try, warn and skip it on every tracked frame). ``video=False``: the image predictor's only,
    for a plain ``SAM2Base`` (the training tools' image-mode builds)."""
    if not video:
        return list(_IMAGE_OVERRIDES)
    try:
        from sam2 import _C  # noqa: F401

        fill_hole_area = 8
    except ImportError:
        fill_hole_area = 0
    return [*_IMAGE_OVERRIDES, *_VIDEO_OVERRIDES, f"model.fill_hole_area={fill_hole_area}"]


def apply_model_rules(model: torch.nn.Module, name: str) -> None:
    """What the plugin changes in ``name``'s built model beyond sam2's own builders: the micro
    model's decoder keeps one of a click's three masks by predicted IoU + stability
    (``mask_choice``, measured on real data for it); the official checkpoints keep sam2's rule."""
    if name == MICRO_MODEL:
        from .mask_choice import keep_stable_choice

        keep_stable_choice(model)


def compile_image_encoder(model: torch.nn.Module) -> None:
    """Encode batches of frames (propagation) with a ``torch.compile``'d image encoder.

    Measured on an H100 (tiny, bench/results/h100-diagnostics-encoder.txt): a batch of 8
    frames encodes in 1.80 instead of 3.11 ms per frame, propagation runs 1.11x faster, and
    compiling takes about 40 s in the model load's warm-up (static shapes: propagation pads
    its last batch to full size). A single image (clicks, prompts) stays eager: compiled, it
    encodes slower (7.31 vs 5.95 ms). Inductor's default mode: "max-autotune" tuned for over
    5 minutes without finishing, and inductor's CUDA graphs reuse their output memory on the
    next call, while the engine keeps encoder outputs of frames encoded ahead (sam2's
    ``vos_optimized`` predictor, which compiles every part that way, failed so in the engine
    with torch 2.11). The tracking step has the engine's own CUDA graphs instead.
    """
    eager = model.image_encoder.forward
    compiled = torch.compile(eager, fullgraph=True, dynamic=False)

    def forward(sample: torch.Tensor) -> dict:
        return compiled(sample) if len(sample) > 1 else eager(sample)

    model.image_encoder.forward = forward


def is_compiled(model: torch.nn.Module) -> bool:
    return "forward" in vars(model.image_encoder)


def available_models() -> list[str]:
    """Names accepted by ``Segmenter(model=...)``, official ones first."""
    return list(MODELS)


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise SAM2Error(
            f"Unknown model {name!r}. Choose one of: {', '.join(MODELS)}; "
            "or pass checkpoint= with the path of a local file."
        ) from None


def cache_dir() -> Path:
    """Folder for downloaded checkpoints (``NAPARI_SAM2_CACHE`` or the OS cache)."""
    import pooch

    return Path(os.environ.get("NAPARI_SAM2_CACHE") or pooch.os_cache("napari-sam2"))


def config_path(spec: ModelSpec) -> Path:
    return Path(str(files(spec.config_package).joinpath(spec.config)))


def checkpoint_path(name: str, progressbar: bool = True) -> Path:
    """Local path of a model's checkpoint, downloading (and hash-checking) it if needed."""
    spec = model_spec(name)
    if spec.url is None:
        path = Path(str(files("napari_sam2.engine").joinpath("weights", spec.filename)))
        if not path.is_file():
            raise SAM2Error(f"The bundled checkpoint {path} is missing: reinstall napari-sam2.")
        if spec.sha256 and _sha256(path) != spec.sha256:
            raise SAM2Error(f"The bundled checkpoint {path} is corrupt: reinstall napari-sam2.")
        return path
    import pooch
    import requests

    target = cache_dir()
    try:
        path = Path(
            pooch.retrieve(
                spec.url,
                known_hash=f"sha256:{spec.sha256}" if spec.sha256 else None,
                fname=spec.filename,
                path=target,
                progressbar=progressbar,
            )
        )
    except ValueError as err:  # pooch's hash mismatch
        raise SAM2Error(
            f"The download of {spec.name} from {spec.url} is corrupt ({err}). "
            "Try again; if it persists, download the file yourself and pass checkpoint=."
        ) from err
    except (requests.RequestException, OSError) as err:
        raise SAM2Error(
            f"Could not download {spec.name} from {spec.url}: {err}. Check the network, or "
            f"place {spec.filename} in {target} or pass checkpoint= with a local file."
        ) from err
    size = path.stat().st_size
    if spec.size_bytes is not None and size != spec.size_bytes:
        path.unlink()
        raise SAM2Error(
            f"The download of {spec.name} from {spec.url} is corrupt: {size:,} bytes instead of "
            f"{spec.size_bytes:,}. Try again; if it persists, download the file yourself and "
            "pass checkpoint=."
        )
    return path


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def select_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, or the best available one: CUDA, then MPS, then CPU."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise SAM2Error(f"Unknown device {device!r}: use 'cuda', 'mps' or 'cpu'.") from err
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if not available.get(device.type, False):
        raise SAM2Error(f"Device {device.type!r} is not available here; use 'cpu'.")
    return device


def inference_context(device: torch.device) -> contextlib.AbstractContextManager:
    """Inference mode, with bfloat16 autocast on CUDA only (float32 everywhere else)."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if device.type == "cuda":
        stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
    return stack


def compute_dtype(device: torch.device) -> str:
    return "bfloat16 (autocast)" if device.type == "cuda" else "float32"


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of a SAM2 checkpoint file, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise SAM2Error(f"Checkpoint {path} does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise SAM2Error(
            f"Checkpoint {path} is corrupt or not a PyTorch file ({type(err).__name__}). "
            "Delete it and download it again."
        ) from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise SAM2Error(f"Checkpoint {path} has no 'model' state dict: is it a SAM2 checkpoint?")
    return checkpoint["model"]


def build_model(
    name: str,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    compile: bool = False,
) -> torch.nn.Module:
    """Build ``name``'s architecture on ``device`` with its weights, ready for inference.

    ``checkpoint`` replaces the registry's weights with a local file of the same architecture.
    The model is always the ``SAM2VideoPredictor`` class: it is a ``SAM2Base`` the image
    predictor accepts too, so one set of weights in memory serves clicks and propagation, with
    the plugin's rules for that model (``apply_model_rules``).
    ``compile`` (CUDA only) compiles the image encoder (``compile_image_encoder``): the model
    load's warm-up then takes about a minute (less once inductor's cache holds it).
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    spec = model_spec(name)
    device = select_device(device)
    if compile and device.type != "cuda":
        raise SAM2Error(
            f"compile=True needs CUDA (torch.compile's GPU kernels); on {device.type} use "
            "compile=False."
        )
    path = Path(checkpoint) if checkpoint is not None else checkpoint_path(name)
    state = load_state_dict(path)
    cfg = OmegaConf.merge(
        OmegaConf.load(config_path(spec)), OmegaConf.from_dotlist(config_overrides())
    )
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SAM2Error(
            f"Checkpoint {path} does not fit model {name}: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}). "
            "Pick the model the checkpoint was trained as."
        )
    model = model.to(device).eval()
    apply_model_rules(model, name)
    if compile:
        compile_image_encoder(model)
    return model
