"""Memory attention over many objects with its activations laid out object by object.

sam2 hands memory attention its inputs token-major (tokens, objects, channels), the image's
features and positions expanded over the objects, and makes them object-major by transposing
views. Each layer's norms then copy their input to a contiguous one first, and its residual
and position sums meet the attention's contiguous, object-major outputs in the other layout,
which torch computes in its generic elementwise kernels instead of its vectorized ones: on an
H100 with tiny and 32 objects, 31 such float32 passes of about 0.37 ms and 18 ms of copies
in a frame of 80 ms on the GPU (``bench/results/h100-tiny-32-profile.txt``). Here the inputs
are copied once into object-major memory, handed to sam2 as token-major views of it, so that
its transposes give contiguous tensors: the same 32 tiny objects tracked 14 % faster (12.4 to
14.2 frames/s once the memory bank is full), for 0.7 GiB more at the peak. The values are
sam2's up to the rounding of matrix products over another layout.

Only for steps of more objects than CUDA graphs take (``batching.graph_limit``): a smaller
step's pace is its launches, not these passes, and a graph records the layout it first saw.
"""

from __future__ import annotations

import contextlib

import torch
from sam2.modeling.memory_attention import MemoryAttention

from ..computed_as import computed_as
from .batching import graph_limit


def object_major(x: torch.Tensor) -> torch.Tensor:
    """``x`` (tokens, objects, channels) as a view of the same values stored object by
    object."""
    return x.transpose(0, 1).contiguous().transpose(0, 1)


class ObjectMajorMemoryAttention(MemoryAttention):
    """sam2's ``MemoryAttention``, its inputs object-major in memory for batches of more than
    ``objects_from`` objects."""

    objects_from = 0

    def forward(self, curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        if not self.batch_first or memory.shape[1] <= self.objects_from or curr_pos is None:
            return super().forward(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens)
        one = isinstance(curr, list)
        curr, curr_pos = (curr[0], curr_pos[0]) if one else (curr, curr_pos)
        curr, curr_pos = object_major(curr), object_major(curr_pos)
        return super().forward(
            [curr] if one else curr,
            object_major(memory),
            [curr_pos] if one else curr_pos,
            object_major(memory_pos),
            num_obj_ptr_tokens,
        )


@contextlib.contextmanager
def object_major_attention(model: torch.nn.Module):
    """A block in which ``model``'s memory attention lays out batches of more objects than
    its CUDA graphs take object by object (``computed_as``)."""
    attention = model.memory_attention
    if type(attention) is not MemoryAttention:
        yield
        return
    with computed_as([attention], ObjectMajorMemoryAttention):
        attention.objects_from = graph_limit(model)
        try:
            yield
        finally:
            del attention.objects_from
