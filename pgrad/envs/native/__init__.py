"""Batched torch twins of Gymnasium environments: same dynamics, every sub-env stepped by one tensor op.

Chosen with `--backend native` (RunConfig.backend; built by `pgrad.envs.make.make_env`). Evaluation always
runs on the real Gymnasium env. The classic-control twins (one module each, on the shared bookkeeping of
`pgrad.envs.native.base.NativeVecEnv`): CartPole-v1, Acrobot-v1, Pendulum-v1, MountainCar-v0,
MountainCarContinuous-v0.
"""

from __future__ import annotations

from pgrad.envs.diff.vec_env import NATIVE_DIFF_ENVS
from pgrad.envs.native.acrobot import AcrobotVecEnv
from pgrad.envs.native.base import NativeVecEnv
from pgrad.envs.native.cartpole import CartPoleVecEnv
from pgrad.envs.native.mountain_car import MountainCarContinuousVecEnv, MountainCarVecEnv
from pgrad.envs.native.pendulum import PendulumVecEnv

CLASSIC_CONTROL_TWINS: dict[str, type[NativeVecEnv]] = {
    cls.spec_id: cls
    for cls in (
        CartPoleVecEnv,
        AcrobotVecEnv,
        PendulumVecEnv,
        MountainCarVecEnv,
        MountainCarContinuousVecEnv,
    )
}

# the differentiable envs' twins (pgrad/DiffPendulum-v0, ...): `pgrad.envs.diff.vec_env.DiffVecEnv`
NATIVE_ENVS: dict[str, type] = {**CLASSIC_CONTROL_TWINS, **NATIVE_DIFF_ENVS}

__all__ = [
    "CLASSIC_CONTROL_TWINS",
    "NATIVE_ENVS",
    "AcrobotVecEnv",
    "CartPoleVecEnv",
    "MountainCarContinuousVecEnv",
    "MountainCarVecEnv",
    "NativeVecEnv",
    "PendulumVecEnv",
]
