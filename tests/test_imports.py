"""What runs without a GUI must not load napari or Qt: the engine (torch and numpy only) and
the headless tools (batch, CLI, extraction, background replacement)."""

import subprocess
import sys
import textwrap

import pytest

CHECK = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    for name in {modules!r}:
        module = importlib.import_module(name)
        for sub in pkgutil.iter_modules(getattr(module, "__path__", [])):
            importlib.import_module(f"{{name}}.{{sub.name}}")
    gui = ("napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "magicgui", "superqt")
    bad = [m for m in sys.modules if m.split(".")[0] in gui]
    assert not bad, bad
    """
)


@pytest.mark.parametrize(
    "modules",
    [
        ["napari_sam2", "napari_sam2.engine"],
        [
            "napari_sam2.batch",
            "napari_sam2.cli",
            "napari_sam2.batch.workers",
            "napari_sam2.extract",
            "napari_sam2.background",
            "napari_sam2.measure",
            "napari_sam2.annotation_files",
            "napari_sam2.export",
            "napari_sam2.io",
        ],
    ],
    ids=["engine", "headless-tools"],
)
def test_imports_load_no_napari_or_qt(modules):
    code = CHECK.format(modules=modules)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
