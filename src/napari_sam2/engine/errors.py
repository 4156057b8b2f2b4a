"""The one exception type for mistakes a user can make; its message says what to do."""


class SAM2Error(Exception):
    """A user-facing problem (bad input, missing checkpoint, unknown model)."""
