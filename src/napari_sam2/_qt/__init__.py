"""All Qt code: the dock widget, its workers and keybindings."""
