"""Shared pieces of the benchmark scripts: JSON lines, versions, random-weight checkpoints, timing.

Every measurement is printed as one JSON object on its own line (and appended to ``--out``), with
the software versions and the kind of weights, so lines from different runs can be pooled and
compared. Official checkpoints cannot be downloaded where these scripts were written, so models
are built from their official configs with random weights: speed and memory do not depend on the
weights' values.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

# Short names on the command line → registry names.
MODEL_NAMES = {
    "tiny": "sam2.1_hiera_tiny",
    "small": "sam2.1_hiera_small",
    "base_plus": "sam2.1_hiera_base_plus",
    "large": "sam2.1_hiera_large",
    "micro": "sam2.1_hiera_micro",
}


def base_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best)")
    parser.add_argument("--quick", action="store_true", help="few repeats, small models (CPU)")
    parser.add_argument("--out", type=Path, default=None, help="also append JSON lines here")
    parser.add_argument(
        "--hidden",
        action="store_true",
        help="napari parts: a hidden viewer (never draws, re-slices on every Labels edit)",
    )
    parser.add_argument(
        "--micro-checkpoint",
        default=None,
        help="trained micro weights (default: random micro weights)",
    )
    return parser


WINDOW = (1600, 1000)


def open_viewer(hidden: bool):
    """A napari viewer as a user has it: shown (on Xvfb where there is no display), 1600×1000.

    A hidden viewer never uploads its textures, so every Labels edit falls back to a full
    re-slice there: ``hidden=True`` overstates the cost of writing a mask and skips drawing.
    """
    import napari

    viewer = napari.Viewer(show=not hidden)
    viewer.window.resize(*WINDOW)
    return viewer


def environment(device) -> dict:
    """Versions and hardware, attached to every line."""
    import importlib.metadata as metadata

    import torch

    env = {
        "torch": torch.__version__,
        "sam2": metadata.version("sam2"),
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "host": platform.node(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    else:
        env["gpu"] = None
        env["cpu_count"] = os.cpu_count()
    return env


class Recorder:
    """Prints (and optionally appends to a file) one JSON object per measurement."""

    def __init__(self, bench: str, env: dict, out: Path | None):
        self.bench = bench
        self.env = env
        self.out = out

    def __call__(self, metric: str, value, unit: str, **fields) -> dict:
        line = {"bench": self.bench, **fields, "metric": metric, "value": value, "unit": unit}
        line.update(self.env)
        # Other processes' load: on a shared machine it explains slow absolute times.
        line["load_avg_1min"] = round(os.getloadavg()[0], 2)
        text = json.dumps(line)
        print(text, flush=True)
        if self.out is not None:
            with open(self.out, "a") as handle:
                handle.write(text + "\n")
        return line

    def timings(
        self, metric: str, seconds: list[float], cpu_seconds: list[float] | None = None, **fields
    ) -> dict:
        """Median of repeated timings in ms, with min, p90 and n alongside, and the median
        process CPU time (all threads) when given."""
        ms = sorted(s * 1000 for s in seconds)
        p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
        if cpu_seconds:
            fields["cpu_ms"] = round(statistics.median(cpu_seconds) * 1000, 3)
        return self(
            metric,
            round(statistics.median(ms), 3),
            "ms",
            min=round(ms[0], 3),
            p90=round(p90, 3),
            n=len(ms),
            **fields,
        )


def random_state(name: str, seed: int = 0) -> dict:
    """State dict of model ``name``'s official architecture with random initial weights."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from napari_sam2.engine import models

    torch.manual_seed(seed)
    cfg = OmegaConf.load(models.config_path(models.model_spec(name)))
    return instantiate(cfg.model, _recursive_=True).state_dict()


@contextlib.contextmanager
def checkpoint_for(name: str, micro_checkpoint: str | None = None) -> Iterator[tuple[str, str]]:
    """(path, weights kind) of a checkpoint for ``name``: trained micro weights when given,
    else a temporary file of random weights saved the way official checkpoints are."""
    import torch

    from napari_sam2.engine.models import MICRO_MODEL

    if name == MICRO_MODEL and micro_checkpoint:
        yield micro_checkpoint, "micro"
        return
    with tempfile.TemporaryDirectory(prefix="sam2-bench-") as folder:
        path = Path(folder) / f"{name}_random.pt"
        torch.save({"model": random_state(name)}, path)
        yield str(path), "random"


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable, device, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn(i)`` after ``warmup`` untimed calls."""
    for i in range(warmup):
        fn(-1 - i)
        sync(device)
    out = []
    for i in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn(i)
        sync(device)
        out.append(time.perf_counter() - start)
    return out


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
