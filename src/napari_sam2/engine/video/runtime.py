"""Adjustments to how sam2's video predictor runs here: dtypes, attention kernels, errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..errors import SAM2Error
from . import batching
from .confidence import install_score_capture


def adapt_model(model: torch.nn.Module) -> None:
    """What a propagation session changes in how ``model`` runs for good (each once per model):
    the dtype fix below and the capture of each tracked mask's scores."""
    install_memory_dtype_fix(model)
    install_score_capture(model)


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


@contextlib.contextmanager
def attention_kernels(model: torch.nn.Module) -> Iterator[None]:
    """While tracking on CUDA: attention without cuDNN's kernels, except memory attention of
    more objects than CUDA graphs take (``batching.graph_limit``) once their memory bank is full.

    cuDNN builds a plan for every new input shape (55-75 ms on an H200), and memory attention
    gets a new shape on each of the first 16 tracked frames while the bank fills: measured on
    an H100 with tiny over 100 frames, 43 frames/s with cuDNN, 84 with flash attention. Once
    the bank is full the shape stays, and for such large batches cuDNN is the faster kernel
    (H200, bfloat16, cross-attention of 64 micro objects 4.7 vs 6.1 ms a layer, of 32 tiny ones
    5.6 vs 11.9 ms). The settings are process-wide while a run lasts; the model is left as it
    was after it.
    """
    if model.device.type != "cuda":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    attention = model.memory_attention
    tokens = model.sam_image_embedding_size**2
    per_pointer = model.hidden_dim // model.mem_dim if model.mem_dim < model.hidden_dim else 1
    pointers = model.max_obj_ptrs_in_encoder * per_pointer if model.use_obj_ptrs_in_encoder else 0
    full = model.num_maskmem * tokens + pointers
    limit = batching.graph_limit(model)
    cudnn_first = [
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ]
    own = vars(attention).get("forward")  # a CUDA-graph call, installed before this
    inner = attention.forward

    def forward(*args, **kwargs):
        memory = kwargs.get("memory")  # (tokens, objects, channels), as sam2 passes it
        if memory is None or memory.shape[1] <= limit or memory.shape[0] < full:
            return inner(*args, **kwargs)
        with sdpa_kernel(cudnn_first, set_priority=True):
            return inner(*args, **kwargs)

    attention.forward = forward
    try:
        with sdpa_kernel(cudnn_first[1:]):
            yield
    finally:
        if own is None:
            del attention.forward
        else:
            attention.forward = own


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
