"""Exports of labels for other tools; each format a module of its own (no napari here)."""
