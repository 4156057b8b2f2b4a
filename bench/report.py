"""Markdown tables and the plot for docs/performance.md, from the benchmarks' JSON lines.

    python bench/report.py bench/results/h100-*.jsonl --plot docs/images/memory_vs_frames.png

The plot is memory against frame count when propagation lines are given, else click latency
per model size.

Prints the tables to stdout; nothing here measures anything.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

ORDER = [
    "sam2.1_hiera_micro",
    "sam2.1_hiera_tiny",
    "sam2.1_hiera_small",
    "sam2.1_hiera_base_plus",
    "sam2.1_hiera_large",
]


def load(paths: list[Path]) -> list[dict]:
    lines = []
    for path in paths:
        for text in path.read_text().splitlines():
            text = text.strip()
            if text.startswith("{"):
                line = json.loads(text)
                line["_file"] = path.name
                lines.append(line)
    return lines


def short(model: str) -> str:
    return model.replace("sam2.1_hiera_", "")


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def interactive_rows(lines: list[dict], device: str) -> dict:
    """{(model, dtype, weights): {"metric/impl[/path]": line}} for one device."""
    rows = defaultdict(dict)
    for line in lines:
        if line.get("bench") != "interactive" or line.get("device") != device:
            continue
        key = (line["model"], line.get("dtype"), line.get("weights"))
        name = f"{line['metric']}/{line.get('impl')}"
        if line.get("path"):
            name += f"/{line['path']}"
        rows[key][name] = line
    return rows


def _keys(rows: dict) -> list:
    order = {m: i for i, m in enumerate(ORDER)}
    return sorted(rows, key=lambda k: (order.get(k[0], 99), k[1] != "float32", k[2]))


def cell(row: dict, name: str, digits: int = 1, with_min: bool = False, cpu: bool = False):
    """A median; with the minimum and the process CPU time (all threads) when asked."""
    line = row.get(name)
    if line is None:
        return "–"
    text = fmt(line["value"], digits)
    extras = []
    if with_min and line.get("min") is not None:
        extras.append(f"min {fmt(line['min'], digits)}")
    if cpu and line.get("cpu_ms") is not None:
        extras.append(f"CPU {fmt(line['cpu_ms'], digits)}")
    return text + (f" ({', '.join(extras)})" if extras else "")


def _ratio(row: dict, a: str, b: str, key: str = "value") -> str:
    x, y = row.get(a), row.get(b)
    if not x or not y or not x.get(key) or not y.get(key):
        return "–"
    return f"{x[key] / y[key]:.2f}"


def interactive_table(lines: list[dict], device: str) -> str:
    """Embedding and click, this engine against the official predictor."""
    rows = interactive_rows(lines, device)
    gpu = device == "cuda"
    head = (
        "| model | weights | dtype | embed ours (ms) | embed official (ms) | ratio "
        "| click ours (ms) | click official (ms) | ratio |"
    )
    head += " GPU peak, embed (GiB) |" if gpu else " ratio of CPU times | load average |"
    out = [head, head_sep(head)]
    for key in _keys(rows):
        row = rows[key]
        if "embed/ours" not in row:
            continue
        cells = [
            short(key[0]),
            key[2],
            key[1],
            cell(row, "embed/ours", 1, not gpu, not gpu),
            cell(row, "embed/official", 1, not gpu, not gpu),
            _ratio(row, "embed/ours", "embed/official"),
            cell(row, "click/ours", 2, not gpu, not gpu),
            cell(row, "click/official", 2, not gpu, not gpu),
            _ratio(row, "click/ours", "click/official"),
        ]
        if gpu:
            peak = row.get("gpu_peak_embed/both")
            cells.append(fmt(peak and peak["value"], 2))
        else:
            cells.append(_ratio(row, "click/ours", "click/official", "cpu_ms"))
            cells.append(fmt(row["click/ours"].get("load_avg_1min")))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def napari_table(lines: list[dict], device: str = "cpu") -> str:
    """Click → Labels layer updated: through the widget, and the session's steps."""
    rows = interactive_rows(lines, device)
    head = (
        "| model | weights | mask (share of image) | widget: click → Labels (ms) "
        "| session: click → Labels (ms) | session: click → drawn (ms) "
        "| engine click alone (ms) | apply, GUI thread (ms) | redraw after apply (ms) "
        "| load average |"
    )
    out = [head, head_sep(head)]
    for key in _keys(rows):
        row = rows[key]
        if "click_to_labels_total/ours/widget" not in row:
            continue
        share = row.get("mask_fraction/ours")
        out.append(
            "| "
            + " | ".join(
                [
                    short(key[0]),
                    key[2],
                    f"{100 * share['value']:.0f} %" if share else "–",
                    cell(row, "click_to_labels_total/ours/widget", 1, True, True),
                    cell(row, "click_to_labels_total/ours/session", 1, True),
                    cell(row, "click_to_labels_drawn/ours/session", 1, True),
                    cell(row, "click/ours", 1, True, True),
                    cell(row, "click_to_labels_apply/ours/session", 1, True),
                    cell(row, "events_after_apply/ours/session", 1, True),
                    fmt(row["click_to_labels_total/ours/widget"].get("load_avg_1min")),
                ]
            )
            + " |"
        )
    return "\n".join(out)


def viewer_model_table(lines: list[dict], device: str) -> str:
    """Click → Labels layer updated in napari's ViewerModel (no Qt): the session's steps."""
    rows = interactive_rows(lines, device)
    head = (
        "| model | weights | dtype | click → Labels updated (ms) | napari's click event (ms) "
        "| plugin: event → Labels updated (ms) | engine step (ms) | apply (ms) "
        "| official predict alone (ms) |"
    )
    out = [head, head_sep(head)]
    for key in _keys(rows):
        row = rows[key]
        if "click_to_labels_total/ours/viewer-model" not in row:
            continue
        out.append(
            "| "
            + " | ".join(
                [
                    short(key[0]),
                    key[2],
                    key[1],
                    cell(row, "click_to_labels_total/ours/viewer-model", 1, True),
                    cell(row, "click_to_labels_points_event/ours/viewer-model", 1, True),
                    cell(row, "click_to_labels_plugin/ours/viewer-model", 1, True),
                    cell(row, "click_to_labels_compute/ours/viewer-model", 1, True),
                    cell(row, "click_to_labels_apply/ours/viewer-model", 1, True),
                    cell(row, "click/official", 1, True),
                ]
            )
            + " |"
        )
    return "\n".join(out)


def head_sep(head: str) -> str:
    return "|" + "---|" * (head.count("|") - 1)


def responsiveness_table(lines: list[dict]) -> str:
    head = (
        "| model | image | phase | longest stall (ms) | p99 gap (ms) | gaps > 50 ms "
        "| GUI-thread apply (ms) |"
    )
    out = [head, head_sep(head)]
    applies = {
        (line["model"], line["size"], line["phase"]): line
        for line in lines
        if line.get("bench") == "responsiveness" and line["metric"] == "gui_thread_apply"
    }
    for line in lines:
        if line.get("bench") != "responsiveness" or line["metric"] != "event_loop_max_stall":
            continue
        apply = applies.get((line["model"], line["size"], line["phase"]))
        apply_text = "–"
        if apply is not None:
            apply_text = fmt(apply["value"])
            if "max" in apply:
                apply_text += f" (max {fmt(apply['max'])})"
        out.append(
            f"| {short(line['model'])} | {line['size']}² | {line['phase']} | "
            f"{fmt(line['value'])} | {fmt(line['p99'])} | {line['stalls_over_target']} "
            f"of {line['ticks']} | {apply_text} |"
        )
    return "\n".join(out)


def propagation_rows(lines: list[dict]) -> dict:
    """{(frames, precision, warm, engine): [run rows]} from bench/propagation.py's lines
    (summaries skipped; lines from before the precision and warm-up options were bfloat16,
    cold)."""
    rows = defaultdict(list)
    for line in lines:
        if "engine" in line and "frames" in line and "fps" in line and not line.get("summary"):
            key = (line["frames"], line.get("precision", "bfloat16"), line.get("warm", False))
            rows[(*key, line["engine"])].append(line)
    return rows


def _median(values: list) -> float | None:
    import statistics

    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def propagation_table(lines: list[dict]) -> str:
    head = (
        "| frames | precision | model warmed up | engine | runs "
        "| frames/s while tracking (median) | vs official "
        "| end to end frames/s | vs official | time to first mask (s) "
        "| GPU peak (GiB) | host peak RSS (GiB) |"
    )
    out = [head, head_sep(head)]
    rows = propagation_rows(lines)
    for key in sorted(rows, key=lambda k: (k[0], k[1], not k[2], k[3] != "ours")):
        frames, precision, warm, engine = key
        runs = rows[key]
        fps = _median([r["fps"] for r in runs])
        official = rows.get((frames, precision, warm, "official"))
        ratio = "–"
        if official and fps:
            ratio = f"{fps / _median([r['fps'] for r in official]):.2f}×"
        fps_all = ", ".join(fmt(r["fps"]) for r in runs)
        # The whole job: the official predictor loads every frame before the first mask.
        whole = _median([frames / r["total_s"] for r in runs])
        whole_ratio = "–"
        if official:
            whole_ratio = f"{whole / _median([frames / r['total_s'] for r in official]):.2f}×"
        out.append(
            f"| {frames} | {precision} | {'yes' if warm else 'no'} | {engine} | {len(runs)} | "
            f"{fmt(fps)} ({fps_all}) | {ratio} | "
            f"{fmt(whole)} | {whole_ratio} | "
            f"{fmt(_median([r['time_to_first_mask_s'] for r in runs]), 2)} | "
            f"{fmt(_median([r['gpu_peak_gib'] for r in runs]), 2)} | "
            f"{fmt(_median([r['rss_peak_gib'] for r in runs]), 2)} |"
        )
    return "\n".join(out)


def automatic_table(lines: list[dict]) -> str:
    head = (
        "| engine | model | image | seconds | seconds, embedding cached | masks | GPU peak (GiB) |"
    )
    out = [head, head_sep(head)]
    for line in lines:
        if line.get("bench") != "automatic":
            continue
        out.append(
            f"| {line['engine']} | {short(line['model'])} | {line['size']}² | "
            f"{fmt(line['seconds'], 2)} | {fmt(line.get('seconds_embedding_cached'), 2)} | "
            f"{line.get('proposals', line.get('masks'))} | {fmt(line.get('gpu_peak_gib'), 2)} |"
        )
    return "\n".join(out)


def batch_table(lines: list[dict]) -> str:
    head = "| device | mode | model | images | size | seconds | images/s | GPU peak (GiB) |"
    out = [head, head_sep(head)]
    for line in lines:
        if line.get("bench") != "batch" or "images_per_s" not in line:
            continue
        mode = (
            line["mode"] if line["mode"] == "loop" else f"LocalCluster, {line['workers']} workers"
        )
        out.append(
            f"| {line['device']} | {mode} | {short(line['model'])} | {line['images']} | "
            f"{line['size']}² | {fmt(line['seconds'], 1)} | {fmt(line['images_per_s'], 2)} | "
            f"{fmt(line.get('gpu_peak_gib'), 2)} |"
        )
    return "\n".join(out)


def memory_series(lines: list[dict]) -> tuple[dict, str]:
    """{(measure, engine): (frame counts, median values)} of bfloat16 warm propagation runs for
    ``report_plots.plot_memory``, and the GPU's name."""
    rows = {k[::3]: v for k, v in propagation_rows(lines).items() if k[1:3] == ("bfloat16", True)}
    series = {}
    for key in ("gpu_peak_gib", "rss_peak_gib"):
        for engine in ("ours", "official"):
            frames = sorted(f for f, e in rows if e == engine)
            series[(key, engine)] = (
                frames,
                [_median([r[key] for r in rows[(f, engine)]]) for f in frames],
            )
    gpu = next((r["gpu"] for runs in rows.values() for r in runs if r.get("gpu")), "CPU")
    return series, gpu


def latency_series(lines: list[dict]) -> tuple[dict, list[str]]:
    """{"device dtype, impl": {model's short name: median click ms}} and the short names in
    model-size order, for ``report_plots.plot_latency``."""
    series = defaultdict(dict)
    for line in lines:
        if line.get("bench") != "interactive" or line["metric"] != "click":
            continue
        if line.get("path"):
            continue
        label = f"{line['device']} {line['dtype']}, {line['impl']}"
        series[label][short(line["model"])] = line["value"]
    models = [short(m) for m in ORDER if any(short(m) in s for s in series.values())]
    return dict(sorted(series.items())), models


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args(argv)
    lines = load(args.files)
    for device in ("cuda", "cpu"):
        if any(
            line.get("bench") == "interactive" and line.get("device") == device for line in lines
        ):
            print(f"\n### interactive, {device}\n")
            print(interactive_table(lines, device))
            if any(
                line.get("path") == "widget" and line.get("device") == device for line in lines
            ):
                print(f"\n### napari, {device}\n")
                print(napari_table(lines, device))
            if any(line.get("path") == "viewer-model" for line in lines):
                print(f"\n### napari ViewerModel, {device}\n")
                print(viewer_model_table(lines, device))
    if any(line.get("bench") == "responsiveness" for line in lines):
        print("\n### responsiveness\n")
        print(responsiveness_table(lines))
    if propagation_rows(lines):
        print("\n### propagation\n")
        print(propagation_table(lines))
    if any(line.get("bench") == "automatic" for line in lines):
        print("\n### automatic\n")
        print(automatic_table(lines))
    if any(line.get("bench") == "batch" for line in lines):
        print("\n### batch\n")
        print(batch_table(lines))
    if any(line.get("bench") == "large_images" for line in lines):
        from large_images import tables

        print("\n### large images\n")
        print(tables(lines))
    if args.plot:
        from report_plots import plot_latency, plot_memory

        if propagation_rows(lines):
            plot_memory(*memory_series(lines), args.plot)
        else:
            plot_latency(*latency_series(lines), args.plot)


if __name__ == "__main__":
    main()
