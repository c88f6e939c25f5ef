"""Saving and restoring the state of a Gymnasium env without pickle, where that state is known.

A resumed run continues its episodes exactly — bitwise, like an uninterrupted run — only if every sub-env is
put back where it was. A general Gymnasium env cannot be saved without pickle, so this is done for envs whose
whole state is known:

- Gymnasium's classic-control envs: the attributes in `ATTRIBUTES` (the physical state and the counters the
  dynamics read), the env's own random generator (`np_random`, a NumPy bit generator whose state is plain
  integers), and the steps counted by the `TimeLimit` wrapper;
- any env that defines `get_state() -> dict` and `set_state(dict)` itself (values: numbers, strings, None,
  NumPy arrays, and lists / dicts of them), e.g. pgrad's own envs.

`env_state(env)` returns None for any other env; the run harness then starts fresh episodes on resume.
Arrays become torch tensors (so a checkpoint stores them in safetensors) and come back as arrays.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from pgrad.errors import CheckpointError

# class name (Gymnasium's classic control) -> attributes that, with np_random, make up its whole state
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "CartPoleEnv": ("state", "steps_beyond_terminated"),
    "PendulumEnv": ("state", "last_u"),
    "MountainCarEnv": ("state",),
    "Continuous_MountainCarEnv": ("state",),
    "AcrobotEnv": ("state",),
}


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"array": torch.from_numpy(np.array(value, copy=True)), "numpy_dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "array" in value and "numpy_dtype" in value:
        return value["array"].numpy().astype(value["numpy_dtype"], copy=True)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def env_state(env: gym.Env) -> dict[str, Any] | None:
    """The whole state of one (wrapped) env, or None when it is not known (see the module docstring)."""
    base = env.unwrapped
    limit = _time_limit(env)
    elapsed = getattr(limit, "_elapsed_steps", None)
    if hasattr(base, "get_state") and hasattr(base, "set_state"):
        inner: dict[str, Any] = {"custom": _encode(base.get_state())}
    elif type(base).__name__ in ATTRIBUTES and type(base).__module__.startswith("gymnasium.envs"):
        inner = {
            "attributes": {
                name: _encode(getattr(base, name, None)) for name in ATTRIBUTES[type(base).__name__]
            }
        }
    else:
        return None
    return {**inner, "np_random": base.np_random.bit_generator.state, "elapsed_steps": elapsed}


def set_env_state(env: gym.Env, state: dict[str, Any], where: str) -> None:
    """Put one (wrapped, already reset) env back into `state`; `where` names it in errors."""
    base = env.unwrapped
    try:
        if "custom" in state:
            base.set_state(_decode(state["custom"]))
        else:
            for name, value in state["attributes"].items():
                setattr(base, name, _decode(value))
        base.np_random.bit_generator.state = state["np_random"]
        limit = _time_limit(env)
        if limit is not None:
            limit._elapsed_steps = state["elapsed_steps"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{where}: the saved env state does not fit this env ({exc!r})") from None
