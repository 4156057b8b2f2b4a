"""Blend two micro checkpoints of one architecture: (1 - alpha) x A + alpha x B, weight by
weight (weight-space ensembling, WiSE-FT, Wortsman et al. 2022).

A fine-tune toward the real nuclei (B) and the weights it started from (A) each keep what the
other lost; on the path between them the blend kept A's behaviour on touching synthetic cells
and most of B's gain on real nuclei (issue 17, docs/micro-model.md). Command::

    python tools/interpolate_weights.py A.pt B.pt ALPHA OUT.pt
"""

from __future__ import annotations

import argparse

import torch
from micro_model import load_weights


def interpolate(a: dict, b: dict, alpha: float) -> dict:
    """The blended state dict; integer buffers (counters) are taken from ``b``."""
    if a.keys() != b.keys():
        raise ValueError("the checkpoints hold different parameters")
    return {k: a[k] * (1 - alpha) + b[k] * alpha if a[k].is_floating_point() else b[k] for k in a}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("alpha", type=float)
    ap.add_argument("out")
    args = ap.parse_args(argv)
    blend = interpolate(load_weights(args.a), load_weights(args.b), args.alpha)
    torch.save({"model": blend}, args.out)


if __name__ == "__main__":
    main()
