"""Checks of the files a user asks the plugin to write, with messages that say what to do."""

from __future__ import annotations

from pathlib import Path

from .engine.errors import SAM2Error


def check_export_path(path, suffixes: tuple[str, ...]) -> Path:
    """``path`` as a Path, or a ``SAM2Error`` saying what is wrong with it for a user."""
    text = str(path).strip()
    path = Path(text).expanduser()
    if text in ("", ".") or (path.is_dir() and path.suffix.lower() != ".zarr"):
        raise SAM2Error(f"Choose a file to export to (a {', '.join(suffixes)} path).")
    if path.suffix.lower() not in suffixes:
        raise SAM2Error(f"Cannot save as {path.name}: use a {', '.join(suffixes)} path.")
    if not path.parent.is_dir():
        raise SAM2Error(f"The folder {path.parent} does not exist: choose an existing one.")
    return path
