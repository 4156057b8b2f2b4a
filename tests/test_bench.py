"""The benchmark scripts still run and still write the JSON lines docs/performance.md is made of.

Smoke tests only: one repeat of the smallest configuration, nothing timed or compared.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"bench", "model", "device", "dtype", "size", "metric", "value", "unit", "weights"}
REQUIRED |= {"torch", "sam2", "gpu"}


def test_interactive_writes_json_lines(tmp_path):
    out = tmp_path / "interactive.jsonl"
    command = [sys.executable, str(ROOT / "bench" / "interactive.py"), "--device", "cpu"]
    command += ["--models", "micro", "--napari", "off", "--embed-repeats", "1"]
    command += ["--click-repeats", "1", "--warmup", "0", "--size", "256", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    lines = [json.loads(text) for text in out.read_text().splitlines()]
    metrics = {(line["metric"], line.get("impl")) for line in lines}
    wanted = {(metric, impl) for metric in ("embed", "click") for impl in ("ours", "official")}
    assert wanted <= metrics
    for line in lines:
        if line["metric"] in ("embed", "click"):
            assert REQUIRED <= set(line), REQUIRED - set(line)
            assert line["weights"] == "random" and line["value"] > 0


def test_report_makes_the_published_tables():
    results = sorted((ROOT / "bench" / "results").glob("*.jsonl"))
    command = [sys.executable, str(ROOT / "bench" / "report.py"), *map(str, results)]
    text = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    for title in ("interactive, cuda", "interactive, cpu", "responsiveness", "propagation"):
        assert f"### {title}" in text
