"""The engine and the scripting API must work where napari and Qt are not installed."""

import subprocess
import sys
import textwrap

CODE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import napari_sam2, napari_sam2.engine as engine
    for module in pkgutil.iter_modules(engine.__path__):
        importlib.import_module(f"{engine.__name__}.{module.name}")
    gui = ("napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "magicgui", "superqt")
    bad = [m for m in sys.modules if m.split(".")[0] in gui]
    assert not bad, bad
    """
)


def test_engine_and_api_import_no_napari_or_qt():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
