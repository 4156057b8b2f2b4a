#!/usr/bin/env bash
# The benchmarks that run on the GPU machine, output into $OUT (default ./bench-out).
#
# That machine has torch and torchvision but neither sam2 nor its small dependencies, and no
# network: they come as wheels in $WHEELS (see docs/performance.md for how they were built),
# with psutil's for the memory samplers and dask/distributed's for the cluster batch.
# napari is not there either: its wheels (and those of its dependencies the machine lacks) go
# in $WHEELS for the `napari` part, which runs in napari's ViewerModel (there is no display).
#
#   bash bench/run_gpu.sh                          # every part
#   bash bench/run_gpu.sh propagation long         # some parts
#
# Parts: interactive, propagation (100 frames: bfloat16 with and without CUDA graphs, float32),
# propagation-1000, long (10,000 frames, this engine only), compiled (100 frames, the engine
# with its image encoder torch.compile'd beside the plain one and the official predictor),
# objects (frames/s against object count: N cells clicked on a synthetic crowded 512² clip, 60
# frames, packaged micro, 1, 8 and 32 objects, 2 runs, also with objects tracked one by one),
# objects-more (micro with 64 and 128 objects, tiny with random weights with 1, 8 and 32, 1
# run; run these two parts in calls of their own: together they take over 10 minutes),
# napari (click → Labels layer in napari's ViewerModel; needs napari's wheels), automatic,
# batch.
# BENCH_DATA holds bedroom/ (JPEG frames)
# and images/cars.jpg (default: ../shared/data).
set -uo pipefail

ROOT=$(realpath "$(dirname "$0")/..")
DATA=$(realpath "${BENCH_DATA:-$ROOT/../shared/data}")
OUT=${OUT:-$PWD/bench-out}
WHEELS=${WHEELS:-.whl}  # one or more folders of wheels, space-separated
PARTS=${*:-interactive propagation propagation-1000 long compiled objects objects-more napari
    automatic batch}
mkdir -p "$OUT"

wheels=()
for folder in $WHEELS; do wheels+=("$folder"/*.whl); done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${wheels[@]}"
export PYTHONPATH=/tmp/site:$ROOT/src PYTHONUNBUFFERED=1

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

propagation() {  # propagation NAME SECONDS ARGS...
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" python3 "$ROOT/bench/propagation.py" --device cuda \
        --model sam2.1_hiera_tiny --source "$DATA/bedroom" "$@"
}

objects() {  # objects NAME SECONDS ARGS...: ours against the official predictor, by object count
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" python3 "$ROOT/bench/propagation.py" --device cuda --frames 60 \
        --size 512 "$@"
}

MICRO=$ROOT/src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt
for part in $PARTS; do
    case $part in
    interactive)
        step interactive 200 python3 "$ROOT/bench/interactive.py" --device cuda --napari off \
            --embed-repeats 10 --click-repeats 50 ;;
    propagation)
        propagation propagation-100 240 --frames 100 --runs 3 \
            --engines ours ours-no-cuda-graphs official
        propagation propagation-100-float32 120 --frames 100 --runs 2 --precision float32 ;;
    propagation-1000)
        propagation propagation-1000 450 --frames 1000 --runs 3 ;;
    long)
        propagation propagation-10000 560 --frames 10000 --runs 1 --engines ours ;;
    compiled)  # each run compiles in its warm-up (inductor's cache shortens the later ones)
        propagation propagation-100-compiled 400 --frames 100 --runs 2 \
            --engines ours ours-compiled official ;;
    objects)  # about 5 minutes
        objects propagation-objects-micro 400 --model sam2.1_hiera_micro --checkpoint "$MICRO" \
            --objects 1 8 32 --runs 2 --engines ours ours-per-object official ;;
    objects-more)  # about 7 minutes
        objects propagation-objects-micro-many 330 --model sam2.1_hiera_micro \
            --checkpoint "$MICRO" --objects 64 128 --runs 1 --engines ours ours-per-object official
        objects propagation-objects-tiny 200 --model sam2.1_hiera_tiny --objects 1 8 32 --runs 1 \
            --engines ours official ;;
    napari)  # napari's ViewerModel (no display there): click → Labels layer updated
        PYTHONPATH=$ROOT/bench/headless_site:$PYTHONPATH step interactive-viewer-model 300 \
            python3 "$ROOT/bench/interactive.py" --device cuda --napari model \
            --models tiny small base_plus large --dtypes float32 bfloat16 --embed-repeats 5 \
            --click-repeats 40
        # Random weights give masks of most of the image; the trained micro model's are cells.
        PYTHONPATH=$ROOT/bench/headless_site:$PYTHONPATH step interactive-viewer-model-micro \
            120 python3 "$ROOT/bench/interactive.py" --device cuda --napari model \
            --models micro --dtypes float32 bfloat16 --embed-repeats 5 --click-repeats 40 \
            --micro-checkpoint "$ROOT/src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt" ;;
    automatic)
        step automatic 90 python3 "$ROOT/bench/automatic.py" automatic --device cuda \
            --model sam2.1_hiera_tiny --size 1024 --image "$DATA/images/cars.jpg" ;;
    batch)
        step batch 150 python3 "$ROOT/bench/automatic.py" batch --device cuda \
            --images 16 --workers 2 \
            --checkpoint "$ROOT/src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt" ;;
    *) echo "unknown part $part" >&2 ;;
    esac
done
exit 0
