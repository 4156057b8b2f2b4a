"""Adjustments to how sam2's video predictor runs here: dtypes, attention kernels, errors."""

from __future__ import annotations

import contextlib

import torch

from ..errors import SAM2Error


def install_memory_dtype_fix(model: torch.nn.Module) -> None:
    """Make memory attention accept sam2's bfloat16 memories where no autocast runs (CPU, MPS).

    sam2 always stores memory features as bfloat16. When a frame's memory also holds object
    pointers (float32) the concatenation is promoted to float32, but when it holds none — an
    object whose only prompted frame lies ahead of the frame being tracked — the memory stays
    bfloat16 and, without autocast, attention fails with "mat1 and mat2 must have the same
    dtype". This hook casts the memory to the dtype of the current frame's features. It is
    installed once per model and does nothing when the dtypes already agree or autocast is on.
    """
    attention = model.memory_attention
    if getattr(attention, "_napari_sam2_dtype_fix", False):
        return

    def cast_memory(module, args, kwargs):
        curr, memory = kwargs.get("curr"), kwargs.get("memory")
        if isinstance(curr, list):
            curr = curr[0]
        if (
            isinstance(curr, torch.Tensor)
            and isinstance(memory, torch.Tensor)
            and memory.dtype != curr.dtype
            and not torch.is_autocast_enabled(memory.device.type)
        ):
            kwargs["memory"] = memory.to(curr.dtype)
        return args, kwargs

    attention.register_forward_pre_hook(cast_memory, with_kwargs=True)
    attention._napari_sam2_dtype_fix = True


def attention_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """On CUDA, attention without cuDNN's kernels while tracking.

    cuDNN builds a plan for every new input shape (tens of milliseconds), and memory
    attention gets a new shape on each of the first 16 tracked frames while the memory bank
    fills: measured on an H100 with tiny over 100 frames, 43 frames/s with cuDNN, 84 with
    flash attention. (The setting is process-wide while a run lasts.)
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(
        [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    )


def video_predictor():
    import sam2.sam2_video_predictor

    return sam2.sam2_video_predictor


class OutOfMemoryAdvice:
    """Turns an out-of-memory error of the accelerator into a SAM2Error that says what to do."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None:
            return False
        oom = isinstance(err, torch.OutOfMemoryError) or (
            isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
        )
        if oom:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise SAM2Error(
                f"The {self.device.type.upper()} ran out of memory while propagating. Try a "
                "smaller model (e.g. sam2.1_hiera_tiny), a shorter frame range, fewer objects "
                "at once, or device='cpu'. The frames finished so far are kept."
            ) from err
        return False
