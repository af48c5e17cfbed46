"""The one error type the CLI reports as a one-line cause instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix: bad config or input, missing file, unreachable service."""
