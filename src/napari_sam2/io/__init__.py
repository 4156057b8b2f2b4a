"""Readers and writers of files: lazy video decoding (no napari import)."""
