"""A point mass against a wall of tunable stiffness: the smallest system where BPTT gradients go wrong.

Physics (1-D, state s = (x, v) [N, 2], action u [N, 1] a force; the wall fills x < 0):

    F = u + k · max(0, −x) − b · v                  penalty spring: pushes out in proportion to penetration
    v ← v + h · F / m,   x ← x + h · v              semi-implicit (symplectic) Euler, h = dt / substeps

run ``substeps`` times per control step of length ``dt`` (the action is held). As k → ∞ the spring approaches
a rigid, elastic wall: the contact lasts π√(m/k) seconds and the mass penetrates at most |v|√(m/k). The
integrator is stable only while h²k/m + 2hb/m < 4 (checked at construction); near that limit a contact spans a
few substeps, and the discrete bounce is no longer elastic: it gains or loses energy depending on where inside
a substep contact began. That sensitivity is what makes the system "stiff".

Start: x₀ ~ N(x0_mean, x0_std²), v₀ ~ N(v0_mean, v0_std²); by default the mass is thrown at the wall
(x₀ ≈ 1, v₀ ≈ −2) and hits it after about half a second.

Rewards, on the current state and action (like Gymnasium's Pendulum), ``variant``:

* ``"smooth"``:    r = −(x − x_target)² − c u²     (continuous in everything; BPTT is the exact gradient)
* ``"heaviside"``: r = bonus · 1[x ≥ threshold] − c u²   (Suh et al. 2022's discontinuous case: the indicator
  has derivative 0 almost everywhere, so the pathwise (BPTT) gradient ignores the bonus entirely, while the
  gradient of the *expected* return over the start-state or action noise does not: BPTT is biased.
  Zeroth-order estimators, which only see returns, stay unbiased.)

``terminated`` is True where x' > ``x_limit`` (the mass flew away), never when ``x_limit`` is None (default).
Episodes are cut by the caller after ``horizon`` control steps. ``action_bound`` (default ∞) clips the force
to [−b, b] before it is applied and charged.

Contact signal (for horizon-adaptive methods such as AHAC, which shorten the BPTT window where contacts are
stiff): :meth:`ContactToy.contact_force` returns, per env [N], the wall's spring force k · max(0, −x) ≥ 0:

* ``contact_force(state)``: at the state itself (0 when the mass is clear of the wall);
* ``contact_force(state, action)``: the largest spring force the integrator applies during the control step
  from ``state`` under ``action`` (the maximum over the ``substeps`` substep states it integrates from), so a
  bounce that starts and ends inside one control step is not missed. It re-integrates that step; call it
  under ``torch.no_grad()`` when only the signal is needed (it is differentiable, like everything here).

The stiffness k (``stiffness``) is the gradient lab's knob: a stiffer wall gives a larger, shorter contact
force (peak ≈ |v|√(km) for an impact at speed |v|) and noisier BPTT gradients (below). The registered
Gymnasium task ``pgrad/ContactToy-v0`` uses the defaults (smooth reward, k = 1000, 50 steps of 0.05 s) with
``action_bound = 10``.

What the gradient lab should see (defaults otherwise, float64, N = 2000 start states, per-sample BPTT
gradients of the return w.r.t. the gains θ of u = θ·(1, x, v); checked in tests/envs/test_diff.py):

* the mean gradient barely depends on k, its standard deviation grows with k at a fixed step h, sharply as
  h√(k/m) → 2: PD policy θ = (2, −4, −2) (u = 4(0.5 − x) − 2v), 20 steps, h = 0.01: the norm of the
  per-coordinate std goes 0.40, 0.48, 0.88, 1.8, 5.1 for k = 10², 10³, 10⁴, 2.25·10⁴, 3.6·10⁴ while the mean
  moves by < 3%;
* it grows with the horizon through the number of contacts: with a constant push u = −2 into the wall
  (repeated bounces) it goes 0.22, 1.0, 33, 160 for T = 10, 20, 40, 80 at k = 10³ (h√(k/m) = 0.32), and
  1.8, 310, 7.5·10³, 8·10⁸ at k = 3·10⁴ (h√(k/m) = 1.7);
* ``"heaviside"``: BPTT's gradient is exactly that of −c u², though the expected return moves: with c = 0 and
  a constant force u = θ₀ = 0.3, BPTT gives exactly 0 while the central difference (±0.1, common start states)
  of the mean return is −3.3 (76 standard errors from 0 at N = 4000).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pgrad.envs.diff._checks import (
    _action_bound,
    _batch_size,
    _check_action,
    _check_state,
    _float_dtype,
    _int,
    _real,
)
from pgrad.errors import ConfigError

__all__ = ["ContactToy"]

VARIANTS = ("smooth", "heaviside")


class ContactToy:
    """A 1-D point mass pushed by a force against a penalty-spring wall (see the module docstring).

    Args:
        stiffness: wall spring constant k > 0 (N/m).
        damping: viscous damping b ≥ 0 on the velocity everywhere (smooth, so it adds no discontinuity).
        mass: m > 0.
        dt: control step (the action is held for ``dt``).
        substeps: integration substeps per control step, h = dt / substeps.
        horizon: episode length (control steps) the caller should use.
        x_target: target position of the ``"smooth"`` reward.
        action_cost: c ≥ 0, weight of u².
        variant: ``"smooth"`` or ``"heaviside"``.
        bonus: reward per step at x ≥ threshold in the ``"heaviside"`` variant.
        threshold: position where the ``"heaviside"`` reward jumps.
        x0_mean, x0_std, v0_mean, v0_std: Gaussian start state.
        x_limit: terminate where the next position exceeds this (None: never terminate).
        action_bound: b > 0, the force is clipped to [−b, b] (math.inf, the default: no clip).
        dtype, device: of the states ``reset`` returns (``step`` follows the dtype/device of its inputs).
    """

    name = "contact_toy"
    state_dim = 2
    obs_dim = 2
    action_dim = 1

    def __init__(
        self,
        *,
        stiffness: float = 1000.0,
        damping: float = 0.0,
        mass: float = 1.0,
        dt: float = 0.05,
        substeps: int = 5,
        horizon: int = 50,
        x_target: float = 0.5,
        action_cost: float = 0.01,
        variant: str = "smooth",
        bonus: float = 1.0,
        threshold: float = 1.0,
        x0_mean: float = 1.0,
        x0_std: float = 0.1,
        v0_mean: float = -2.0,
        v0_std: float = 0.2,
        x_limit: float | None = None,
        action_bound: float = math.inf,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ):
        self.stiffness = _real("stiffness", stiffness, low=0.0, strict=True)
        self.damping = _real("damping", damping, low=0.0)
        self.mass = _real("mass", mass, low=0.0, strict=True)
        self.dt = _real("dt", dt, low=0.0, strict=True)
        self.substeps = _int("substeps", substeps, 1)
        self.horizon = _int("horizon", horizon, 1)
        self.x_target = _real("x_target", x_target)
        self.action_cost = _real("action_cost", action_cost, low=0.0)
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.bonus = _real("bonus", bonus)
        self.threshold = _real("threshold", threshold)
        self.x0_mean = _real("x0_mean", x0_mean)
        self.x0_std = _real("x0_std", x0_std, low=0.0)
        self.v0_mean = _real("v0_mean", v0_mean)
        self.v0_std = _real("v0_std", v0_std, low=0.0)
        self.x_limit = None if x_limit is None else _real("x_limit", x_limit)
        self.action_bound = _action_bound(action_bound)
        self.dtype = _float_dtype(dtype)
        self.device = torch.device(device)
        h = self.substep
        stability = h * h * self.stiffness / self.mass + 2.0 * h * self.damping / self.mass
        if stability >= 4.0:
            w2, beta = self.stiffness / self.mass, self.damping / self.mass
            h_max = (math.sqrt(beta * beta + 4.0 * w2) - beta) / w2  # root of w² h² + 2βh = 4
            need = math.floor(self.dt / h_max) + 1
            raise ConfigError(
                f"ContactToy: substep h = dt/substeps = {h:.4g} is unstable for stiffness "
                f"{self.stiffness:g}, damping {self.damping:g}, mass {self.mass:g} "
                f"(h²k/m + 2hb/m = {stability:.3g} must be < 4); use substeps >= {need} or a smaller dt"
            )

    @property
    def substep(self) -> float:
        """Integration step h = dt / substeps."""
        return self.dt / self.substeps

    @property
    def contact_duration(self) -> float:
        """π√(m/k): how long an undamped bounce lasts in continuous time (seconds)."""
        return math.pi * math.sqrt(self.mass / self.stiffness)

    def reset(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """Start states [N, 2] = (x₀, v₀) in ``dtype`` (drawn in float64 so both dtypes start alike)."""
        N = _batch_size(batch_size)
        noise = torch.randn(N, 2, generator=generator, dtype=torch.float64, device=self.device)
        mean = torch.tensor([self.x0_mean, self.v0_mean], dtype=torch.float64, device=self.device)
        std = torch.tensor([self.x0_std, self.v0_std], dtype=torch.float64, device=self.device)
        return (mean + std * noise).to(self.dtype)

    def reward(self, state: Tensor, action: Tensor) -> Tensor:
        """r(s, u) [N] of the chosen variant (see the module docstring)."""
        x = state[:, 0]
        u = action[:, 0]
        if self.variant == "smooth":
            return -(x - self.x_target).square() - self.action_cost * u.square()
        # heaviside: the comparison has no gradient, which is the point
        return self.bonus * (x >= self.threshold).to(state.dtype) - self.action_cost * u.square()

    def step(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One control step: (next state [N, 2], reward r(s, u) [N], terminated [N] bool)."""
        state = _check_state(state, 2, "ContactToy")
        action = self._action(state, action)
        reward = self.reward(state, action)
        x, v, _ = self._integrate(state, action)
        next_state = torch.stack((x, v), dim=-1)
        if self.x_limit is None:
            terminated = torch.zeros(state.shape[0], dtype=torch.bool, device=state.device)
        else:
            terminated = x.detach() > self.x_limit
        return next_state, reward, terminated

    def _action(self, state: Tensor, action: Tensor) -> Tensor:
        action = _check_action(action, state, 1, "ContactToy")
        if math.isfinite(self.action_bound):
            action = action.clamp(-self.action_bound, self.action_bound)
        return action

    def _integrate(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The substep loop of one control step: (x' [N], v' [N], peak spring force over the substeps [N])."""
        x, v = state[:, 0], state[:, 1]
        u = action[:, 0]
        h, k, b, inv_m = self.substep, self.stiffness, self.damping, 1.0 / self.mass
        peak = torch.zeros_like(x)
        for _ in range(self.substeps):
            spring = k * torch.relu(-x)
            peak = torch.maximum(peak, spring)
            v = v + (h * inv_m) * (u + spring - b * v)
            x = x + h * v
        return x, v, peak

    def contact_force(self, state: Tensor, action: Tensor | None = None) -> Tensor:
        """The wall's spring force [N] ≥ 0: k · max(0, −x) at ``state``, or, given ``action``, its maximum
        over the substeps of the control step from ``state`` (see the module docstring)."""
        state = _check_state(state, 2, "ContactToy")
        if action is None:
            return self.stiffness * torch.relu(-state[:, 0])
        return self._integrate(state, self._action(state, action))[2]

    def observe(self, state: Tensor) -> Tensor:
        """The observation is the full state (x, v)."""
        return _check_state(state, 2, "ContactToy")
