"""CUDA graphs for the parts of sam2's tracking step whose input shapes repeat frame after frame.

sam2 tracks a frame with some 700 small GPU kernels, each launched from Python: on a fast GPU
the host, not the GPU, sets the frame rate (``bench/diagnostics.py propagation``: the GPU idles
80-90 % of the time). Memory attention, the mask heads and the memory encoder get inputs of
the same shapes on every frame once the memory bank is full, so each of them can be recorded
once as a CUDA graph and then replayed with a single launch. What happens around them (which
memories to attend to, prompts, the outputs kept per frame) stays sam2's own code.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

# (owner, attribute) pairs of a SAM2Base model that are replaced while tracking.
_TARGETS = (
    ("memory_attention", "forward"),
    (None, "_forward_sam_heads"),
    (None, "_encode_new_memory"),
)
_INSTALL_LOCK = threading.Lock()
# Recordings share torch's capture stream: one at a time, whichever thread records.
_RECORD_LOCK = threading.Lock()
# How many ``without_graphs`` blocks this thread is in.
_plain = threading.local()


def padded_size(n: int) -> int:
    """The power of two a batch of ``n`` is padded to on CUDA, so that batch shapes repeat:
    each new shape costs a CUDA graph and, on first use in a process, cuDNN's plans (H200,
    micro, 8 objects: first mask 0.69 s cold, 0.25 s once the shapes were seen)."""
    return 1 << (n - 1).bit_length()


@contextlib.contextmanager
def without_graphs() -> Iterator[None]:
    """In this block, this thread's calls run as they are, not as graphs: for steps large
    enough that the GPU, not the host, sets their pace, where a graph saves nothing and costs
    its recording and its copy of every input."""
    _plain.depth = getattr(_plain, "depth", 0) + 1
    try:
        yield
    finally:
        _plain.depth -= 1


@functools.cache
def _side_stream(device: int) -> torch.cuda.Stream:
    """The stream of the run before each recording, one per GPU: every stream that runs a
    matrix product gets a cuBLAS workspace of its own (32 MiB on an H100) that is kept for the
    life of the process, so a new stream per recording would leak that much each time."""
    return torch.cuda.Stream(device)


class GraphedCall:
    """``fn`` whose calls replay a CUDA graph once inputs of the same shapes keep coming.

    The first ``record_after`` calls with a given set of input shapes (and the same non-tensor
    arguments) run ``fn`` as it is, the next one records a graph of it; later calls of that kind
    copy their inputs into the graph's and replay it. Outputs are copies, so a caller may keep
    them. At most ``max_graphs`` graphs are held (least recently used dropped). Only the thread
    that made this object uses graphs, unless ``any_thread`` (for callers that let one thread
    at a time in); other calls, with tensors off the GPU or under autograd run ``fn`` unchanged.
    """

    def __init__(
        self, fn: Callable, record_after: int = 2, max_graphs: int = 4, any_thread: bool = False
    ):
        self.fn = fn
        self.record_after = record_after
        self.max_graphs = max_graphs
        self.replays = 0
        self._owner = None if any_thread else threading.get_ident()
        self._seen: dict[tuple, int] = {}
        self._graphs: OrderedDict[tuple, tuple] = OrderedDict()

    def __call__(self, *args, **kwargs):
        leaves, spec = tree_flatten((args, kwargs))
        key = self._key(leaves, spec)
        if key is None:
            return self.fn(*args, **kwargs)
        entry = self._graphs.get(key)
        if entry is None:
            self._seen[key] = seen = self._seen.get(key, 0) + 1
            if seen <= self.record_after:
                return self.fn(*args, **kwargs)
            entry = self._graphs[key] = self._record(leaves, spec)
            if len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        graph, inputs, outputs, out_spec = entry
        for static, value in zip(inputs, leaves, strict=True):
            if isinstance(static, torch.Tensor):
                static.copy_(value)
        graph.replay()
        self.replays += 1
        return tree_unflatten(
            [x.clone() if isinstance(x, torch.Tensor) else x for x in outputs], out_spec
        )

    def _key(self, leaves: list, spec) -> tuple | None:
        """What a graph depends on besides tensor values; None where graphs do not apply."""
        other_thread = self._owner is not None and threading.get_ident() != self._owner
        if other_thread or torch.is_grad_enabled() or getattr(_plain, "depth", 0):
            return None
        parts = []
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                if not leaf.is_cuda:
                    return None
                parts.append((tuple(leaf.shape), leaf.dtype, leaf.device))
            elif leaf is None or isinstance(leaf, (bool, int, float, str)):
                parts.append(leaf)
            else:
                return None
        autocast = (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
        return (spec, tuple(parts), autocast, torch.is_inference_mode_enabled())

    def _record(self, leaves: list, spec) -> tuple:
        inputs = [x.clone() if isinstance(x, torch.Tensor) else x for x in leaves]
        args, kwargs = tree_unflatten(inputs, spec)
        # Autocast must not reuse weights it cast outside the graph: they are freed when the
        # caller's autocast region ends, while the graph would go on reading them.
        autocast = torch.autocast(
            "cuda",
            dtype=torch.get_autocast_dtype("cuda"),
            enabled=torch.is_autocast_enabled("cuda"),
            cache_enabled=False,
        )
        # CUDA's rules for capture: run once on a side stream first (library handles, lazy
        # state), then record. Other threads (the GUI's workers) may use the GPU meanwhile.
        side = _side_stream(torch.cuda.current_device())
        graph = torch.cuda.CUDAGraph()
        with _RECORD_LOCK:
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), autocast:
                self.fn(*args, **kwargs)
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(graph, capture_error_mode="thread_local"), autocast:
                out = self.fn(*args, **kwargs)
        outputs, out_spec = tree_flatten(out)
        return graph, inputs, outputs, out_spec


@contextlib.contextmanager
def tracking_graphs(model: torch.nn.Module, enabled: bool = True) -> Iterator[list[GraphedCall]]:
    """While inside, ``model`` (a sam2 ``SAM2Base`` on CUDA) tracks with CUDA graphs.

    Yields the ``GraphedCall`` objects installed: none off CUDA, when disabled, or when another
    thread's run already tracks with graphs on this model. On exit the model is as it was and
    the graphs are freed.
    """
    installed: list[tuple[object, str, GraphedCall]] = []
    with _INSTALL_LOCK:
        owners = [model if owner is None else getattr(model, owner) for owner, _ in _TARGETS]
        names = [name for _, name in _TARGETS]
        replaced = any(name in vars(obj) for obj, name in zip(owners, names, strict=True))
        if enabled and model.device.type == "cuda" and not replaced:
            for obj, name in zip(owners, names, strict=True):
                call = GraphedCall(getattr(obj, name))
                setattr(obj, name, call)
                installed.append((obj, name, call))
    try:
        yield [call for _, _, call in installed]
    finally:
        with _INSTALL_LOCK:
            for obj, name, _ in installed:
                delattr(obj, name)
