"""The clips the propagation benchmarks run on, as folders of JPEG frames that the official
predictor reads whole and the engine reads lazily (``JpegFolder``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIRST_LABELS = "labels-0.npy"


class JpegFolder:
    """A folder of JPEG frames as a lazy (T, H, W, 3) uint8 array (decodes on indexing)."""

    def __init__(self, folder: Path):
        self.files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == ".jpg")
        first = self._read(0)
        self.shape = (len(self.files), *first.shape)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4

    def _read(self, index: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return np.asarray(image.convert("RGB"))

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return self._read(int(key[0]))[key[1:]]


def frame_folder(source: Path, n: int, workdir: Path) -> Path:
    """A folder of ``n`` frames named 00000.jpg …, hard links to ``source``'s frames."""
    frames = sorted(p for p in source.iterdir() if p.suffix.lower() == ".jpg")
    folder = workdir / f"frames_{n}"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        target = folder / f"{i:05d}.jpg"
        if not target.exists():
            try:
                os.link(frames[i % len(frames)], target)
            except OSError:
                target.write_bytes(frames[i % len(frames)].read_bytes())
    return folder


def crowded_folder(n_frames: int, size: int, n_cells: int, workdir: Path) -> tuple[Path, list]:
    """A folder of ``n_frames`` JPEGs of a synthetic crowded field of ``n_cells`` cells, and
    one click (row, col) inside each cell on frame 0, in label order; the true labels of
    frame 0 lie beside the frames (``first_labels``)."""
    from PIL import Image

    sys.path.insert(0, str(ROOT / "src"))
    from napari_sam2.engine.synthetic import synthetic_clip

    radius = float(np.sqrt(0.25 * size * size / (n_cells * np.pi)))
    frames, truth = synthetic_clip(n_frames, (size, size), n_cells=n_cells, seed=0, radius=radius)
    folder = workdir / f"crowded_{n_frames}_{size}_{n_cells}"
    folder.mkdir(exist_ok=True)
    scale = 255 / max(float(np.percentile(frames, 99.8)), 1.0)
    for i, frame in enumerate(frames):
        grey = np.clip(frame * scale, 0, 255).astype(np.uint8)
        Image.fromarray(grey).convert("RGB").save(folder / f"{i:05d}.jpg", quality=95)
    np.save(folder / FIRST_LABELS, truth[0])
    clicks = []
    for k in range(1, n_cells + 1):
        rows, cols = np.nonzero(truth[0] == k)
        nearest = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
        clicks.append((int(rows[nearest]), int(cols[nearest])))
    return folder, clicks


def first_labels(folder: Path) -> np.ndarray:
    """The true labels of frame 0 of a ``crowded_folder`` clip (cell k is label k)."""
    return np.load(Path(folder) / FIRST_LABELS)
