"""The plots of ``report.py`` (matplotlib), drawn from the series it computes."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_memory(series: dict, gpu: str, path: Path) -> None:
    """GPU peak and host peak RSS against frame count, this engine and the official one
    (``report.memory_series``)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharex=True)
    for ax, key, title in (
        (axes[0], "gpu_peak_gib", "GPU peak memory"),
        (axes[1], "rss_peak_gib", "host peak RSS"),
    ):
        for engine, style in (("ours", "o-"), ("official", "s--")):
            frames, values = series[(key, engine)]
            label = "napari-sam2" if engine == "ours" else "official SAM2VideoPredictor"
            ax.plot(frames, values, style, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("frames propagated")
        ax.set_ylabel("GiB")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Propagation, sam2.1 tiny (random weights, bf16), 960×540 frames, {gpu}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def plot_latency(series: dict, models: list[str], path: Path) -> None:
    """Click → mask latency per model size: GPU bf16 (ours, official) and CPU float32
    (``report.latency_series``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(series))
    for k, (label, values) in enumerate(series.items()):
        xs = [i + k * width for i, m in enumerate(models) if m in values]
        ys = [values[m] for m in models if m in values]
        ax.bar(xs, ys, width, label=label)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(models))])
    ax.set_xticklabels(models)
    ax.set_yscale("log")
    ax.set_ylabel("click → mask, median (ms, log scale)")
    ax.set_title("Click latency on a cached 1024² embedding (random weights)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
