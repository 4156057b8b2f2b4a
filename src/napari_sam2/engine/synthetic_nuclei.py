"""Synthetic fluorescence nuclei imaged as a confocal microscope images them (issue 17).

``synthetic_cells`` draws flat cells with a one-pixel edge; measured against the real confocal
nuclei stack (tools/realism.py, docs/micro-model.md) its objects are too sharp, too sparse,
too even in size and too clean. Here nuclei are 3D ellipsoids in a volume, and a plane is
formed as a confocal microscope forms it: every depth layer of every nucleus adds light,
attenuated and blurred the more the further it lies from the focal plane. That gives what the
real stack shows: halos outside the annotated edge (larger layers above or below), dim blurry
neighbours that are not labelled (out of focus), small cross-sections at a nucleus' top and
bottom. Labels are the nuclei's true cross-sections in the focal plane, the boundary an
annotator draws at half height, not the outer edge of the blur. Fields are crowded (a third
or more of the labelled nuclei touch), sizes vary, some nuclei are dim, some saturate, and a
few are condensed (dividing): bright clumps of chromatin with dark gaps between them, labelled
as one nucleus all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .synthetic_scene import CellShape, _gaussian_blur, _illumination, _random_shape, _smooth_noise

__all__ = ["synthetic_nuclei", "synthetic_nuclei_stack"]

_LAYERS = 9  # depth layers a nucleus is drawn as
CONDENSED = 0.08  # share of nuclei whose chromatin is condensed in clumps
_SIGMA_STEPS = 1.5 ** np.arange(8)  # blur levels, in units of the in-focus PSF


@dataclass
class _Nucleus:
    lateral: CellShape  # the equatorial cross-section
    cz: float  # centre depth, in lateral pixels
    c: float  # axial semi-axis, in lateral pixels
    power: float = 2.0  # cross-section radius (1 - |z / c| ** power) ** (1 / power): 2 a sphere
    condensed: bool = False  # chromatin in bright clumps (a dividing cell)

    def scale(self, u):
        """Cross-section radius relative to the equator's at relative depth ``u``."""
        return np.clip(1.0 - np.abs(u) ** self.power, 0.0, None) ** (1.0 / self.power)


@dataclass
class _Optics:
    psf: float  # in-focus Gaussian PSF sigma, px
    scatter: float  # share of light in the PSF's wide tail
    tail: float  # that tail's sigma, px
    z_range: float  # depth over which light of a layer falls to half (confocal sectioning)
    illumination: np.ndarray
    background: np.ndarray
    texture: np.ndarray
    clumps: np.ndarray  # zero-mean field of clump-sized features, for condensed nuclei
    photons: float
    read_noise: float
    gain: float
    offset: float
    dtype: np.dtype


def _place(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n: int,
    radius: float,
    z_lo: float,
    z_hi: float,
    touching: float,
    first_z: float | None = None,
) -> list[_Nucleus]:
    """Nuclei in the volume; a share ``touching`` is put against an earlier one."""
    h, w = shape
    spread = rng.uniform(0.1, 0.45)
    irregularity = rng.uniform(0.0, 0.07)
    elongation = rng.uniform(1.0, 1.7)
    nuclei: list[_Nucleus] = []
    for _ in range(30 * n):
        if len(nuclei) >= n:
            break
        r = max(2.5, radius * float(np.exp(rng.normal(0.0, spread))))
        condensed = bool(rng.random() < CONDENSED)
        lumpy = rng.uniform(0.1, 0.25) if condensed else irregularity
        lat = _random_shape(rng, 0.0, 0.0, r, lumpy, elongation)
        lat.brightness = float(np.exp(rng.uniform(np.log(0.15), 0.0)))
        if condensed:
            lat.brightness = min(1.0, 1.6 * lat.brightness)
        lat.dome = rng.uniform(0.0, 0.3)
        c = r * rng.uniform(0.5, 0.9)
        partner = None
        if nuclei and rng.random() < touching:
            partner = nuclei[int(rng.integers(len(nuclei)))]
            direction = rng.uniform(0, 2 * np.pi)
            d1 = float(partner.lateral.radius_at(np.array([direction]))[0])
            d2 = float(lat.radius_at(np.array([direction + np.pi]))[0])
            dist = d1 + d2 - rng.uniform(1.0, 0.2 * min(d1, d2) + 1.0)
            lat.cy = partner.lateral.cy + dist * np.sin(direction)
            lat.cx = partner.lateral.cx + dist * np.cos(direction)
            cz = partner.cz + rng.normal(0.0, 0.15 * partner.c)
        else:
            lat.cy, lat.cx = rng.uniform(0, h), rng.uniform(0, w)
            cz = rng.uniform(z_lo, z_hi)
        if first_z is not None and not nuclei:
            cz = first_z
        if not (0 <= lat.cy < h and 0 <= lat.cx < w):
            continue
        new = _Nucleus(lat, float(cz), float(c), rng.uniform(1.6, 3.0), condensed)
        if all(o is partner or not _overlap(new, o) for o in nuclei):
            nuclei.append(new)
    return nuclei


def _overlap(a: _Nucleus, b: _Nucleus) -> bool:
    """Too close to be two nuclei: overlapping in depth and laterally (a little is allowed)."""
    if abs(a.cz - b.cz) > 0.8 * (a.c + b.c):
        return False
    ra, rb = max(a.lateral.a, a.lateral.b), max(b.lateral.a, b.lateral.b)
    gap = np.hypot(a.lateral.cy - b.lateral.cy, a.lateral.cx - b.lateral.cx)
    return gap < 0.85 * (ra + rb)


def _tile(n: _Nucleus, shape: tuple[int, int], grow: float):
    """Tile bounds and polar coordinates around a nucleus (padded by ``grow`` px)."""
    h, w = shape
    s = n.lateral
    ext = s.extent + grow
    y0, y1 = int(max(0, np.floor(s.cy - ext))), int(min(h, np.ceil(s.cy + ext) + 1))
    x0, x1 = int(max(0, np.floor(s.cx - ext))), int(min(w, np.ceil(s.cx + ext) + 1))
    if y0 >= y1 or x0 >= x1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - s.cy, xx - s.cx
    rho = np.hypot(dy, dx)
    r = s.radius_at(np.arctan2(dy, dx))
    return (y0, y1, x0, x1), rho, r


def _focal_labels(nuclei: list[_Nucleus], z: float, shape) -> np.ndarray:
    """Each nucleus' true cross-section at depth ``z``; earlier nuclei keep shared pixels."""
    labels = np.zeros(shape, np.int32)
    for k, n in enumerate(nuclei, start=1):
        scale = float(n.scale((z - n.cz) / n.c))
        if scale * min(n.lateral.a, n.lateral.b) < 1.0:
            continue
        tile = _tile(n, shape, 2.0)
        if tile is None:
            continue
        (y0, y1, x0, x1), rho, r = tile
        sub = labels[y0:y1, x0:x1]
        sub[(rho < scale * r) & (sub == 0)] = k
    return labels


def _form_plane(
    rng: np.random.Generator, nuclei: list[_Nucleus], z: float, optics: _Optics, labels
) -> np.ndarray:
    """The camera image of the focal plane at depth ``z``."""
    shape = labels.shape
    levels = optics.psf * _SIGMA_STEPS
    bins = np.zeros((len(levels),) + shape, np.float32)
    u = np.linspace(-1, 1, _LAYERS + 2)[1:-1]
    th, tw = optics.texture.shape
    for k, n in enumerate(nuclei, start=1):
        depth = n.cz + n.c * u - z
        weight = 1.0 / (1.0 + (depth / optics.z_range) ** 2)
        # Normalised so that a nucleus centred in focus peaks at its brightness.
        weight = weight / (1.0 / (1.0 + (n.c * u / optics.z_range) ** 2)).sum()
        if weight.sum() < 0.01:
            continue
        tile = _tile(n, shape, 2.0)
        if tile is None:
            continue
        (y0, y1, x0, x1), rho, r = tile
        s = n.lateral
        ty = (np.arange(y0, y1) - int(round(s.cy)) + s.tex_origin[0]) % th
        tx = (np.arange(x0, x1) - int(round(s.cx)) + s.tex_origin[1]) % tw
        texture = optics.texture[np.ix_(ty, tx)]
        if n.condensed:
            clumps = np.clip(0.9 + 1.4 * optics.clumps[np.ix_(ty, tx)], 0.1, 2.5)
        sub = labels[y0:y1, x0:x1]
        # Light of a nucleus pressed against another mostly stays on its own side.
        shade = np.where((sub > 0) & (sub != k), 0.3, 1.0)
        sigma = optics.psf * np.sqrt(1.0 + (depth / optics.z_range) ** 2)
        for j in range(_LAYERS):
            scale = float(n.scale(u[j]))
            if weight[j] < 0.001 or scale * max(s.a, s.b) < 0.5:
                continue
            rj = scale * r
            edge = np.clip(rj - rho + 0.5, 0.0, 1.0)
            rel = np.clip(rho / np.maximum(rj, 1e-3), 0, 1)
            profile = np.clip((1.0 - s.dome * rel**2) * (1.0 + texture), 0.05, None)
            if n.condensed:
                profile = profile * clumps
            b = int(np.argmin(np.abs(levels - sigma[j])))
            bins[b, y0:y1, x0:x1] += (s.brightness * weight[j]) * edge * profile * shade
    light = np.zeros(shape, np.float32)
    for b, level in enumerate(levels):
        if bins[b].any():
            light += _gaussian_blur(bins[b], float(level))
    # The PSF's wide tail (scatter, aberrations): the faint halo real nuclei have.
    light = optics.background + light + optics.scatter * _gaussian_blur(light, optics.tail)
    ideal = np.clip(optics.illumination * light, 0, None)
    counts = rng.poisson(ideal * optics.photons) / optics.photons
    img = optics.offset + optics.gain * (counts + rng.normal(0.0, optics.read_noise, shape))
    info = np.iinfo(optics.dtype)
    return np.clip(np.rint(img), info.min, info.max).astype(optics.dtype)


def _optics(rng: np.random.Generator, shape, dtype, radius: float) -> _Optics:
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ValueError(f"dtype must be uint8 or uint16, got {dtype}")
    background = rng.uniform(0.02, 0.2) * (1.0 + 0.25 * _smooth_noise(rng, shape, 60.0))
    background += 0.02 * _smooth_noise(rng, shape, rng.uniform(3, 8))
    top = float(np.iinfo(dtype).max)
    # A nucleus of brightness 1 in focus lands at up to 130 % of the camera's range: some
    # fields are dim, the brightest nuclei of some saturate.
    full = top * rng.uniform(0.25, 1.3) if dtype == np.uint8 else rng.uniform(1500, 1.3 * top)
    offset = rng.uniform(0, 12) if dtype == np.uint8 else rng.uniform(80, 2500)
    # Chromatin: a grain, sparse bright spots (the heavy tail of real interiors) and dark
    # patches (nucleoli) that belong to the nucleus all the same.
    texture = rng.uniform(0.15, 0.7) * _smooth_noise(rng, shape, rng.uniform(1.2, 4.0))
    spots = np.clip(_smooth_noise(rng, shape, rng.uniform(1.5, 3.0)) - 1.0, 0.0, None)
    texture += rng.uniform(0.3, 1.5) * spots
    holes = np.clip(_smooth_noise(rng, shape, rng.uniform(2.5, 6.0)) - 1.0, 0.0, None)
    texture -= rng.uniform(0.0, 1.2) * holes
    return _Optics(
        psf=rng.uniform(0.5, 1.3),
        scatter=rng.uniform(0.05, 0.3),
        tail=rng.uniform(3.0, 8.0),
        # Sharp sectioning is common (the real stack's light ends within two slices of a
        # nucleus' top); softer in some fields.
        z_range=radius * float(np.exp(rng.uniform(np.log(0.05), np.log(0.4)))),
        illumination=_illumination(rng, shape),
        background=np.clip(background, 0, None).astype(np.float32),
        texture=texture.astype(np.float32),
        clumps=_smooth_noise(rng, shape, max(2.0, 0.4 * radius)).astype(np.float32),
        photons=float(np.exp(rng.uniform(np.log(10), np.log(2000)))),
        read_noise=rng.uniform(0.005, 0.04),
        gain=full,
        offset=offset,
        dtype=dtype,
    )


def _default_radius(shape: tuple[int, int], n_cells: int) -> float:
    r = np.sqrt(0.3 * shape[0] * shape[1] / (max(n_cells, 1) * np.pi))
    return float(np.clip(r, 3.0, 0.2 * min(shape)))


def synthetic_nuclei(
    shape: tuple[int, int] = (256, 256),
    n_cells: int = 20,
    dtype=np.uint16,
    seed: int = 0,
    *,
    radius: float | None = None,
    touching: float = 0.5,
    out_of_focus: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """One confocal plane of nuclei and the labels of their in-focus cross-sections.

    Parameters
    ----------
    shape, dtype, seed : as in :func:`synthetic_cells`.
    n_cells : nuclei placed (in and out of focus; fewer if they do not fit).
    radius : median equatorial radius, px; by default nuclei cover about 30 % of the field.
    touching : share of nuclei placed against an earlier one.
    out_of_focus : share placed with their centre above or below the focal plane by more
        than their half-depth: visible as dim blurred light, not labelled.

    Returns
    -------
    image : (H, W) of ``dtype``; labels : (H, W) int32, 1..n for the labelled nuclei.
    """
    rng = np.random.default_rng(seed)
    shape = (int(shape[0]), int(shape[1]))
    radius = _default_radius(shape, n_cells) if radius is None else float(radius)
    optics = _optics(rng, shape, dtype, radius)
    n_far = int(round(out_of_focus * n_cells))
    # In focus: cut anywhere from the equator to near the top or bottom (small, dim sections).
    nuclei = _place(rng, shape, n_cells - n_far, radius, -0.7 * radius, 0.7 * radius, touching)
    for n in _place(rng, shape, n_far, radius, 0.8 * radius, 1.8 * radius, 0.0):
        nuclei.append(replace(n, cz=n.cz * rng.choice([-1.0, 1.0])))
    labels = _focal_labels(nuclei, 0.0, shape)
    image = _form_plane(rng, nuclei, 0.0, optics, labels)
    present = np.unique(labels[labels > 0])
    lut = np.zeros(len(nuclei) + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    return image, lut[labels]


def synthetic_nuclei_stack(
    n_slices: int = 21,
    shape: tuple[int, int] = (256, 256),
    n_cells: int = 20,
    dtype=np.uint16,
    seed: int = 0,
    *,
    radius: float | None = None,
    z_step: float = 1.0,
    touching: float = 0.5,
    centre: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A confocal z-stack of nuclei: slice ``i`` is focused at depth ``i * z_step`` px.

    Nucleus 1 is centred on slice ``centre`` (default the middle one); the others anywhere in
    the volume and beyond it (so some are cut by the stack's ends). A nucleus keeps its id on
    every slice.

    Returns
    -------
    frames : (Z, H, W) of ``dtype``; labels : (Z, H, W) int32.
    """
    rng = np.random.default_rng(seed)
    shape = (int(shape[0]), int(shape[1]))
    radius = _default_radius(shape, n_cells) if radius is None else float(radius)
    optics = _optics(rng, shape, dtype, radius)
    depth = (n_slices - 1) * z_step
    first = (n_slices // 2 if centre is None else centre) * z_step
    nuclei = _place(
        rng, shape, n_cells, radius, -0.5 * radius, depth + 0.5 * radius, touching, first
    )
    frames = np.empty((n_slices,) + shape, optics.dtype)
    labels = np.zeros((n_slices,) + shape, np.int32)
    for i in range(n_slices):
        labels[i] = _focal_labels(nuclei, i * z_step, shape)
        frames[i] = _form_plane(rng, nuclei, i * z_step, optics, labels[i])
    return frames, labels
