"""Babelfish: live speech-to-speech translation on the edge."""

__version__ = "0.1.0"


class BabelfishError(Exception):
    """An error with a one-line message meant for the user (bad input, bad config, missing
    model)."""


class UsageError(BabelfishError):
    """Bad usage or bad input: the CLI exits with code 2."""
