"""The one error type users see: a message, already located (file:line), never a traceback."""


class PimError(Exception):
    """A user-facing error; the CLI prints its text and exits with status 2."""
