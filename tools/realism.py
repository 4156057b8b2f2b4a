"""How much the synthetic generator looks like the real nuclei stack (issue 17).

Measures the same statistics on labelled 2D images from both sources and prints them side by
side (JSON lines), so that a change to ``napari_sam2.engine.synthetic`` can be judged against
real microscopy rather than by eye:

* ``edge_profile``: mean intensity (0 = background level, 1 = interior level) at signed
  distances from the label boundary (negative inside), i.e. where the annotator put it;
* ``edge_10_90_px``: distance over which that profile rises from 10 % to 90 %;
* ``boundary_level``: the profile at the boundary (0.5: drawn at half height);
* ``radius_px``: quartiles of equivalent radii of the labelled objects;
* ``touching``: share of objects that share a border with another labelled object;
* ``snr``: (interior - background) / background noise (std of a high-pass background);
* ``interior_cv``, ``background_cv``: texture inside objects, unevenness of the background;
* ``interior_p99_over_median``: how saturated / peaked the brightest interiors are;
* ``light_2_beyond_end`` (z-stacks): in each nucleus' widest cross-section, the light two
  slices beyond its first and last labelled slice, as a share of the light at its widest slice
  (both above background): how far out of focus a nucleus still shines, i.e. how much glow
  surrounds its small end sections (median, 10th and 90th percentile over nuclei).

Command::

    PYTHONPATH=src python tools/realism.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DISTANCES = np.array([-6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6])


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~mask) - distance_transform_edt(mask)


def image_stats(frame01: np.ndarray, labels: np.ndarray) -> dict:
    """Raw per-image sums: profiles per distance, object radii, touching flags, noise."""
    from evaluate_micro import touches_others
    from scipy.ndimage import gaussian_filter

    fg = labels > 0
    sd = np.rint(_signed_distance(fg)).astype(int)
    bg_level = float(np.median(frame01[sd >= 8])) if (sd >= 8).any() else 0.0
    in_level = float(np.median(frame01[sd <= -4])) if (sd <= -4).any() else 1.0
    scale = max(in_level - bg_level, 1e-6)
    profile = [
        float(np.mean((frame01[sd == d] - bg_level) / scale)) if (sd == d).any() else np.nan
        for d in DISTANCES
    ]
    far = sd >= 8
    highpass = frame01 - gaussian_filter(frame01, 2.0)
    noise = float(np.std(highpass[far])) if far.any() else np.nan
    smooth_bg = gaussian_filter(frame01, 8.0)[far]
    ids = [k for k in np.unique(labels) if k]
    radii = [float(np.sqrt((labels == k).sum() / np.pi)) for k in ids]
    interiors = [frame01[labels == k] for k in ids]
    return {
        "profile": profile,
        "radii": radii,
        "touching": [touches_others(labels, k) for k in ids],
        "snr": scale / max(noise, 1e-6),
        "interior_cv": float(np.median([np.std(v) / max(np.mean(v), 1e-6) for v in interiors])),
        "background_cv": float(np.std(smooth_bg) / max(np.mean(smooth_bg), 1e-6)),
        "peak": float(
            np.median([np.percentile(v, 99) / max(np.median(v), 1e-6) for v in interiors])
        ),
    }


def summarise(name: str, stats: list[dict]) -> dict:
    prof = np.nanmean([s["profile"] for s in stats], 0)
    i10 = np.interp(0.1, prof[::-1], DISTANCES[::-1])
    i90 = np.interp(0.9, prof[::-1], DISTANCES[::-1])
    radii = np.concatenate([s["radii"] for s in stats])
    touching = np.concatenate([s["touching"] for s in stats])
    return {
        "source": name,
        "images": len(stats),
        "edge_profile": dict(zip(DISTANCES.tolist(), np.round(prof, 3).tolist(), strict=True)),
        "edge_10_90_px": round(float(i10 - i90), 2),
        "boundary_level": round(float(prof[5:7].mean()), 3),
        "radius_px": np.round(np.percentile(radii, [5, 25, 50, 75, 95]), 1).tolist(),
        "touching": round(float(np.mean(touching)), 3),
        "snr": round(float(np.median([s["snr"] for s in stats])), 1),
        "interior_cv": round(float(np.median([s["interior_cv"] for s in stats])), 3),
        "background_cv": round(float(np.median([s["background_cv"] for s in stats])), 3),
        "interior_p99_over_median": round(float(np.median([s["peak"] for s in stats])), 3),
    }


def light_beyond_ends(frames: np.ndarray, labels: np.ndarray) -> list[float]:
    """Per nucleus end inside the stack: light 2 slices beyond it / light at the widest slice."""
    frames = frames.astype(np.float64)
    bg = np.median(frames[:, labels.max(0) == 0])
    out = []
    for k in range(1, labels.max() + 1):
        area = (labels == k).sum((1, 2))
        zs = np.nonzero(area)[0]
        if not len(zs):
            continue
        widest = int(np.argmax(area))
        foot = labels[widest] == k
        centre = frames[widest][foot].mean() - bg
        out += [
            float((frames[z][foot].mean() - bg) / centre)
            for z in (zs[0] - 2, zs[-1] + 2)
            if 0 <= z < len(frames)
        ]
    return out


def axial_summary(name: str, ratios: list[float], stacks: int) -> dict:
    return {
        "source": name,
        "stacks": stacks,
        "light_2_beyond_end": round(float(np.median(ratios)), 3),
        "light_2_beyond_end_p10_p90": np.round(np.percentile(ratios, [10, 90]), 3).tolist(),
    }


def real_stats(step: int = 3) -> list[dict]:
    import evaluate_real

    _, frames01, labels = evaluate_real.load_stack(evaluate_real.DEFAULT_DATA)
    return [
        image_stats(frames01[z], labels[z])
        for z in range(0, len(labels), step)
        if (labels[z] > 0).sum() > 500
    ]


def synthetic_stats(generate, n: int = 12, **kwargs) -> list[dict]:
    import micro_model

    out = []
    for i in range(n):
        image, labels = generate((256, 256), seed=30_000 + i, **kwargs)
        out.append(image_stats(micro_model.normalise(image), labels))
    return out


def main() -> None:
    from napari_sam2.engine.synthetic import synthetic_cells
    from napari_sam2.engine.synthetic_nuclei import synthetic_nuclei, synthetic_nuclei_stack

    print(json.dumps(summarise("real nuclei stack", real_stats())), flush=True)
    cells = synthetic_stats(synthetic_cells, n_cells=14)
    print(json.dumps(summarise("synthetic_cells", cells)), flush=True)
    nuclei = synthetic_stats(synthetic_nuclei, n_cells=30, radius=18.0)
    print(json.dumps(summarise("synthetic_nuclei", nuclei)), flush=True)
    import evaluate_real

    raw, _, labels = evaluate_real.load_stack(evaluate_real.DEFAULT_DATA)
    print(json.dumps(axial_summary("real nuclei stack", light_beyond_ends(raw, labels), 1)))
    ratios = []
    for i in range(4):
        frames, labels = synthetic_nuclei_stack(41, (256, 256), 20, seed=30_000 + i, radius=22.0)
        ratios += light_beyond_ends(frames, labels)
    print(json.dumps(axial_summary("synthetic_nuclei_stack", ratios, 4)), flush=True)


if __name__ == "__main__":
    main()
