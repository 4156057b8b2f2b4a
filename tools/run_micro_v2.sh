#!/usr/bin/env bash
# Micro model v2 (issue 17) on the GPU machine, in one call: fine-tune the packaged weights on
# image + video batches of which NUCLEI_SHARE come from synthetic_nuclei, then evaluate the new
# weights on the real nuclei stack (2D and z-propagation) and the synthetic held-back set;
# the packaged ("old") weights' z-propagation runs beside the training. Everything into $OUT.
#
#   bash tools/run_micro_v2.sh [TRAIN_SECONDS]    # default 360; about TRAIN_SECONDS + 150 s
#
# That machine has torch, scipy, scikit-image and tifffile, not sam2 and its small
# dependencies, and no network: SITE (a folder holding the pure-Python packages sam2, hydra,
# omegaconf, antlr4, iopath) goes first on PYTHONPATH. REAL is the folder of the real stack.
# INIT (the packaged weights) is where the fine-tune starts; a second call can start from the
# first's model.pt. Other knobs: LR (6e-4), IMAGE_LR_MULT (1), NUCLEI_SHARE (0.6), BATCH (12),
# CLIPS (8), WORKERS (9), CLIP_WORKERS (5), EVAL_IMAGES (24), EVAL_CLIPS (8), SKIP_OLD (0).
#
# Output: machine.txt (versions, each step's exit and seconds), model.pt / opt.pt / meta.json
# (training.py's checkpoint, resumable), train.jsonl (training log), results.jsonl (every
# evaluation's JSON lines, tagged), errors.log (the end of each step's stderr).
set -uo pipefail

ROOT=$(realpath "$(dirname "$0")/..")
OUT=${OUT:-$PWD/v2-out}
TRAIN_S=${1:-360}
PY=${PYTHON:-python3}
REAL=${REAL:-$ROOT/../shared/data/real-nuclei-3d}
INIT=${INIT:-$ROOT/src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt}
NEW=/tmp/v2-train/model.pt
mkdir -p "$OUT"
export PYTHONPATH=${SITE:+$SITE:}$ROOT/src PYTHONUNBUFFERED=1

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  $PY -c 'import sam2, hydra, scipy, skimage; print("sam2 ok, scipy", scipy.__version__)'
  nproc
  sha256sum "$INIT"
} > "$OUT/machine.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...: bounded, so one hang cannot eat the whole call
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "/tmp/$name.jsonl" 2> "/tmp/$name.log"
    echo "$name: exit $? after $((SECONDS - start)) s" >> "$OUT/machine.txt"
    [ "$name" = train ] || sed "s/^{/{\"run\": \"$name\", /" "/tmp/$name.jsonl" >> "$OUT/results.jsonl"
    { echo "== $name"; grep -v -i warn "/tmp/$name.log" | tail -n 15; } >> "$OUT/errors.log"
}

real() {  # real NAME CHECKPOINT SKIP: the real stack, on the GPU
    step "$1" 240 $PY "$ROOT/tools/evaluate_real.py" --checkpoint "$2" --data "$REAL" \
        --device cuda --skip $3
}

if [ "${SKIP_OLD:-0}" = 0 ]; then
    real old-real3d "$INIT" 2d &
fi
rm -rf /tmp/v2-train
step train $((TRAIN_S + 60)) $PY "$ROOT/tools/train_micro.py" --init "$INIT" \
    --out /tmp/v2-train --batch "${BATCH:-12}" --clips "${CLIPS:-8}" \
    --workers "${WORKERS:-9}" --clip-workers "${CLIP_WORKERS:-5}" \
    --lr "${LR:-6e-4}" --image-lr-mult "${IMAGE_LR_MULT:-1}" --warmup 30 \
    --nuclei-share "${NUCLEI_SHARE:-0.6}" \
    --budget-s $((TRAIN_S * 5 / 6)) --time-limit "$TRAIN_S" --log-every 10
cp /tmp/train.jsonl "$OUT/train.jsonl"
if [ -f "$NEW" ]; then
    cp /tmp/v2-train/model.pt /tmp/v2-train/opt.pt /tmp/v2-train/meta.json "$OUT/"
    sha256sum "$NEW" >> "$OUT/machine.txt"
    real new-real2d "$NEW" 3d &
    real new-real3d "$NEW" 2d &
    step new-video 200 $PY "$ROOT/tools/evaluate_micro.py" --checkpoint "$NEW" \
        --clips "${EVAL_CLIPS:-8}" --device cuda --skip image touching latency &
    step new-image 200 $PY "$ROOT/tools/evaluate_micro.py" --checkpoint "$NEW" \
        --images "${EVAL_IMAGES:-24}" --threads 4 --skip video latency &
fi
wait
echo "total: $SECONDS s" >> "$OUT/machine.txt"
exit 0
