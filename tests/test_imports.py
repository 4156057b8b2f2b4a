"""The headless modules (batch, CLI, extraction, background) must not load napari or Qt."""

import subprocess
import sys
import textwrap

CODE = textwrap.dedent(
    """
    import sys
    import napari_sam2.batch, napari_sam2.cli, napari_sam2.dask_workers
    import napari_sam2.extract, napari_sam2.background
    gui = ("napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "magicgui", "superqt")
    bad = [m for m in sys.modules if m.split(".")[0] in gui]
    assert not bad, bad
    """
)


def test_headless_modules_import_no_napari_or_qt():
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
