"""The compute core: torch and numpy only, no napari and no Qt."""
