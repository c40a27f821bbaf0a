"""The one exception type a user can act on; below every other module so that any of them can raise it."""


class BDLError(Exception):
    """An error a user can fix (bad data, config or checkpoint); stages print it as one line."""
