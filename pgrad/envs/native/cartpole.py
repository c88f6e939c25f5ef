"""CartPole-v1 as batched torch tensors: Gymnasium's dynamics, N envs per tensor op, same-step autoreset.

Step for step the same equations, constants, thresholds, Euler integrator, reward (1 per step) and 500-step
time limit as `gymnasium.envs.classic_control.CartPoleEnv` (tested against it state by state); start states
are drawn uniformly from [−0.05, 0.05]⁴ by a torch generator seeded from the reset seed, so episodes start
from different (equally distributed) states than Gymnasium's for the same seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.native.base import NativeVecEnv

GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = MASS_CART + MASS_POLE
POLE_MASS_LENGTH = MASS_POLE * HALF_LENGTH
THETA_LIMIT, X_LIMIT = 12 * 2 * math.pi / 360, 2.4


def cartpole_step(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """One Euler step of the cart-pole for a batch: state [N, 4] (x, ẋ, θ, θ̇), action [N] in {0, 1}."""
    x, x_dot, theta, theta_dot = state.unbind(-1)
    force = torch.where(action == 1, FORCE, -FORCE).to(state.dtype)
    cos, sin = torch.cos(theta), torch.sin(theta)
    temp = (force + POLE_MASS_LENGTH * theta_dot.square() * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (
        HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos.square() / TOTAL_MASS)
    )
    x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos / TOTAL_MASS
    return torch.stack(
        (x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot, theta_dot + TAU * theta_acc), dim=-1
    )


class CartPoleVecEnv(NativeVecEnv):
    """N CartPole-v1 envs in tensors, a `pgrad.envs.base.VecEnv` (same-step autoreset)."""

    label = "CartPole-v1 (native)"
    spec_id = "CartPole-v1"
    state_dim = obs_dim = 4
    time_limit = 500

    def _spaces(self) -> tuple[spaces.Box, spaces.Discrete]:
        high = np.array([X_LIMIT * 2, np.inf, THETA_LIMIT * 2, np.inf], dtype=np.float32)
        return spaces.Box(-high, high, dtype=np.float32), spaces.Discrete(2)

    def _start_states(self, n: int) -> torch.Tensor:
        u = torch.rand(n, 4, generator=self._generator, dtype=torch.float64, device=self.device)
        return u * 0.1 - 0.05

    def _dynamics(
        self, state: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = cartpole_step(state, actions)
        x, theta = state[:, 0], state[:, 2]
        terminated = (x < -X_LIMIT) | (x > X_LIMIT) | (theta < -THETA_LIMIT) | (theta > THETA_LIMIT)
        return state, torch.ones(self.num_envs, dtype=torch.float64, device=self.device), terminated
