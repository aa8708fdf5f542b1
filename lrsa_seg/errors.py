"""Every error type of lrsa-seg: bad input, reported as one line naming the argument or file.

The command line prints an error of :data:`USER_ERRORS` as ``error: <message>`` on stderr and
exits with status 2, with no traceback: these are mistakes in a config, a path or a file, not bugs.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot work; raised before training starts, naming the argument."""


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable, or refused; the message names the file."""


class CheckpointMismatchError(ValueError):
    """A state dict does not fit the model: lists missing/unexpected keys and shape mismatches."""


class DatasetError(ValueError):
    """Bad or missing data; the message names the file or folder."""


USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, CheckpointError, CheckpointMismatchError, DatasetError)
"""Errors the command line reports as one line (no traceback): bad input, not a bug."""


def user_error_in(error: BaseException) -> BaseException | None:
    """The :data:`USER_ERRORS` instance in ``error``'s chain of causes (jsonargparse wraps them), if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, USER_ERRORS):
            return seen
        seen = seen.__cause__
    return None
