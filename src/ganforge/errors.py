"""User-facing errors.

Every mistake a user can make (bad data, impossible settings, a checkpoint from another
model) raises a :class:`GanforgeError`. The CLI prints its message on one line and exits
with status 2; it never shows a traceback for these. Anything else is a bug in ganforge.
"""

from __future__ import annotations


class GanforgeError(Exception):
    """A problem the user can fix; the message says what to do."""


class ConfigError(GanforgeError):
    """An impossible or unknown setting, detected before any work starts."""


class DataError(GanforgeError):
    """A dataset that is missing, corrupt or of the wrong shape."""


class CheckpointError(GanforgeError):
    """A checkpoint that is missing, corrupt, unsafe, or from another model."""


class TrainingDiverged(GanforgeError):
    """Losses or weights became NaN/Inf; the last good checkpoint is kept."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> ConfigError:
    """The error for a preset, model, loss or metric name that does not exist."""
    return ConfigError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(valid))}")


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's first line, cut to `limit` characters, for one-line messages."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
