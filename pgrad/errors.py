"""Exceptions pgrad raises on bad input; each message is one line naming the thing and the place."""

import difflib


class PgradError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero, without a traceback."""


class ConfigError(PgradError, ValueError):
    """An option or argument has an invalid value."""


class EnvError(PgradError):
    """An environment could not be built, has an unsupported space, or broke its contract during a step."""


class CheckpointError(PgradError):
    """A checkpoint file is missing, truncated, corrupted or of the wrong kind."""


class Interrupted(PgradError):
    """Training stopped on SIGINT (Ctrl-C) or SIGTERM after writing a checkpoint at an iteration boundary.

    `exit_code` is what a shell expects after that signal (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class PgradWarning(UserWarning):
    """Something that may be a mistake but does not stop a run (e.g. an env without a time limit)."""


def did_you_mean(name: str, known) -> str:
    """' (did you mean X?)' for the closest of the `known` names, or '' when none is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def optional_import(module: str, extra: str, feature: str):
    """Import an optional dependency, or raise one ConfigError saying which extra installs it.

    `optional_import("optuna", "tune", "pgrad tune")` returns the optuna module, or fails with
    "pgrad tune needs optuna: pip install 'pgrad[tune]'".
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{feature} needs {module.split('.')[0]}: pip install 'pgrad[{extra}]' ({exc})"
        ) from None
