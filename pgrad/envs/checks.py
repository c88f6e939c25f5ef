"""Gymnasium's contract, checked value by value for one sub-env: observation, reward, flags, info, exceptions.

`GymVecEnv` wraps every sub-env in a wrapper that runs these checks on the sub-env's raw return values, before
Gymnasium's `SyncVectorEnv` writes them into its preallocated batch arrays. That matters: numpy would turn a
reward `"1"` into 1.0, a reward `None` into NaN and a flag `"False"` into True, and a wrongly shaped
observation fails inside Gymnasium's concatenation without saying which sub-env sent it.

The wrapper knows only its sub-env index, so a broken value raises `SubEnvFault(index, what)`; `GymVecEnv`
catches it and raises the one-line `EnvError` that also names the env and the global step.

What is accepted (anything else is refused):
    observation, Box:      an array (or anything `np.asarray` makes one of) of the space's shape with a
                           bool, integer or floating dtype; bounds are not checked (many envs overshoot).
    observation, Discrete: an integer (Python, numpy, or a 0-d integer array; bools count, as in Gymnasium)
                           in [start, start + n).
    reward:                a real number: bool, int, float, numpy scalar, or a numeric array of size 1.
                           Strings (even "1"), None, complex numbers and larger arrays are refused.
    terminated, truncated: bool or numpy bool; also the integers 0 and 1 (as Python or numpy ints, or in a
                           size-1 array), which are unambiguous and common in older envs (Gymnasium's own
                           checker only warns about them). Strings, None, floats and other ints are refused.
    info:                  a dict.
Accepted values that are not already plain (a list observation, a size-1 reward array, a 0/1 flag) are
normalised before Gymnasium sees them. The checks on well-formed values are a few attribute look-ups.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

NUMERIC_KINDS = frozenset("biuf")  # numpy dtype kinds of bool, signed/unsigned int and floating arrays
INTEGER_KINDS = frozenset("biu")
REAL_SCALARS = frozenset({float, int, np.float64, np.float32, np.int64, np.int32})  # accepted without a look
FLAGS = frozenset({bool, np.bool_})
INT_SCALARS = frozenset({int, np.int64, np.int32})

MAX_TEXT = 200  # longest excerpt of a value or an exception message in an error


class SubEnvFault(Exception):
    """Sub-env `index` broke Gymnasium's contract (`what` says how). Internal to `pgrad.envs.gym`.

    When the sub-env raised, that exception is this one's `__cause__`.
    """

    def __init__(self, index: int, what: str):
        super().__init__(what)
        self.index = index
        self.what = what


def _text(value: Any, convert: Callable[[Any], str] = str) -> str:
    """`str(value)` (or `repr`), "" when that itself raises: a hostile value must not break the report."""
    try:
        return convert(value)
    except Exception:
        return ""


def _clip(text: str) -> str:
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= MAX_TEXT else line[: MAX_TEXT - 3] + "..."


def describe(value: Any) -> str:
    """A short one-line description of a value for an error: its type, and its shape/dtype or repr."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"ndarray of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__} {_clip(_text(value, repr))}".rstrip()


def raised(call: str, exc: BaseException) -> str:
    """'step() raised ValueError: <first line of the message>' (the type alone when the message is empty)."""
    message = _clip(_text(exc))
    return (
        f"{call} raised {type(exc).__name__}: {message}" if message else f"{call} raised {type(exc).__name__}"
    )


def _as_array(value: Any) -> np.ndarray | None:
    """`np.asarray(value)`, or None when numpy cannot make an array of it."""
    try:
        return np.asarray(value)
    except Exception:
        return None


def observation_checker(space: spaces.Space) -> Callable[[Any, int, str], Any]:
    """A function `(obs, index, field) -> obs` for one sub-env: returns a valid raw observation of `space`
    (converted to an array where it was a list or the like) or raises `SubEnvFault`."""
    if isinstance(space, spaces.Discrete):
        low, high = int(space.start), int(space.start + space.n)

        def check_discrete(obs: Any, index: int, field: str) -> Any:
            if type(obs) in INT_SCALARS and low <= obs < high:
                return obs
            array = _as_array(obs)
            if array is None or array.ndim != 0 or array.dtype.kind not in INTEGER_KINDS:
                raise SubEnvFault(index, f"{field} must be an integer in {space}, got {describe(obs)}")
            if not low <= int(array) < high:
                raise SubEnvFault(index, f"{field} {int(array)} is outside {space}")
            return int(array)

        return check_discrete

    shape = space.shape

    def check_box(obs: Any, index: int, field: str) -> Any:
        if type(obs) is np.ndarray and obs.shape == shape and obs.dtype.kind in NUMERIC_KINDS:
            return obs
        array = _as_array(obs)
        if array is None or array.dtype.kind not in NUMERIC_KINDS or array.shape != shape:
            raise SubEnvFault(index, f"{field} must be a numeric array of shape {shape}, got {describe(obs)}")
        return array

    return check_box


def checked_reward(reward: Any, index: int) -> float:
    """The reward as a float when it is a real number (or a size-1 numeric array); else `SubEnvFault`.

    Call it only when `type(reward) not in REAL_SCALARS` (those need no check)."""
    if isinstance(reward, numbers.Real):  # Python and numpy numbers, fractions.Fraction, ...
        return float(reward)
    array = None if isinstance(reward, str) else _as_array(reward)
    if array is None or array.dtype.kind not in NUMERIC_KINDS or array.size != 1:
        raise SubEnvFault(index, f"reward must be a real number, got {describe(reward)}")
    return float(array.reshape(()))


def checked_flag(name: str, flag: Any, index: int) -> bool:
    """`terminated` / `truncated` as a bool when bool-like (bool, or the ints 0 and 1); else `SubEnvFault`.

    Call it only when `type(flag) not in FLAGS` (those need no check)."""
    array = None if isinstance(flag, str) else _as_array(flag)
    if array is not None and array.size == 1:
        value = array.reshape(())
        if array.dtype.kind == "b" or (array.dtype.kind in "iu" and int(value) in (0, 1)):
            return bool(value)
    raise SubEnvFault(index, f"{name} must be a bool, got {describe(flag)}")
