"""Modules of sam2 computed by a faster class of the engine's while a block lasts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def computed_as(modules: list[nn.Module], faster: type[nn.Module]) -> Iterator[None]:
    """In this block each of ``modules`` computes as ``faster`` (a subclass of its class, same
    weights); after it, as its own class again, so sam2's own predictor stays sam2's."""
    own = [type(module) for module in modules]
    for module in modules:
        module.__class__ = faster
    try:
        yield
    finally:
        for module, cls in zip(modules, own, strict=True):
            module.__class__ = cls
