"""Acrobot-v1 as batched torch tensors: Gymnasium's dynamics, N envs per tensor op, same-step autoreset.

State s = (θ₁, θ₂, θ̇₁, θ̇₂) [N, 4]: θ₁ the first link's angle from hanging down, θ₂ the second link's angle
relative to the first. Action a ∈ {0, 1, 2}: torque τ = a − 1 on the joint between the links. One step is
exactly ``gymnasium.envs.classic_control.AcrobotEnv.step`` (book dynamics, ``book_or_nips="book"``):

    s'  = RK4 of ṡ = f(s, τ) over dt = 0.2 (one classic Runge–Kutta step, Gymnasium's ``rk4``)
    θ₁', θ₂'  wrapped into [−π, π] (subtracting / adding 2π, so ±π stays ±π)
    θ̇₁' clipped to ±4π, θ̇₂' to ±9π
    terminated  = −cos θ₁' − cos(θ₁' + θ₂') > 1       (the free end above the bar)
    reward      = 0 if terminated else −1

with both links of mass 1, length 1, centre of mass at 0.5, moment of inertia 1, g = 9.8 (equations in
`acrobot_derivatives`). Observation [cos θ₁, sin θ₁, cos θ₂, sin θ₂, θ̇₁, θ̇₂] [N, 6].
Start: s ~ U[−0.1, 0.1]⁴ rounded to float32, as Gymnasium draws it (here by a torch generator seeded from the
reset seed, so not the same states as Gymnasium's for a seed). Episodes are cut at 500 steps (a truncation).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.native.base import NativeVecEnv

__all__ = ["AcrobotVecEnv", "acrobot_derivatives", "acrobot_step"]

DT, GRAVITY = 0.2, 9.8
M1 = M2 = 1.0  # link masses
L1 = 1.0  # length of link 1
LC1 = LC2 = 0.5  # positions of the centres of mass
I1 = I2 = 1.0  # moments of inertia
MAX_VEL_1, MAX_VEL_2 = 4 * math.pi, 9 * math.pi
START_HIGH = 0.1


def acrobot_derivatives(s: torch.Tensor, torque: torch.Tensor) -> torch.Tensor:
    """ṡ [N, 4] at s [N, 4] under torque [N]: Sutton & Barto's book equations, term for term as Gymnasium's
    ``AcrobotEnv._dsdt`` writes them (so the floating-point results agree too)."""
    theta1, theta2, dtheta1, dtheta2 = s.unbind(-1)
    cos2, sin2 = torch.cos(theta2), torch.sin(theta2)  # each used more than once
    d1 = M1 * LC1**2 + M2 * (L1**2 + LC2**2 + 2 * L1 * LC2 * cos2) + I1 + I2
    d2 = M2 * (LC2**2 + L1 * LC2 * cos2) + I2
    phi2 = M2 * LC2 * GRAVITY * torch.cos(theta1 + theta2 - math.pi / 2.0)
    phi1 = (
        -M2 * L1 * LC2 * dtheta2**2 * sin2
        - 2 * M2 * L1 * LC2 * dtheta2 * dtheta1 * sin2
        + (M1 * LC1 + M2 * L1) * GRAVITY * torch.cos(theta1 - math.pi / 2)
        + phi2
    )
    ddtheta2 = (torque + d2 / d1 * phi1 - M2 * L1 * LC2 * dtheta1**2 * sin2 - phi2) / (
        M2 * LC2**2 + I2 - d2**2 / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2), dim=-1)


def wrap(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Gymnasium's ``wrap``: subtract (add) high − low while x > high (x < low); the bounds stay put."""
    span = high - low
    above = torch.ceil((x - high) / span).clamp(min=0)
    below = torch.ceil((low - x) / span).clamp(min=0)
    return x - above * span + below * span


def acrobot_step(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """One step of a batch: state [N, 4], action [N] in {0, 1, 2} → next state [N, 4] (wrapped, clipped)."""
    torque = (action - 1).to(state.dtype)
    # Gymnasium's rk4 over t = [0, dt]: one classic RK4 step (the torque is held constant).
    k1 = acrobot_derivatives(state, torque)
    k2 = acrobot_derivatives(state + DT / 2.0 * k1, torque)
    k3 = acrobot_derivatives(state + DT / 2.0 * k2, torque)
    k4 = acrobot_derivatives(state + DT * k3, torque)
    s = state + DT / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    theta1, theta2, dtheta1, dtheta2 = s.unbind(-1)
    return torch.stack(
        (
            wrap(theta1, -math.pi, math.pi),
            wrap(theta2, -math.pi, math.pi),
            dtheta1.clamp(-MAX_VEL_1, MAX_VEL_1),
            dtheta2.clamp(-MAX_VEL_2, MAX_VEL_2),
        ),
        dim=-1,
    )


class AcrobotVecEnv(NativeVecEnv):
    """N Acrobot-v1 envs in tensors, a `pgrad.envs.base.VecEnv` (same-step autoreset)."""

    label = "Acrobot-v1 (native)"
    spec_id = "Acrobot-v1"
    state_dim = 4
    obs_dim = 6
    time_limit = 500

    def _spaces(self) -> tuple[spaces.Box, spaces.Discrete]:
        high = np.array([1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2], dtype=np.float32)
        return spaces.Box(-high, high, dtype=np.float32), spaces.Discrete(3)

    def _start_states(self, n: int) -> torch.Tensor:
        u = torch.rand(n, 4, generator=self._generator, dtype=torch.float64, device=self.device)
        # Gymnasium: uniform(low, high) = low + (high - low) * u, stored as float32.
        return (-START_HIGH + 2 * START_HIGH * u).float().double()

    def _dynamics(
        self, state: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = acrobot_step(state, actions)
        theta1, theta2 = state[:, 0], state[:, 1]
        terminated = -torch.cos(theta1) - torch.cos(theta2 + theta1) > 1.0
        return state, terminated.to(torch.float64) - 1.0, terminated

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        theta1, theta2, dtheta1, dtheta2 = state.unbind(-1)
        return torch.stack(
            (torch.cos(theta1), torch.sin(theta1), torch.cos(theta2), torch.sin(theta2), dtheta1, dtheta2),
            dim=-1,
        )
