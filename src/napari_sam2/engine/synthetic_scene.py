"""The scene and optics shared by the synthetic generators: cell shapes, their rendering, and
image formation.

Roughly as in a widefield fluorescence microscope: irregular cells (perturbed ellipses with
inner texture and a domed profile) and faint unlabelled debris on a textured background,
multiplied by an uneven illumination field, blurred by a small PSF, then shot (Poisson) and
read (Gaussian) noise, scaled to a random brightness of uint8 or uint16. ``synthetic``
(images, simple clips), ``synthetic_timelapse`` and ``synthetic_nuclei`` draw from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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
