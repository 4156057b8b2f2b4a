"""Synthetic microscopy-like images and clips with exact ground-truth labels.

Used to train and evaluate the project's micro SAM2 (tools/train_micro.py,
tools/evaluate_micro.py) and as test fixtures: official checkpoints cannot be downloaded
everywhere, so the tests need data whose true masks are known. Everything is deterministic
given ``seed``; only numpy and torch (resampling, blur) are used.

Image formation, roughly as in a widefield fluorescence microscope: irregular cells (perturbed
ellipses with inner texture and a domed profile) and faint unlabelled debris on a textured
background, multiplied by an uneven illumination field, blurred by a small PSF, then shot
(Poisson) and read (Gaussian) noise, scaled to a random brightness of uint8 or uint16.
``synthetic_nuclei`` (the module beside this one) draws confocal nuclei that look like the
real stack instead: crowded, blurred in depth, labelled where an annotator draws the edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["synthetic_cells", "synthetic_clip", "CellShape"]

_N_HARMONICS = 4  # Fourier harmonics 2..5 of the boundary radius


@dataclass
class CellShape:
    """One cell's geometry: centre (y, x), semi-axes, orientation, boundary harmonics."""

    cy: float
    cx: float
    a: float  # semi-axis along ``angle``
    b: float  # semi-axis across it
    angle: float
    coef: np.ndarray  # (_N_HARMONICS,) relative amplitude of harmonics 2..5
    phase: np.ndarray  # (_N_HARMONICS,)
    brightness: float  # relative signal, 0..1
    dome: float  # how much brighter the centre is than the rim
    tex_origin: tuple[int, int] = (0, 0)  # where the cell's texture is read: moves with the cell

    def radius_at(self, theta: np.ndarray) -> np.ndarray:
        """Boundary radius in direction ``theta`` (radians, measured from the +x axis)."""
        phi = theta - self.angle
        r = self.a * self.b / np.sqrt((self.b * np.cos(phi)) ** 2 + (self.a * np.sin(phi)) ** 2)
        k = np.arange(2, 2 + _N_HARMONICS)[:, None]
        wobble = (self.coef[:, None] * np.cos(k * theta.ravel()[None] + self.phase[:, None])).sum(
            0
        )
        return r * (1.0 + wobble.reshape(theta.shape))

    @property
    def extent(self) -> float:
        """A radius that bounds the whole cell."""
        return max(self.a, self.b) * (1.0 + float(np.abs(self.coef).sum())) + 2.0


def _random_shape(
    rng: np.random.Generator,
    cy: float,
    cx: float,
    radius: float,
    irregularity: float,
    max_elongation: float,
) -> CellShape:
    elong = rng.uniform(1.0, max_elongation)
    a = radius * np.sqrt(elong)
    b = radius / np.sqrt(elong)
    coef = rng.normal(0.0, irregularity, _N_HARMONICS) / np.arange(2, 2 + _N_HARMONICS) * 2
    coef = np.clip(coef, -0.3, 0.3)
    return CellShape(
        cy=cy,
        cx=cx,
        a=a,
        b=b,
        angle=rng.uniform(0, np.pi),
        coef=coef,
        phase=rng.uniform(0, 2 * np.pi, _N_HARMONICS),
        brightness=rng.uniform(0.35, 1.0),
        dome=rng.uniform(0.0, 0.4),
        tex_origin=(int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 16))),
    )


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Zero-mean, unit-ish smooth random field with features about ``cell`` pixels wide."""
    gh = max(2, int(np.ceil(shape[0] / cell)) + 1)
    gw = max(2, int(np.ceil(shape[1] / cell)) + 1)
    coarse = torch.from_numpy(rng.standard_normal((gh, gw)))[None, None]
    fine = F.interpolate(coarse, size=shape, mode="bicubic", align_corners=True)
    return fine[0, 0].numpy()


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with reflected borders (the microscope's point spread)."""
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k = torch.from_numpy(k / k.sum())
    t = torch.from_numpy(np.asarray(img, np.float64))[None, None]
    pad_h, pad_w = min(r, img.shape[0] - 1), min(r, img.shape[1] - 1)
    t = F.pad(t, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    t = F.conv2d(t, k[r - pad_h : r + pad_h + 1].view(1, 1, -1, 1))
    t = F.conv2d(t, k[r - pad_w : r + pad_w + 1].view(1, 1, 1, -1))
    return t[0, 0].numpy()


def _illumination(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Uneven illumination: an off-centre vignette times a linear ramp, in 0.45..1."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    sigma = rng.uniform(0.6, 1.5) * max(h, w)
    vignette = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    g = rng.uniform(-0.25, 0.25, 2)
    ramp = 1.0 + g[0] * (yy / h - 0.5) + g[1] * (xx / w - 0.5)
    illum = vignette * ramp
    illum = illum / illum.max()
    return np.clip(illum, 0.45, 1.0)


def _render_cell(
    shape: CellShape,
    cell_id: int,
    labels: np.ndarray,
    signal: np.ndarray,
    texture: np.ndarray,
    overwrite: bool = False,
) -> None:
    """Draw one cell into ``labels`` and ``signal`` inside its own tile (fast for many cells).

    Pixels already owned by another cell stay theirs unless ``overwrite``: this is how
    touching cells get a shared border instead of overlapping.
    """
    h, w = labels.shape
    ext = shape.extent + 2
    y0, y1 = int(max(0, np.floor(shape.cy - ext))), int(min(h, np.ceil(shape.cy + ext) + 1))
    x0, x1 = int(max(0, np.floor(shape.cx - ext))), int(min(w, np.ceil(shape.cx + ext) + 1))
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - shape.cy, xx - shape.cx
    rho = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    r = shape.radius_at(theta)
    inside = rho < r
    tile_lab = labels[y0:y1, x0:x1]
    free = inside if overwrite else inside & (tile_lab == 0)
    tile_lab[free] = cell_id
    # Anti-aliased edge (one pixel), domed profile and inner texture.
    edge = np.clip(r - rho + 0.5, 0.0, 1.0)
    rel = np.clip(rho / np.maximum(r, 1e-3), 0, 1)
    th, tw = texture.shape
    ty = (np.arange(y0, y1) - int(round(shape.cy)) + shape.tex_origin[0]) % th
    tx = (np.arange(x0, x1) - int(round(shape.cx)) + shape.tex_origin[1]) % tw
    profile = (1.0 - shape.dome * rel**2) * (1.0 + 0.25 * texture[np.ix_(ty, tx)])
    value = shape.brightness * edge * np.clip(profile, 0.2, None)
    tile_sig = signal[y0:y1, x0:x1]
    if overwrite:
        tile_sig[inside] = value[inside]
        rim = ~inside & (edge > 0)
        tile_sig[rim] = np.maximum(tile_sig[rim], value[rim])
    else:
        # Where the cell is free (or its anti-aliased rim), it sets the signal.
        own = free | (~inside & (tile_lab == 0) & (edge > 0))
        tile_sig[own] = np.maximum(tile_sig[own], value[own])


def _place_cells(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n_cells: int,
    radius: float,
    irregularity: float,
    max_elongation: float,
    touching: bool,
) -> list[CellShape]:
    """Random, mostly non-overlapping cells; with ``touching`` about a third come in pairs."""
    h, w = shape
    cells: list[CellShape] = []
    n_pairs = n_cells // 3 if touching and n_cells >= 2 else 0
    tries = 0
    while len(cells) < n_cells and tries < 200 * n_cells:
        tries += 1
        r = radius * rng.uniform(0.7, 1.3)
        make_pair = n_pairs > 0 and len(cells) + 2 <= n_cells
        margin = r * 0.6
        cy = rng.uniform(margin, h - margin)
        cx = rng.uniform(margin, w - margin)
        first = _random_shape(rng, cy, cx, r, irregularity, max_elongation)
        new = [first]
        if make_pair:
            r2 = radius * rng.uniform(0.7, 1.3)
            direction = rng.uniform(0, 2 * np.pi)
            second = _random_shape(rng, 0.0, 0.0, r2, irregularity, max_elongation)
            # Distance so that the two boundaries overlap by a few pixels along the axis:
            # the overlap is given to the first cell, which leaves a shared border.
            d1 = float(first.radius_at(np.array([direction]))[0])
            d2 = float(second.radius_at(np.array([direction + np.pi]))[0])
            dist = d1 + d2 - rng.uniform(2.0, 0.25 * min(d1, d2) + 2.0)
            second.cy = cy + dist * np.sin(direction)
            second.cx = cx + dist * np.cos(direction)
            if not (0 <= second.cy < h and 0 <= second.cx < w):
                continue
            new.append(second)
        ok = True
        for c in new:
            for o in cells:
                gap = np.hypot(c.cy - o.cy, c.cx - o.cx)
                if gap < 0.9 * (max(c.a, c.b) + max(o.a, o.b)) + 2:
                    ok = False
                    break
            if not ok:
                break
        if not ok:
            continue
        cells.extend(new)
        if make_pair:
            n_pairs -= 1
    return cells


def _default_radius(shape: tuple[int, int], n_cells: int) -> float:
    # About a fifth of the field covered by cells, within a sensible size range.
    r = np.sqrt(0.2 * shape[0] * shape[1] / (max(n_cells, 1) * np.pi))
    return float(np.clip(r, 6.0, 0.2 * min(shape)))


@dataclass
class _Scene:
    """Per-image constants of the optics and the background (kept across a clip's frames)."""

    illumination: np.ndarray
    background: np.ndarray  # textured background + unlabelled debris, in signal units
    cell_texture: np.ndarray
    psf_sigma: float
    photons: float  # photon count of a full-brightness cell: sets the shot noise
    read_noise: float
    dtype: np.dtype
    offset: float
    gain: float


def _make_scene(rng: np.random.Generator, shape: tuple[int, int], dtype, radius: float) -> _Scene:
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ValueError(f"dtype must be uint8 or uint16, got {dtype}")
    h, w = shape
    bg_level = rng.uniform(0.05, 0.25)
    background = bg_level * (1.0 + 0.35 * _smooth_noise(rng, shape, rng.uniform(20, 80)))
    background += 0.02 * _smooth_noise(rng, shape, rng.uniform(3, 8))
    # Faint out-of-focus debris: unlabelled, much dimmer than cells (hard negatives).
    n_debris = rng.integers(0, 6)
    if n_debris:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for _ in range(n_debris):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            s = radius * rng.uniform(0.5, 2.0)
            amp = rng.uniform(0.03, 0.1)
            background += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    background = np.clip(background, 0.0, None)
    if dtype == np.uint8:
        full = rng.uniform(90, 240)  # grey value of the brightest cell at full illumination
        offset = rng.uniform(0, 12)
    else:
        full = rng.uniform(1500, 40000)
        offset = rng.uniform(80, 600)
    return _Scene(
        illumination=_illumination(rng, shape),
        background=background.astype(np.float32),
        cell_texture=_smooth_noise(rng, shape, rng.uniform(3, 10)).astype(np.float32),
        psf_sigma=rng.uniform(0.6, 1.8),
        photons=rng.uniform(80, 2000),
        read_noise=rng.uniform(0.005, 0.03),
        dtype=dtype,
        offset=offset,
        gain=full,
    )


def _form_image(rng: np.random.Generator, scene: _Scene, signal: np.ndarray, drift=1.0):
    """Optics and camera: illumination, blur, shot and read noise, quantisation."""
    ideal = scene.illumination * (scene.background + drift * signal)
    ideal = _gaussian_blur(ideal, scene.psf_sigma)
    counts = rng.poisson(np.clip(ideal, 0, None) * scene.photons) / scene.photons
    img = counts + rng.normal(0.0, scene.read_noise, ideal.shape)
    img = scene.offset + scene.gain * img
    info = np.iinfo(scene.dtype)
    return np.clip(np.rint(img), info.min, info.max).astype(scene.dtype)


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
