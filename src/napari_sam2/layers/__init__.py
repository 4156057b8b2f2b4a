"""napari layers ↔ engine values: prompts from Points/Shapes, masks into Labels. No Qt here."""
