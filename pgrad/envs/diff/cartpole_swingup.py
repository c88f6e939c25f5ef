"""Cart-pole swing-up of SHAC (Xu et al. 2022) as a differentiable batched torch env.

State s = (x, θ, ẋ, θ̇) [N, 4]: cart position, pole angle (θ = 0 upright, θ = π hanging down, positive θ
tips the pole towards +x; unwrapped), and their rates. Action a [N, 1]; the force on the cart is
F = 1000·clip(a, −1, 1).

Constants (SHAC's dflex model): cart mass m_c = 1, pole mass m_p = 10, distance from the pivot to the pole's
centre of mass l = 0.5, pole inertia about its centre of mass I = 1, g = 9.81. Equations of motion (Lagrange,
pole COM at (x + l sin θ, l cos θ)):

    [[m_c + m_p,    m_p l cos θ],   [ẍ]   [F + m_p l θ̇² sin θ]
     [m_p l cos θ,  I + m_p l² ]] · [θ̈] = [m_p g l sin θ     ]

solved in closed form (Cramer's rule, D = (m_c + m_p)(I + m_p l²) − (m_p l cos θ)² ≥ 13.5 > 0):

    ẍ = ((I + m_p l²)(F + m_p l θ̇² sin θ) − m_p l cos θ · m_p g l sin θ) / D
    θ̈ = ((m_c + m_p) m_p g l sin θ − m_p l cos θ (F + m_p l θ̇² sin θ)) / D

Near θ = 0, θ̈ ≈ +c·θ (upright is an unstable equilibrium); near θ = π, θ̈ ≈ −c·(θ − π) (hanging is stable).
Integration: one control step dt = 1/60 s is 4 semi-implicit Euler substeps of h = 1/240 s with the force
held (v ← v + h·acc(q, v), then q ← q + h·v).

Reward (SHAC's, on the state *after* the step, like SHAC computes it), θ wrapped to (−π, π]:

    r = −(θ² + 0.1 θ̇² + 0.05 x² + 0.1 ẋ²)

Observation [x, ẋ, sin θ, cos θ, θ̇] [N, 5]. Start: hanging, (x, θ − π, ẋ, θ̇) ~ U[−ε, ε]⁴ with ε =
``init_noise`` = 0.1 (float64 draws from the generator). Episodes last ``horizon`` = 240 steps (4 s, a
truncation); nothing terminates. Hanging still (a = 0) scores about −240π² = −2368.7 over an episode
(exactly that from the exact bottom (0, π, 0, 0); from the start distribution, measured over 10⁴ start
states: mean −2322, std 25, range −2369 to −2279, as the pole swings by up to ε around π and
|wrap(θ)| = π − |θ − π| there); swinging up and balancing approaches 0.

Differentiability: smooth except at the force clip (∂/∂a = 0 for |a| > 1) and the wrap of θ in the reward
(its gradient 2·wrap(θ) jumps from 2π to −2π as the pole passes hanging, θ = π).
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

__all__ = ["CartPoleSwingUp", "wrap_angle"]

MASS_CART, MASS_POLE, POLE_COM, POLE_INERTIA, GRAVITY = 1.0, 10.0, 0.5, 1.0, 9.81
FORCE_SCALE, DT, SUBSTEPS = 1000.0, 1.0 / 60.0, 4


def wrap_angle(theta: Tensor) -> Tensor:
    """θ wrapped to (−π, π] (π − ((π − θ) mod 2π)); derivative 1 everywhere except at the jump."""
    return math.pi - torch.remainder(math.pi - theta, 2.0 * math.pi)


def accelerations(theta: Tensor, theta_dot: Tensor, force: Tensor) -> tuple[Tensor, Tensor]:
    """(ẍ, θ̈) [N] from the equations of motion (Cramer's rule, see the module docstring)."""
    sin, cos = torch.sin(theta), torch.cos(theta)
    a = MASS_CART + MASS_POLE
    b = MASS_POLE * POLE_COM * cos
    d = POLE_INERTIA + MASS_POLE * POLE_COM**2
    f1 = force + MASS_POLE * POLE_COM * theta_dot.square() * sin
    f2 = MASS_POLE * GRAVITY * POLE_COM * sin
    det = a * d - b.square()
    return (d * f1 - b * f2) / det, (a * f2 - b * f1) / det


class CartPoleSwingUp:
    """SHAC's cart-pole swing-up, batched and differentiable (see the module docstring).

    Args:
        horizon: episode length (240 steps = 4 s).
        init_noise: ε ≥ 0, half-width of the uniform noise on (x, θ − π, ẋ, θ̇) at the start.
        dtype, device: of the states ``reset`` returns (``step`` follows the dtype/device of its inputs).
    """

    name = "cartpole_swingup"
    state_dim = 4
    obs_dim = 5
    action_dim = 1
    action_bound = 1.0

    def __init__(
        self,
        horizon: int = 240,
        init_noise: float = 0.1,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ):
        self.horizon = _int("horizon", horizon, 1)
        self.init_noise = _real("init_noise", init_noise, low=0.0)
        self.dtype = _float_dtype(dtype)
        self.device = torch.device(device)

    def reset(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """Start states [N, 4] = (0, π, 0, 0) + U[−ε, ε]⁴."""
        N = _batch_size(batch_size)
        eps = torch.full((4,), self.init_noise, dtype=torch.float64)
        hanging = torch.tensor([0.0, math.pi, 0.0, 0.0], dtype=torch.float64, device=self.device)
        return (hanging + _uniform(N, -eps, eps, generator, self.device)).to(self.dtype)

    def reward(self, state: Tensor) -> Tensor:
        """r(s) = −(wrap(θ)² + 0.1 θ̇² + 0.05 x² + 0.1 ẋ²) [N]."""
        x, theta, x_dot, theta_dot = state.unbind(-1)
        return -(
            wrap_angle(theta).square() + 0.1 * theta_dot.square() + 0.05 * x.square() + 0.1 * x_dot.square()
        )

    def step(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(next state [N, 4], reward r(next state) [N], terminated [N] all False)."""
        state = _check_state(state, 4, "CartPoleSwingUp")
        action = _check_action(action, state, 1, "CartPoleSwingUp")
        force = FORCE_SCALE * action[:, 0].clamp(-1.0, 1.0)
        x, theta, x_dot, theta_dot = state.unbind(-1)
        h = DT / SUBSTEPS
        for _ in range(SUBSTEPS):
            x_acc, theta_acc = accelerations(theta, theta_dot, force)
            x_dot = x_dot + h * x_acc
            theta_dot = theta_dot + h * theta_acc
            x = x + h * x_dot
            theta = theta + h * theta_dot
        next_state = torch.stack((x, theta, x_dot, theta_dot), dim=-1)
        terminated = torch.zeros(state.shape[0], dtype=torch.bool, device=state.device)
        return next_state, self.reward(next_state), terminated

    def observe(self, state: Tensor) -> Tensor:
        """[x, ẋ, sin θ, cos θ, θ̇] [N, 5]."""
        x, theta, x_dot, theta_dot = _check_state(state, 4, "CartPoleSwingUp").unbind(-1)
        return torch.stack((x, x_dot, torch.sin(theta), torch.cos(theta), theta_dot), dim=-1)
