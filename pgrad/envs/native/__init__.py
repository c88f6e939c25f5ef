"""Batched torch twins of Gymnasium environments: same dynamics, every sub-env stepped by one tensor op.

Chosen with `--backend native` (RunConfig.backend; built by `pgrad.envs.make.make_env`). Evaluation always
runs on the real Gymnasium env.
"""

from __future__ import annotations

from pgrad.envs.native.cartpole import CartPoleVecEnv

NATIVE_ENVS: dict[str, type] = {"CartPole-v1": CartPoleVecEnv}

__all__ = ["NATIVE_ENVS", "CartPoleVecEnv"]
