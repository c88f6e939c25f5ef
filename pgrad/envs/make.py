"""Backend dispatch in one place: `make_env` builds the `VecEnv` a run trains on."""

from __future__ import annotations

from typing import Any

import torch

from pgrad.envs.base import EnvFactory, VecEnv
from pgrad.envs.gym import GymVecEnv
from pgrad.envs.native import NATIVE_ENVS
from pgrad.errors import EnvError

BACKENDS = ("gymnasium", "native")


def make_env(env: str | EnvFactory, num_envs: int = 1, backend: str = "gymnasium", **kwargs: Any) -> VecEnv:
    """Build a `VecEnv` from a Gymnasium env id (also `module:EnvName-vN`) or a callable returning an env.

    `backend="gymnasium"` gives a `GymVecEnv` (kwargs: algorithm, env_kwargs, action_spaces, device, dtype,
    check_finite); `backend="native"` gives pgrad's batched torch twin of the env id (`pgrad.envs.native`),
    which has the same interface and dynamics and steps every sub-env in one tensor operation.
    """
    if backend == "gymnasium":
        return GymVecEnv(env, num_envs, **kwargs)
    if backend != "native":
        raise EnvError(f"unknown env backend '{backend}' (known: {', '.join(BACKENDS)})")
    if not isinstance(env, str):
        raise EnvError("the native backend needs an env id, not a callable")
    if kwargs.get("env_kwargs"):
        raise EnvError(f"the native twin of '{env}' takes no env keyword arguments")
    if env not in NATIVE_ENVS:
        raise EnvError(
            f"no native twin of env '{env}' (available: {', '.join(NATIVE_ENVS)}); use --backend gymnasium"
        )
    device, dtype = kwargs.get("device", "cpu"), kwargs.get("dtype", torch.float32)
    return NATIVE_ENVS[env](num_envs, device=device, dtype=dtype)
