"""One root for gridwatch's errors, in the three kinds that decide what happens next."""

from __future__ import annotations


class GridwatchError(Exception):
    """The root of every error that gridwatch raises on purpose."""


class ConfigurationError(GridwatchError):
    """Wrong settings: fail fast, the message names the option and what to do."""


class RetryableError(GridwatchError):
    """A passing failure (a server down, a disk full): back off and try again."""


class RecordRejected(GridwatchError):
    """One record cannot be taken: it goes to the dead-letter topic with this reason."""
