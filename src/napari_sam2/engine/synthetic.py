"""Synthetic microscopy-like images and clips with exact ground-truth labels.

Used to train and evaluate the project's micro SAM2 (tools/train_micro.py,
tools/evaluate_micro.py) and as test fixtures: official checkpoints cannot be downloaded
everywhere, so the tests need data whose true masks are known. Everything is deterministic
given ``seed``; only numpy and torch (resampling, blur) are used.

The cells and the optics are drawn in ``synthetic_scene``. ``synthetic_timelapse`` makes long
crowded time-lapses with divisions and cells entering and leaving; ``synthetic_nuclei`` draws
confocal nuclei that look like the real stack: crowded, blurred in depth, labelled where an
annotator draws the edge.
"""

from __future__ import annotations

import numpy as np

from .synthetic_scene import (
    _N_HARMONICS,
    CellShape,
    _default_radius,
    _form_image,
    _make_scene,
    _place_cells,
    _render_cell,
)

__all__ = ["synthetic_cells", "synthetic_clip", "CellShape"]


def synthetic_cells(
    shape: tuple[int, int] = (512, 512),
    n_cells: int = 12,
    dtype=np.uint16,
    seed: int = 0,
    touching: bool = False,
    *,
    radius: float | None = None,
    irregularity: float = 0.12,
    max_elongation: float = 1.8,
) -> tuple[np.ndarray, np.ndarray]:
    """A 2D fluorescence-like image of cells and its ground-truth labels.

    Parameters
    ----------
    shape : (H, W) of the image.
    n_cells : number of cells asked for (fewer if they do not fit without overlap).
    dtype : ``np.uint8`` or ``np.uint16``; brightness and offset are drawn at random.
    seed : the same seed gives the same image and labels.
    touching : if True, about a third of the cells come in pairs sharing a border.
    radius : mean cell radius in pixels; by default cells cover about a fifth of the field.
    irregularity : strength of the boundary wobble (0 gives ellipses).
    max_elongation : largest ratio of the two ellipse axes.

    Returns
    -------
    image : (H, W) array of ``dtype``.
    labels : (H, W) int32, 0 for background and 1..n for the cells.
    """
    rng = np.random.default_rng(seed)
    shape = (int(shape[0]), int(shape[1]))
    if radius is None:
        radius = _default_radius(shape, n_cells)
    scene = _make_scene(rng, shape, dtype, radius)
    cells = _place_cells(rng, shape, n_cells, radius, irregularity, max_elongation, touching)
    labels = np.zeros(shape, np.int32)
    signal = np.zeros(shape, np.float32)
    for i, c in enumerate(cells, start=1):
        _render_cell(c, i, labels, signal, scene.cell_texture)
    # Renumber so that ids are 1..n even if a cell ended up with no pixel.
    present = np.unique(labels[labels > 0])
    lut = np.zeros(len(cells) + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    labels = lut[labels]
    image = _form_image(rng, scene, signal)
    return image, labels


def _zstack_scale(t: np.ndarray, t_mid: float, half_depth: float) -> np.ndarray:
    """Cross-section radius factor of a sphere cut at slice ``t``: grows, peaks, shrinks."""
    z = (t - t_mid) / half_depth
    return np.sqrt(np.clip(1.0 - z * z, 0.0, 1.0))


def synthetic_clip(
    n_frames: int = 30,
    shape: tuple[int, int] = (256, 256),
    n_cells: int = 3,
    dtype=np.uint16,
    seed: int = 0,
    motion: str = "smooth",
    absent: tuple[int, int] | None = None,
    *,
    radius: float | None = None,
    speed: float = 1.0,
    irregularity: float = 0.12,
) -> tuple[np.ndarray, np.ndarray]:
    """A time-lapse (or z-stack) of moving cells with ids kept across frames.

    Parameters
    ----------
    n_frames, shape, n_cells, dtype, seed : as in :func:`synthetic_cells`.
    motion : ``"smooth"`` — each cell drifts (bouncing off the borders), rotates, deforms and
        its brightness drifts; ``"static"`` — nothing moves, only noise changes (an easy
        curriculum stage); ``"zstack"`` — slices through round cells: each cross-section
        grows, peaks and shrinks (cell 1 is widest in the middle slice, the others peak
        elsewhere and may be absent at the ends), with a slight lateral drift.
    absent : ``(start, stop)``: cell 1 vanishes (bleaches / leaves focus) on frames
        ``start .. stop-1`` and comes back afterwards, with the same id.
    radius : mean cell radius; by default cells cover about a tenth of the field.
    speed : scales all motion ("smooth" moves about 1.5 px per frame at ``speed=1``).
    irregularity : boundary wobble, as in :func:`synthetic_cells`.

    Returns
    -------
    frames : (T, H, W) array of ``dtype``.
    labels : (T, H, W) int32; cell ``k`` has label ``k`` in every frame where it is visible.
    """
    if motion not in ("smooth", "static", "zstack"):
        raise ValueError(f"motion must be 'smooth', 'static' or 'zstack', got {motion!r}")
    rng = np.random.default_rng(seed)
    shape = (int(shape[0]), int(shape[1]))
    h, w = shape
    if radius is None:
        radius = float(
            np.clip(np.sqrt(0.1 * h * w / (max(n_cells, 1) * np.pi)), 6, 0.2 * min(h, w))
        )
    scene = _make_scene(rng, shape, dtype, radius)
    # Keep cells well apart at the start so that motion rarely makes them overlap.
    cells = _place_cells(rng, shape, n_cells, radius, irregularity, 1.6, touching=False)
    t = np.arange(n_frames, dtype=np.float64)
    # Per-cell trajectories.
    traj = []
    for k, c in enumerate(cells):
        if motion == "smooth":
            v = rng.normal(0, 1.0, 2)
            v = 1.5 * speed * v / (np.linalg.norm(v) + 1e-9) * rng.uniform(0.5, 1.2)
            acc = rng.normal(0, 0.03 * speed, 2)
            omega = rng.normal(0, 0.03 * speed)
            d_coef = rng.normal(0, 0.004 * speed, _N_HARMONICS)
            d_phase = rng.normal(0, 0.03 * speed, _N_HARMONICS)
            bright = 1.0 + 0.2 * np.sin(
                2 * np.pi * t / max(n_frames, 2) * rng.uniform(0.3, 1.0)
                + rng.uniform(0, 2 * np.pi)
            )
            scale = 1.0 + 0.08 * np.sin(2 * np.pi * t / max(n_frames, 2) * rng.uniform(0.3, 1.0))
        elif motion == "static":
            v = np.zeros(2)
            acc = np.zeros(2)
            omega = 0.0
            d_coef = np.zeros(_N_HARMONICS)
            d_phase = np.zeros(_N_HARMONICS)
            bright = np.ones(n_frames)
            scale = np.ones(n_frames)
        else:  # zstack
            v = rng.normal(0, 0.2 * speed, 2)
            acc = np.zeros(2)
            omega = 0.0
            d_coef = np.zeros(_N_HARMONICS)
            d_phase = np.zeros(_N_HARMONICS)
            bright = 1.0 - 0.3 * np.abs(t - (n_frames - 1) / 2) / max(n_frames / 2, 1)
            if k == 0:
                t_mid = (n_frames - 1) / 2
                half = n_frames / 2 + 1.0
            else:
                t_mid = rng.uniform(0, n_frames - 1)
                half = rng.uniform(0.4, 0.8) * n_frames
            scale = _zstack_scale(t, t_mid, half)
        # Integrate positions with reflection at the borders.
        pos = np.zeros((n_frames, 2))
        p = np.array([c.cy, c.cx], float)
        vel = v.astype(float).copy()
        m = radius * 0.5
        for i in range(n_frames):
            pos[i] = p
            vel = vel + acc
            p = p + vel
            for d, lim in enumerate((h, w)):
                if p[d] < m or p[d] > lim - m:
                    vel[d] = -vel[d]
                    p[d] = np.clip(p[d], m, lim - m)
        traj.append((pos, omega, d_coef, d_phase, bright, scale))

    frames = np.empty((n_frames,) + shape, scene.dtype)
    labels = np.zeros((n_frames,) + shape, np.int32)
    for i in range(n_frames):
        signal = np.zeros(shape, np.float32)
        for k, c in enumerate(cells):
            if absent is not None and k == 0 and absent[0] <= i < absent[1]:
                continue
            pos, omega, d_coef, d_phase, bright, scale = traj[k]
            if scale[i] < 0.15:  # too small a cross-section to see
                continue
            ci = CellShape(
                cy=pos[i, 0],
                cx=pos[i, 1],
                a=c.a * scale[i],
                b=c.b * scale[i],
                angle=c.angle + omega * i,
                coef=np.clip(c.coef + d_coef * i, -0.3, 0.3),
                phase=c.phase + d_phase * i,
                brightness=c.brightness * bright[i],
                dome=c.dome,
                tex_origin=c.tex_origin,
            )
            _render_cell(ci, k + 1, labels[i], signal, scene.cell_texture)
        frames[i] = _form_image(rng, scene, signal)
    return frames, labels
