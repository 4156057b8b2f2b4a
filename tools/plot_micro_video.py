"""Plot per-frame IoU of held-back clips (the ``video`` line of evaluate_micro.py) to a PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("evals", nargs="+", help="LABEL=file.jsonl with a 'video' metric line")
    ap.add_argument("--out", default="docs/images/micro-video-iou.png")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), sharey=True)
    titles = {
        "smooth_curve": "smooth motion, click on frame 0",
        "absent_curve": "cell absent on frames 10-12",
        "zstack_curve": "z-stack, click on the widest slice",
    }
    for spec in args.evals:
        label, path = spec.split("=", 1)
        rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
        video = next(r for r in rows if r.get("metric") == "video")
        for ax, key in zip(axes, titles, strict=True):
            ax.plot(video[key], marker=".", label=label)
    for ax, key in zip(axes, titles, strict=True):
        ax.set_title(titles[key])
        ax.set_xlabel("frame")
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 1)
    axes[1].axvspan(9.5, 12.5, color="grey", alpha=0.2)
    axes[0].set_ylabel("mean IoU with the true cell")
    axes[0].legend()
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(args.out)


if __name__ == "__main__":
    main()
