"""Pendulum-v1 as batched torch tensors: Gymnasium's dynamics, N envs per tensor op, same-step autoreset.

State s = (θ, θ̇) [N, 2], θ = 0 upright (not wrapped: θ keeps counting turns, as in Gymnasium); action u [N, 1]
a torque. The step, reward and start states are `pgrad.envs.diff.pendulum.DiffPendulum`'s (Gymnasium's
Pendulum-v1 exactly, tested there and here against ``gymnasium.envs.classic_control.PendulumEnv``):

    u   = clip(u, −2, 2)
    r   = −(angle_normalize(θ)² + 0.1 θ̇² + 0.001 u²)     on the current state and the clipped torque
    θ̇'  = clip(θ̇ + (3g/(2l) sin θ + 3/(m l²) u) dt, −8, 8),   θ' = θ + θ̇' dt

with g = 10, m = l = 1, dt = 0.05. Observation [cos θ, sin θ, θ̇] [N, 3]. Start: θ ~ U[−π, π], θ̇ ~ U[−1, 1]
(by a torch generator seeded from the reset seed, so not the same states as Gymnasium's for a seed). Nothing
terminates; episodes are cut at 200 steps (a truncation).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.diff.pendulum import MAX_SPEED, MAX_TORQUE, DiffPendulum
from pgrad.envs.native.base import NativeVecEnv

__all__ = ["PendulumVecEnv"]


class PendulumVecEnv(NativeVecEnv):
    """N Pendulum-v1 envs in tensors, a `pgrad.envs.base.VecEnv` (same-step autoreset)."""

    label = "Pendulum-v1 (native)"
    spec_id = "Pendulum-v1"
    state_dim = 2
    obs_dim = 3
    time_limit = 200

    @cached_property
    def pendulum(self) -> DiffPendulum:
        """The differentiable pendulum in float64 on `device`: the one copy of the equations."""
        return DiffPendulum(dtype=torch.float64, device=self.device)

    def _spaces(self) -> tuple[spaces.Box, spaces.Box]:
        high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
        return (
            spaces.Box(-high, high, dtype=np.float32),
            spaces.Box(-MAX_TORQUE, MAX_TORQUE, shape=(1,), dtype=np.float32),
        )

    def _start_states(self, n: int) -> torch.Tensor:
        return self.pendulum.reset(n, self._generator)

    def _dynamics(
        self, state: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.pendulum.step(state, actions)

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        return self.pendulum.observe(state)
