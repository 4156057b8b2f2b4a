"""Train the micro SAM2 (src/napari_sam2/engine/configs/sam2.1_hiera_micro.yaml) on synthetic
microscopy, so that tests and the offline demo see real segmentation (issues 4 and 5).

Recipe (image mode, issue 4)
----------------------------
* Data: ``napari_sam2.engine.synthetic.synthetic_cells`` rendered on the fly by DataLoader
  workers; every image draws its size (160-768 px a side, any aspect), dtype (uint8/uint16),
  cell radius (10-150 px once resized to the model's 1024 input), coverage, touching pairs,
  irregularity and elongation from a generator seeded by ``--seed`` and the worker id.
  Frames are normalised exactly as the plugin does (0.5 / 99.8 percentiles to 0..1; 20 % of
  images use min/max or part of the dtype range and 10 % a gamma, for robustness), then
  resized to 1024 with the same
  antialiased bilinear resize and ImageNet normalisation as ``SAM2ImagePredictor``.
* Prompts, 16 per image: 7 single positive clicks (3 multimask outputs, loss on the best),
  3 boxes (jittered), 3 positive + negative pairs (negative in a neighbour or the background
  near the object), 3 mask prompts (degraded ground truth as +-10 logits, like the plugin's
  ``mask_to_logits``); the single clicks are then corrected twice (a click in the largest
  error region of the model's own answer) and the 2- and 3-click prompts are trained too.
* Loss: 20 x focal + dice on the 256 x 256 low-resolution logits, MSE of the IoU head
  against the true IoU of every output, a cross-entropy that teaches the IoU head to rank
  the best of the three outputs first, 0.05 x the mask loss on the two non-best outputs (so no
  output collapses to empty or everything), object-score BCE (object present), and during
  the first 30 % of steps a class-balanced BCE to leave the all-background plateau.
* AdamW lr 2e-3, weight decay 0.01, 150-step warm-up then cosine to 5 %, bf16 autocast,
  gradient clipping at 1.0, seed 0.
* The forward is the one ``SAM2ImagePredictor`` runs (``no_mem_embed`` added to the lowest
  resolution features, box corners as points labelled 2 and 3 before the clicks, the padding
  point); ``--check`` verifies it against the stock predictor on CPU.

Recipe (video mode, issue 5)
----------------------------
* Starts from the image-mode weights and trains image and video mode together: every step
  is the image step above on 12 images plus 8 clips of 8 frames (``synthetic_clip``, 160-448
  px, 1-5 cells, up to 2 tracked per clip), normalised stack-wide as the plugin does.
* Frame 0 is prompted (60 % click, 20 % box, 20 % mask, in sub-batches), frames 1-7 are
  tracked from memory only, through the same ``SAM2Base`` internals as
  ``SAM2VideoPredictor`` (``_track_step`` and ``_encode_memory_in_output``, keeping the three
  outputs, IoUs and object scores for the loss), with gradients through the memory. The
  backbone runs without gradients on clips (the image step trains it).
* Loss per frame: best-of-three focal + dice where the cell is present, IoU head, ranking,
  and object-score BCE against presence (cells vanish for 1-3 frames in 25 % of moving
  clips).
* Curriculum: half the clips are static at the start (memory only has to copy the mask),
  10 % after 30 % of the run; z-stacks (20 %) are tracked from the widest slice either way.
* lr 1e-3 for the memory parts, 0.3 x that for the image parts, 50 warm-up steps.
* ``--overfit N`` trains on one fixed clip only: the check that the memory path can learn.

IoU-head fine-tune (issue 5, ``--train-only iou``)
-------------------------------------------------
* Joint training left the masks as good but the IoU head ranking the three outputs worse
  (one click 0.961 -> 0.949, best of three unchanged). From the packaged weights, only
  ``sam_mask_decoder.iou_prediction_head`` trains, on the same mixed image + clip batches and
  loss (the mask terms then carry no gradient): IoU MSE on every output of every prompt and
  tracked frame, plus the ranking term. The model runs in eval mode (no dropout), so the
  masks and memories the head learns to rank are the packaged weights' own.
  ``tools/run_iou_finetune.sh`` runs it and the held-back evaluation on the GPU machine.

Confocal nuclei (issue 17, ``--nuclei-share F``)
-----------------------------------------------
* A share F of the images comes from ``synthetic_nuclei`` (160-640 px, radius 12-150 px at the
  1024 input, 15-60 % coverage, touching 20-80 %, up to 40 % out-of-focus neighbours), and the
  z-stack clips (20 + 20 x F % of the clips) a share F from ``synthetic_nuclei_stack``, tracked
  from nucleus 1's widest slice. ``tools/run_micro_v2.sh`` fine-tunes and evaluates on the GPU
  machine (candidates and numbers: docs/micro-model.md, "Real data").

Long z-stack clips (issue 17, ``--z-clips K --z-frames N``)
---------------------------------------------------------
* Why: candidate v2b (above, from v2a) gained real 2D (click 0.701 -> 0.754, box 0.777 ->
  0.808) but lost z-propagation (0.795 -> 0.721). Its z-stack clips were 8 slices from the
  widest one, slices 4-15 % of a radius apart: most never reached a nucleus' end, while the
  real evaluation tracks 11-32 slices each way from the widest (nuclei 23-43 slices deep, plus
  4 empty slices each side), where the memory is full (num_maskmem 7) for most frames and the
  nucleus shrinks to nothing inside a glow. Its object pointers were also encoded as in an
  8-frame video (``num_frames`` 8: distances over 7), never as at inference (over 15).
* Each step adds K clips from ``make_zstack_sample``: 2N - 1 slices with nucleus 1 widest in
  the middle, tracked from it to the last slice and then from it back to the first with
  ``track_in_reverse``, as ``SAM2VideoPredictor`` propagates both ways (N = 12: 22 tracked
  frames); slices 3.5-13 % of a radius apart (the real stack: about 5 %), so about half the
  clips reach the end and the empty slices past it; nucleus 1 and another nucleus of the
  widest slice tracked; a share ``--nuclei-share`` from ``synthetic_nuclei_stack``. The
  ``--clips`` stream then draws no z-stacks (time-lapses only). Every clip now passes
  ``num_frames`` >= 16 (PTR_FRAMES) to SAM2, as inference does.
* Two runs side by side from two starting points (v2b, and the packaged weights): why,
  docs/micro-model.md ("Earlier (v2a / v2b ...)").

Echo and crowded clips (issue 17, ``--echo R``)
----------------------------------------------
* Why: the GPU waited for the CPUs (two runs side by side: 83 steps in 330 s; on one core an
  image takes 0.15-0.3 s to render, a 23-slice z-stack clip about 1 s). ``--echo R`` trains
  each rendered image and clip R times (at most 8), each time under another of the square's
  eight turns and mirror images, drawn at random from a pool of 4 steps' worth per worker
  (tools/train_echo.py; the symmetries are exact on the model's grid, prompts included).
* 40 % of the moving clips are crowded time-lapses (``synthetic_timelapse``: a third of the
  field covered, cells touching and passing each other; no divisions in 8 frames).

* 70 % of the positive + negative pairs put the negative inside a touching neighbour, pair
  loss x 2 (micro_images.TOUCH_NEGATIVE): the correction a user makes when a click takes a cluster.

The packaged v2d is ½ the issue-5 weights + ½ pA (v2c-d, then on the H200 ``--init v2c-d.pt
--echo 4 --batch 12 --clips 6 --z-clips 2 --lr 1e-4 --warmup 20 --nuclei-share 0.3
--budget-s 300 --time-limit 330``; ``tools/interpolate_weights.py issue5.pt pA.pt 0.5``).
Commands used for the issue-5 checkpoint (each on one H100; see docs/micro-model.md)::

    # image mode: two calls, the second resumes from the first's model.pt / opt.pt
    python tools/train_micro.py --out $OUT --seed 0 --batch 24 --workers 14 \
        --budget-s 960 --time-limit 455
    python tools/train_micro.py --out $OUT --resume .train/ckpt --batch 24 --workers 14 \
        --time-limit 540
    # video mode, from the image-mode weights (git 423f2b4, sha256 3f1822ce...)
    python tools/train_micro.py --init image.pt --overfit 100
    python tools/train_micro.py --init image.pt --out $OUT --batch 12 --clips 8 \
        --workers 8 --clip-workers 7 --lr 1e-3 --image-lr-mult 0.3 --warmup 50 \
        --budget-s 700 --time-limit 420 --log-every 10

The code beside this script: micro_model.py (the model, its input, the predictor's forward),
micro_images.py and micro_data.py (image and clip samples, their streams), micro_losses.py,
micro_steps.py (image and video steps).

The result is written as ``$OUT/model.pt`` (``{"model": state_dict}``, float32), ``$OUT/opt.pt``
(optimizer state for resuming) and ``$OUT/log.jsonl`` (one JSON line per logged step).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import micro_images  # noqa: E402
import micro_model  # noqa: E402
from micro_data import ClipStream, clip_batches  # noqa: E402
from micro_images import ImageStream  # noqa: E402
from micro_model import DEFAULT_CONFIG, build_model, check_against_predictor  # noqa: E402
from micro_steps import image_step, video_step  # noqa: E402

# What ``--train-only`` trains. iou: the MLP that scores the mask outputs (not the IoU token:
# it joins the decoder transformer's self-attention, so training it would move the masks too).
# decoder: the whole mask decoder, IoU token and head included.
TRAIN_ONLY = {"iou": "sam_mask_decoder.iou_prediction_head.", "decoder": "sam_mask_decoder."}


def lr_at(step: int, total: int, base: float, warmup: int = 150) -> float:
    """Linear warm-up, then cosine from ``base`` down to 5 % of it at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def save(out: Path, model, opt, meta: dict, log: list) -> None:
    """Weights (the packaged format), optimizer state, meta and log into ``out``, each file
    replaced whole so a run killed mid-save leaves the previous checkpoint."""
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"model": sd}, out / "model.tmp")
    os.replace(out / "model.tmp", out / "model.pt")
    torch.save(opt.state_dict(), out / "opt.tmp")
    os.replace(out / "opt.tmp", out / "opt.pt")
    (out / "meta.json").write_text(json.dumps(meta))
    with open(out / "log.jsonl", "w") as f:
        for row in log:
            f.write(json.dumps(row) + "\n")


def overfit_check(model, device, steps: int, seed: int) -> None:
    """Issue 5's first lead: can the memory path learn at all? Train on one fixed clip."""
    stream = iter(ClipStream(seed, fixed=True))
    clips = [next(stream)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    for step in range(steps):
        loss, metrics = video_step(model, clips, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            print(
                json.dumps({"overfit_step": step, **{k: round(v, 4) for k, v in metrics.items()}}),
                flush=True,
            )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--image-size", type=int, help="train at this input size (default: config's)")
    ap.add_argument("--out", default="out/micro")
    ap.add_argument("--resume", default=None, help="folder with model.pt, opt.pt, meta.json")
    ap.add_argument("--init", default=None, help="start from these weights (new schedule)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=24, help="images per step")
    ap.add_argument("--clips", type=int, default=0, help="video clips per step (0: image only)")
    ap.add_argument("--video-weight", type=float, default=1.0)
    ap.add_argument(
        "--z-clips",
        type=int,
        default=0,
        help="long z-stack clips per step (make_zstack_sample); then --clips draws no z-stacks",
    )
    ap.add_argument("--z-frames", type=int, default=12, help="z-clip slices per side")
    ap.add_argument("--z-one-way", action="store_true", help="z-clips one side only")
    ap.add_argument("--z-weight", type=float, default=1.0)
    ap.add_argument("--z-workers", type=int, default=6)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument(
        "--echo",
        type=int,
        default=1,
        help="train each rendered image and clip this many times (<= 8), turned or mirrored",
    )
    ap.add_argument("--clip-workers", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument(
        "--image-lr-mult",
        type=float,
        default=1.0,
        help="lr factor for the image parts (backbone, prompt encoder, decoder)",
    )
    ap.add_argument(
        "--train-only",
        choices=sorted(TRAIN_ONLY),
        default=None,
        help="train the IoU prediction head (iou) or the mask decoder (decoder) only, "
        "everything else frozen in eval mode",
    )
    ap.add_argument("--total-steps", type=int, default=0, help="0: plan from --budget-s")
    ap.add_argument("--budget-s", type=float, default=900.0, help="training time to plan for")
    ap.add_argument("--time-limit", type=float, default=500.0, help="stop and save after this")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many (smoke)")
    ap.add_argument("--overfit", type=int, default=0, help="only train N steps on one clip")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--check", action="store_true", help="compare with SAM2ImagePredictor, exit")
    ap.add_argument(
        "--nuclei-share", type=float, default=0.0, help="images / z-stacks of confocal nuclei"
    )
    args = ap.parse_args(argv)
    if args.image_size:
        args.config = micro_model.config_at_size(args.config, args.image_size)
    # Read by the data workers.
    micro_images.NUCLEI_SHARE = args.nuclei_share
    micro_model.INPUT_SIZE = micro_model.config_image_size(args.config)

    if args.check:
        print(json.dumps({"max_abs_diff_vs_predictor": check_against_predictor(args.config)}))
        return

    t_start = time.time()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = build_model(args.config).to(device).train()
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location=device)["model"])
    if args.overfit:
        overfit_check(model, device, args.overfit, args.seed)
        return
    if args.train_only:
        # Dropout and drop-path off: the frozen parts compute what they compute at inference.
        model.eval()
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(TRAIN_ONLY[args.train_only]))
    memory_parts = (
        "memory_attention",
        "memory_encoder",
        "obj_ptr",
        "maskmem_tpos_enc",
        "no_obj",
        "mask_downsample",
    )
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    is_mem = [any(n.startswith(k) for k in memory_parts) for n, _ in named]
    groups = [
        {"params": [p for p, m in zip(params, is_mem, strict=True) if m], "mult": 1.0},
        {
            "params": [p for p, m in zip(params, is_mem, strict=True) if not m],
            "mult": args.image_lr_mult,
        },
    ]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01)
    meta = {"step": 0, "total_steps": args.total_steps, "seed": args.seed, "train_s": 0.0}
    log: list = []
    if args.resume:
        r = Path(args.resume)
        model.load_state_dict(torch.load(r / "model.pt", map_location=device)["model"])
        opt.load_state_dict(torch.load(r / "opt.pt", map_location=device))
        meta = json.loads((r / "meta.json").read_text())
        if (r / "log.jsonl").exists():
            log = [json.loads(x) for x in (r / "log.jsonl").read_text().splitlines() if x]
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in params)
    print(
        json.dumps(
            {
                "params": n_params,
                "trained": n_train,
                "device": str(device),
                "resume_step": meta["step"],
            }
        )
    )

    loader = torch.utils.data.DataLoader(
        ImageStream(args.seed * 1000 + meta["step"], args.echo, 4 * args.batch),
        batch_size=args.batch,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if args.workers else None,
        persistent_workers=bool(args.workers),
    )
    it = iter(loader)
    progress = torch.multiprocessing.Value("d", 0.0)
    seed = args.seed * 1000 + meta["step"]
    clip_it = z_it = None
    if args.clips:
        clip_it = clip_batches(
            ClipStream(
                seed, progress, zstack=not args.z_clips, echo=args.echo, pool=4 * args.clips
            ),
            args.clips,
            args.clip_workers,
        )
    if args.z_clips:
        stream = ClipStream(
            seed,
            z_frames=args.z_frames,
            both_ways=not args.z_one_way,
            echo=args.echo,
            pool=4 * args.z_clips,
        )
        z_it = clip_batches(stream, args.z_clips, args.z_workers)
    gen = torch.Generator().manual_seed(args.seed + meta["step"])
    out = Path(args.out)
    t0 = time.time()
    t_rate = None
    step0 = meta["step"]
    acc: dict = {}
    while True:
        step = meta["step"]
        total = meta["total_steps"] or 10**9
        if step >= total or (args.max_steps and step - step0 >= args.max_steps):
            break
        if time.time() - t_start > args.time_limit:
            break
        batch = next(it)
        if step - step0 == 10:
            torch.cuda.synchronize() if device.type == "cuda" else None
            t_rate = time.time()
        if step - step0 == 40 and not meta["total_steps"]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            rate = (time.time() - t_rate) / 30
            meta["total_steps"] = int(args.budget_s / rate)
            print(json.dumps({"s_per_step": round(rate, 4), "planned_steps": meta["total_steps"]}))
        for g in opt.param_groups:
            g["lr"] = g["mult"] * lr_at(step, meta["total_steps"] or 10**6, args.lr, args.warmup)
        frac = step / max(1, meta["total_steps"] or 10**6)
        progress.value = frac
        loss, metrics = image_step(model, batch, frac, gen, device)
        if clip_it is not None:
            vloss, vmetrics = video_step(model, next(clip_it), device)
            loss = loss + args.video_weight * vloss
            metrics.update(vmetrics)
        if z_it is not None:
            zloss, zmetrics = video_step(model, next(z_it), device)
            loss = loss + args.z_weight * zloss
            metrics.update({"z" + k: v for k, v in zmetrics.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        meta["step"] = step + 1
        for k, v in metrics.items():
            acc.setdefault(k, []).append(v)
        if (step + 1) % args.log_every == 0:
            row = {"step": step + 1, "lr": opt.param_groups[0]["lr"], "grad_norm": float(gn)}
            row.update({k: round(float(np.mean(v)), 4) for k, v in acc.items()})
            row["elapsed_s"] = round(meta["train_s"] + time.time() - t0, 1)
            log.append(row)
            acc = {}
            print(json.dumps(row), flush=True)
        if (step + 1) % 200 == 0:
            save(out, model, opt, {**meta, "train_s": meta["train_s"] + time.time() - t0}, log)
    meta["train_s"] += time.time() - t0
    save(out, model, opt, meta, log)
    print(json.dumps({"saved": str(out), **meta}))


if __name__ == "__main__":
    main()
