"""The intensities the model sees: the image layer's contrast limits where they fit the data,
stack-wide percentiles where they do not (napari's default limits of a 16-bit image often
span 0-65535 because of one saturated pixel, which feeds the model a nearly black image)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.frames import Normalization

AUTO = "auto"
FROM_LAYER = "from layer"
MODES = (AUTO, FROM_LAYER)
# Limits are "not fitted" when the data's 0.5-99.8 % percentiles fill less than this much of
# them: napari's default limits are the data's min and max, which a few saturated pixels (or
# one) stretch far beyond the cells.
MIN_FILLED = 0.6


@dataclass(frozen=True)
class Intensities:
    """A normalisation and, for the widget, where it came from."""

    normalization: Normalization
    source: str

    @property
    def limits(self) -> tuple[float, float]:
        return self.normalization.low[0], self.normalization.high[0]

    def describe(self) -> str:
        low, high = self.limits
        return f"{low:.6g}–{high:.6g}: {self.source}"


class IntensityChooser:
    """Chooses the intensities for an image layer; the percentiles of its data are cached."""

    def __init__(self):
        self._data = None  # the data the percentiles were taken of (kept, so ids stay unique)
        self._percentiles: Normalization | None = None

    def percentiles(self, layer) -> Normalization:
        """0.5-99.8 % percentiles over (up to 16 frames of) the whole layer, not one plane."""
        if self._data is not layer.data:
            # A multiscale layer's smallest level: the same intensities, a fraction of the reads.
            data = layer.data[-1] if layer.multiscale else layer.data
            frame_axis = 0 if data.ndim - layer.rgb > 2 else None
            self._percentiles = Normalization.for_data(data, frame_axis)
            self._data = layer.data
        return self._percentiles

    def choose(self, layer, mode: str = AUTO) -> Intensities:
        layer_limits = Normalization.from_limits(layer.contrast_limits)
        if mode == FROM_LAYER:
            return Intensities(layer_limits, "the layer's contrast limits")
        reason = self._unfitted(layer, layer_limits)
        if reason is None:
            return Intensities(layer_limits, "the layer's contrast limits")
        return Intensities(self.percentiles(layer), f"percentiles of the stack ({reason})")

    def _unfitted(self, layer, limits: Normalization) -> str | None:
        """Why the layer's limits do not fit its data, or None where they do."""
        low, high = limits.low[0], limits.high[0]
        dtype = np.dtype(layer.data.dtype)
        if dtype.kind in "iu" and not layer.rgb:
            info = np.iinfo(dtype)
            if low <= info.min and high >= info.max:
                return f"the layer's {low:.6g}–{high:.6g} is the whole {dtype} range"
        data = self.percentiles(layer)
        filled = (data.high[0] - data.low[0]) / (high - low)
        if filled < MIN_FILLED:
            return f"the layer's {low:.6g}–{high:.6g} is {1 / filled:.1f}× wider than the data"
        return None
