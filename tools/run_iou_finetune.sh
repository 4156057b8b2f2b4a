#!/usr/bin/env bash
# IoU-head fine-tune of the packaged micro model (issue 5) on the GPU machine, and the held-back
# evaluation of the packaged ("old") and fine-tuned ("new") weights; everything into $OUT.
#
#   bash tools/run_iou_finetune.sh [TRAIN_SECONDS]    # default 180; about 5 min in all, at most
#                                                     # TRAIN_SECONDS + 300 s (step timeouts)
#
# That machine has torch but not sam2 and its small dependencies, and no network: they come as
# wheels in $WHEELS (as for bench/run_gpu.sh; WHEELS="" uses the Python as it is). Each step
# runs under its own `timeout`. The old weights' evaluations run beside the training (image
# mode on 2 CPU threads, video mode on the GPU); the new weights' two after it, side by side.
#
# Output: machine.txt (versions, each step's exit and seconds), train.jsonl (training log),
# {old,new}-{image,video}.jsonl (tools/evaluate_micro.py's JSON lines), *.log (stderr),
# sam2.1_hiera_micro_iou.pt (the new weights) and summary.json (old vs new, issue-5 targets).
#
# Smaller runs for checking the script: EVAL_IMAGES (24), EVAL_CLIPS (8 of each kind), BATCH
# (12 images a step), CLIP_BATCH (8 clips a step), WORKERS (7), CLIP_WORKERS (6), DEVICE (cuda,
# for the video evaluation), PYTHON (python3); for another try LR (1e-3), VIDEO_WEIGHT (1) and
# TRAIN_ONLY (iou; decoder trains the whole mask decoder).
set -uo pipefail

ROOT=$(realpath "$(dirname "$0")/..")
OUT=${OUT:-$PWD/iou-out}
TRAIN_S=${1:-180}
PY=${PYTHON:-python3}
WHEELS=${WHEELS-.whl}
DEVICE=${DEVICE:-cuda}
OLD=$ROOT/src/napari_sam2/engine/weights/sam2.1_hiera_micro.pt
NEW=$OUT/sam2.1_hiera_micro_iou.pt
mkdir -p "$OUT"

export PYTHONPATH=$ROOT/src
if [ -n "$WHEELS" ]; then
    wheels=()
    for folder in $WHEELS; do wheels+=("$folder"/*.whl); done
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "${wheels[@]}"
    export PYTHONPATH=/tmp/site:$PYTHONPATH
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  $PY -c 'import scipy, skimage; print("scipy", scipy.__version__, "skimage", skimage.__version__)'
  nproc
} > "$OUT/machine.txt" 2>&1

step() {  # step NAME SECONDS COMMAND...: bounded, so one hang cannot eat the whole call
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.jsonl" 2> "$OUT/$name.log"
    echo "$name: exit $? after $((SECONDS - start)) s" >> "$OUT/machine.txt"
}

evaluate() {  # evaluate old|new CHECKPOINT SECONDS: image mode on CPU, video mode, side by side
    step "$1-image" "$3" $PY "$ROOT/tools/evaluate_micro.py" --checkpoint "$2" \
        --images "${EVAL_IMAGES:-24}" --skip video latency &
    step "$1-video" "$3" $PY "$ROOT/tools/evaluate_micro.py" --checkpoint "$2" \
        --clips "${EVAL_CLIPS:-8}" --device "$DEVICE" --skip image touching latency &
}

evaluate old "$OLD" 300
# The schedule is planned for TRAIN_S less start-up (~30 s: workers, first steps); training
# stops at TRAIN_S whatever happens. (A warm machine keeps /tmp: no weights of an earlier call.)
rm -rf /tmp/iou-train
step train $((TRAIN_S + 90)) $PY "$ROOT/tools/train_micro.py" --train-only "${TRAIN_ONLY:-iou}" \
    --init "$OLD" \
    --out /tmp/iou-train --batch "${BATCH:-12}" --clips "${CLIP_BATCH:-8}" \
    --workers "${WORKERS:-7}" --clip-workers "${CLIP_WORKERS:-6}" \
    --lr "${LR:-1e-3}" --warmup 20 --video-weight "${VIDEO_WEIGHT:-1}" \
    --budget-s $((TRAIN_S * 3 / 4)) --time-limit "$TRAIN_S" --log-every 10
if [ -f /tmp/iou-train/model.pt ]; then
    cp /tmp/iou-train/model.pt "$NEW"
    sha256sum "$NEW" >> "$OUT/machine.txt"
    evaluate new "$NEW" 200
fi
wait

$PY - "$OUT" > "$OUT/summary.json" 2>> "$OUT/machine.txt" <<'EOF'
"""Old vs new weights side by side, and the issue-5 targets for the new ones."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
res = {}
for which in ("old", "new"):
    for mode in ("image", "video"):
        path = out / f"{which}-{mode}.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            row = json.loads(line)
            for k, v in row.items():
                if k != "metric" and not k.endswith("curve"):
                    res.setdefault(k, {})[which] = v
new = {k: v.get("new") for k, v in res.items()}
targets = {
    "click >= 0.961": (new.get("click") or 0) >= 0.961,
    "smooth_mean_iou >= 0.80": (new.get("smooth_mean_iou") or 0) >= 0.80,
    "smooth_last_iou >= 0.70": (new.get("smooth_last_iou") or 0) >= 0.70,
    "absent_redetected_within_2 == 1": new.get("absent_redetected_within_2") == 1.0,
    "zstack_mean_iou >= 0.75": (new.get("zstack_mean_iou") or 0) >= 0.75,
}
print(json.dumps({"scores": res, "targets": targets, "all_met": all(targets.values())}, indent=1))
EOF
echo "total: $SECONDS s" >> "$OUT/machine.txt"
exit 0
