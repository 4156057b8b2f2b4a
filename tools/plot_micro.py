"""Plot the micro model's training curves (log.jsonl from tools/train_micro.py) to a PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("log", help="log.jsonl written by train_micro.py")
    ap.add_argument("--out", default="docs/images/micro-training.png")
    ap.add_argument("--keys", nargs="*", default=["click", "click3", "box", "pair", "mask"])
    ap.add_argument("--title", default="loss (24 images x 16 prompts / step)")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in Path(args.log).read_text().splitlines() if x.strip()]
    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(steps, [r["loss"] for r in rows], color="k")
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.set_title(args.title)
    for k in args.keys:
        if k in rows[-1]:
            b.plot(steps, [r.get(k, float("nan")) for r in rows], label=k)
    b.set_xlabel("step")
    b.set_ylabel("IoU on the training batch (256 px)")
    b.set_ylim(0, 1)
    b.grid(alpha=0.3)
    b.legend()
    b.set_title("mean IoU of the returned mask (track: frames 1-7)")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(args.out)


if __name__ == "__main__":
    main()
