#!/usr/bin/env bash
# Micro model v2 (issue 17) on the GPU machine, in one call: fine-tune on image + video batches
# of which NUCLEI_SHARE come from synthetic_nuclei, then evaluate the new weights on the real
# nuclei stack (2D and z-propagation) and the synthetic held-back set. Everything into $OUT.
#
#   bash tools/run_micro_v2.sh [TRAIN_SECONDS]    # default 360; about TRAIN_SECONDS + 150 s
#
# That machine has torch, scipy, scikit-image and tifffile, not sam2 and its small
# dependencies, and no network: SITE (a folder holding the pure-Python packages sam2, hydra,
# omegaconf, antlr4, iopath) goes first on PYTHONPATH. REAL is the folder of the real stack.
#
# RUNS names the fine-tunes, trained side by side on the one GPU (the micro model leaves it
# mostly idle; the CPUs drawing the data are the limit, so WORKERS, CLIP_WORKERS and
# Z_WORKERS are per run). Each run NAME reads INIT_NAME (default INIT: the packaged weights),
# LR_NAME (LR, 6e-4; the memory parts' lr) and IMAGE_LR_MULT_NAME (IMAGE_LR_MULT, 1; the image
# parts' lr is LR x that). Other knobs, shared: NUCLEI_SHARE (0.6), BATCH (12), CLIPS (8),
# Z_CLIPS (0: none; else long z-stack clips per step, and CLIPS draws no z-stacks), Z_FRAMES
# (12 slices per side, both ways from the widest), WORKERS (9), CLIP_WORKERS (5), Z_WORKERS
# (6), EVAL_IMAGES (24), EVAL_CLIPS (8), SKIP_OLD (0: also the z-propagation of INIT beside
# the training), SYNTHETIC (1: also the synthetic held-back evaluation of a single run).
# For a CPU smoke run: DEVICE=cpu MAX_STEPS=1 REAL_ARGS="--nuclei 18 --step 30".
#
# BUDGET_S (default 5/6 of TRAIN_SECONDS) is the training time the cosine schedule is planned
# for. A run goes on in a later call from its NAME.pt (INIT_NAME) with a new schedule: the
# optimizer state with the weights (17.7 MB) is larger than a device call returns. EVAL=0 skips
# the evaluations (a training-only call). ECHO (1) trains each rendered sample that many times,
# turned or mirrored (train_micro.py --echo), so the GPU does not wait for the CPUs.
#
# Output: machine.txt (versions, each step's exit and seconds), results.jsonl (every
# evaluation's JSON lines, tagged with the step name: new-real2d / new-real3d, or NAME-real2d /
# NAME-real3d for several runs), errors.log (the end of each step's stderr); for one run
# model.pt / opt.pt / meta.json (train_micro.py's checkpoint, resumable) and train.jsonl; for
# several NAME.pt (the weights) and NAME-train.jsonl (at most 8 files come back).
set -uo pipefail

ROOT=$(realpath "$(dirname "$0")/..")
OUT=${OUT:-$PWD/v2-out}
TRAIN_S=${1:-360}
PY=${PYTHON:-python3}
REAL=${REAL:-$ROOT/../shared/data/real-nuclei-3d}
INIT=${INIT:-$ROOT/src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt}
RUNS=${RUNS:-new}
mkdir -p "$OUT"
export PYTHONPATH=${SITE:+$SITE:}$ROOT/src PYTHONUNBUFFERED=1

knob() {  # knob RUN NAME DEFAULT: $NAME_RUN, else $NAME, else DEFAULT
    local v="${2}_${1}"
    echo "${!v:-${!2:-$3}}"
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  $PY -c 'import sam2, hydra, scipy, skimage; print("sam2 ok, scipy", scipy.__version__)'
  nproc
  for run in $RUNS; do echo "$run: init $(sha256sum "$(knob "$run" INIT "$INIT")")" \
      "lr $(knob "$run" LR 6e-4) image-lr-mult $(knob "$run" IMAGE_LR_MULT 1)"; done
} > "$OUT/machine.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...: bounded, so one hang cannot eat the whole call
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "/tmp/$name.jsonl" 2> "/tmp/$name.log"
    echo "$name: exit $? after $((SECONDS - start)) s" >> "$OUT/machine.txt"
    case $name in *train) ;; *) sed "s/^{/{\"run\": \"$name\", /" "/tmp/$name.jsonl" \
        >> "$OUT/results.jsonl" ;; esac
    { echo "== $name"; grep -v -i warn "/tmp/$name.log" | tail -n 15; } >> "$OUT/errors.log"
}

real() {  # real NAME CHECKPOINT SKIP: the real stack, on the GPU
    step "$1" 240 $PY "$ROOT/tools/evaluate_real.py" --checkpoint "$2" --data "$REAL" \
        --device "${DEVICE:-cuda}" --skip $3 ${REAL_ARGS:-}
}

train() {  # train RUN: one fine-tune into /tmp/v2-RUN
    local run=$1
    rm -rf "/tmp/v2-$run"
    step "$run-train" $((TRAIN_S + 60)) $PY "$ROOT/tools/train_micro.py" \
        --init "$(knob "$run" INIT "$INIT")" --out "/tmp/v2-$run" --echo "${ECHO:-1}" \
        --batch "${BATCH:-12}" --clips "${CLIPS:-8}" \
        --workers "${WORKERS:-9}" --clip-workers "${CLIP_WORKERS:-5}" \
        --z-clips "${Z_CLIPS:-0}" --z-frames "${Z_FRAMES:-12}" --z-workers "${Z_WORKERS:-6}" \
        --lr "$(knob "$run" LR 6e-4)" --image-lr-mult "$(knob "$run" IMAGE_LR_MULT 1)" \
        --warmup 30 --nuclei-share "${NUCLEI_SHARE:-0.6}" \
        --budget-s "${BUDGET_S:-$((TRAIN_S * 5 / 6))}" --time-limit "$TRAIN_S" --log-every 10 \
        --max-steps "${MAX_STEPS:-0}"
}

if [ "${SKIP_OLD:-0}" = 0 ] && [ "${EVAL:-1}" = 1 ]; then
    real old-real3d "$INIT" 2d &
fi
for run in $RUNS; do train "$run" & done
wait
set -- $RUNS
for run in $RUNS; do
    new=/tmp/v2-$run/model.pt
    [ -f "$new" ] || continue
    sha256sum "$new" >> "$OUT/machine.txt"
    if [ $# = 1 ]; then
        cp /tmp/"$run"-train.jsonl "$OUT/train.jsonl"
        cp "$new" /tmp/v2-"$run"/opt.pt /tmp/v2-"$run"/meta.json "$OUT/"
    else
        cp /tmp/"$run"-train.jsonl "$OUT/$run-train.jsonl"
        cp "$new" "$OUT/$run.pt"
    fi
    [ "${EVAL:-1}" = 1 ] || continue
    real "$run-real2d" "$new" 3d &
    real "$run-real3d" "$new" 2d &
done
if [ $# = 1 ] && [ -f "/tmp/v2-$1/model.pt" ] && [ "${SYNTHETIC:-1}" = 1 ] \
    && [ "${EVAL:-1}" = 1 ]; then
    new=/tmp/v2-$1/model.pt
    step new-video 200 $PY "$ROOT/tools/evaluate_micro.py" --checkpoint "$new" \
        --clips "${EVAL_CLIPS:-8}" --device cuda --skip image touching latency &
    step new-image 200 $PY "$ROOT/tools/evaluate_micro.py" --checkpoint "$new" \
        --images "${EVAL_IMAGES:-24}" --threads 4 --skip video latency &
fi
wait
echo "total: $SECONDS s" >> "$OUT/machine.txt"
exit 0
