#!/usr/bin/env bash
# Every benchmark that runs on the GPU machine, output into $OUT (default ./bench-out).
#
# That machine has torch and torchvision but neither sam2 nor its small dependencies, and no
# network: they come as wheels in $WHEELS (see docs/performance.md for how they were built),
# with psutil's for the propagation benchmark's memory sampler.
# It has no napari either, so the viewer measurements run on CPU machines only.
#
#   bash bench/run_gpu.sh                  # from a checkout: src/ and bench/ side by side
#   BENCH_ROOT=.bench BENCH_DATA=.bench/data bash .bench/bench/run_gpu.sh
#
# BENCH_DATA holds bedroom/ (JPEG frames) and images/cars.jpg (default: ../shared/data).
set -uo pipefail

ROOT=$(realpath "${BENCH_ROOT:-$(dirname "$0")/..}")
DATA=$(realpath "${BENCH_DATA:-$ROOT/../shared/data}")
OUT=${OUT:-$PWD/bench-out}
WHEELS=${WHEELS:-.whl}  # one or more folders of wheels, space-separated
mkdir -p "$OUT"

wheels=()
for folder in $WHEELS; do wheels+=("$folder"/*.whl); done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${wheels[@]}"
export PYTHONPATH=/tmp/site:$ROOT/src

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import torch, torchvision; print("torch", torch.__version__, "cuda",
      torch.version.cuda, "torchvision", torchvision.__version__)'
  nproc
} > "$OUT/machine.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...: bounded, so one hang cannot eat the whole call
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.jsonl" 2> "$OUT/$name.log"
    echo "$name: exit $? after $((SECONDS - start)) s" >> "$OUT/machine.txt"
}

step interactive 200 python3 "$ROOT/bench/interactive.py" --device cuda --napari off \
    --embed-repeats 10 --click-repeats 50

if [ -f "$ROOT/bench/propagation.py" ]; then
    step propagation-100 120 python3 "$ROOT/bench/propagation.py" --device cuda \
        --model sam2.1_hiera_tiny --frames 100 --runs 2 --source "$DATA/bedroom"
    step propagation-1000 150 python3 "$ROOT/bench/propagation.py" --device cuda \
        --model sam2.1_hiera_tiny --frames 1000 --runs 1 --source "$DATA/bedroom"
fi

if [ -f "$ROOT/bench/automatic.py" ]; then
    step automatic 90 python3 "$ROOT/bench/automatic.py" automatic --device cuda \
        --model sam2.1_hiera_tiny --size 1024 --image "$DATA/images/cars.jpg"
fi
exit 0
