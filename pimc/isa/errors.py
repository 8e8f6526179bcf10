"""The one error type users see: a message, already located (file:line), never a traceback."""


class PimError(Exception):
    """A user-facing error; the CLI prints its text and exits with status 2."""


class LocatedError(PimError):
    """An error at a node's source location (file:line:column): a kernel's compile shows
    that line of its source, with a caret."""

    def __init__(self, loc: object, what: str) -> None:
        super().__init__(f"{loc} {what}")
        self.loc, self.what = loc, what
