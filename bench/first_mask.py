"""Where the time to the first mask goes, by phase, with N cells clicked on frame 0.

One process: the model is loaded and warmed up as the plugin does on an accelerator, then for
1, 8 and 64 cells of the crowded 512² clip (``clips.crowded_folder``) three fresh sessions
each run to their first mask (``open_s``: the session made and prompted, which
``propagation.py`` counts in its time to first mask; ``first_s``: the run); each phase's
calls are timed with the device synchronised around them (nested: ``stand_in`` holds the
window embeddings and decodes, ``track`` the first memories). One JSON line per session::

    python bench/first_mask.py sam2.1_hiera_micro \
        src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt [64 8 1]

The object counts may follow (default 1 8 64), in the order they run: the first session of
the process shows what the warm-up left cold.
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from clips import JpegFolder, crowded_folder
from propagation import build

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_sam2.engine.image import ImageSession  # noqa: E402
from napari_sam2.engine.video import features, prompting, shown_masks, tracking  # noqa: E402
from napari_sam2.engine.video.reading import frame_source_for  # noqa: E402
from napari_sam2.engine.video.session import PropagationSession  # noqa: E402
from napari_sam2.engine.video.warmup import warm_up  # noqa: E402

PHASES = (
    (shown_masks.ShownMasks, "stand_in", "stand_in"),
    (ImageSession, "embed_many", "window_embed"),
    (ImageSession, "predict_many", "window_decode"),
    (prompting.PromptQueue, "give", "give"),
    (features.SharedFeatures, "get", "features_get"),
    (tracking.RunTracker, "track", "track"),
    (tracking, "encode_prompted", "encode_prompted"),
)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(owner, attr: str, label: str, phases: dict, device: str) -> None:
    """Replace ``owner.attr`` by a version that adds its calls and seconds to ``phases``."""
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        synchronize(device)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            synchronize(device)
            calls, seconds = phases.get(label, (0, 0.0))
            phases[label] = (calls + 1, seconds + time.perf_counter() - start)

    setattr(owner, attr, wrapper)


def main() -> None:
    name = sys.argv[1]
    checkpoint = sys.argv[2] if len(sys.argv) > 2 else None
    counts = [int(n) for n in sys.argv[3:]] or [1, 8, 64]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build(name, checkpoint, device)
    start = time.perf_counter()
    warm_up(model)
    synchronize(device)
    print(json.dumps({"model": name, "warm_up_s": round(time.perf_counter() - start, 3)}))
    phases: dict = {}
    for owner, attr, label in PHASES:
        timed(owner, attr, label, phases, device)
    with tempfile.TemporaryDirectory() as tmp:
        folder, clicks = crowded_folder(60, 512, max(counts), Path(tmp))
        for n in counts:
            for rep in range(3):
                phases.clear()
                start = time.perf_counter()
                session = PropagationSession(model, frame_source_for(JpegFolder(folder)))
                cells = {k: dict(points=[c]) for k, c in enumerate(clicks[:n], 1)}
                session.add_prompts({0: cells})
                opened = time.perf_counter() - start
                start = time.perf_counter()
                stream = iter(session.propagate("forward"))
                next(stream)
                first = time.perf_counter() - start
                stream.close()
                session.close()
                row = {
                    "objects": n,
                    "rep": rep,
                    "open_s": round(opened, 4),
                    "first_s": round(first, 4),
                }
                row["phases"] = {k: [c, round(s, 4)] for k, (c, s) in phases.items()}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
