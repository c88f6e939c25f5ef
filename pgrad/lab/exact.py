r"""Exact objectives J and exact policy gradients ∇θJ: the ground truth the gradient lab holds estimators to.

Everything is computed in float64 with plain torch ops, so each objective is differentiable and
``torch.autograd`` gives the exact gradient of any parametrisation; where a closed form exists it is provided
too (and the tests hold the two together, and both against finite differences).

**Tabular MDPs** (`pgrad.envs.tabular.TabularMDP`), any policy given as a probability table π [S, A]:

    P_π = Σ_a π(a|s) P(·|s, a)       r_π = Σ_a π(a|s) R(s, a)
    V = (I − γ P_π)⁻¹ r_π            Q = R + γ P V            J = ρᵀ V
    d = (I − γ P_πᵀ)⁻¹ ρ             (d(s) = Σ_t γᵗ Pr(s_t = s): discounted visit counts, not normalised)
    ∇J = Σ_s d(s) Σ_a ∇π(a|s) Q(s, a)                        (policy-gradient theorem, any parametrisation)
    ∂J/∂θ_{s,a} = d(s) π(a|s) (Q(s, a) − V(s))                (softmax π(a|s) ∝ exp θ_{s,a})

Terminal states: the episode ends there, so the rows of P_π out of terminal states are dropped (the model
makes them absorbing with zero reward, so V, Q, J and ∇J are unchanged). This makes γ = 1 work on episodic
MDPs (every policy must then end episodes with probability 1), and d(s) is the expected discounted number of
visits to s during an episode, as rollouts see it; for a terminal s, d(s) is the discounted probability of
ending there. Without terminal states Σ_s d(s) = 1/(1 − γ).

**Finite horizon H** (γ = 1 allowed; the episodic env with a time limit H): backward induction
V_H = 0, Q_t = R + γ P V_{t+1}, V_t = Σ_a π_t Q_t; J = ρᵀ V_0; d_0 = ρ, d_{t+1} = d_t P_{π_t} (Pr(s_t = s),
undiscounted); ∇J = Σ_t γᵗ Σ_s d_t(s) Σ_a ∇π_t(a|s) Q_t(s, a), summed over t for a stationary policy.

**Fisher matrix** of the softmax policy under the normalised discounted state distribution
d̄ = d / Σ_s d(s) (= (1 − γ) d without terminal states), the matrix NPG and TRPO precondition with:

    F = E_{s~d̄, a~π}[∇ log π(a|s) ∇ log π(a|s)ᵀ] = blockdiag_s d̄(s) (diag π(·|s) − π(·|s) π(·|s)ᵀ)

(∇_{θ[s]} log π(a|s) = e_a − π(·|s)). F is singular along the per-state constant shifts θ[s] + c, which do not
change π; ∇J is orthogonal to them, and F⁺∇J = A/(1 − γ) up to such shifts (Kakade 2001).

**LQR** x' = Ax + Bu, u = −Kx + ε, ε ~ N(0, W) (W = σ² I, or diag(σ²) for per-dimension σ),
E[x_0 x_0ᵀ] = Σ₀, cost C(K) = E Σ_t γᵗ (xᵀQx + uᵀRu), A_K = A − BK:

    P = Q + KᵀRK + γ A_Kᵀ P A_K           Σ = Σ₀' + γ A_K Σ A_Kᵀ,  Σ₀' = Σ₀ + γ/(1−γ) B W Bᵀ
    C = tr(P Σ₀') + tr(R W)/(1−γ)        ∇_K C = 2[(R + γ BᵀPB) K − γ BᵀPA] Σ
    ∂C/∂W = (R + γ BᵀPB)/(1−γ)           (so ∂C/∂σ = 2σ tr(R + γBᵀPB)/(1−γ) for W = σ² I)

Here Σ = Σ_t γᵗ E[x_t x_tᵀ] (the discounted state second moment, noise included). These are the formulas of
FACTS.md; they were checked (tests/lab/test_exact.py) against Monte-Carlo rollouts and finite differences and
needed no correction. The lab compares gradients of objectives to MAXIMISE: `lqr_objective` = −C.

**Bandits** (one step): J = Σ_c p(c) Σ_a π(a|c) r(c, a),
∂J/∂θ_{c,a} = p(c) π(a|c) (r(c, a) − Σ_b π(b|c) r(c, b)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from pgrad.envs.diff.lqr import discounted_riccati_gain
from pgrad.envs.tabular import TabularMDP
from pgrad.errors import ConfigError

__all__ = [
    "FiniteHorizonSolution",
    "FiniteHorizonValues",
    "LQRProblem",
    "LQRSolution",
    "TabularValues",
    "bandit_gradient",
    "bandit_objective",
    "bandit_policy_objective",
    "contextual_bandit_problem",
    "finite_horizon_evaluation",
    "lqr_cost",
    "lqr_gradient",
    "lqr_objective",
    "lqr_objective_gradient",
    "lqr_optimal_gain",
    "lqr_problem",
    "lqr_sigma_gradient",
    "lqr_solution",
    "policy_evaluation",
    "policy_gradient_surrogate",
    "policy_objective",
    "policy_table",
    "softmax_policy",
    "tabular_finite_horizon",
    "tabular_finite_horizon_gradients",
    "tabular_fisher",
    "tabular_gradient",
    "tabular_objective",
    "tabular_values",
]

_PROB_TOL = 1e-5  # rows of a policy table must sum to 1 within this (float32 policies cast to float64)


# ---------------------------------------------------------------------------------------------------------
# tabular MDPs, any policy table


class TabularValues(NamedTuple):
    """V [S], Q [S, A] and discounted visit counts d [S] of a policy (see the module docstring)."""

    V: Tensor
    Q: Tensor
    d: Tensor


def softmax_policy(theta: Tensor) -> Tensor:
    """π(a|s) = exp θ[s, a] / Σ_b exp θ[s, b] over the last dimension."""
    return torch.softmax(theta, dim=-1)


def _check_probs(mdp: TabularMDP, probs: Tensor, what: str, time_dim: bool = False) -> Tensor:
    if not isinstance(probs, Tensor):
        raise ConfigError(f"{what}: the policy must be a torch.Tensor, got {type(probs).__name__}")
    shape = (mdp.num_states, mdp.num_actions)
    ok = probs.shape[-2:] == shape and (probs.ndim == 2 or (time_dim and probs.ndim == 3))
    if not ok:
        want = f"[{shape[0]}, {shape[1]}]" + (" or [H, S, A]" if time_dim else "")
        raise ConfigError(f"{what}: policy table must have shape {want}, got {tuple(probs.shape)}")
    probs = probs.to(mdp.P.dtype)
    error = (probs.detach().sum(-1) - 1).abs().max().item()
    if not (error <= _PROB_TOL and (probs.detach() >= 0).all()):
        raise ConfigError(
            f"{what}: policy rows must be probabilities summing to 1 (largest error {error:.3g})"
        )
    return probs


def _check_theta(mdp: TabularMDP, theta: Tensor, what: str, time_dim: bool = False) -> Tensor:
    if not isinstance(theta, Tensor):
        raise ConfigError(f"{what}: theta must be a torch.Tensor, got {type(theta).__name__}")
    shape = (mdp.num_states, mdp.num_actions)
    if theta.shape[-2:] != shape or not (theta.ndim == 2 or (time_dim and theta.ndim == 3)):
        want = f"[{shape[0]}, {shape[1]}]" + (" or [H, S, A]" if time_dim else "")
        raise ConfigError(f"{what}: theta must have shape {want}, got {tuple(theta.shape)}")
    return theta.to(mdp.P.dtype)


def _policy_matrix(mdp: TabularMDP, probs: Tensor) -> Tensor:
    """P_π [S, S'] with the rows out of terminal states dropped (the episode ends there)."""
    P_pi = torch.einsum("sa,sat->st", probs, mdp.P)
    if mdp.terminal is not None:
        P_pi = P_pi * mdp.live.to(P_pi.dtype)[:, None]
    return P_pi


def _check_episodes_end(mdp: TabularMDP, P_pi: Tensor) -> None:
    """With γ = 1, I − P_π is invertible iff every state reaches a terminal state under π (graph search)."""
    ends = ~mdp.live
    reach = P_pi > 0
    for _ in range(mdp.num_states):
        grown = ends | (reach & ends[None, :]).any(1)
        if torch.equal(grown, ends):
            break
        ends = grown
    if not ends.all():
        stuck = (~ends).nonzero().squeeze(-1)[:5].tolist()
        raise ConfigError(
            f"policy_evaluation on '{mdp.name}': I − γP_π is singular with γ = 1: from states {stuck} the "
            "policy never reaches a terminal state (use γ < 1 or tabular_finite_horizon)"
        )


def policy_evaluation(mdp: TabularMDP, probs: Tensor) -> TabularValues:
    """Exact V, Q, d of the policy table ``probs`` [S, A] by two linear solves; differentiable in ``probs``.

    Raises `ConfigError` when I − γP_π is singular (γ = 1 and some state never reaches a terminal state).
    """
    probs = _check_probs(mdp, probs, "policy_evaluation")
    P_pi = _policy_matrix(mdp, probs)
    if mdp.gamma == 1.0:
        _check_episodes_end(mdp, P_pi.detach())
    eye = torch.eye(mdp.num_states, dtype=probs.dtype, device=probs.device)
    system = eye - mdp.gamma * P_pi
    r_pi = (probs * mdp.R).sum(-1)
    V = torch.linalg.solve(system, r_pi)
    d = torch.linalg.solve(system.T, mdp.rho)
    Q = mdp.R + mdp.gamma * torch.einsum("sat,t->sa", mdp.P, V)
    return TabularValues(V, Q, d)


def policy_objective(mdp: TabularMDP, probs: Tensor) -> Tensor:
    """J = ρᵀ V of the policy table ``probs`` [S, A]: differentiable, so autograd gives ∇J of any
    parametrisation producing ``probs`` (linear-softmax on features, a pgrad `Policy` via `policy_table`)."""
    return mdp.rho @ policy_evaluation(mdp, probs).V


def policy_gradient_surrogate(mdp: TabularMDP, probs: Tensor) -> Tensor:
    """Σ_s d(s) Σ_a π(a|s) Q(s, a) with d and Q held fixed: its gradient is the policy-gradient theorem's
    ∇J = Σ_s d(s) Σ_a ∇π(a|s) Q(s, a) for any parametrisation (its value is Σ_s d(s) V(s), not J)."""
    probs = _check_probs(mdp, probs, "policy_gradient_surrogate")
    values = policy_evaluation(mdp, probs.detach())
    return (values.d[:, None] * probs * values.Q).sum()


def policy_table(policy: nn.Module, observations: Tensor | None = None) -> Tensor:
    """The [S, A] probability table of a pgrad `Policy` with a categorical head, differentiable in its
    parameters. ``observations`` [S, D] defaults to the one-hot states (what `VecEnv` feeds for Discrete
    observations): ``torch.eye(policy.obs_dim)``."""
    if observations is None:
        observations = torch.eye(policy.obs_dim, dtype=torch.float64)
    dist = policy.distribution(observations)
    if not isinstance(dist, Categorical):
        raise ConfigError(f"policy_table: needs a categorical policy head, got {type(dist).__name__}")
    return dist.probs


def tabular_values(mdp: TabularMDP, theta: Tensor) -> TabularValues:
    """(V [S], Q [S, A], d [S]) of the softmax policy π(a|s) ∝ exp θ[s, a]."""
    return policy_evaluation(mdp, softmax_policy(_check_theta(mdp, theta, "tabular_values")))


def tabular_objective(mdp: TabularMDP, theta: Tensor) -> Tensor:
    """J(θ) = ρᵀ V of the softmax policy (differentiable in θ)."""
    return policy_objective(mdp, softmax_policy(_check_theta(mdp, theta, "tabular_objective")))


def tabular_gradient(mdp: TabularMDP, theta: Tensor) -> Tensor:
    """Closed-form ∇θJ [S, A] of the softmax policy: d(s) π(a|s) (Q(s, a) − V(s))."""
    probs = softmax_policy(_check_theta(mdp, theta, "tabular_gradient").detach())
    V, Q, d = policy_evaluation(mdp, probs)
    return d[:, None] * probs * (Q - V[:, None])


# ---------------------------------------------------------------------------------------------------------
# finite horizon


class FiniteHorizonValues(NamedTuple):
    """J, V [H+1, S] (V[H] = 0), Q [H, S, A], d [H, S] (d[t](s) = Pr(s_t = s), episodes ended drop out)."""

    J: Tensor
    V: Tensor
    Q: Tensor
    d: Tensor


class FiniteHorizonSolution(NamedTuple):
    """`FiniteHorizonValues` plus the closed-form gradient ``grad`` (the shape of θ)."""

    J: Tensor
    grad: Tensor
    V: Tensor
    Q: Tensor
    d: Tensor


def finite_horizon_evaluation(mdp: TabularMDP, probs: Tensor, horizon: int) -> FiniteHorizonValues:
    """J = E[Σ_{t<H} γᵗ r_t] by backward induction, for a stationary [S, A] or time-dependent [H, S, A]
    policy table; differentiable in ``probs``. J equals the expected return of the episodic env truncated
    after H steps."""
    if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 1:
        raise ConfigError(f"finite_horizon_evaluation: horizon must be an int >= 1, got {horizon!r}")
    H = int(horizon)
    probs = _check_probs(mdp, probs, "finite_horizon_evaluation", time_dim=True)
    if probs.ndim == 3 and probs.shape[0] != H:
        raise ConfigError(
            f"finite_horizon_evaluation: time-dependent policy has {probs.shape[0]} steps, H = {H}"
        )
    pi = probs.expand(H, *probs.shape[-2:])
    V = torch.zeros(mdp.num_states, dtype=pi.dtype, device=pi.device)
    values, qs = [V], []
    for t in reversed(range(H)):
        Q = mdp.R + mdp.gamma * torch.einsum("sat,t->sa", mdp.P, V)
        V = (pi[t] * Q).sum(-1)
        values.append(V)
        qs.append(Q)
    V_all = torch.stack(values[::-1])
    Q_all = torch.stack(qs[::-1])
    d = [mdp.rho]
    for t in range(H - 1):
        d.append(d[-1] @ _policy_matrix(mdp, pi[t]))
    return FiniteHorizonValues(mdp.rho @ V_all[0], V_all, Q_all, torch.stack(d))


def tabular_finite_horizon(mdp: TabularMDP, theta: Tensor, horizon: int) -> FiniteHorizonSolution:
    """Exact J and closed-form ∇θJ over H steps of the softmax policy, θ [S, A] (stationary: the gradient
    sums the time steps) or [H, S, A] (time-dependent):
    ∂J/∂θ_t[s, a] = γᵗ d_t(s) π_t(a|s) (Q_t(s, a) − V_t(s)). J is differentiable in θ."""
    theta = _check_theta(mdp, theta, "tabular_finite_horizon", time_dim=True)
    probs = softmax_policy(theta)
    values = finite_horizon_evaluation(mdp, probs, horizon)
    H = values.Q.shape[0]
    pi = probs.detach().expand(H, *probs.shape[-2:])
    V, Q, d = values.V.detach(), values.Q.detach(), values.d.detach()
    discount = mdp.gamma ** torch.arange(H, dtype=pi.dtype, device=pi.device)
    per_step = discount[:, None, None] * d[..., None] * pi * (Q - V[:H, :, None])
    grad = per_step.sum(0) if theta.ndim == 2 else per_step
    return FiniteHorizonSolution(values.J, grad, values.V, values.Q, values.d)


def tabular_finite_horizon_gradients(mdp: TabularMDP, thetas: Tensor, horizon: int) -> Tensor:
    """The closed-form ∇θJ of `tabular_finite_horizon` for a batch of stationary softmax policies θ [M, S, A]
    at once (the same backward induction with a leading batch dimension), [M, S, A]."""
    thetas = torch.as_tensor(thetas)
    if thetas.ndim != 3 or thetas.shape[1:] != (mdp.num_states, mdp.num_actions):
        raise ConfigError(
            f"tabular_finite_horizon_gradients: thetas must have shape [M, {mdp.num_states}, "
            f"{mdp.num_actions}], got {tuple(thetas.shape)}"
        )
    if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 1:
        raise ConfigError(f"tabular_finite_horizon_gradients: horizon must be an int >= 1, got {horizon!r}")
    H = int(horizon)
    pi = softmax_policy(thetas.detach().to(mdp.P.dtype))
    V = torch.zeros(pi.shape[:2], dtype=pi.dtype, device=pi.device)
    qs, vs = [], []
    for _ in range(H):
        Q = mdp.R + mdp.gamma * torch.einsum("sat,mt->msa", mdp.P, V)
        V = (pi * Q).sum(-1)
        qs.append(Q)
        vs.append(V)
    live = mdp.live.to(pi.dtype) if mdp.terminal is not None else torch.ones_like(mdp.rho)
    d = mdp.rho.expand(pi.shape[:2])
    grad = torch.zeros_like(pi)
    for t in range(H):
        Q, V = qs[H - 1 - t], vs[H - 1 - t]
        grad = grad + mdp.gamma**t * d[..., None] * pi * (Q - V[..., None])
        d = torch.einsum("ms,msa,sat->mt", d * live, pi, mdp.P)
    return grad


def tabular_fisher(mdp: TabularMDP, theta: Tensor) -> Tensor:
    """The exact Fisher matrix [S·A, S·A] of the softmax policy θ [S, A] under the normalised discounted state
    distribution d̄ = d / Σ d (module docstring); rows and columns in θ's row-major order."""
    probs = softmax_policy(_check_theta(mdp, theta, "tabular_fisher").detach())
    d = policy_evaluation(mdp, probs).d
    weights = d / d.sum()
    blocks = weights[:, None, None] * (torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :])
    return torch.block_diag(*blocks)


# ---------------------------------------------------------------------------------------------------------
# LQR with a linear-Gaussian policy


@dataclass
class LQRProblem:
    """x' = Ax + Bu, cost E Σ γᵗ (xᵀQx + uᵀRu), E[x_0 x_0ᵀ] = Sigma0; float64 tensors, γ in [0, 1]."""

    A: Tensor
    B: Tensor
    Q: Tensor
    R: Tensor
    Sigma0: Tensor
    gamma: float
    name: str = field(default="lqr")

    def __post_init__(self) -> None:
        for key in ("A", "B", "Q", "R", "Sigma0"):
            setattr(self, key, torch.as_tensor(getattr(self, key)).to(torch.float64))
        n, m = self.B.shape if self.B.ndim == 2 else (0, 0)
        shapes = {"A": (n, n), "B": (n, m), "Q": (n, n), "R": (m, m), "Sigma0": (n, n)}
        for key, shape in shapes.items():
            if tuple(getattr(self, key).shape) != shape or n < 1 or m < 1:
                got = tuple(getattr(self, key).shape)
                raise ConfigError(
                    f"LQRProblem '{self.name}': {key} must have shape {shape} (B is [n, m]), got {got}"
                )
        for key in ("Q", "R", "Sigma0"):
            M = getattr(self, key)
            if not torch.allclose(M, M.T, atol=1e-12) or torch.linalg.eigvalsh(M).min() < -1e-12:
                raise ConfigError(f"LQRProblem '{self.name}': {key} must be symmetric positive semi-definite")
        if isinstance(self.gamma, bool) or not 0.0 <= float(self.gamma) <= 1.0:
            raise ConfigError(f"LQRProblem '{self.name}': gamma must be in [0, 1], got {self.gamma!r}")
        self.gamma = float(self.gamma)

    @property
    def n(self) -> int:
        """State dimension."""
        return int(self.A.shape[0])

    @property
    def m(self) -> int:
        """Control dimension."""
        return int(self.B.shape[1])


class LQRSolution(NamedTuple):
    """cost C(K), the cost matrix P, Σ = Σ_t γᵗ E[x_t x_tᵀ], Σ₀' (Sigma0_eff) and the noise covariance W."""

    cost: Tensor
    P: Tensor
    Sigma: Tensor
    Sigma0_eff: Tensor
    W: Tensor


def lqr_problem(
    n: int = 3, m: int = 2, seed: int = 0, gamma: float = 0.9, *, spectral_radius: float = 0.9
) -> LQRProblem:
    """A seeded random LQR problem whose open loop is stable (ρ(A) = ``spectral_radius`` < 1, so K = 0 has
    finite cost): A, B Gaussian, Q = MMᵀ/n + 0.5 I, R = NNᵀ/m + 0.5 I, Σ₀ = I."""
    if n < 1 or m < 1:
        raise ConfigError(f"lqr_problem: n and m must be >= 1, got {n}, {m}")
    if not 0 < spectral_radius < 1:
        raise ConfigError(f"lqr_problem: spectral_radius must be in (0, 1), got {spectral_radius}")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    A *= spectral_radius / np.abs(np.linalg.eigvals(A)).max()
    B = rng.standard_normal((n, m)) / math.sqrt(n)
    M = rng.standard_normal((n, n))
    N = rng.standard_normal((m, m))
    return LQRProblem(
        A=torch.from_numpy(A),
        B=torch.from_numpy(B),
        Q=torch.from_numpy(M @ M.T / n + 0.5 * np.eye(n)),
        R=torch.from_numpy(N @ N.T / m + 0.5 * np.eye(m)),
        Sigma0=torch.eye(n, dtype=torch.float64),
        gamma=gamma,
        name=f"lqr-n{n}-m{m}-seed{seed}",
    )


def _discrete_lyapunov(F: Tensor, C: Tensor, gamma: float) -> Tensor:
    """X = C + γ FᵀXF by vectorisation: (I − γ Fᵀ⊗Fᵀ) vec X = vec C (row-major vec); differentiable."""
    n = F.shape[0]
    system = torch.eye(n * n, dtype=F.dtype) - gamma * torch.kron(F.T, F.T)
    X = torch.linalg.solve(system, C.reshape(-1)).reshape(n, n)
    return 0.5 * (X + X.T)


def _noise_covariance(problem: LQRProblem, sigma: float | Tensor) -> Tensor:
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    if sigma.ndim == 0:
        sigma = sigma.expand(problem.m)
    if sigma.shape != (problem.m,):
        raise ConfigError(
            f"LQR: sigma must be a scalar or have shape [{problem.m}], got {tuple(sigma.shape)}"
        )
    if not (torch.isfinite(sigma).all() and (sigma >= 0).all()):
        raise ConfigError(f"LQR: sigma must be finite and >= 0, got {sigma.tolist()}")
    return torch.diag(sigma.square())


def _check_gain(problem: LQRProblem, K: Tensor, what: str) -> Tensor:
    if not isinstance(K, Tensor) or K.shape != (problem.m, problem.n):
        got = tuple(K.shape) if isinstance(K, Tensor) else type(K).__name__
        raise ConfigError(f"{what}: K must be a tensor of shape [{problem.m}, {problem.n}], got {got}")
    return K.to(torch.float64)


def lqr_solution(problem: LQRProblem, K: Tensor, sigma: float | Tensor = 0.0) -> LQRSolution:
    """Cost and Lyapunov solutions of u = −Kx + ε, ε ~ N(0, diag(σ²)); differentiable in K and σ.

    Raises `ConfigError` if √γ (A − BK) is not stable (infinite cost), or if γ = 1 with noise.
    """
    K = _check_gain(problem, K, "lqr_solution")
    W = _noise_covariance(problem, sigma)
    g = problem.gamma
    A_K = problem.A - problem.B @ K
    radius = torch.linalg.eigvals(A_K.detach()).abs().max().item() * math.sqrt(g)
    if radius >= 1:
        raise ConfigError(
            f"lqr_solution on '{problem.name}': K does not stabilise the system (spectral radius of "
            f"√γ(A − BK) is {radius:.4g} >= 1): the cost is infinite"
        )
    noisy = bool((W.detach() != 0).any())
    if noisy and g == 1:
        raise ConfigError(f"lqr_solution on '{problem.name}': with γ = 1 and σ > 0 the cost is infinite")
    P = _discrete_lyapunov(A_K, problem.Q + K.T @ problem.R @ K, g)
    Sigma0_eff = problem.Sigma0
    noise_cost = torch.zeros((), dtype=torch.float64)
    if noisy:
        Sigma0_eff = Sigma0_eff + g / (1 - g) * problem.B @ W @ problem.B.T
        noise_cost = torch.trace(problem.R @ W) / (1 - g)
    Sigma = _discrete_lyapunov(A_K.T, Sigma0_eff, g)
    cost = torch.trace(P @ Sigma0_eff) + noise_cost
    return LQRSolution(cost, P, Sigma, Sigma0_eff, W)


def lqr_cost(problem: LQRProblem, K: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
    """C(K, σ) = E Σ γᵗ (xᵀQx + uᵀRu) under u = −Kx + σε (a cost to minimise; differentiable)."""
    return lqr_solution(problem, K, sigma).cost


def lqr_gradient(problem: LQRProblem, K: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
    """Closed-form ∇_K C = 2[(R + γBᵀPB)K − γBᵀPA] Σ of the COST, [m, n]."""
    sol = lqr_solution(problem, K.detach(), sigma)
    B, g = problem.B, problem.gamma
    gain = (problem.R + g * B.T @ sol.P @ B) @ K.detach().to(torch.float64) - g * B.T @ sol.P @ problem.A
    return 2 * gain @ sol.Sigma


def lqr_sigma_gradient(problem: LQRProblem, K: Tensor, sigma: float | Tensor) -> Tensor:
    """Closed-form ∂C/∂σ of the cost: 2σ_i (R + γBᵀPB)_ii / (1 − γ) per action dimension ([m] for a
    vector σ), or 2σ tr(R + γBᵀPB)/(1 − γ) for a scalar σ (W = σ² I). Multiply by σ for ∂C/∂ log σ."""
    sigma_t = torch.as_tensor(sigma, dtype=torch.float64).detach()
    sol = lqr_solution(problem, K.detach(), sigma_t)
    g = problem.gamma
    if g == 1:
        raise ConfigError("lqr_sigma_gradient: with γ = 1 the cost is infinite for σ > 0")
    curvature = torch.diagonal(problem.R + g * problem.B.T @ sol.P @ problem.B) / (1 - g)
    if sigma_t.ndim == 0:
        return 2 * sigma_t * curvature.sum()
    return 2 * sigma_t * curvature


def lqr_objective(problem: LQRProblem, K: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
    """J = −C: the objective to MAXIMISE, so the lab compares every problem's gradients the same way."""
    return -lqr_cost(problem, K, sigma)


def lqr_objective_gradient(problem: LQRProblem, K: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
    """∇_K J = −∇_K C."""
    return -lqr_gradient(problem, K, sigma)


def lqr_optimal_gain(problem: LQRProblem, tol: float = 1e-13, max_iterations: int = 100_000) -> Tensor:
    """The optimal gain K* (independent of σ) by iterating the discounted Riccati equation
    P ← Q + γAᵀPA − γ²AᵀPB(R + γBᵀPB)⁻¹BᵀPA to convergence; K* = γ(R + γBᵀPB)⁻¹BᵀPA."""
    return discounted_riccati_gain(
        problem.A, problem.B, problem.Q, problem.R, problem.gamma, problem.name, tol, max_iterations
    )


# ---------------------------------------------------------------------------------------------------------
# one-step and contextual bandits


def _bandit_inputs(
    rewards: Tensor, context_probs: Tensor | None, policy: Tensor, what: str
) -> tuple[Tensor, Tensor, Tensor]:
    rewards = torch.as_tensor(rewards).to(torch.float64)
    if rewards.ndim not in (1, 2):
        raise ConfigError(f"{what}: rewards must be [A] or [C, A], got {tuple(rewards.shape)}")
    table = rewards if rewards.ndim == 2 else rewards[None]
    if not isinstance(policy, Tensor) or policy.shape != rewards.shape:
        got = tuple(policy.shape) if isinstance(policy, Tensor) else type(policy).__name__
        raise ConfigError(
            f"{what}: the policy must have the shape of rewards {tuple(rewards.shape)}, got {got}"
        )
    C = table.shape[0]
    if context_probs is None:
        p = torch.full((C,), 1.0 / C, dtype=torch.float64)
    else:
        p = torch.as_tensor(context_probs).to(torch.float64).reshape(-1)
        if p.shape != (C,) or (p < 0).any() or abs(p.sum().item() - 1) > 1e-9:
            raise ConfigError(f"{what}: context_probs must be {C} probabilities summing to 1")
    return table, p, policy.to(torch.float64).reshape(table.shape)


def bandit_policy_objective(rewards: Tensor, context_probs: Tensor | None, probs: Tensor) -> Tensor:
    """J = Σ_c p(c) Σ_a π(a|c) r(c, a) for a policy table ``probs`` shaped like ``rewards`` ([A] or [C, A]);
    ``context_probs`` None means uniform contexts. Differentiable in ``probs``."""
    table, p, pi = _bandit_inputs(rewards, context_probs, probs, "bandit_policy_objective")
    return p @ (pi * table).sum(-1)


def bandit_objective(rewards: Tensor, context_probs: Tensor | None, theta: Tensor) -> Tensor:
    """J(θ) of the softmax policy π(a|c) ∝ exp θ[c, a] (θ shaped like ``rewards``); differentiable."""
    return bandit_policy_objective(rewards, context_probs, softmax_policy(theta))


def bandit_gradient(rewards: Tensor, context_probs: Tensor | None, theta: Tensor) -> Tensor:
    """Closed-form ∂J/∂θ[c, a] = p(c) π(a|c) (r(c, a) − Σ_b π(b|c) r(c, b)), shaped like θ."""
    table, p, th = _bandit_inputs(rewards, context_probs, theta, "bandit_gradient")
    pi = softmax_policy(th.detach())
    baseline = (pi * table).sum(-1, keepdim=True)
    return (p[:, None] * pi * (table - baseline)).reshape(theta.shape)


def contextual_bandit_problem(env: Any) -> tuple[Tensor, Tensor]:
    """(rewards [C, A], context_probs [C]) of pgrad's `ContextualBandit` (or a ``gym.make`` of it): the
    expected reward table p[c, a] and the uniform context distribution of its ``reset``; then
    ``bandit_policy_objective(rewards, context_probs, probs)`` equals ``env.expected_reward(probs)``."""
    from pgrad.envs.bandit import ContextualBandit

    base = getattr(env, "unwrapped", env)
    if not isinstance(base, ContextualBandit):
        raise ConfigError(f"contextual_bandit_problem: needs a ContextualBandit, got {type(base).__name__}")
    rewards = torch.as_tensor(base.reward_table, dtype=torch.float64)
    return rewards, torch.full((base.num_contexts,), 1.0 / base.num_contexts, dtype=torch.float64)
