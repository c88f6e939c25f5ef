r"""Exact references for `pgrad lab algorithms` beyond the score function: the learned-critic and the
differentiable-simulator families, whose actor gradients flow through a critic or through the dynamics.

`pgrad.lab.algorithms` runs each algorithm's real `iteration` and captures the gradient it hands its actor
optimiser; this module provides the problems, the policies' starting points, the exact critics and the exact
gradients those directions are held against.

**The LQR task** (`lqr_task`): pgrad's differentiable LQR (`DiffLQR.random(4, 2, seed, spectral_radius 0.95)`,
Q = I, R = I, x₀ ~ N(0, I)), γ = 0.99, as a batched `DiffVecEnv`. Every policy is linear(-Gaussian):
``hidden_sizes = ()`` puts the (normalised) observation straight into the policy head, so the action is

    u = −Kx + b + σε        (deterministic heads: σ = 0)

exactly for an unbounded deterministic head (APG), and up to the tanh squash for the squashed heads the
other algorithms build (a = s·tanh(μ + σ_u ε) with μ affine in x): the box is wide (s = 20) and the
pre-squash values v = μ + σ_u ε small (standard deviation ≈ 0.03 on the states the runs visit, σ_u = σ/s =
0.025), so tanh(v) = v(1 − v²/3 + …) is linear to ~3·10⁻⁴ and the lab reads K = −s·∂μ/∂x, b = s·μ(0),
σ = s·σ_u(0) (`linear_policy`). Every run starts from K₀ = ½K* (half the optimal discounted gain), b = 0
and σ = 0.5 (`set_linear_policy`; the state-dependent log-std layers get weight 0).

**Exact objectives** of u = −Kx + b + σε, by the affine trick x̄ = (x, 1): x̄' = Āx̄ + B̄u with
Ā = [[A, 0], [0, 1]], B̄ = [B; 0], u = −K̄x̄ with K̄ = [K, −b], so `pgrad.lab.exact`'s LQR formulas apply to
(Ā, B̄, diag(Q, 0), R, Σ̄₀ = diag(Σ₀, 1), γ) — the extra eigenvalue 1 of Ā is harmless for γ < 1:

    J_∞(K, b, σ)          = −lqr_cost(K̄, σ)                                 (`discounted_objective`)
    J_h^T(K, b, σ)        = E[Σ_{t<h} γᵗ r_t − γʰ x̄_hᵀ T x̄_h]                (`window_objective`)

J_h^T is the backward recursion P_h = T, P_t = diag(Q, 0) + K̄ᵀRK̄ + γ Ā_K̄ᵀ P_{t+1} Ā_K̄ (with the noise terms
c_t of `DiffLQR.expected_return`), J = −tr(P₀ Σ̄₀) − c₀, exact and differentiable in (K, b, σ); `start`
replaces Σ̄₀ by another second moment of x̄₀. The value of the policy is V^π(x) = −x̄ᵀP̄x̄ − const with P̄ of
`value_matrix` (independent of σ), and Q^π(x, u) = −[xᵀQx + uᵀRu + γ x̄'ᵀP̄x̄'] − const. Gradients in the
policy's own parameters φ come from autograd through `linear_policy` on a float64 copy of the policy. σ is
read at x = 0, so the log-std layer's weights get the derivative 0: exact at θ₀ (b = 0 and zero weights: their
effect is odd in the zero-mean state), approximate once updates have moved them (after 4 updates σ(x)
varies by ≤ 7% over the start states for SHAC and SAPO, whose Adam steps are 5e-3, ≤ 2% for SAC and CrossQ),
in terms that are a small part of the direction.

**What each algorithm is compared with** (the objective its first update estimates without bias when its
critic is exact):

- APG: J_h with T = 0, h its window (32): BPTT of the sampled window return is unbiased for it.
- SHAC, AHAC, SAPO: the window return closed by the frozen critic, J_h^{P̄}: with the critic V^π this is
  Σ_{t<h} γᵗ E[∇θ a(x_t) ∇ₐQ^π(x_t, a)], the policy-gradient theorem cut at h. The env's time limit is the
  window, h = 2: every window is one episode from a fresh start, bootstrapped at the time limit, so the
  bootstrap carries most of the return's dependence on θ and a critic error or a bootstrap bug shows in
  the direction (the closed loop forgets x₀ within ~8 steps: from h = 8 on the bootstrap barely moves it,
  and with h = 4 the myopic 4-step gradient still has cos 0.4–0.96 with the windowed one, depending on the
  system; with h = 2 it points away on every seed tried). AHAC's
  window is pinned (``horizon_min = horizon_max = 2``): without contacts it would only grow. SAPO adds
  α Σ_{t<h} γᵗ H(π), H = Σ_d log σ_d + const (α fixed: `--alpha-lr 0`). A note compares with ∇J_∞ (window
  truncation: only the first h steps' actions are seen).
- DDPG, TD3: ∇J_∞ of the deterministic policy (σ = 0). SAC, CrossQ: ∇ of the entropy-regularised
  J_∞ + α/(1 − γ) Σ_d log σ_d (α fixed, `--alpha 0.2`). The actor loss averages over replay states, so its
  expectation with the exact Q is the gradient under the replay's state distribution D (the first
  `train_freq` steps after a synchronised reset): a note compares with that one (`replay_moment`).
- Discrete SAC (tabular MDP of `pgrad.lab.algorithms`, softmax policy): ∇ of the soft objective
  J_α = ρᵀV_α, V_α = (I − P_π)⁻¹ Σ_a π(R − α log π) (`soft_objective`), α fixed (0.05, its default).

**Exact critics.** The exact value of an LQR policy is quadratic in (x, u), which the algorithms' critics
cannot hold here: they share ``hidden_sizes`` with the actor and become linear (CrossQ's critic has its own
sizes, but a batch-normalised MLP fitted by regression would add its own error). `ExactCritic` wraps the
algorithm's critic module: it outputs the exact value (V^π or Q^π) of the policy as it was when `refresh`
was last called, plus 0 × (sum of the wrapped module's parameters), so the algorithm's
parameter lists, optimisers and Polyak updates stay valid, its critic losses stay differentiable, and its
critic steps get zero gradients and leave the critic exact. The lab refreshes it at the start of every
update (the limit of a critic fitted to convergence). Discrete SAC's linear critic on one-hot states is a
table that can hold Q_α exactly, so its own weights are set (`set_q_table`) and it learns from there.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from pgrad.envs.diff import DiffLQR, DiffVecEnv
from pgrad.envs.tabular import TabularMDP
from pgrad.errors import ConfigError
from pgrad.estimators import flat_grad
from pgrad.lab.exact import LQRProblem, lqr_cost, lqr_optimal_gain, lqr_solution
from pgrad.policies.distributions import DeterministicHead, DiagGaussianHead, TanhGaussianHead
from pgrad.policies.networks import Policy

__all__ = [
    "LQR_BOUND",
    "LQR_OBJECTIVES",
    "LQR_SIGMA",
    "ExactCritic",
    "LQRTask",
    "LinearPolicy",
    "affine_problem",
    "discounted_objective",
    "entropy_term",
    "install_exact_critic",
    "linear_policy",
    "lqr_policy_gradient",
    "lqr_q_values",
    "lqr_task",
    "lqr_values",
    "policy_twin",
    "refresh_exact_critics",
    "replay_moment",
    "set_linear_policy",
    "set_q_table",
    "soft_objective",
    "soft_values",
    "value_matrix",
    "window_objective",
]


# -- the LQR task -------------------------------------------------------------------------------------------


def affine_problem(env: DiffLQR, gamma: float) -> LQRProblem:
    """(Ā, B̄, diag(Q, 0), R, diag(x0_std² I, 1), γ) of the affine state x̄ = (x, 1) (module docstring)."""
    n, m = env.state_dim, env.action_dim
    A = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    A[:n, :n], A[n, n] = env.A, 1.0
    B = torch.zeros(n + 1, m, dtype=torch.float64)
    B[:n] = env.B
    Q = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    Q[:n, :n] = env.Q
    start = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    start[:n, :n] = env.x0_std**2 * torch.eye(n, dtype=torch.float64)
    start[n, n] = 1.0
    return LQRProblem(A, B, Q, env.R, start, gamma, name=f"affine-lqr-n{n}-m{m}")


@dataclass
class LQRTask:
    """The differentiable LQR of the lab, its affine problem, and the starting policy u = −K₀x + σε
    (σ = 0 for deterministic heads) inside an action box of half-width ``bound`` for squashed heads."""

    env: DiffLQR
    problem: LQRProblem
    gain: Tensor
    sigma: float
    bound: float
    seed: int = 0

    def vec_env(self, num_envs: int, horizon: int, bounded: bool = True) -> DiffVecEnv:
        """``num_envs`` rows of the env with time limit ``horizon``, float64 dynamics and float32
        observations (as the registered twin), actions in [−bound, bound] (``bounded``) or unbounded."""
        base = self.env
        env = DiffLQR(
            base.A,
            base.B,
            base.Q,
            base.R,
            base.x0_std,
            horizon,
            action_bound=self.bound if bounded else math.inf,
            dtype=torch.float64,
        )
        return DiffVecEnv(env, num_envs, dtype=torch.float32, max_episode_steps=horizon)


# σ of the stochastic policies' actions at θ₀, also DDPG's and TD3's exploration noise (action units)
LQR_SIGMA = 0.5
LQR_BOUND = 20.0  # half-width s of the action box of the squashed policy heads


def lqr_task(
    seed: int = 0,
    gamma: float = 0.99,
    sigma: float = LQR_SIGMA,
    bound: float = LQR_BOUND,
    gain_fraction: float = 0.5,
) -> LQRTask:
    """`DiffLQR.random(4, 2, seed, spectral_radius=0.95)` (Q = I, R = I, x₀ ~ N(0, I)) with discount γ,
    starting gain K₀ = ``gain_fraction`` · K*(γ), action noise σ and squash half-width ``bound``."""
    if not 0 < gamma < 1:
        raise ConfigError(f"lqr_task: gamma must be in (0, 1) (J_∞ is then finite), got {gamma}")
    env = DiffLQR.random(4, 2, seed, spectral_radius=0.95, dtype=torch.float64)
    base = LQRProblem(env.A, env.B, env.Q, env.R, env.x0_std**2 * torch.eye(4, dtype=torch.float64), gamma)
    gain = gain_fraction * lqr_optimal_gain(base)
    return LQRTask(env, affine_problem(env, gamma), gain, sigma, bound, seed)


# -- the linear policy of a pgrad Policy --------------------------------------------------------------------


class LinearPolicy(NamedTuple):
    """u = −Kx + b + σε: K [m, n], b [m], σ [m] (float64, differentiable in the policy's parameters)."""

    K: Tensor
    b: Tensor
    sigma: Tensor

    def affine_gain(self) -> Tensor:
        """K̄ = [K, −b] [m, n + 1]: u = −K̄x̄ + σε with x̄ = (x, 1)."""
        return torch.cat([self.K, -self.b[:, None]], dim=1)


def _head_map(policy: Policy, obs: Tensor) -> tuple[Tensor, Tensor]:
    """(the head's action before any tanh, linearised: loc + scale·μ; its std scale·σ) at ``obs`` [B, n]."""
    if policy.hidden_sizes:
        raise ConfigError(
            f"lab algorithms: the policy must be linear (hidden_sizes=()), got {list(policy.hidden_sizes)}"
        )
    features = policy.features(obs)
    head = policy.head
    if isinstance(head, DeterministicHead):
        raw = head.action_layer(features)
        loc = torch.where(head.squashed, (head.high + head.low) / 2, 0.0).to(raw.dtype)
        scale = torch.where(head.squashed, (head.high - head.low) / 2, 1.0).to(raw.dtype)
        return loc + scale * raw, torch.zeros_like(raw)
    if isinstance(head, (TanhGaussianHead, DiagGaussianHead)):
        mean, std = head.mean_layer(features), head.log_std(features).exp()
        if isinstance(head, DiagGaussianHead):
            return mean, std
        loc, scale = ((head.high + head.low) / 2).to(mean.dtype), ((head.high - head.low) / 2).to(mean.dtype)
        return loc + scale * mean, scale * std
    raise ConfigError(f"lab algorithms: no linear reading of a {type(head).__name__} policy head")


def linear_policy(policy: Policy) -> LinearPolicy:
    """(K, b, σ) of a linear pgrad `Policy` (``hidden_sizes = ()``), differentiable in its parameters:
    b = a(0), K = −(a(e_i) − a(0))ᵢ, σ = std(0), with a the head's action with tanh replaced by the identity
    (module docstring). Raises `ConfigError` when the mean is not affine in the observation (e.g. a clipped
    observation normaliser)."""
    dtype = next(policy.parameters()).dtype
    n = policy.obs_dim
    points = torch.cat([torch.zeros(1, n, dtype=dtype), torch.eye(n, dtype=dtype)])
    mean, std = _head_map(policy, points)
    b = mean[0]
    K = -(mean[1:] - b).T
    with torch.no_grad():  # the map must be affine where the states live
        probe = torch.randn(8, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
        error = (_head_map(policy, probe)[0] - (b - probe @ K.T)).abs().max()
        if error > 1e-6 * (1 + float(K.abs().max()) + float(b.abs().max())):
            raise ConfigError(
                f"lab algorithms: the policy's action is not affine in the state (error {error:.3g})"
            )
    return LinearPolicy(K.to(torch.float64), b.to(torch.float64), std[0].to(torch.float64))


def _raw_log_std(head: TanhGaussianHead | DiagGaussianHead, log_std: Tensor) -> Tensor:
    """The pre-bound value whose `bounded_log_std` is ``log_std`` (inverse of l + ½(h − l)(tanh(r) + 1))."""
    low, high = head.log_std_min, head.log_std_max
    if not bool(((log_std > low) & (log_std < high)).all()):
        raise ConfigError(
            f"lab algorithms: log σ {log_std.tolist()} outside the head's bounds ({low}, {high})"
        )
    return torch.atanh(2 * (log_std - low) / (high - low) - 1)


def set_linear_policy(policy: Policy, K: Tensor, sigma: float) -> None:
    """Set a linear `Policy`'s head so that its (linearised) action is u = −Kx + σε on the raw state x,
    through its observation normaliser's current statistics: mean weights −K·sd/scale, bias so that u(0) = 0,
    log-std weights 0 and log-std bias for σ/scale (σ is ignored by deterministic heads)."""
    head = policy.head
    with torch.no_grad():
        dtype = next(policy.parameters()).dtype
        n = policy.obs_dim
        shift, sd = torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
        if policy.normalizer is not None:
            shift = policy.normalizer.mean.clone()
            sd = (policy.normalizer.var + policy.normalizer.eps).sqrt()
        ones = torch.ones(K.shape[0], dtype=torch.float64)
        if isinstance(head, DeterministicHead):  # squashed where the box is bounded, raw otherwise
            layer = head.action_layer
            scale = torch.where(head.squashed, (head.high - head.low).double() / 2, ones)
            loc = torch.where(head.squashed, (head.high + head.low).double() / 2, 0 * ones)
        elif isinstance(head, (TanhGaussianHead, DiagGaussianHead)):
            layer = head.mean_layer
            scale, loc = ones, 0 * ones
            if isinstance(head, TanhGaussianHead):
                scale, loc = (head.high - head.low).double() / 2, (head.high + head.low).double() / 2
            raw = _raw_log_std(head, torch.log(sigma / scale))
            if head.state_dependent_std:
                head.log_std_layer.weight.zero_()
                head.log_std_layer.bias.copy_(raw.to(dtype))
            else:
                head.raw_log_std.copy_(raw.to(dtype))
        else:
            raise ConfigError(f"lab algorithms: cannot set a linear {type(head).__name__} policy head")
        weight = -K.double() * sd[None, :] / scale[:, None]  # acts on (x − shift) / sd
        bias = -loc / scale + weight @ (shift / sd)
        layer.weight.copy_(weight.to(dtype))
        layer.bias.copy_(bias.to(dtype))


def policy_twin(policy: Policy) -> tuple[Policy, list[Tensor]]:
    """A float64 copy of ``policy`` (normaliser statistics included) and its parameter list."""
    twin = copy.deepcopy(policy).double()
    return twin, list(twin.parameters())


# -- exact LQR objectives -----------------------------------------------------------------------------------


def _noise(problem: LQRProblem, sigma: Tensor) -> Tensor:
    return torch.diag(sigma.expand(problem.m).square())


def window_objective(
    problem: LQRProblem,
    policy: LinearPolicy,
    horizon: int,
    terminal: Tensor | None = None,
    start: Tensor | None = None,
) -> Tensor:
    """E[Σ_{t<h} γᵗ r_t − γʰ x̄_hᵀ T x̄_h] of u = −Kx + b + σε on the affine ``problem`` (r = −xᵀQx − uᵀRu),
    from E[x̄₀x̄₀ᵀ] = ``start`` (default Σ̄₀), T = ``terminal`` (default 0): the backward recursion of the
    module docstring. Differentiable in K, b, σ (and T, start)."""
    if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 1:
        raise ConfigError(f"window_objective: horizon must be an int >= 1, got {horizon!r}")
    gamma = problem.gamma
    gain = policy.affine_gain()
    W = _noise(problem, policy.sigma)
    closed = problem.A - problem.B @ gain
    stage = problem.Q + gain.T @ problem.R @ gain
    P = torch.zeros_like(problem.A) if terminal is None else terminal
    c = torch.zeros((), dtype=torch.float64)
    for _ in range(int(horizon)):
        c = torch.trace(problem.R @ W) + gamma * (torch.trace(problem.B.T @ P @ problem.B @ W) + c)
        P = stage + gamma * closed.T @ P @ closed
    second = problem.Sigma0 if start is None else start
    return -(torch.trace(P @ second) + c)


def discounted_objective(problem: LQRProblem, policy: LinearPolicy) -> Tensor:
    """J_∞ = −E Σ_t γᵗ (xᵀQx + uᵀRu) of u = −Kx + b + σε (`pgrad.lab.exact.lqr_cost` on the affine
    problem); differentiable. Raises `ConfigError` if the policy does not stabilise the system."""
    return -lqr_cost(problem, policy.affine_gain(), policy.sigma)


def value_matrix(problem: LQRProblem, policy: LinearPolicy) -> Tensor:
    """P̄ [n+1, n+1] with V^π(x) = −x̄ᵀP̄x̄ − const (the cost matrix of `lqr_solution`; σ only adds the
    constant), detached."""
    return lqr_solution(problem, policy.affine_gain().detach()).P


def lqr_values(P: Tensor, obs: Tensor) -> Tensor:
    """V(x) = −x̄ᵀPx̄ for states [..., n] (float64)."""
    x = torch.cat([obs, torch.ones_like(obs[..., :1])], dim=-1)
    return -((x @ P) * x).sum(-1)


def lqr_q_values(problem: LQRProblem, P: Tensor, obs: Tensor, actions: Tensor) -> Tensor:
    """Q(x, u) = −[xᵀQx + uᵀRu + γ x̄'ᵀPx̄'] with x̄' = Āx̄ + B̄u, for [..., n] and [..., m] (float64)."""
    x = torch.cat([obs, torch.ones_like(obs[..., :1])], dim=-1)
    following = x @ problem.A.T + actions @ problem.B.T
    stage = ((x @ problem.Q) * x).sum(-1) + ((actions @ problem.R) * actions).sum(-1)
    return -(stage + problem.gamma * ((following @ P) * following).sum(-1))


def replay_moment(problem: LQRProblem, policies: Sequence[LinearPolicy], steps: int) -> Tensor:
    """The second moment E[x̄x̄ᵀ] of the states a replay holds when each of ``policies`` in turn acted for
    ``steps`` vector steps (u = −Kx + b + σε, σ the exploration noise) from a synchronised reset (Σ̄₀) without
    time-limit resets: (1/(k·steps)) Σ_t E[x̄_t x̄_tᵀ] over the k·steps states."""
    if not policies or steps < 1:
        raise ConfigError(
            f"replay_moment: needs at least one policy and steps >= 1, got {len(policies)}, {steps}"
        )
    second, total = problem.Sigma0.clone(), torch.zeros_like(problem.Sigma0)
    for policy in policies:
        gain = policy.affine_gain().detach()
        closed = problem.A - problem.B @ gain
        noise = problem.B @ _noise(problem, policy.sigma.detach()) @ problem.B.T
        for _ in range(steps):
            total = total + second
            second = closed @ second @ closed.T + noise
    return total / (len(policies) * steps)


def entropy_term(policy: LinearPolicy) -> Tensor:
    """Σ_d log σ_d: the part of the Gaussian entropy H = Σ_d log σ_d + (m/2) log 2πe that depends on θ."""
    return policy.sigma.log().sum()


# -- the soft objective of a tabular MDP (discrete SAC) -----------------------------------------------------


def soft_values(mdp: TabularMDP, probs: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """(V_α [S], Q_α [S, A]) of the policy table with entropy bonus α: r_α = Σ_a π(R − α log π) on live
    states, V_α = (I − γP_π)⁻¹ r_α (rows out of terminal states dropped), Q_α = R + γ P V_α."""
    live = mdp.live.to(probs.dtype)
    P_pi = torch.einsum("sa,sat->st", probs, mdp.P) * live[:, None]
    reward = (probs * (mdp.R - alpha * probs.clamp_min(1e-300).log())).sum(-1) * live
    eye = torch.eye(mdp.num_states, dtype=probs.dtype)
    V = torch.linalg.solve(eye - mdp.gamma * P_pi, reward)
    return V, mdp.R + mdp.gamma * torch.einsum("sat,t->sa", mdp.P, V)


def soft_objective(mdp: TabularMDP, probs: Tensor, alpha: float) -> Tensor:
    """J_α = ρᵀV_α (`soft_values`): differentiable in ``probs``; its gradient is the soft policy-gradient
    theorem's Σ_s d(s) Σ_a ∇π(a|s)(Q_α(s, a) − α log π(a|s))."""
    return mdp.rho @ soft_values(mdp, probs, alpha)[0]


def set_q_table(critic: nn.Module, Q: Tensor) -> None:
    """Make every member of a one-layer `QEnsemble` on one-hot states (discrete outputs) output Q[s, :]."""
    layers = getattr(getattr(critic, "net", None), "layers", None)
    if layers is None or len(layers) != 1 or layers[0].weight.shape[1:] != Q.shape:
        raise ConfigError(
            f"lab algorithms: the critic must be one linear layer from one-hot states to {Q.shape}"
        )
    with torch.no_grad():
        layers[0].weight.copy_(Q.to(layers[0].weight.dtype).expand_as(layers[0].weight))
        layers[0].bias.zero_()


# -- exact critics --------------------------------------------------------------------------------------


class ExactCritic(nn.Module):
    """An algorithm's critic module replaced by an exact value function (module docstring).

    ``value(table, obs, actions)`` maps float64 inputs to the value [B] (or [B, A]); ``evaluate()`` returns
    the table (e.g. P̄ of the current policy), recomputed by `refresh`. The output has the wrapped module's
    ensemble dimension ``members`` in front when it has one; its dtype is that of the observations."""

    def __init__(
        self,
        inner: nn.Module,
        value: Callable[[Tensor, Tensor, Tensor | None], Tensor],
        evaluate: Callable[[], Tensor],
        members: int | None,
    ):
        super().__init__()
        self.inner = inner
        self._value, self._evaluate, self.members = value, evaluate, members
        self.table = evaluate()

    @property
    def normalizer(self) -> nn.Module | None:
        """The wrapped module's observation normaliser (the algorithm updates it; the exact value ignores
        it)."""
        return getattr(self.inner, "normalizer", None)

    def refresh(self) -> None:
        """Recompute the exact table (at the start of each update)."""
        self.table = self._evaluate()

    def forward(self, obs: Tensor, actions: Tensor | None = None) -> Tensor:
        value = self._value(self.table, obs.double(), None if actions is None else actions.double())
        value = value.to(obs.dtype if obs.is_floating_point() else torch.float32)
        if self.members is not None:
            value = value.expand(self.members, *value.shape)
        zero = sum((p.sum() for p in self.inner.parameters()), torch.zeros((), dtype=value.dtype))
        return value + 0.0 * zero.to(value.dtype)


def install_exact_critic(algo: Any, task: LQRTask) -> None:
    """Replace ``algo.critic`` (and ``algo.critic_target`` when it has one) by `ExactCritic`s of the current
    policy: V^π(x) for state-value critics (SHAC, AHAC, SAPO), Q^π(x, u) for action-value ones."""
    problem = task.problem

    def evaluate() -> Tensor:
        with torch.no_grad():
            return value_matrix(problem, linear_policy(policy_twin(algo.policy)[0]))

    def q_values(P: Tensor, obs: Tensor, actions: Tensor | None) -> Tensor:
        return lqr_q_values(problem, P, obs, actions)

    def values(P: Tensor, obs: Tensor, actions: Tensor | None) -> Tensor:
        return lqr_values(P, obs)

    for name in ("critic", "critic_target"):
        inner = getattr(algo, name, None)
        if inner is None:
            continue
        action_value = hasattr(inner, "net") and getattr(inner, "action_dim", 0) > 0  # a QEnsemble
        members = (
            inner.net.members if action_value else (len(inner.members) if hasattr(inner, "members") else None)
        )
        setattr(algo, name, ExactCritic(inner, q_values if action_value else values, evaluate, members))


def refresh_exact_critics(algo: Any) -> None:
    """Recompute every `ExactCritic` of ``algo`` for its current policy."""
    for name in ("critic", "critic_target"):
        critic = getattr(algo, name, None)
        if isinstance(critic, ExactCritic):
            critic.refresh()


# -- exact gradients in a policy's own parameters -----------------------------------------------------------

LQR_OBJECTIVES = ("J_h", "J_win", "J_inf", "replay")


def lqr_policy_gradient(
    objective: str,
    task: LQRTask,
    policy: Policy,
    horizon: int = 1,
    alpha: float = 0.0,
    start: Tensor | None = None,
) -> Tensor:
    """∇_φ of one exact objective of the linear ``policy`` (flat in ``policy.parameters()`` order, float64),
    by autograd through `linear_policy` on a float64 copy:

        J_h      window_objective(h)                                 + α Σ_{t<h} γᵗ Σ_d log σ_d
        J_win    window_objective(h, terminal = P̄ of the policy, held fixed)   + the same entropy sum
        J_inf    discounted_objective                                + α/(1 − γ) Σ_d log σ_d
        replay   window_objective(1, terminal = P̄ fixed, start = ``start``)   + α Σ_d log σ_d
                 (E_{x~D} E_ε Q^π(x, u(x, ε)) + α H: the actor loss's expectation over replay states D)

    The entropy terms enter only with α > 0."""
    if objective not in LQR_OBJECTIVES:
        raise ConfigError(f"lqr_policy_gradient: unknown objective '{objective}' (known: {LQR_OBJECTIVES})")
    problem, gamma = task.problem, task.problem.gamma
    twin, params = policy_twin(policy)
    lin = linear_policy(twin)
    if objective == "J_inf":
        J, weight = discounted_objective(problem, lin), 1.0 / (1.0 - gamma)
    elif objective == "replay":
        if start is None:
            raise ConfigError("lqr_policy_gradient: the replay objective needs the replay's second moment")
        J = window_objective(problem, lin, 1, terminal=value_matrix(problem, lin), start=start)
        weight = 1.0
    else:
        terminal = value_matrix(problem, lin) if objective == "J_win" else None
        J, weight = window_objective(problem, lin, horizon, terminal), (1 - gamma**horizon) / (1 - gamma)
    if alpha > 0:
        J = J + alpha * weight * entropy_term(lin)
    return flat_grad(J, params)
