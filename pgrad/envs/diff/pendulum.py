"""Gymnasium's Pendulum-v1 as a differentiable batched torch env: same dynamics, reward and constants.

State s = (θ, θ̇) [N, 2], θ = 0 upright (unwrapped: θ keeps counting full turns); action u [N, 1] a torque.
Constants g = 10, m = l = 1, dt = 0.05, max speed 8, max torque 2. One step (exactly
``gymnasium.envs.classic_control.PendulumEnv.step``, tested against it):

    u   = clip(u, −2, 2)
    r   = −(angle_normalize(θ)² + 0.1 θ̇² + 0.001 u²)              on the current state and the clipped torque
    θ̇'  = clip(θ̇ + (3g/(2l) sin θ + 3/(m l²) u) dt, −8, 8)
    θ'  = θ + θ̇' dt

with angle_normalize(θ) = ((θ + π) mod 2π) − π ∈ [−π, π). Observation [cos θ, sin θ, θ̇] [N, 3]. Start:
θ ~ U[−π, π], θ̇ ~ U[−1, 1] (drawn in float64 from the generator, so the two dtypes start alike). Episodes
last ``horizon`` = 200 steps (a truncation); nothing terminates. Rewards lie in [−16.27, 0].

Differentiability: everything is smooth except three kinks where the gradient is cut or jumps: the torque
clip (∂/∂u = 0 for |u| > 2), the speed clip (∂θ̇'/∂(θ, θ̇, u) = 0 while |θ̇'| would exceed 8) and the angle
wrap (the cost's gradient 2·angle_normalize(θ) jumps from 2π to −2π at θ = π, hanging down). Away from them
BPTT is the exact gradient of a rollout's return.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pgrad.envs.diff._checks import (
    _batch_size,
    _check_action,
    _check_state,
    _float_dtype,
    _int,
    _real,
    _uniform,
)

__all__ = ["DiffPendulum", "angle_normalize"]

MAX_SPEED, MAX_TORQUE, DT, MASS, LENGTH = 8.0, 2.0, 0.05, 1.0, 1.0


def angle_normalize(theta: Tensor) -> Tensor:
    """((θ + π) mod 2π) − π ∈ [−π, π), Gymnasium's wrap; derivative 1 everywhere except at the jump."""
    return torch.remainder(theta + math.pi, 2.0 * math.pi) - math.pi


class DiffPendulum:
    """Pendulum-v1 swing-up, batched and differentiable (see the module docstring).

    Args:
        g: gravity (Gymnasium's default 10).
        horizon: episode length (Pendulum-v1's time limit, 200).
        dtype, device: of the states ``reset`` returns (``step`` follows the dtype/device of its inputs).
    """

    name = "pendulum"
    state_dim = 2
    obs_dim = 3
    action_dim = 1
    action_bound = MAX_TORQUE

    def __init__(
        self,
        g: float = 10.0,
        horizon: int = 200,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ):
        self.g = _real("g", g)
        self.horizon = _int("horizon", horizon, 1)
        self.dtype = _float_dtype(dtype)
        self.device = torch.device(device)

    def reset(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """Start states [N, 2]: θ ~ U[−π, π], θ̇ ~ U[−1, 1]."""
        N = _batch_size(batch_size)
        high = torch.tensor([math.pi, 1.0], dtype=torch.float64)
        return _uniform(N, -high, high, generator, self.device).to(self.dtype)

    def step(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(next state [N, 2], reward [N] on the current state, terminated [N] all False)."""
        state = _check_state(state, 2, "DiffPendulum")
        action = _check_action(action, state, 1, "DiffPendulum")
        theta, theta_dot = state[:, 0], state[:, 1]
        u = action[:, 0].clamp(-MAX_TORQUE, MAX_TORQUE)
        cost = angle_normalize(theta).square() + 0.1 * theta_dot.square() + 0.001 * u.square()
        accel = 3.0 * self.g / (2.0 * LENGTH) * torch.sin(theta) + 3.0 / (MASS * LENGTH**2) * u
        new_theta_dot = (theta_dot + accel * DT).clamp(-MAX_SPEED, MAX_SPEED)
        new_theta = theta + new_theta_dot * DT
        terminated = torch.zeros(state.shape[0], dtype=torch.bool, device=state.device)
        return torch.stack((new_theta, new_theta_dot), dim=-1), -cost, terminated

    def observe(self, state: Tensor) -> Tensor:
        """[cos θ, sin θ, θ̇] [N, 3]."""
        state = _check_state(state, 2, "DiffPendulum")
        theta = state[:, 0]
        return torch.stack((torch.cos(theta), torch.sin(theta), state[:, 1]), dim=-1)
