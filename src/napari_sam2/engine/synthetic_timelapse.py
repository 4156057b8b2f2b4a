"""Long synthetic time-lapses: crowded moving cells that divide, enter and leave (issue 17).

``synthetic_clip`` moves a few well-separated cells that bounce off the borders; real
time-lapses are crowded, cells push past each other, divide, and come and go through the
borders. The cells and the optics are those of ``synthetic_clip`` (``synthetic_scene``); the
motion is a persistent random walk (each cell keeps most of its velocity from frame to frame),
and neighbours push each other apart once they overlap by more than a tenth of their radii:
crowded cells touch and slide past each other instead of merging. Where two cells overlap the
one drawn later lies on top and owns the pixels, so no label ever covers two. Cells are drawn
in id order, except that daughters take their mother's place in it (whoever lay on top of her
lies on top of them: a division changes no neighbour's outline), and cells coming in lie on
top of all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .synthetic_scene import (
    _N_HARMONICS,
    CellShape,
    _form_image,
    _make_scene,
    _place_cells,
    _random_shape,
    _render_cell,
)

__all__ = ["synthetic_timelapse"]

_PINCH = 6  # frames a mother takes to elongate and pinch before her daughters appear
_SPEED = 1.5  # rms speed of a cell, pixels per frame
_PERSIST = 0.9  # share of its velocity a cell keeps from one frame to the next
_CLOSE = 0.9  # cells push apart when their centres are closer than this times their radii
_PUSH = 0.15  # share of that excess overlap undone each frame
_COVER = 0.35  # share of the field the cells cover: a crowded field


@dataclass
class _Track:
    """One cell's state: ``shape`` holds its current position, angle and boundary harmonics."""

    id: int
    shape: CellShape
    coef0: np.ndarray  # the harmonics the boundary wobbles around
    vel: np.ndarray
    omega: float
    d_phase: np.ndarray
    wave: np.ndarray  # frequencies and phases of its brightness and size oscillations
    mode: str = "free"  # or "enter" / "leave": moving at ``vel`` through a border


def _track(rng: np.random.Generator, cell_id: int, shape: CellShape, n_frames: int) -> _Track:
    """A new cell of ``shape`` with its own random motion, rotation and oscillations."""
    return _Track(
        id=cell_id,
        shape=shape,
        coef0=shape.coef.copy(),
        vel=rng.normal(0.0, _SPEED / np.sqrt(2), 2),
        omega=rng.normal(0.0, 0.03),
        d_phase=rng.normal(0.0, 0.03, _N_HARMONICS),
        wave=np.concatenate(
            [rng.uniform(0.3, 1.0, 2) * 2 * np.pi / max(n_frames, 2), rng.uniform(0, 2 * np.pi, 2)]
        ),
    )


def _scale(t: _Track, i: int) -> float:
    return 1.0 + 0.08 * np.sin(t.wave[1] * i + t.wave[3])


def _now(t: _Track, i: int) -> CellShape:
    """The cell as drawn on frame ``i``: its size and brightness oscillate slowly."""
    s = _scale(t, i)
    bright = 1.0 + 0.2 * np.sin(t.wave[0] * i + t.wave[2])
    c = t.shape
    return replace(c, a=c.a * s, b=c.b * s, brightness=c.brightness * bright)


def _lobes(c: CellShape, u: float) -> list[CellShape]:
    """A dividing cell at progress ``u`` (0..1): two rounding lobes pull apart along its long
    axis, the waist between them narrowing; at ``u = 1`` they are the daughters."""
    rho = 0.75 * np.sqrt(c.a * c.b)  # a daughter's radius: each has a good half of the area
    a, b = c.a + (rho - c.a) * u, c.b + (rho - c.b) * u
    h = 0.8 * rho * u
    dy, dx = h * np.sin(c.angle), h * np.cos(c.angle)
    lobe = replace(c, a=a, b=b, coef=c.coef * (1 - u))
    o = c.tex_origin
    return [
        replace(lobe, cy=c.cy - dy, cx=c.cx - dx),
        replace(lobe, cy=c.cy + dy, cx=c.cx + dx, tex_origin=(o[0] + 7919, o[1] + 104729)),
    ]


def _draw(shapes: list[CellShape], cell_id: int, labels, signal, texture) -> None:
    """Draw one cell (one shape, or a dividing cell's two lobes) on top of what is there."""
    h, w = labels.shape
    ext = max(s.extent for s in shapes) + 3
    y0 = max(0, int(min(s.cy for s in shapes) - ext))
    y1 = min(h, int(max(s.cy for s in shapes) + ext) + 1)
    x0 = max(0, int(min(s.cx for s in shapes) - ext))
    x1 = min(w, int(max(s.cx for s in shapes) + ext) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    lab = np.zeros((y1 - y0, x1 - x0), np.int32)
    sig = np.zeros(lab.shape, np.float32)
    for s in shapes:  # the lobes blend (brightest wins) where they overlap
        _render_cell(replace(s, cy=s.cy - y0, cx=s.cx - x0), 1, lab, sig, texture)
    inside = lab > 0
    tile_lab, tile_sig = labels[y0:y1, x0:x1], signal[y0:y1, x0:x1]
    tile_lab[inside] = cell_id
    tile_sig[inside] = sig[inside]
    rim = ~inside & (sig > 0)
    tile_sig[rim] = np.maximum(tile_sig[rim], sig[rim])


def _border_distance(c: CellShape, shape: tuple[int, int]) -> np.ndarray:
    """Distance of the centre inside the top, bottom, left and right borders."""
    return np.array([c.cy, shape[0] - 1 - c.cy, c.cx, shape[1] - 1 - c.cx])


_NORMALS = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # inwards, same order


def _entering(rng, cell_id, shape, radius, n_frames) -> _Track:
    """A cell just outside a border, a cap of it in the field, moving in."""
    side = int(rng.integers(4))
    r = radius * rng.uniform(0.7, 1.3)
    along = rng.uniform(0.15, 0.85) * shape[1 - side // 2]
    edge = [(0.0, along), (shape[0] - 1.0, along), (along, 0.0), (along, shape[1] - 1.0)][side]
    cy, cx = np.array(edge) - _NORMALS[side] * 0.3 * r
    t = _track(rng, cell_id, _random_shape(rng, cy, cx, r, 0.12, 1.6), n_frames)
    t.vel = _NORMALS[side] * rng.uniform(1.5, 2.5)
    t.mode = "enter"
    return t


def _start_leaving(tracks: list[_Track], eligible, shape, i: int, n_frames: int) -> None:
    """Send the eligible cell nearest a border out through it, to be gone before the end."""
    cands = [t for t in tracks if t.mode == "free" and t.id in eligible]
    dist = [_border_distance(t.shape, shape) for t in cands]
    k = int(np.argmin([d.min() for d in dist]))
    t, side = cands[k], int(np.argmin(dist[k]))
    eligible.discard(t.id)
    way = dist[k][side] + t.shape.extent * 1.1
    speed = np.clip(way / (0.8 * max(n_frames - 1 - i, 1)), 1.5, 4.0)
    t.vel = -_NORMALS[side] * speed
    t.mode = "leave"


def _move(rng, tracks: list[_Track], shape: tuple[int, int], i: int) -> list[_Track]:
    """Advance every cell to frame ``i``; returns those still (partly) in the field."""
    kick = _SPEED / np.sqrt(2) * np.sqrt(1 - _PERSIST**2)
    for t in tracks:
        if t.mode == "free":
            t.vel = _PERSIST * t.vel + rng.normal(0.0, kick, 2)
        c = t.shape
        c.cy, c.cx = c.cy + t.vel[0], c.cx + t.vel[1]
        c.angle += t.omega
        wobble = 0.05 * (t.coef0 - c.coef) + rng.normal(0.0, 0.004, _N_HARMONICS)
        c.coef = np.clip(c.coef + wobble, -0.3, 0.3)
        c.phase = c.phase + t.d_phase
    # Neighbours that overlap too much push each other apart (cells passing through a border
    # keep their course and push the others).
    pos = np.array([[t.shape.cy, t.shape.cx] for t in tracks])
    rad = np.array([np.sqrt(t.shape.a * t.shape.b) * _scale(t, i) for t in tracks])
    d = pos[:, None] - pos[None]
    dist = np.hypot(d[..., 0], d[..., 1]) + np.eye(len(tracks)) * 1e9
    excess = np.clip(_CLOSE * (rad[:, None] + rad[None]) - dist, 0.0, None)
    push = _PUSH * ((excess / np.maximum(dist, 1e-6))[..., None] * d).sum(1)
    kept = []
    for t, p, r in zip(tracks, push, rad, strict=True):
        c = t.shape
        if t.mode == "free":
            c.cy, c.cx = c.cy + p[0], c.cx + p[1]
            for axis, lim in enumerate(shape):  # stay in the field: bounce at half a radius
                q = (c.cy, c.cx)[axis]
                if q < 0.5 * r or q > lim - 1 - 0.5 * r:
                    t.vel[axis] = abs(t.vel[axis]) * (1 if q < 0.5 * r else -1)
                    q = float(np.clip(q, 0.5 * r, lim - 1 - 0.5 * r))
                    c.cy, c.cx = (q, c.cx) if axis == 0 else (c.cy, q)
        inside = _border_distance(c, shape).min()
        if t.mode == "enter" and inside >= c.extent:
            t.mode = "free"  # all in: from now on it wanders like the others
        if t.mode == "leave" and inside < -c.extent - 1:
            continue  # gone
        kept.append(t)
    return kept


def synthetic_timelapse(
    n_frames: int = 100,
    shape: tuple[int, int] = (512, 512),
    n_cells: int = 48,
    dtype=np.uint16,
    seed: int = 0,
    divisions: int = 4,
    entering: int = 3,
    leaving: int = 3,
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """A crowded fluorescence time-lapse whose cells divide, enter and leave, with true tracks.

    Parameters
    ----------
    n_frames, shape, dtype, seed : as in :func:`synthetic_clip` (30 to 300 frames suit it).
    n_cells : cells on the first frame (fewer if they do not fit); they cover about a third
        of the field, many touching, some in touching pairs.
    divisions : cells that divide: over a few frames a mother elongates and pinches in two,
        then two daughters with new ids move apart; her id ends on the frame before theirs.
    entering : cells that come in through a border (their first frame cut by it).
    leaving : cells that move out through a border, last seen touching it.

    Returns
    -------
    frames : (T, H, W) array of ``dtype``.
    labels : (T, H, W) int32; each cell keeps its id while visible, ids are never reused, and
        new cells (daughters, cells coming in) get the next ids in the order they appear.
    lineage : ``{daughter id: mother id}``.
    """
    rng = np.random.default_rng(seed)
    shape = (int(shape[0]), int(shape[1]))
    h, w = shape
    radius = float(
        np.clip(np.sqrt(_COVER * h * w / (max(n_cells, 1) * np.pi)), 6, 0.15 * min(h, w))
    )
    scene = _make_scene(rng, shape, dtype, radius)
    cells = _place_cells(rng, shape, n_cells, radius, 0.12, 1.6, touching=True)
    if divisions + leaving > len(cells):
        need = divisions + leaving
        raise ValueError(f"divisions and cells leaving need {need} cells, {len(cells)} fit")
    if (divisions or entering or leaving) and n_frames < _PINCH + 4:
        raise ValueError(f"divisions, entering and leaving need {_PINCH + 4} frames or more")
    tracks = [_track(rng, k, c, n_frames) for k, c in enumerate(cells, start=1)]
    mothers = rng.choice(len(cells), divisions, replace=False) + 1
    when = rng.integers(_PINCH + 1, n_frames - 2, divisions)
    divide_at = dict(zip(mothers.tolist(), when.tolist(), strict=True))
    enter_at = sorted(rng.integers(1, n_frames - 8, entering).tolist())
    leave_at = sorted(rng.integers(1, max(2, n_frames // 2), leaving).tolist())
    may_leave = set(range(1, len(cells) + 1)) - set(divide_at)
    next_id = len(cells) + 1
    lineage: dict[int, int] = {}
    frames = np.empty((n_frames,) + shape, scene.dtype)
    labels = np.zeros((n_frames,) + shape, np.int32)
    for i in range(n_frames):
        if i:
            tracks = _move(rng, tracks, shape, i)
        for mother in [t for t in tracks if divide_at.get(t.id) == i]:
            place = tracks.index(mother)  # the daughters take her place in the drawing order
            pair = []
            for k, lobe in enumerate(_lobes(mother.shape, 1.0)):
                daughter = _track(rng, next_id, lobe, n_frames)
                apart = np.array([np.sin(lobe.angle), np.cos(lobe.angle)]) * (1 if k else -1)
                daughter.vel = 0.5 * mother.vel + 0.8 * apart
                daughter.wave = mother.wave  # in step with her: no jump in size or brightness
                daughter.coef0 = mother.coef0  # round at first, then as irregular as she was
                lineage[next_id] = mother.id
                pair.append(daughter)
                next_id += 1
            tracks[place : place + 1] = pair
        for _ in range(enter_at.count(i)):
            tracks.append(_entering(rng, next_id, shape, radius, n_frames))
            next_id += 1
        for _ in range(leave_at.count(i)):
            _start_leaving(tracks, may_leave, shape, i, n_frames)
        signal = np.zeros(shape, np.float32)
        for t in tracks:  # in drawing order: the later lies on top
            c = _now(t, i)
            ahead = divide_at.get(t.id, n_frames + _PINCH) - i  # frames until she divides
            shapes = _lobes(c, 1 - ahead / (_PINCH + 1)) if ahead <= _PINCH else [c]
            _draw(shapes, t.id, labels[i], signal, scene.cell_texture)
        frames[i] = _form_image(rng, scene, signal)
    return frames, labels, lineage
