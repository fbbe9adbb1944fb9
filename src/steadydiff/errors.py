"""The one error type a user sees: it says what is wrong, where, and how to fix it."""

from __future__ import annotations


class SteadydiffError(Exception):
    """A problem with the user's input (data, config, run directory) rather than a bug.

    The CLI prints the message alone (no traceback) and exits with status 2.
    """


class ConfigError(SteadydiffError, ValueError):
    """An unknown config key or a value of the wrong type or range."""


class DataError(SteadydiffError, ValueError):
    """Data that cannot be trained on: missing, unreadable, non-numeric, non-finite, wrong shape."""


class TrainingStopped(SteadydiffError):
    """The stability guard gave up after repeated failed recoveries. The message is the diagnosis; the last good
    state is on disk as a checkpoint. The CLI exits with status 3."""
