"""Base of the dock widget's tabs: the shared session, error reporting, one worker at a time."""

from __future__ import annotations

from functools import partial

from magicgui.widgets import Container

from ..layers.annotation import AnnotationSession


class Section(Container):
    """A tab that follows an ``AnnotationSession`` and reports errors through ``notify``."""

    def __init__(self, annotation: AnnotationSession, notify):
        super().__init__(labels=True)
        self.annotation = annotation
        self._notify = notify
        self.worker = None
        self._alive = True  # worker results may arrive after napari deleted the widget
        self.native.destroyed.connect(partial(setattr, self, "_alive", False))
