"""Memory attention's keys and values of each memory frame, computed once per object.

On every tracked frame sam2 attends to the memories of up to ``num_maskmem`` frames, and each
memory-attention layer projects all of them to keys and values again, rotating the keys (RoPE,
in float32): for frames whose keys were those of the frame before. At 64 micro objects on an
H200 that is 2.7 of a layer's 7.2 ms of cross-attention (32 tiny objects: 5.0 of 10.2 ms).

A memory token's key is ``rope(k_proj(feature + spatial position + temporal position))``, the
temporal position saying how far the memory frame lies from the frame tracked. Projection and
rotation are linear, so the key is ``rope(W·feature)``, the same for that object and frame
whichever frame attends to it, plus ``rope(W·(spatial + temporal position) + b)``, the same for
every object. Here the first (with the value, ``v_proj(feature)``) is kept with the frame's
output in the object's state and the second once per run; each step adds them up. sam2's
memory attention runs as it is, but for its cross-attention. Keys then differ from sam2's by
float rounding only (bfloat16 on a GPU: in the last bits). H200, bfloat16, 32 tiny objects
(cross-attention 256 wide) once the bank is full: 69–71 instead of 78.5 ms a frame.

What sam2 attends to stays sam2's choice: the memory outputs handed to it note the order in
which it reads them (``Attended``). The memories are numbered as sam2 numbers them with a
temporal stride of 1 and every prompted frame attended to, sam2's settings for its models;
with other settings steps run as sam2's.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from sam2.modeling.position_encoding import apply_rotary_enc

# Where a frame's output in an object's state keeps its keys and values, by layer.
KEY = "napari_sam2_keys_values"
# The share of a GPU's memory the kept keys and values may take: a run whose objects would
# need more runs as sam2's.
GPU_SHARE = 1 / 8


class Attended(dict):
    """A memory output as handed to sam2 for a batch: notes, in ``order``, when sam2 reads its
    memory features, so the step knows which of its memory tokens come from which frame.
    ``sources`` are the objects' own outputs (where the keys are kept), ``distance`` how many
    frames its frame lies from the frame tracked (None for a prompted frame)."""

    def __init__(self, output: dict, sources: list[dict], distance: int | None, order: list):
        super().__init__(output)
        self.sources, self.distance, self._order = sources, distance, order

    def __getitem__(self, key):
        if key == "maskmem_features":
            self._order.append(self)
        return super().__getitem__(key)


def usable(model) -> bool:
    """Whether sam2 numbers ``model``'s memories as this module does, and its cross-attention
    keys are split as it splits them."""
    attention = model.memory_attention
    return (
        model.memory_temporal_stride_for_eval == 1
        and model.max_cond_frames_in_attn == -1
        and all(_split(layer) for layer in attention.layers)
    )


def _split(layer) -> bool:
    """Whether a layer's cross-attention keys are rotated and carry the memory's positions."""
    module = layer.cross_attn_image
    rotary = hasattr(module, "freqs_cis") and getattr(module, "rope_k_repeat", False)
    return rotary and layer.pos_enc_at_cross_attn_keys


def fits(model, objects: int, prompted: int) -> bool:
    """Whether to keep the keys and values of ``objects`` objects, each with ``prompted``
    prompted frames: on a GPU, where they take at most ``GPU_SHARE`` of its memory (bfloat16).
    Not on a CPU, where the attention itself sets the pace (micro, 4 objects, 24 frames on 2
    cores: 3 % faster for 0.3 GiB more)."""
    if model.device.type != "cuda":
        return False
    tokens = model.sam_image_embedding_size**2
    width = sum(layer.cross_attn_image.internal_dim for layer in model.memory_attention.layers)
    frames = model.num_maskmem - 1 + prompted
    need = objects * frames * 2 * tokens * width * 2
    return need <= torch.cuda.get_device_properties(model.device).total_memory * GPU_SHARE


class MemoryKeys:
    """The per-run part: the position terms of the keys, by layer and temporal position."""

    def __init__(self, model):
        self.model = model
        self._positions: dict[tuple[int, int], torch.Tensor] = {}

    @contextlib.contextmanager
    def attending(self, order: list[Attended]) -> Iterator[None]:
        """In this block memory attention's cross-attention takes the memories' keys and
        values from their objects' outputs, ``order`` being filled as sam2 reads them."""
        layers = self.model.memory_attention.layers
        for index, layer in enumerate(layers):
            layer.cross_attn_image.forward = self._cross_attention(index, layer, order)
        try:
            yield
        finally:
            for layer in layers:
                del layer.cross_attn_image.forward

    def _cross_attention(self, index: int, layer, order: list[Attended]):
        attention = layer.cross_attn_image
        stock = type(attention).forward.__get__(attention)

        def forward(q, k, v, num_k_exclude_rope=0):
            tokens = self.model.sam_image_embedding_size**2
            if k.shape[1] != len(order) * tokens + num_k_exclude_rope:
                return stock(q, k, v, num_k_exclude_rope)
            heads = attention.num_heads
            q = attention._separate_heads(attention.q_proj(q), heads)
            if attention.freqs_cis.shape[0] != q.shape[-2]:  # as sam2's RoPEAttention
                side = math.sqrt(q.shape[-2])
                attention.freqs_cis = attention.compute_cis(end_x=side, end_y=side)
            freqs = attention.freqs_cis.to(q.device)
            q = apply_rotary_enc(q, q[:, :, :0], freqs_cis=freqs)[0]
            keys, values = [], []
            for i, memory in enumerate(order):
                features = v[:, i * tokens : (i + 1) * tokens]
                key, value = _kept(attention, index, memory.sources, features, freqs)
                keys.append(key + self._position(index, attention, memory, freqs))
                values.append(value)
            pointers = slice(k.shape[1] - num_k_exclude_rope, None)
            keys.append(attention.k_proj(k[:, pointers]))
            values.append(attention.v_proj(v[:, pointers]))
            # Token-major, then split into heads, as sam2 lays out its keys and values.
            keys = attention._separate_heads(torch.cat(keys, 1), heads)
            values = attention._separate_heads(torch.cat(values, 1), heads)
            out = F.scaled_dot_product_attention(q, keys, values)
            return attention.out_proj(attention._recombine_heads(out))

        return forward

    def _position(self, index, attention, memory: Attended, freqs) -> torch.Tensor:
        """The key term of the memory's spatial and temporal position, ``(1, HW, channels)``."""
        model = self.model
        step = model.num_maskmem - 1 if memory.distance is None else memory.distance - 1
        term = self._positions.get((index, step))
        if term is None:
            spatial = memory["maskmem_pos_enc"][-1][:1].to(freqs.device)
            position = spatial.flatten(2).permute(0, 2, 1) + model.maskmem_tpos_enc[step]
            term = _rotated(attention, attention.k_proj(position), freqs)
            self._positions[index, step] = term
        return term


def _rotated(attention, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """``x`` (batch, HW, channels) with sam2's rotary encoding of the HW grid, per head."""
    heads = attention._separate_heads(x, attention.num_heads)
    return attention._recombine_heads(apply_rotary_enc(heads, heads[:, :, :0], freqs_cis=freqs)[0])


def _kept(attention, index, sources: list[dict], features, freqs):
    """The batch's feature keys (rotated, without bias) and values of one memory frame, from
    its objects' outputs where kept, else computed from ``features`` and kept there."""
    kept = [source.get(KEY, {}).get(index) for source in sources]
    if all(kept):
        keys, values = zip(*kept, strict=True)
        return torch.cat(keys), torch.cat(values)
    key = _rotated(attention, F.linear(features, attention.k_proj.weight), freqs)
    value = attention.v_proj(features)
    for i, source in enumerate(sources):
        source.setdefault(KEY, {})[index] = (key[i : i + 1], value[i : i + 1])
    return key, value


def release(outputs: dict, frame: int, reverse: bool, model) -> None:
    """Drop the keys kept for the memory frame that the next frame of this run no longer
    attends to (kept frames beyond it hold only their object pointer for sam2)."""
    far = frame + (model.num_maskmem - 1) * (1 if reverse else -1)
    output = outputs["non_cond_frame_outputs"].get(far)
    if output is not None:
        output.pop(KEY, None)
