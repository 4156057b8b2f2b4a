#!/usr/bin/env bash
# Every benchmark that runs on the GPU machine, JSON lines into $OUT (default ./bench-out).
#
# That machine has torch and torchvision but neither sam2 nor its small dependencies, and no
# network: they come as wheels in .whl/ (see docs/performance.md for how they were built).
# It has no napari either, so the headless-viewer parts run on CPU machines only.
#
#   bash bench/run_gpu.sh                 # from a checkout with src/ and bench/ side by side
#   BENCH_ROOT=.bench bash .bench/bench/run_gpu.sh
set -uo pipefail

ROOT=${BENCH_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
OUT=${OUT:-$PWD/bench-out}
WHEELS=${WHEELS:-.whl}
mkdir -p "$OUT"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl
export PYTHONPATH=/tmp/site:$ROOT/src

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, sam2; print("torch", torch.__version__, "cuda", torch.version.cuda)'
} > "$OUT/machine.txt" 2>&1

# Each script is bounded so that one hang cannot eat the whole call.
timeout 300 python3 "$ROOT/bench/interactive.py" --device cuda --napari off \
    --out "$OUT/interactive.jsonl" > "$OUT/interactive.log" 2>&1
echo "interactive: exit $?" >> "$OUT/machine.txt"

if [ -f "$ROOT/bench/propagation.py" ] && [ -n "${PROPAGATION_ARGS:-}" ]; then
    # shellcheck disable=SC2086
    timeout "${PROPAGATION_TIMEOUT:-240}" python3 "$ROOT/bench/propagation.py" \
        --device cuda $PROPAGATION_ARGS > "$OUT/propagation.jsonl" 2> "$OUT/propagation.log"
    echo "propagation: exit $?" >> "$OUT/machine.txt"
fi
exit 0
