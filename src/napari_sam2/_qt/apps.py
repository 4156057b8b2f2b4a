"""Object extraction and background replacement controls of the dock widget."""

from __future__ import annotations

from magicgui.widgets import ComboBox, FileEdit, FloatSpinBox, PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info

from ..background import export_replaced, lazy_replaced
from ..engine.errors import SAM2Error
from ..extract import BACKGROUNDS, extract_objects
from .section import Section

REPLACED_LAYER = "SAM2 background replaced"


class AppsControls(Section):
    """Per-object layers, and the image with everything but the objects replaced."""

    def __init__(self, annotation, notify):
        super().__init__(annotation, notify)
        self.crop_background = ComboBox(label="Object background", choices=list(BACKGROUNDS))
        self.extract_button = PushButton(text="Extract objects as layers")
        self.mode = ComboBox(label="Replace background by", choices=["color", "blur"])
        self.color = FloatSpinBox(label="Colour value", min=-1e9, max=1e9, value=0)
        self.sigma = FloatSpinBox(label="Blur sigma (px)", min=0.5, max=200, value=8)
        self.replace_button = PushButton(text="Show replaced background")
        self.video_path = FileEdit(label="Video file", mode="w", filter="*.mp4 *.tif", value="")
        self.export_button = PushButton(text="Export replaced video (.mp4/.tif)")
        self.extend(
            [
                self.crop_background,
                self.extract_button,
                self.mode,
                self.color,
                self.sigma,
                self.replace_button,
                self.video_path,
                self.export_button,
            ]
        )
        self.extract_button.changed.connect(self.extract)
        self.replace_button.changed.connect(self.show_replaced)
        self.export_button.changed.connect(self.export)

    def _image_and_labels(self):
        """Image data (T or no leading axis, H, W[, C]) and labels of the same shape."""
        image, labels = self.annotation.image_layer, self.annotation.labels_layer
        if image is None or labels is None:
            raise SAM2Error("Start annotating first: the labels come from the SAM2 labels layer.")
        if labels.data.ndim not in (2, 3) or self.annotation.channel_axis is not None:
            raise SAM2Error(
                "Extraction and background replacement work on 2D images and (t, y, x) "
                "stacks, gray or RGB."
            )
        return image, labels

    def _options(self) -> dict:
        if self.mode.value == "blur":
            return {"mode": "blur", "sigma": self.sigma.value}
        return {"mode": "color", "color": self.color.value}

    def extract(self) -> None:
        try:
            image, labels = self._image_and_labels()
            crops = extract_objects(labels.data, image.data, self.crop_background.value)
        except SAM2Error as err:
            self._notify(err)
            return
        viewer = self.annotation.viewer
        scale = image.scale[: labels.data.ndim]
        for crop in crops:
            offset = [crop.box[0], crop.box[1]]
            if crop.frames is not None:
                offset = [crop.frames[0], *offset]
            translate = [
                t + o * s for t, o, s in zip(image.translate, offset, scale, strict=False)
            ]
            viewer.add_image(
                crop.data,
                name=f"object {crop.label}",
                rgb=crop.data.shape[-1] == 4 and self.crop_background.value == "transparent",
                scale=scale,
                translate=translate,
            )
        show_info(f"Extracted {len(crops)} objects as layers.")

    def show_replaced(self) -> None:
        try:
            image, labels = self._image_and_labels()
            stack = labels.data.ndim == 3
            frames = image.data if stack else image.data[None]
            masks = labels.data if stack else labels.data[None]
            replaced = lazy_replaced(frames, masks, **self._options())
        except SAM2Error as err:
            self._notify(err)
            return
        viewer = self.annotation.viewer
        if REPLACED_LAYER in viewer.layers:
            viewer.layers.remove(REPLACED_LAYER)
        viewer.add_image(
            replaced if stack else replaced[0],
            name=REPLACED_LAYER,
            rgb=image.rgb,
            scale=image.scale,
            translate=image.translate,
            contrast_limits=image.contrast_limits,
        )

    def export(self) -> None:
        if self.worker is not None:
            return
        try:
            image, labels = self._image_and_labels()
            if labels.data.ndim != 3:
                raise SAM2Error("Exporting a video needs a (t, y, x) stack.")
        except SAM2Error as err:
            self._notify(err)
            return
        self.worker = create_worker(
            export_replaced,
            image.data,
            labels.data,
            str(self.video_path.value),
            contrast_limits=None if image.rgb else tuple(image.contrast_limits),
            _progress={"total": 0, "desc": "SAM2: exporting video"},
            _ignore_errors=True,  # errored → notification
            **self._options(),
        )
        self.worker.returned.connect(lambda path: show_info(f"Saved {path}"))
        self.worker.errored.connect(self._notify)
        self.worker.finished.connect(lambda: setattr(self, "worker", None))
        self.worker.start()
