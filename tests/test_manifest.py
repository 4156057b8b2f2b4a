"""The npe2 manifest is valid and names commands that import."""

import importlib

from npe2 import PluginManifest


def test_manifest_validates_and_its_commands_resolve():
    manifest = PluginManifest.from_distribution("napari-sam2")
    assert manifest.name == "napari-sam2"
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.id


def test_sample_data_is_16_bit_microscopy():
    from napari_sam2.sample_data import cells, timelapse

    ((image, meta, kind),) = cells()
    assert image.dtype.name == "uint16" and image.ndim == 2 and kind == "image"
    ((frames, _, _),) = timelapse()
    assert frames.ndim == 3 and frames.shape[0] == 30
