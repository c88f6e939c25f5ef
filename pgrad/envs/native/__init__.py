"""Batched torch twins of Gymnasium environments: same dynamics, every sub-env stepped by one tensor op.

Chosen with `--backend native` (RunConfig.backend; built by `pgrad.envs.make.make_env`). Evaluation always
runs on the real Gymnasium env.
"""

from __future__ import annotations

from pgrad.envs.diff.vec_env import NATIVE_DIFF_ENVS
from pgrad.envs.native.cartpole import CartPoleVecEnv

# the differentiable envs' twins (pgrad/DiffPendulum-v0, ...): `pgrad.envs.diff.vec_env.DiffVecEnv`
NATIVE_ENVS: dict[str, type] = {"CartPole-v1": CartPoleVecEnv, **NATIVE_DIFF_ENVS}

__all__ = ["NATIVE_ENVS", "CartPoleVecEnv"]
