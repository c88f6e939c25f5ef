"""Batched torch twins of Gymnasium environments: same dynamics, every sub-env stepped by one tensor op.

Chosen with `--backend native` (RunConfig.backend). Evaluation always runs on the real Gymnasium env.
"""

from __future__ import annotations

from typing import Any

from pgrad.envs.native.cartpole import CartPoleVecEnv
from pgrad.errors import EnvError

NATIVE_ENVS: dict[str, type] = {"CartPole-v1": CartPoleVecEnv}


def make_native(env_id: str, num_envs: int, **kwargs: Any):
    """The native twin of `env_id`; an EnvError naming the available ones otherwise."""
    if env_id not in NATIVE_ENVS:
        raise EnvError(
            f"no native twin of env '{env_id}' (available: {', '.join(NATIVE_ENVS)}); use --backend gymnasium"
        )
    return NATIVE_ENVS[env_id](num_envs, **kwargs)
