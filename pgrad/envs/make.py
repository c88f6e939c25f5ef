"""Backend dispatch in one place: `make_env` builds the `VecEnv` a run trains on."""

from __future__ import annotations

from typing import Any

import torch

from pgrad.envs.base import EnvFactory, VecEnv
from pgrad.envs.gym import GymVecEnv
from pgrad.envs.native import NATIVE_ENVS
from pgrad.errors import EnvError

BACKENDS = ("auto", "gymnasium", "native")

# `backend="auto"` picks the native twin from this many sub-envs on: PPO end to end on CartPole and Pendulum
# is faster on the twin from 16 sub-envs (benchmarks/results/backends.md). A twin's step costs a fixed
# ~150 µs of small torch ops whatever the batch, Gymnasium ~10 µs per sub-env, so below 16 Gymnasium wins
# (2× at one sub-env) and at 1024 the twin steps 35× faster. Env stepping alone crosses at 8–16 for CartPole,
# Pendulum and MountainCar and at 64 for Acrobot and MountainCarContinuous (a cheap Gymnasium step, a dear
# RK4 twin), where updates dominate a PPO iteration anyway.
NATIVE_FROM = 16


def resolve_backend(env: str | EnvFactory, num_envs: int, backend: str, env_kwargs: Any = None) -> str:
    """The backend `make_env` uses: "auto" is "native" where a twin of the env id exists, no env keyword
    arguments are given and num_envs ≥ NATIVE_FROM; otherwise "gymnasium". Explicit backends pass through."""
    if backend != "auto":
        return backend
    twin = isinstance(env, str) and env in NATIVE_ENVS and not env_kwargs
    return "native" if twin and num_envs >= NATIVE_FROM else "gymnasium"


def make_env(env: str | EnvFactory, num_envs: int = 1, backend: str = "gymnasium", **kwargs: Any) -> VecEnv:
    """Build a `VecEnv` from a Gymnasium env id (also `module:EnvName-vN`) or a callable returning an env.

    `backend="gymnasium"` gives a `GymVecEnv` (kwargs: algorithm, env_kwargs, action_spaces, device, dtype,
    check_finite); `backend="native"` gives pgrad's batched torch twin of the env id (`pgrad.envs.native`),
    which has the same interface and dynamics and steps every sub-env in one tensor operation;
    `backend="auto"` chooses between them by `resolve_backend`.
    """
    backend = resolve_backend(env, num_envs, backend, kwargs.get("env_kwargs"))
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
