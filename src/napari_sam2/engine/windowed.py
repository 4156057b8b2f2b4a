"""Prompts on a plane larger than the model input, segmented in windows at native resolution.

Each prompt set is segmented in the window ``window.choose_window`` picks for it; a window's
embedding is cached under (its raw pixels' hash, the window, the normalisation), so a second
click in it only runs the mask decoder. The first mask then checks the window: if it reaches a
border inside the plane (the object is probably cut) or is too large for the window's level
(a window shows a part of a large object as an object of its own), the prompts are predicted
once more in the window chosen for the prompts and that mask together, which holds the object
away from its borders, on a larger level if need be. Prompt sets segmented together
(``predict_many``: every cell of a crowded frame clicked once) share each window's embedding;
the windows are embedded in one encoder batch and all their prompts decoded in one pass.
"""

from __future__ import annotations

import torch

from .frames import Normalization, model_input
from .image import ENCODER_BATCH, ImageSession, plane_fingerprint
from .plane import LazyPlane, PlaneLevel
from .prompts import PromptSet
from .window import (
    LevelWindow,
    MaskCrop,
    Window,
    choose_window,
    covering_window,
    crop_extent,
    prompt_extent,
    union,
)


class WindowedPlane:
    """A large plane, its normalisation, and the image session that embeds its windows."""

    def __init__(
        self,
        plane: LazyPlane,
        normalization: Normalization,
        session: ImageSession,
        image_size: int,
        device: torch.device,
    ):
        self.plane, self.normalization = plane, normalization
        self.session, self.image_size, self.device = session, image_size, device

    @property
    def shape(self) -> tuple[int, int]:
        return self.plane.shape

    def predict(
        self, prompts: PromptSet, region: tuple | None = None, level: PlaneLevel | None = None
    ) -> MaskCrop:
        """The mask of ``prompts`` (validated, plane coordinates), cropped to its bounding box.

        ``region`` (min_row, min_col, max_row, max_col), e.g. the field of view, is the window
        to segment in (grown to hold the prompts), read from ``level`` if given; by default a
        window is chosen around the prompts.
        """
        extent = prompt_extent(prompts)
        if region is not None:
            window = covering_window(union(extent, region), self.shape, self.image_size)
            if level is None:
                return self.predict_in(window, prompts)
            on_level = LevelWindow.covering(
                window, level.factors, level.plane.shape, self.image_size
            )
            return self.predict_in(on_level, prompts, level.plane)
        return self.predict_many([prompts])[0]

    def predict_many(self, prompts: list[PromptSet]) -> list[MaskCrop]:
        """``predict`` (in windows chosen around them) for several prompt sets: those that
        choose the same window are segmented on one embedding in one decoder pass, then any
        whose mask asks for a grown window (see the module's docstring) once more there."""
        extents = [prompt_extent(p) for p in prompts]
        windows = [choose_window(e, self.shape, self.image_size) for e in extents]
        crops = self._in_windows(windows, prompts)
        again: dict[int, Window] = {}
        for i, (crop, window) in enumerate(zip(crops, windows, strict=True)):
            if not crop.mask.any():
                continue
            grown = choose_window(
                union(extents[i], crop_extent(crop)), self.shape, self.image_size
            )
            larger = grown.rows * grown.cols > window.rows * window.cols
            if grown != window and (larger or _reaches_inner_edge(crop, window, self.shape)):
                again[i] = grown
        redone = self._in_windows(list(again.values()), [prompts[i] for i in again])
        for i, crop in zip(again, redone, strict=True):
            crops[i] = crop
        return crops

    def _in_windows(self, windows: list[Window], prompts: list[PromptSet]) -> list[MaskCrop]:
        """The mask of each of ``prompts`` segmented in its window of ``windows``: the
        windows embedded ``ENCODER_BATCH`` at a time, the prompts of each batch decoded
        together."""
        unique = list(dict.fromkeys(windows))
        crops: list = [None] * len(prompts)
        for start in range(0, len(unique), ENCODER_BATCH):
            batch = set(unique[start : start + ENCODER_BATCH])
            indices = [i for i, window in enumerate(windows) if window in batch]
            found = self._decoded([windows[i] for i in indices], [prompts[i] for i in indices])
            for i, crop in zip(indices, found, strict=True):
                crops[i] = crop
        return crops

    def predict_in(
        self, window: Window | LevelWindow, prompts: PromptSet, plane: LazyPlane | None = None
    ) -> MaskCrop:
        """The mask of ``prompts`` segmented in ``window`` read from ``plane`` (by default
        this plane), trimmed to its bounding box."""
        return self._decoded([window], [prompts], plane)[0]

    def _decoded(
        self, windows: list, prompts: list[PromptSet], plane: LazyPlane | None = None
    ) -> list[MaskCrop]:
        """The mask of each of ``prompts`` segmented in its window of ``windows`` (at most
        ``ENCODER_BATCH`` of them, read from ``plane``, by default this plane), decoded
        together and trimmed to its bounding box."""
        keys = self.embed(list(dict.fromkeys(windows)), plane or self.plane)
        found = self.session.predict_many(
            [w.local(p) for w, p in zip(windows, prompts, strict=True)],
            [keys[w] for w in windows],
        )
        crops = []
        for window, (mask, _) in zip(windows, found, strict=True):
            rows, cols = window.slices
            crops.append(MaskCrop(rows, cols, window.upscaled(mask)).trimmed())
        return crops

    def embed(self, windows: list, plane: LazyPlane) -> dict:
        """Embed ``windows`` read from ``plane`` in one encoder batch, those whose pixels are
        not cached: window → its key in the session's cache. The last becomes its frame."""
        frames, keys = [], {}
        for window in windows:
            raw = plane.read(*window.read_slices)
            key = (plane_fingerprint(raw), window, self.normalization)
            frame = None
            if not self.session.is_cached(key):
                frame = model_input(raw, self.normalization, self.image_size, self.device)
            frames.append((frame, raw.shape[:2], key))
            keys[window] = key
        self.session.embed_many(frames)
        return keys


def _reaches_inner_edge(crop: MaskCrop, window: Window, shape: tuple[int, int]) -> bool:
    """Whether the (trimmed) mask touches a border of ``window`` that lies inside the plane."""
    top, left, bottom, right = window.inner_edges(shape)
    rows, cols = window.slices
    return (
        (top and crop.rows.start == rows.start)
        or (left and crop.cols.start == cols.start)
        or (bottom and crop.rows.stop == rows.stop)
        or (right and crop.cols.stop == cols.stop)
    )
