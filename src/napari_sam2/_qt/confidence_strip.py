"""The confidence strip of the Propagate tab: frames along x, one row per object, each cell
coloured by how far the tracked mask can be trusted (red doubtful, green sure, grey not
computed), so a user sees where to look instead of scrubbing through every frame."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QRectF, Qt, Signal
from qtpy.QtGui import QColor, QPainter
from qtpy.QtWidgets import QSizePolicy, QWidget

# Below this a frame is "doubtful": the strip's Next doubtful frame stops there.
DOUBTFUL = 0.5
ROW_HEIGHT = 12
_NOT_COMPUTED = QColor(70, 70, 70)


def confidence_color(value: float) -> QColor:
    """Red (0) through yellow (0.5) to green (1)."""
    value = float(np.clip(value, 0, 1))
    return QColor.fromRgbF(min(1.0, 2 - 2 * value), min(1.0, 2 * value), 0.15)


def next_doubtful(
    confidence: dict[int, np.ndarray], after: int, frames: range
) -> tuple[int, int] | None:
    """(frame, object id) of the first doubtful frame after ``after`` (wrapping round)."""
    order = [f for f in frames if f > after] + [f for f in frames if f <= after]
    for frame in order:
        for object_id in sorted(confidence):
            value = confidence[object_id][frame]
            if np.isfinite(value) and value < DOUBTFUL:
                return frame, object_id
    return None


class ConfidenceStrip(QWidget):
    """Paints ``confidence`` (object id → value per frame of the stack) over ``frames``;
    a click emits ``picked(frame, object id)``."""

    picked = Signal(int, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.confidence: dict[int, np.ndarray] = {}
        self.frames = range(0)
        self.current: int | None = None  # the frame the viewer shows, outlined
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Confidence of each object's mask per frame: click to go there")
        self._fit()

    def set_data(self, confidence: dict[int, np.ndarray], frames: range) -> None:
        self.confidence, self.frames = dict(confidence), frames
        self._fit()
        self.update()

    def _fit(self) -> None:
        self.setFixedHeight(max(1, len(self.confidence)) * ROW_HEIGHT + 2)

    def _cell(self) -> float:
        return self.width() / max(1, len(self.frames))

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        width = self._cell()
        for row, object_id in enumerate(sorted(self.confidence)):
            values = self.confidence[object_id]
            for column, frame in enumerate(self.frames):
                value = values[frame] if frame < len(values) else np.nan
                color = confidence_color(value) if np.isfinite(value) else _NOT_COMPUTED
                rect = QRectF(column * width, 1 + row * ROW_HEIGHT, width + 0.5, ROW_HEIGHT - 1)
                painter.fillRect(rect, color)
        if self.current is not None and self.current in self.frames:
            painter.setPen(QColor(255, 255, 255))
            x = (self.current - self.frames.start) * width
            painter.drawRect(QRectF(x, 0, max(width, 2), self.height() - 1))
        painter.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if event.button() != Qt.MouseButton.LeftButton or not self.confidence:
            return
        position = event.position() if hasattr(event, "position") else event.pos()
        column = int(position.x() // self._cell())
        row = int(position.y() // ROW_HEIGHT)
        ids = sorted(self.confidence)
        if 0 <= column < len(self.frames) and 0 <= row < len(ids):
            self.picked.emit(self.frames[column], ids[row])
