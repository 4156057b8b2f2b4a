#!/usr/bin/env bash
# The CPU measurements published in docs/performance.md, JSON lines into $OUT (default
# bench/results). Needs napari (the viewer parts) and Xvfb where there is no display.
#
#   bash bench/run_cpu.sh            # from the repository root, napari-sam2 installed
set -uo pipefail

ROOT=$(realpath "$(dirname "$0")/..")
OUT=${OUT:-$ROOT/bench/results}
PY=${PYTHON:-python}
MICRO=$ROOT/src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt  # the trained micro model
SCREEN='-screen 0 1920x1080x24'
mkdir -p "$OUT"
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}

run() { xvfb-run -a -s "$SCREEN" "$PY" "$@" || echo "failed: $*" >&2; }

run "$ROOT/bench/interactive.py" --device cpu --quick --out "$OUT/cpu-interactive.jsonl"
run "$ROOT/bench/interactive.py" --device cpu --quick --models micro --micro-checkpoint "$MICRO" \
    --out "$OUT/cpu-interactive-trained-micro.jsonl"
for size in 1024 4096; do
    run "$ROOT/bench/responsiveness.py" --device cpu --model tiny --size $size --clicks 10 \
        --out "$OUT/cpu-responsiveness.jsonl"
done
run "$ROOT/bench/responsiveness.py" --device cpu --model micro --micro-checkpoint "$MICRO" \
    --size 4096 --clicks 10 --out "$OUT/cpu-responsiveness.jsonl"
run "$ROOT/bench/responsiveness.py" --device cpu --model tiny --size 1024 --clicks 3 \
    --propagate-frames 8 --out "$OUT/cpu-responsiveness-propagation.jsonl"
for watch in 0 15; do  # the viewer on the prompted frame, then on one being filled
    run "$ROOT/bench/responsiveness.py" --device cpu --model micro --micro-checkpoint "$MICRO" \
        --size 1024 --clicks 3 --propagate-frames 30 --watch-frame $watch \
        --out "$OUT/cpu-responsiveness-propagation.jsonl"
done
REAL=$ROOT/../shared/data/real-nuclei-3d  # real nuclei, where the development data is present
REAL_ARGS=()
[ -d "$REAL" ] && REAL_ARGS=(--real "$REAL")
run "$ROOT/bench/large_images.py" --device cpu "${REAL_ARGS[@]}" \
    --out "$OUT/cpu-large-images.jsonl"
