"""One training step of the micro SAM2: every prompt group on a batch of images, and tracking
a batch of clips from a frame-0 prompt with gradients through the memory."""

from __future__ import annotations

import micro_model as mm
import numpy as np
import torch
import torch.nn.functional as F
from micro_images import N_PROMPTS, PROMPTS
from micro_losses import correction_click, degraded_mask_prompt, frame_loss, prompt_loss
from micro_model import decode, image_features, to_model_input

# ``num_frames`` handed to ``_track_step``: SAM2 keeps min(num_frames, max_obj_ptrs_in_encoder
# = 16) object pointers and scales their temporal encoding by that minus one. At inference a
# clip is longer than 16 frames (the real stack's nuclei: 24-51 slices), so training passes at
# least 16 too; with the clip length (8) the pointers' distances were scaled by 1/7 in training
# and by 1/15 at inference.
PTR_FRAMES = 16


def image_step(model, batch, step_frac: float, gen: torch.Generator, device) -> tuple:
    """One image-mode step: all prompt groups on a batch of images; returns (loss, metrics)."""
    images = to_model_input(batch["image"].to(device, non_blocking=True))
    points = batch["points"].to(device, non_blocking=True)  # (B, N, 2, 2)
    targets = batch["targets"].to(device, non_blocking=True).float()[:, :, None] / 255.0
    b = images.shape[0]
    bce_w = max(0.0, 1.0 - step_frac / 0.3)
    with torch.autocast("cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16):
        feats = image_features(model, images)
    img_idx = torch.arange(b, device=device)[:, None].expand(b, N_PROMPTS)
    offs = np.cumsum([0] + list(PROMPTS.values()))
    group = {name: slice(offs[i], offs[i + 1]) for i, name in enumerate(PROMPTS)}

    def take(name):
        s = group[name]
        return (
            img_idx[:, s].reshape(-1),
            points[:, s].reshape(-1, 2, 2),
            targets[:, s].flatten(0, 1),
        )

    losses, metrics = [], {}
    ac = torch.autocast("cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16)
    # Single clicks: three outputs.
    idx, pts, tgt = take("click")
    ones = torch.ones(len(idx), 1, dtype=torch.int32, device=device)
    coords, labels = pts[:, :1], ones
    with ac:
        lg, iou_p, obj = decode(model, feats, idx, coords, labels, multimask=True)
    loss, chosen = prompt_loss(lg, iou_p, obj, tgt, bce_w)
    losses.append(loss * 2)
    metrics["click"] = chosen.mean().item()
    # Two and three clicks from the model's own errors.
    for n_click in (2, 3):
        xy, lab = correction_click(lg.float(), iou_p.float(), tgt)
        coords = torch.cat([coords, xy], 1)
        labels = torch.cat([labels, lab], 1)
        with ac:
            lg, iou_p, obj = decode(model, feats, idx, coords, labels, multimask=False)
        loss, chosen = prompt_loss(lg, iou_p, obj, tgt, bce_w)
        losses.append(loss)
        metrics[f"click{n_click}"] = chosen.mean().item()
    # Boxes (corners labelled 2 and 3), then positive + negative pairs.
    for name, point_labels in (("box", (2, 3)), ("pair", (1, 0))):
        idx, pts, tgt = take(name)
        lab = torch.tensor([point_labels], dtype=torch.int32, device=device).expand(len(idx), 2)
        with ac:
            lg, iou_p, obj = decode(model, feats, idx, pts, lab, multimask=False)
        loss, chosen = prompt_loss(lg, iou_p, obj, tgt, bce_w)
        losses.append(loss * (2 if name == "pair" else 1))  # pairs: issue 17's correction
        metrics[name] = chosen.mean().item()
    # Mask prompts (half of them with the click too).
    idx, pts, tgt = take("mask")
    mask_in = degraded_mask_prompt(tgt, gen)
    half = len(idx) // 2
    with ac:
        lg1, iou1, obj1 = decode(model, feats, idx[:half], mask_input=mask_in[:half])
        lg2, iou2, obj2 = decode(
            model, feats, idx[half:], pts[half:, :1], ones[: len(idx) - half], mask_in[half:]
        )
    loss1, ch1 = prompt_loss(lg1, iou1, obj1, tgt[:half], bce_w)
    loss2, ch2 = prompt_loss(lg2, iou2, obj2, tgt[half:], bce_w)
    losses += [loss1 * 0.5, loss2 * 0.5]
    metrics["mask"] = torch.cat([ch1, ch2]).mean().item()
    total = sum(losses) / 7.0
    metrics["loss"] = total.item()
    return total, metrics


def _cat_outputs(parts, order):
    """Join the frame-0 outputs of prompt sub-batches back into object order."""
    out = {}
    for key in ("pred_masks", "pred_masks_high_res", "obj_ptr", "maskmem_features"):
        out[key] = torch.cat([p[key] for p in parts])[order]
    out["maskmem_pos_enc"] = [
        torch.cat([p["maskmem_pos_enc"][i] for p in parts])[order]
        for i in range(len(parts[0]["maskmem_pos_enc"]))
    ]
    return out


def video_step(model, clips: list, device) -> tuple:
    """Track every object of a batch of clips from a frame-0 prompt, with gradients through
    the memory, as SAM2VideoPredictor runs it (track_step internals, outputs kept)."""
    ac = torch.autocast("cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16)
    n_t = clips[0]["frames"].shape[0]
    # Frame indices and direction of each tracked position (long z-stacks: from the widest
    # slice up, then from it down, see make_zstack_sample); plain clips run 0, 1, ... forward.
    frame_idx = [int(i) for i in clips[0].get("frame_idx", torch.arange(n_t))]
    reverse = [bool(r) for r in clips[0].get("reverse", torch.zeros(n_t, dtype=torch.bool))]
    num_frames = max(n_t, PTR_FRAMES)
    if all(int(k) < 0 for c in clips for k in c["kind"]):  # nothing to track
        zero = clips[0]["frames"].new_zeros((), dtype=torch.float32, device=device)
        return zero, {}
    with torch.no_grad(), ac:  # the image branch trains the backbone; memory trains here
        frames = torch.cat([to_model_input(c["frames"].to(device)) for c in clips])
        backbone_out = model.forward_image(frames)
        _, vis, pos, sizes = model._prepare_backbone_features(backbone_out)
    vis = [v.float() for v in vis]
    pos = [p.float() for p in pos]
    clip_of, slot = [], []
    for ci, c in enumerate(clips):
        for j in range(c["kind"].shape[0]):
            if int(c["kind"][j]) >= 0:
                clip_of.append(ci)
                slot.append(j)
    clip_of_t = torch.tensor(clip_of, device=device)
    kinds = torch.stack([clips[c]["kind"][j] for c, j in zip(clip_of, slot, strict=True)])
    prompts = torch.stack([clips[c]["prompt"][j] for c, j in zip(clip_of, slot, strict=True)])
    targets = torch.stack([clips[c]["targets"][j] for c, j in zip(clip_of, slot, strict=True)])
    targets = targets.to(device).float()[:, :, None] / 255.0  # (B, T, 1, low_res, low_res)
    prompts = prompts.to(device)
    b = len(clip_of)
    output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    losses, chosen_all = [], []
    for t in range(n_t):
        idx = clip_of_t * n_t + t
        feats_t = [v[:, idx] for v in vis]
        pos_t = [p[:, idx] for p in pos]
        tgt = targets[:, t]
        present = tgt.flatten(1).amax(1) > 0.5
        if t == 0:
            parts, order_src = [], []
            for kind in (0, 1, 2):
                sel = (kinds == kind).nonzero()[:, 0].to(device)
                if len(sel) == 0:
                    continue
                f_s = [v[:, sel] for v in feats_t]
                p_s = [p[:, sel] for p in pos_t]
                point_inputs = mask_inputs = None
                if kind == 0:
                    point_inputs = {
                        "point_coords": prompts[sel, :1],
                        "point_labels": torch.ones(len(sel), 1, dtype=torch.int32, device=device),
                    }
                elif kind == 1:
                    point_inputs = {
                        "point_coords": prompts[sel],
                        "point_labels": torch.tensor(
                            [[2, 3]], dtype=torch.int32, device=device
                        ).expand(len(sel), 2),
                    }
                else:
                    side = mm.INPUT_SIZE
                    m = F.interpolate(tgt[sel], (side, side), mode="bilinear")
                    mask_inputs = (m > 0.5).float()
                with ac:
                    cur, sam_out, _, _ = model._track_step(
                        frame_idx[0],
                        True,
                        f_s,
                        p_s,
                        sizes,
                        point_inputs,
                        mask_inputs,
                        output_dict,
                        num_frames,
                        False,
                        None,
                    )
                    low_multi, _, ious, low, high, obj_ptr, obj = sam_out
                    cur.update(pred_masks=low, pred_masks_high_res=high, obj_ptr=obj_ptr)
                    model._encode_memory_in_output(f_s, sizes, point_inputs, True, high, obj, cur)
                parts.append(cur)
                order_src.append(sel)
                if kind != 2:
                    loss, ch = frame_loss(low_multi, ious, obj, tgt[sel], present[sel])
                    losses.append(loss * len(sel) / b)
            order = torch.argsort(torch.cat(order_src))
            output_dict["cond_frame_outputs"][frame_idx[0]] = _cat_outputs(parts, order)
            continue
        with ac:
            cur, sam_out, _, _ = model._track_step(
                frame_idx[t],
                False,
                feats_t,
                pos_t,
                sizes,
                None,
                None,
                output_dict,
                num_frames,
                reverse[t],
                None,
            )
            low_multi, _, ious, low, high, obj_ptr, obj = sam_out
            cur.update(pred_masks=low, pred_masks_high_res=high, obj_ptr=obj_ptr)
            model._encode_memory_in_output(feats_t, sizes, None, True, high, obj, cur)
        output_dict["non_cond_frame_outputs"][frame_idx[t]] = cur
        loss, ch = frame_loss(low_multi, ious, obj, tgt, present)
        losses.append(loss)
        chosen_all.append(torch.where(present, ch, (obj[:, 0] <= 0).float()))
    total = sum(losses) / n_t
    track = torch.stack(chosen_all)  # (T-1, B): IoU if present, else 1 if hidden
    return total, {
        "vloss": total.item(),
        "track": track.mean().item(),
        "track_last": track[-1].mean().item(),
    }
