"""Exceptions pgrad raises on bad input; each message is one line naming the thing and the place."""


class PgradError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero, without a traceback."""


class ConfigError(PgradError, ValueError):
    """An option or argument has an invalid value."""


class EnvError(PgradError):
    """An environment could not be built, has an unsupported space, or broke its contract during a step."""


class CheckpointError(PgradError):
    """A checkpoint file is missing, truncated, corrupted or of the wrong kind."""
