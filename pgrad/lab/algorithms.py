r"""Do the shipped algorithms' own updates point where the exact gradient points?

The other lab studies hold estimator FUNCTIONS to the exact ∇θJ. What a user runs is an algorithm's whole
update: its sampling, advantage pipeline, normalisations, clipping, minibatching, preconditioning, its
critic and its replay. This module runs every algorithm of `pgrad list` through its REAL `iteration` (built
as the Trainer builds it, from its registry class and Config) on a problem whose exact gradient is known,
captures the direction the update moves the policy in, and compares. The score-function family (below) and
discrete SAC run on a tabular MDP with a softmax policy; DDPG, TD3, SAC, CrossQ, APG, SHAC, AHAC and SAPO
on an LQR with a linear(-Gaussian) policy, against exact objectives, exact critics and exact replay
weightings described in `pgrad.lab.algorithms_pathwise`.

**Problem.** A seeded random MDP (`pgrad.envs.tabular.random_mdp`: S = 5 states, A = 3 actions, rewards
U(0, 1)) made episodic (`episodic_mdp`): from every (s, a) the episode ends with probability
q(s, a) ~ U(0.15, 0.35) in an absorbing zero-reward terminal state, so episodes last ≈ 4 steps and every
policy ends them. The env is `tabular_vec_env` with NO time limit, and every algorithm runs with γ = 1, so
every estimator of the family targets one objective, the undiscounted episodic return

    J(θ) = E[Σ_{t<T} r_t] = ρᵀ (I − P_π)⁻¹ r_π                (`pgrad.lab.exact.policy_objective`, γ = 1)

and the usual mismatches cannot enter: there is no γᵗ for an implementation to drop (γ = 1), no time-limit
truncation to bootstrap (episodes terminate), and the per-step mean of a long fixed-length rollout of
continuing episodes weights each state by its expected visits per episode d(s), the weighting of the
policy-gradient theorem ∇J = Σ_s d(s) Σ_a ∇π(a|s) Q(s, a), up to a positive constant (the mean length).

**Policy.** ``hidden_sizes = ()``: one-hot states into a linear categorical head, logits
θ[s, a] = W[a, s] + b[a], a tabular softmax (over-parametrised by the shared bias b). Every run starts from
the same table θ₀ ~ N(0, 0.8²) (b = 0). Exact gradients are taken in the parameters φ = (W, b) the optimiser
sees, by autograd through `policy_table` and `policy_objective` in float64.

**What is compared** (the ``direction`` of a case):

- ``step``: the gradient the algorithm hands its policy (actor) optimiser: ``−.grad`` of the policy
  parameters at its first optimiser step (after the algorithm's own clipping; TD3 and CrossQ: the first
  step of their delayed actor), read by a global optimiser step pre-hook.
  An adaptive optimiser's step is not a gradient direction (Adam's first step is ≈ lr·sign(g)), so the
  gradient is compared. For PPO, GRPO and RLOO the first minibatch step is at θ_old, where the ratio is 1
  and the clipped surrogate's gradient is the policy gradient (GRPO's k3 KL to π_ref = π_θ has gradient 0).
- ``update``: the parameter change of the whole first iteration (PPO: 10 epochs × 4 minibatches of Adam
  steps), held against ∇J at θ_old.
- ``natural`` (NPG, TRPO): the parameter change of the first iteration (the δ-scaled natural step, after
  TRPO's line search), held against the exact natural gradient F⁺∇J with the exact Fisher matrix

      F = Σ_s μ(s) Σ_a π(a|s) ∇φ log π(a|s) ∇φ log π(a|s)ᵀ,      μ = d / Σ d  (the states a batch visits)

  (the Hessian of E_μ KL(π_old ‖ π) that NPG's Fisher-vector products estimate). F is singular (per-state
  constant logit shifts, and b duplicates them), so both sides are compared in its row space: the step is
  projected by F⁺F first (a component in the null space does not change π).

Critics: the first update of VPG, A2C, PPO, NPG and TRPO uses a freshly initialised value network, as they
really do (GAE(λ < 1) and n-step bootstraps through a wrong V are biased); rows marked "exact V" set the
(linear, tabular) critic to the exact V^π of θ₀ first, the limit of fitting it. REINFORCE and IS-PG use V
only as a baseline, so a fresh critic costs variance, not bias. IS-PG is measured off-policy: its lagged
behaviour copy is set to θ_b = θ₀ + Δ (Δ ~ N(0, 0.6²)) and its first call is ``iteration(1)`` (index 1: no
refresh of the copy), so the batch comes from π_b while the gradient is taken at θ₀.

**Statistics.** The algorithms scale their updates each in its own way (standardised advantages, per-step
means, KL-normalised steps), so directions are compared. Each case draws M first-update directions
ĝ₁ … ĝ_M from M runs (run seeds drawn from one generator: each run draws its own episodes, minibatches and
critic initialisation), with g the exact direction, and reports

- cos: the mean cosine of the single directions ĝₘ with g (at the case's batch size), and cos(ḡ, g);
- the relative bias of the direction ‖ḡ − c g‖ / ‖c g‖ with c = ḡ·g / ‖g‖² (the tangent of the angle between
  the mean direction and g), and its 99% interval from `pgrad.lab.measure` (the F test against c·g);
  "points away" when c ≤ 0;
- the noise tr Cov ĝ / ‖ḡ‖² (the inverse signal-to-noise ratio of one update);
- the cosines of the first k updates of one run, the exact (natural) gradient recomputed at the θ each update
  starts from (the critic is being fitted by then: these show whether that fixes a first-update bias).

Exact critics of the LQR rows are recomputed for the policy at the start of every update
(`refresh_exact_critics`); a second reference (``also``: ∇J_∞ for the windowed methods, the replay-weighted
actor-loss gradient for the off-policy ones) is reported in a note with its own k-update cosines.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from pgrad.algorithms import get_algorithm
from pgrad.envs.tabular import TabularMDP, random_mdp, tabular_vec_env
from pgrad.errors import ConfigError
from pgrad.estimators import flat_grad, flat_jacobian, flat_params, set_flat_params
from pgrad.lab.algorithms_pathwise import (
    LQR_BOUND,
    LQR_SIGMA,
    LinearPolicy,
    LQRTask,
    install_exact_critic,
    linear_policy,
    lqr_policy_gradient,
    lqr_task,
    policy_twin,
    refresh_exact_critics,
    replay_moment,
    set_linear_policy,
    set_q_table,
    soft_objective,
    soft_values,
)
from pgrad.lab.exact import policy_evaluation, policy_objective, policy_table
from pgrad.lab.measure import draw_estimates, gradient_statistics
from pgrad.lab.report import format_table
from pgrad.policies.networks import Policy
from pgrad.run.algorithm import Algorithm
from pgrad.run.seeding import seed_everything

__all__ = [
    "CASES",
    "PATHWISE_CASES",
    "AlgorithmCase",
    "CaseResult",
    "DirectionStats",
    "LabProblem",
    "algorithms_report",
    "algorithms_table",
    "build_algorithm",
    "cosine",
    "direction_stats",
    "episodic_mdp",
    "exact_direction",
    "exact_natural_gradient",
    "exact_policy_gradient",
    "exact_soft_gradient",
    "first_direction",
    "lab_problem",
    "record_steps",
    "rollout_state_weights",
    "run_algorithms",
    "run_case",
    "update_directions",
    "weighted_policy_gradient",
]

Direction = Literal["step", "update", "natural"]


# -- the problem --------------------------------------------------------------------------------------------


def episodic_mdp(
    num_states: int = 5, num_actions: int = 3, seed: int = 0, end: tuple[float, float] = (0.15, 0.35)
) -> TabularMDP:
    """`random_mdp(num_states, num_actions, γ = 1, seed)` made episodic: from (s, a) the episode ends with
    probability q(s, a) ~ U(end) in one extra absorbing, zero-reward terminal state ⊥ (index ``num_states``):

        P'(s'|s, a) = (1 − q(s, a)) P(s'|s, a),     P'(⊥|s, a) = q(s, a),     ρ'(⊥) = 0

    so every policy ends its episodes (mean length ≤ 1 / min q) and γ = 1 is well defined."""
    low, high = end
    if not 0 < low <= high <= 1:
        raise ConfigError(f"episodic_mdp: end must be probabilities 0 < low <= high <= 1, got {end}")
    base = random_mdp(num_states, num_actions, gamma=1.0, seed=seed)
    S, A = num_states, num_actions
    q = torch.from_numpy(np.random.default_rng([seed, 1]).uniform(low, high, size=(S, A)))
    P = torch.zeros(S + 1, A, S + 1, dtype=torch.float64)
    P[:S, :, :S] = (1 - q)[..., None] * base.P
    P[:S, :, S] = q
    P[S, :, S] = 1.0
    return TabularMDP(
        P=P,
        R=torch.cat([base.R, torch.zeros(1, A, dtype=torch.float64)]),
        rho=torch.cat([base.rho, torch.zeros(1, dtype=torch.float64)]),
        gamma=1.0,
        terminal=torch.arange(S + 1) == S,
        name=f"episodic-mdp-S{S}-A{A}-seed{seed}",
    )


@dataclass
class LabProblem:
    """The MDP, the common starting logits θ₀ [S+1, A], IS-PG's behaviour logits θ_b [S+1, A] and the LQR task
    of the continuous algorithms (`pgrad.lab.algorithms_pathwise.lqr_task`)."""

    mdp: TabularMDP
    theta: Tensor
    behaviour_theta: Tensor
    seed: int = 0
    lqr: LQRTask | None = None


def lab_problem(
    seed: int = 0, num_states: int = 5, num_actions: int = 3, theta_scale: float = 0.8, shift: float = 0.6
) -> LabProblem:
    """The problem of the module docstring: `episodic_mdp(seed)`, θ₀ ~ N(0, theta_scale²) and
    θ_b = θ₀ + N(0, shift²) (seeded; the terminal state's rows are 0: it is never acted in), and
    `lqr_task(seed)` for the continuous algorithms."""
    mdp = episodic_mdp(num_states, num_actions, seed)
    gen = torch.Generator().manual_seed(seed + 1000)
    shape = (num_states + 1, num_actions)
    theta = theta_scale * torch.randn(shape, generator=gen, dtype=torch.float64)
    behaviour = theta + shift * torch.randn(shape, generator=gen, dtype=torch.float64)
    theta[-1] = behaviour[-1] = 0.0
    return LabProblem(mdp, theta, behaviour, seed, lqr_task(seed))


def _linear_head(policy: Policy) -> nn.Linear:
    """The logits layer of a tabular softmax policy: no hidden layers, no normaliser, a categorical head."""
    logits = getattr(policy.head, "logits", None)
    if policy.hidden_sizes or policy.normalizer is not None or not isinstance(logits, nn.Linear):
        raise ConfigError(
            "lab algorithms: the policy must be linear and categorical on one-hot states (hidden_sizes=(), "
            "no observation normaliser)"
        )
    return logits


def set_policy_table(policy: Policy, theta: Tensor) -> None:
    """Make the linear policy's logits on one-hot state s equal θ[s, :]: W = θᵀ, b = 0."""
    head = _linear_head(policy)
    with torch.no_grad():
        head.weight.copy_(theta.T)
        head.bias.zero_()


def set_value_table(value: nn.Module, V: Tensor) -> None:
    """Make a linear value network's output on one-hot state s equal V[s] (weights V, bias 0)."""
    layers = [m for m in value.modules() if isinstance(m, nn.Linear)]
    if len(layers) != 1 or layers[0].out_features != 1 or getattr(value, "normalizer", None) is not None:
        raise ConfigError("lab algorithms: the value network must be one linear layer on one-hot states")
    with torch.no_grad():
        layers[0].weight.copy_(V[None, :])
        layers[0].bias.zero_()


# -- exact directions ---------------------------------------------------------------------------------------


def _double_twin(policy: Policy, params: Tensor | None = None) -> tuple[Policy, list[Tensor]]:
    """A float64 copy of ``policy`` (with the flat parameters ``params`` if given) and its parameter list."""
    twin = copy.deepcopy(policy).double()
    twin_params = list(twin.parameters())
    if params is not None:
        set_flat_params(twin_params, params.double())
    return twin, twin_params


def exact_policy_gradient(mdp: TabularMDP, policy: Policy, params: Tensor | None = None) -> Tensor:
    """∇_φ J of a pgrad `Policy` acting on one-hot states, flat in ``policy.parameters()`` order, float64.

    J = ρᵀV of `pgrad.lab.exact.policy_objective` through the policy's probability table, by autograd (any
    parametrisation of the table). ``params`` evaluates it at other flat parameters."""
    twin, twin_params = _double_twin(policy, params)
    return flat_grad(policy_objective(mdp, policy_table(twin)), twin_params)


def exact_natural_gradient(
    mdp: TabularMDP, policy: Policy, params: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(F⁺∇J, the row-space projector F⁺F, F) in the policy's flat parameters φ, float64:

        F = Σ_s μ(s) Σ_a π(a|s) ∇φ log π(a|s) ∇φ log π(a|s)ᵀ,     μ(s) = d(s) / Σ_s' d(s')

    over the non-terminal states (d: expected visits per episode), the Hessian of E_μ KL(π_old ‖ π) at
    π_old, which NPG and TRPO estimate on their batch of steps. F⁺ is the pseudo-inverse."""
    twin, twin_params = _double_twin(policy, params)
    probs = policy_table(twin)
    grad = flat_grad(policy_objective(mdp, probs), twin_params, retain_graph=True)
    d = policy_evaluation(mdp, probs.detach()).d * mdp.live.to(probs.dtype)
    mu = d / d.sum()
    jac = flat_jacobian(probs.log().reshape(-1), twin_params)  # [S·A, P]
    weight = (mu[:, None] * probs.detach()).reshape(-1)
    fisher = jac.T @ (weight[:, None] * jac)
    inverse = torch.linalg.pinv(fisher, hermitian=True, rtol=1e-9)
    return inverse @ grad, inverse @ fisher, fisher


def rollout_state_weights(mdp: TabularMDP, probs: Tensor, steps: int) -> Tensor:
    """w(s) = Σ_{t<steps} Pr(s_t = s) [S] for a sub-env reset at t = 0 that starts a new episode (s ~ ρ)
    whenever one ends: the states a first fixed-length rollout of ``steps`` steps samples.

    The chain is M = P_π on live states plus the restart Pr(end | s)·ρ; as steps → ∞, w / steps → d / Σd."""
    P_pi = torch.einsum("sa,sat->st", probs, mdp.P) * mdp.live.to(probs.dtype)[:, None]
    ends = (P_pi * (~mdp.live).to(probs.dtype)[None, :]).sum(1)
    chain = P_pi * mdp.live.to(probs.dtype)[None, :] + ends[:, None] * mdp.rho[None, :]
    weights, x = torch.zeros_like(mdp.rho), mdp.rho.clone()
    for _ in range(steps):
        weights, x = weights + x, x @ chain
    return weights


def weighted_policy_gradient(mdp: TabularMDP, policy: Policy, weights: Tensor) -> Tensor:
    """Σ_s w(s) Σ_a π(a|s) (Q(s, a) − V(s)) ∇φ log π(a|s), flat in the policy's parameters: the expected
    score-function gradient with exact advantages when the batch weights state s by w(s) (w = d: ∇J)."""
    twin, twin_params = _double_twin(policy)
    probs = policy_table(twin)
    values = policy_evaluation(mdp, probs.detach())
    advantage = probs.detach() * (values.Q - values.V[:, None]) * (weights * mdp.live)[:, None]
    return flat_grad((probs.log() * advantage).sum(), twin_params)


def exact_soft_gradient(mdp: TabularMDP, policy: Policy, alpha: float) -> Tensor:
    """∇_φ J_α of the entropy-regularised objective (`pgrad.lab.algorithms_pathwise.soft_objective`) of a
    pgrad `Policy` on one-hot states, flat, float64 (discrete SAC's objective)."""
    twin, twin_params = _double_twin(policy)
    return flat_grad(soft_objective(mdp, policy_table(twin), alpha), twin_params)


# -- cases and runs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlgorithmCase:
    """One row: an algorithm, the lab's Config overrides, what is captured and the critic it starts with.

    ``task``: the tabular MDP ("mdp") or the LQR ("lqr"); ``objective``: the exact objective an LQR case's
    direction is held against (`pgrad.lab.algorithms_pathwise.lqr_policy_gradient`; tabular cases use ∇J,
    soft when the algorithm has a temperature). ``first_rollout`` also compares the direction with
    `weighted_policy_gradient` under the state weights of a first rollout of ``num_steps`` steps after a
    synchronised reset (A2C's short rollouts); ``also`` names a second LQR objective the first-update
    directions are compared with in a note ("J_inf": the full discounted objective; "replay": the actor
    loss's expectation over the first replay's states)."""

    label: str
    algorithm: str
    options: dict[str, Any]
    direction: Direction = "step"
    critic: Literal["fresh", "exact", "none"] = "fresh"
    off_policy: bool = False
    compared: str = ""
    first_rollout: bool = False
    task: Literal["mdp", "lqr"] = "mdp"
    objective: Literal["J", "J_h", "J_win", "J_inf"] = "J"
    also: Literal["", "J_inf", "replay"] = ""

    @property
    def natural(self) -> bool:
        """Compared with the exact natural gradient (NPG, TRPO)."""
        return self.direction == "natural"


# Every case: a tabular softmax policy (one-hot states into a linear head) and γ = 1 (module docstring).
_TABULAR = {"hidden_sizes": (), "gamma": 1.0}
_STEPS = {"num_envs": 64, "num_steps": 256}  # 16 384 steps per batch of fixed-length rollouts
# CG damping 0.01 for NPG/TRPO: the default 0.1 is of the size of this small Fisher's eigenvalues (0.02–0.4),
# so it pulls the step towards the plain gradient; the "default damping" row shows by how much.
_NATURAL = {**_STEPS, "cg_damping": 0.01}
_EPISODES = {"num_envs": 64, "episodes_per_update": 4096}
_GROUPS = {"num_groups": 512, "group_size": 8}
_SHORT = {"num_envs": 3200, "num_steps": 5}  # A2C's own 5-step rollouts, 16 000 steps

# Learned-critic and differentiable-simulator cases (`pgrad.lab.algorithms_pathwise`): linear(-Gaussian)
# policies on the LQR with γ 0.99 (the task's), discrete SAC on the tabular MDP. "exact" critics are refreshed
# to the current policy's value at every update (`ExactCritic`), except discrete SAC's (its table, set once).
_LQR = {"hidden_sizes": (), "gamma": 0.99}
_WINDOW = {**_LQR, "num_envs": 1024, "horizon": 2}  # one 2-step episode per window: the critic carries most
_AHAC = {**_WINDOW, "horizon_min": 2, "horizon_max": 2}  # H pinned: no contacts on the LQR, H would just grow
_SAPO = {**_WINDOW, "alpha_lr": 0.0}  # α fixed at 0.1: one objective
# 64 envs × 32 vector steps from a synchronised reset, then one actor step on a batch of 2048 (TD3 and CrossQ
# update their actor every 2nd / 3rd critic step: as many gradient steps per iteration)
_REPLAY = {
    **_LQR,
    "num_envs": 64,
    "train_freq": 32,
    "batch_size": 2048,
    "learning_starts": 0,
    "buffer_size": 16384,
}
_DDPG = {**_REPLAY, "noise_std": LQR_SIGMA / LQR_BOUND}  # exploration σ = 0.5 in action units
_TD3 = {**_DDPG, "gradient_steps": 2}
_SAC = {**_REPLAY, "alpha": 0.2}  # α fixed: one objective
_CROSSQ = {**_SAC, "gradient_steps": 3}
_DISCRETE = {
    "num_envs": 64,
    "train_freq": 256,
    "batch_size": 15360,
    "learning_starts": 0,
    "buffer_size": 98304,
}


def _pair(label: str, options: dict[str, Any], compared: str, **fields: Any) -> tuple[AlgorithmCase, ...]:
    """A fresh-critic row and its exact-critic twin."""
    fresh = AlgorithmCase(label, label, options, compared=f"{compared}, fresh critic", **fields)
    exact = AlgorithmCase(
        f"{label} (exact critic)",
        label,
        options,
        critic="exact",
        compared=f"{compared}, exact critic",
        **fields,
    )
    return fresh, exact


PATHWISE_CASES: tuple[AlgorithmCase, ...] = (
    AlgorithmCase(
        "apg",
        "apg",
        {**_LQR, "num_envs": 256, "horizon": 32},
        critic="none",
        task="lqr",
        objective="J_h",
        compared="grad: BPTT of the 32-step return vs ∇J₃₂",
    ),
    *_pair(
        "shac", _WINDOW, "grad: 2-step BPTT + γ²V̄(x₂) vs ∇J_win", task="lqr", objective="J_win", also="J_inf"
    ),
    *_pair(
        "ahac", _AHAC, "grad: as shac, min of twin V vs ∇J_win", task="lqr", objective="J_win", also="J_inf"
    ),
    *_pair(
        "sapo",
        _SAPO,
        "grad: soft 2-step return + γ²V̄ vs ∇J_win,α",
        task="lqr",
        objective="J_win",
        also="J_inf",
    ),
    *_pair("ddpg", _DDPG, "grad: ∇ₐQ·∇θμ on the replay vs ∇J", task="lqr", objective="J_inf", also="replay"),
    *_pair("td3", _TD3, "grad: ∇ₐQ₁·∇θμ (2nd update) vs ∇J", task="lqr", objective="J_inf", also="replay"),
    *_pair("sac", _SAC, "grad: ∇θ[min Q − α log π] vs ∇J_α", task="lqr", objective="J_inf", also="replay"),
    *_pair(
        "crossq", _CROSSQ, "grad: as sac (3rd update) vs ∇J_α", task="lqr", objective="J_inf", also="replay"
    ),
    *_pair("sac_discrete", _DISCRETE, "grad: Σₐ∇π(Q − α log π) vs ∇J_α"),
)

CASES: tuple[AlgorithmCase, ...] = (
    AlgorithmCase("reinforce", "reinforce", _EPISODES, compared="grad: reward-to-go − fresh V(s), vs ∇J"),
    AlgorithmCase(
        "vpg", "vpg", {"num_envs": 64, "steps_per_epoch": 16384}, compared="grad: GAE(0.97), fresh V, vs ∇J"
    ),
    AlgorithmCase(
        "vpg (exact V)",
        "vpg",
        {"num_envs": 64, "steps_per_epoch": 16384},
        critic="exact",
        compared="grad: GAE(0.97), V = V^π, vs ∇J",
    ),
    AlgorithmCase("a2c", "a2c", _SHORT, compared="grad: 5-step returns, fresh V, vs ∇J"),
    AlgorithmCase(
        "a2c (exact V)",
        "a2c",
        _SHORT,
        critic="exact",
        compared="grad: 5-step returns, V = V^π, vs ∇J",
        first_rollout=True,
    ),
    AlgorithmCase("ppo", "ppo", _STEPS, compared="first minibatch grad (ratio 1), fresh V, vs ∇J"),
    AlgorithmCase(
        "ppo (exact V)", "ppo", _STEPS, critic="exact", compared="first minibatch grad, V = V^π, vs ∇J"
    ),
    AlgorithmCase(
        "ppo (whole update)",
        "ppo",
        _STEPS,
        direction="update",
        compared="θ change of 10 epochs × 4 minibatches (Adam) vs ∇J(θ_old)",
    ),
    AlgorithmCase("npg", "npg", _NATURAL, direction="natural", compared="step (λ 0.01), fresh V, vs F⁺∇J"),
    AlgorithmCase(
        "npg (default damping)",
        "npg",
        _STEPS,
        direction="natural",
        compared="step (λ 0.1, the default), fresh V, vs F⁺∇J",
    ),
    AlgorithmCase(
        "npg (exact V)",
        "npg",
        _NATURAL,
        direction="natural",
        critic="exact",
        compared="step (λ 0.01), V = V^π, vs F⁺∇J",
    ),
    AlgorithmCase(
        "trpo",
        "trpo",
        _NATURAL,
        direction="natural",
        compared="line-searched step (λ 0.01), fresh V, vs F⁺∇J",
    ),
    AlgorithmCase(
        "grpo", "grpo", _GROUPS, critic="none", compared="first minibatch grad (ratio 1, KL grad 0) vs ∇J"
    ),
    AlgorithmCase(
        "grpo (dr_grpo)",
        "grpo",
        {**_GROUPS, "dr_grpo": True},
        critic="none",
        compared="as grpo, without std division and length normalisation",
    ),
    AlgorithmCase("rloo", "rloo", _GROUPS, critic="none", compared="first minibatch grad (ratio 1) vs ∇J"),
    AlgorithmCase(
        "is_pg",
        "is_pg",
        _EPISODES,
        off_policy=True,
        compared="grad on π_b's batch (per-decision ρ) vs ∇J(θ₀)",
    ),
    *PATHWISE_CASES,
)


def build_algorithm(case: AlgorithmCase, problem: LabProblem, seed: int) -> Algorithm:
    """The case's algorithm built as the Trainer builds it (seed every RNG, make the envs, then
    ``cls(config, envs, seed, device, budget)``), with its starting point set.

    Tabular cases (`tabular_vec_env(problem.mdp)`): the policy set to θ₀, the critic to the exact V^π(θ₀) for
    ``critic="exact"`` (discrete SAC: its Q table to the soft Q_α), the behaviour copy to θ_b for
    ``off_policy``. LQR cases (`LQRTask.vec_env`): the policy set to u = −K₀x + σε and, for
    ``critic="exact"``, every critic replaced by an `ExactCritic` of the current policy."""
    cls = get_algorithm(case.algorithm)
    if case.task == "lqr":
        return _build_lqr_algorithm(case, cls, _lqr(problem), seed)
    config = cls.Config(**{**_TABULAR, **case.options})
    seed_everything(seed)
    envs = tabular_vec_env(problem.mdp, config.num_envs)
    algo = cls(config, envs, seed, torch.device("cpu"), 10**12)  # a budget no schedule notices
    set_policy_table(algo.policy, problem.theta)
    if case.critic == "exact":
        probs = torch.softmax(problem.theta, -1)
        if hasattr(algo, "log_alpha"):  # discrete SAC: the soft Q of θ₀ in both members and the target
            Q = soft_values(problem.mdp, probs, _alpha(algo))[1]
            for critic in (algo.critic, algo.critic_target):
                set_q_table(critic, Q)
        else:
            V = policy_evaluation(problem.mdp, probs).V
            set_value_table(algo.value if hasattr(algo, "value") else algo.critic, V)
    if case.off_policy:
        set_policy_table(algo.behaviour, problem.behaviour_theta)
    return algo


def _lqr(problem: LabProblem) -> LQRTask:
    if problem.lqr is None:
        raise ConfigError("lab algorithms: this problem has no LQR task (build it with lab_problem(seed))")
    return problem.lqr


def _alpha(algo: Algorithm) -> float:
    """The algorithm's entropy temperature α (0 without one)."""
    log_alpha = getattr(algo, "log_alpha", None)
    return 0.0 if log_alpha is None else float(log_alpha.detach().exp())


def _build_lqr_algorithm(case: AlgorithmCase, cls: type, task: LQRTask, seed: int) -> Algorithm:
    config = cls.Config(**case.options)
    if config.gamma != task.problem.gamma:
        raise ConfigError(
            f"lab algorithms: {case.label} has γ = {config.gamma}, the LQR task {task.problem.gamma}"
        )
    seed_everything(seed)
    if getattr(cls, "differentiable", False):
        # the window is the episode; APG's deterministic head is exactly linear when the box is unbounded
        bounded = getattr(config, "policy", "tanh_gaussian") != "deterministic"
        envs = task.vec_env(config.num_envs, config.horizon, bounded=bounded)
    else:
        envs = task.vec_env(config.num_envs, 1000)  # no time-limit reset within the first updates
    algo = cls(config, envs, seed, torch.device("cpu"), 10**12)
    set_linear_policy(algo.policy, task.gain, task.sigma)
    if case.critic == "exact":
        install_exact_critic(algo, task)
    return algo


@contextmanager
def record_steps(policy: Policy) -> Iterator[list[tuple[Tensor, Tensor]]]:
    """Record (flat parameters, ascent direction −.grad) of ``policy``, float64, at every step of any
    optimiser that holds its parameters (a global optimiser step pre-hook: the gradient the optimiser is
    handed, after the algorithm's clipping)."""
    params = list(policy.parameters())
    ids = {id(p) for p in params}
    steps: list[tuple[Tensor, Tensor]] = []

    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if any(id(p) in ids for group in optimizer.param_groups for p in group["params"]):
            grads = [torch.zeros_like(p) if p.grad is None else -p.grad for p in params]
            steps.append((flat_params(params).double(), flat_params(grads).double()))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        yield steps
    finally:
        handle.remove()


def _iterate(case: AlgorithmCase, algo: Algorithm, index: int) -> tuple[Policy, Tensor]:
    """Run iteration ``index`` (exact critics refreshed first); (a copy of the policy at its start, the case's
    direction)."""
    refresh_exact_critics(algo)
    start = copy.deepcopy(algo.policy)
    before = flat_params(start.parameters()).double()
    with record_steps(algo.policy) as steps:
        algo.iteration(index)
    if case.direction == "step":
        if not steps:
            raise ConfigError(f"lab algorithms: {case.label} took no optimiser step on its policy")
        return start, steps[0][1]
    return start, flat_params(algo.policy.parameters()).double() - before


def first_direction(case: AlgorithmCase, problem: LabProblem, seed: int) -> tuple[Tensor, int]:
    """The direction of the case's first update in a run with seed ``seed`` (flat, float64) and the env
    steps that update took."""
    algo = build_algorithm(case, problem, seed)
    try:
        direction = _iterate(case, algo, 1 if case.off_policy else 0)[1]
        return direction, algo.envs.global_step
    finally:
        algo.envs.close()


def update_directions(
    case: AlgorithmCase, problem: LabProblem, seed: int, updates: int
) -> list[tuple[Policy, Tensor]]:
    """(a copy of the policy at its start, direction) of each of the first ``updates`` iterations of one
    run."""
    algo = build_algorithm(case, problem, seed)
    first = 1 if case.off_policy else 0
    try:
        return [_iterate(case, algo, first + i) for i in range(updates)]
    finally:
        algo.envs.close()


def _exploration(algo: Algorithm, policy: Policy, task: LQRTask) -> LinearPolicy:
    """The linear policy that collects an off-policy algorithm's data: the policy's own σ, or for a
    deterministic one the exploration noise σ = noise_std · half-width (DDPG, TD3)."""
    explore = linear_policy(policy_twin(policy)[0])
    if not bool(explore.sigma.any()):
        explore = explore._replace(sigma=algo.config.noise_std * task.bound * torch.ones_like(explore.sigma))
    return explore


def exact_direction(
    case: AlgorithmCase,
    problem: LabProblem,
    algo: Algorithm,
    policy: Policy | None = None,
    objective: str | None = None,
    history: Sequence[Policy] = (),
) -> tuple[Tensor, Tensor | None]:
    """(the exact direction, the row-space projector or None) of ``policy`` (default: ``algo.policy``) for
    the case's algorithm ``algo``: ∇J (∇J_α with a temperature), F⁺∇J and F⁺F for natural cases, and for
    LQR cases the gradient of the case's ``objective`` (or the one given) in the policy's parameters. The
    "replay" objective weights states as the replay filled by the policies ``history`` (default: the
    policy alone), each acting for `train_freq` vector steps, holds them."""
    policy = algo.policy if policy is None else policy
    if case.task == "lqr":
        objective = objective or case.objective
        task, start = _lqr(problem), None
        if objective == "replay":
            explorers = [_exploration(algo, p, task) for p in (history or [policy])]
            start = replay_moment(task.problem, explorers, algo.config.train_freq)
        horizon = getattr(algo.config, "horizon", 1)
        return lqr_policy_gradient(objective, task, policy, horizon, _alpha(algo), start), None
    if case.natural:
        natural, projector, _ = exact_natural_gradient(problem.mdp, policy)
        return natural, projector
    if hasattr(algo, "log_alpha"):
        return exact_soft_gradient(problem.mdp, policy, _alpha(algo)), None
    return exact_policy_gradient(problem.mdp, policy), None


def cosine(x: Tensor, y: Tensor) -> float:
    """x·y / (‖x‖‖y‖); 0 when either is 0."""
    norm = float(x.norm() * y.norm())
    return float(x @ y) / norm if norm > 0 else 0.0


@dataclass
class DirectionStats:
    """M directions against an exact one: cosines, the relative bias of the direction and its interval."""

    cosine: float  # mean over m of cos(ĝₘ, g)
    mean_cosine: float  # cos(ḡ, g)
    scale: float  # c = ḡ·g / ‖g‖²
    bias: float  # ‖ḡ − c g‖ / ‖c g‖ (inf when c <= 0)
    bias_low: float
    bias_high: float
    bias_p: float
    noise: float  # tr Cov ĝ / ‖ḡ‖²


def direction_stats(directions: Tensor, exact: Tensor) -> DirectionStats:
    """`DirectionStats` of directions [M, P] against ``exact`` [P]: the bias, its 99% interval and p-value
    are `pgrad.lab.measure.gradient_statistics` against c·g with c = ḡ·g / ‖g‖² (directions are compared,
    not scales); c <= 0 (the mean points away) gives an infinite bias."""
    mean = directions.mean(0)
    scale = float(mean @ exact) / float(exact @ exact)
    cosines = [cosine(d, exact) for d in directions]
    tr_cov = float((directions - mean).square().sum()) / (len(directions) - 1)
    noise = tr_cov / max(float(mean.square().sum()), 1e-300)
    if scale <= 0:
        bias, low, high, p = math.inf, math.inf, math.inf, 0.0
    else:
        stats = gradient_statistics(directions, scale * exact)
        bias, low, high, p = stats["relative_bias"], stats["bias_low"], stats["bias_high"], stats["bias_p"]
    return DirectionStats(sum(cosines) / len(cosines), cosine(mean, exact), scale, bias, low, high, p, noise)


@dataclass
class CaseResult:
    """What one case measured: the first-update `DirectionStats`, the k-update cosines, cost and notes."""

    case: AlgorithmCase
    estimates: int
    steps: float  # env steps per first update
    first: DirectionStats
    update_cosines: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    also: DirectionStats | None = None  # the first-update directions against the case's second reference
    also_cosines: list[float] = field(default_factory=list)  # the k-update cosines against it

    @property
    def verdict(self) -> str:
        """ "aligned" when the single first-update directions and their mean have cosine ≥ 0.9 with the
        exact one; then whether the bias test found a bias of the direction (its 99% bound either way)."""
        first = self.first
        if first.scale <= 0:
            return "points away"
        aligned = "aligned" if min(first.cosine, first.mean_cosine) >= 0.9 else "NOT aligned"
        if first.bias_low > 0:
            return f"{aligned}; biased (≥ {first.bias_low:.2f})"
        return f"{aligned}; no bias found (≤ {first.bias_high:.2f})"


def run_case(
    case: AlgorithmCase, problem: LabProblem | None = None, estimates: int = 10, updates: int = 5
) -> CaseResult:
    """M = ``estimates`` first-update directions from M runs (seeds drawn by `pgrad.lab.measure`'s
    generator) against the exact direction, and the cosines of the first ``updates`` updates of the run
    with seed 0 (the exact direction recomputed at the θ each starts from)."""
    if estimates < 2:
        raise ConfigError(f"lab algorithms: need at least 2 seeds per algorithm, got {estimates}")
    problem = problem or lab_problem()
    start = time.perf_counter()
    template = build_algorithm(case, problem, 0)
    template.envs.close()
    exact, projector = exact_direction(case, problem, template)

    def estimator(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        seed = int(torch.randint(2**31 - 1, (), generator=gen))
        direction, steps = first_direction(case, problem, seed)
        return (direction if projector is None else projector @ direction), float(steps)

    directions, steps, _ = draw_estimates(estimator, 0, estimates, seed=problem.seed)
    result = CaseResult(case, estimates, steps, direction_stats(directions, exact))
    runs = update_directions(case, problem, 0, updates) if updates > 0 else []
    for i, (policy, direction) in enumerate(runs):
        try:
            target, proj = exact_direction(case, problem, template, policy)
            result.update_cosines.append(cosine(direction if proj is None else proj @ direction, target))
            if case.also:  # the replay then holds what the policies of updates 0 … i collected
                history = [p for p, _ in runs[: i + 1]]
                other = exact_direction(case, problem, template, policy, case.also, history)[0]
                result.also_cosines.append(cosine(direction, other))
        except ConfigError:  # e.g. an LQR gain that no longer stabilises: no exact direction to compare with
            result.update_cosines += [math.nan] * (len(result.update_cosines) == i)
            result.also_cosines += [math.nan] * (bool(case.also) and len(result.also_cosines) == i)
    if case.first_rollout:
        probs = torch.softmax(problem.theta, -1)
        weights = rollout_state_weights(problem.mdp, probs, template.config.num_steps)
        other = direction_stats(directions, weighted_policy_gradient(problem.mdp, template.policy, weights))
        result.notes.append(
            f"{case.label}: against the exact gradient with the state weights of a first rollout of "
            f"{template.config.num_steps} steps after the synchronised reset, {_summary(other)}"
        )
    if case.also:
        other = direction_stats(directions, exact_direction(case, problem, template, objective=case.also)[0])
        result.also = other
        if case.also == "J_inf":
            what = "against ∇J_∞ (the full discounted objective, not cut at the window)"
        else:
            what = (
                "against the exact actor-loss gradient under the states the replay holds (at the first "
                f"update the {template.config.train_freq} vector steps after the synchronised reset, then "
                f"{template.config.train_freq} more per update)"
            )
        cosines = result.also_cosines
        ks = f"; first {len(cosines)} updates {' '.join(f'{c:.2f}' for c in cosines)}" if runs else ""
        result.notes.append(f"{case.label}: {what}, {_summary(other)}{ks}")
    result.seconds = time.perf_counter() - start
    return result


def _summary(stats: DirectionStats) -> str:
    return (
        f"cos(ḡ, g) = {stats.mean_cosine:.3f}, rel. bias {stats.bias:.3f} [{stats.bias_low:.3f}, "
        f"{stats.bias_high:.3f}], p = {stats.bias_p:.2g}"
    )


def run_algorithms(
    estimates: int = 10,
    updates: int = 5,
    cases: Sequence[AlgorithmCase] = CASES,
    problem_seed: int = 0,
    progress: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every case on `lab_problem(problem_seed)` (see `run_case`); ``progress`` sees each result."""
    problem = lab_problem(problem_seed)
    results = []
    for case in cases:
        results.append(run_case(case, problem, estimates, updates))
        if progress is not None:
            progress(results[-1])
    return results


COLUMNS = (
    ("label", "algorithm", "{}"),
    ("compared", "what is compared", "{}"),
    ("steps", "env steps", "{:.0f}"),
    ("cosine", "cos, first update", "{:.3f}"),
    ("mean_cosine", "cos of the mean", "{:.3f}"),
    ("bias", "rel. bias of the direction [99%]", "{}"),
    ("noise", "noise", "{:.3g}"),
    ("updates", "cos, first k updates", "{}"),
    ("verdict", "verdict", "{}"),
)


def algorithms_table(results: Sequence[CaseResult]) -> str:
    """The markdown table of `COLUMNS`, one row per case (noise: tr Cov ĝ / ‖ḡ‖²)."""
    rows = []
    for r in results:
        first = r.first
        bias = (
            f"{first.bias:.3f} [{first.bias_low:.3f}, {first.bias_high:.3f}]"
            if first.scale > 0
            else "points away"
        )
        rows.append(
            {
                "label": r.case.label,
                "compared": r.case.compared,
                "steps": r.steps,
                "cosine": first.cosine,
                "mean_cosine": first.mean_cosine,
                "bias": bias,
                "noise": first.noise,
                "updates": " ".join(f"{c:.2f}" for c in r.update_cosines),
                "verdict": r.verdict,
            }
        )
    return format_table(rows, COLUMNS)


_READING = """\
What can make a row differ from the exact direction, and which rows show it:

- **A fresh critic.** GAE(λ < 1) and n-step returns bootstrap through V; with a wrong V their expectation
  given (s, a) is not Q(s, a) − V(s). Compare each "fresh V" row with its "exact V" row; the k-update cosines
  show the next updates, once the algorithm has begun to fit its critic (A2C: one critic step per update,
  VPG 80, NPG/TRPO 10–20 epochs).
- **Which states the batch holds.** A2C's first rollout is the first 5 steps after all sub-envs reset
  together, so early-episode states are over-represented relative to d(s). The note under the table holds
  the "a2c (exact V)" directions against the exact gradient with those first-rollout state weights
  (`rollout_state_weights`, `weighted_policy_gradient`). Long rollouts (VPG, PPO, NPG, TRPO: 256 steps per
  sub-env) and whole episodes (REINFORCE, IS-PG, GRPO, RLOO) weight states by d(s).
- **GRPO's objective.** Dividing each group's advantages by the group's std and each episode's step sum by
  its length |o_i| reweights start states and episodes, so GRPO's expected step is not along ∇J (Liu et al.
  2025); Dr. GRPO (`--dr-grpo`) removes both and RLOO uses neither. Their env-step count is every step
  of the 4096 sub-envs until the longest of their episodes ends; ≈ 17 000 of them are in the batch.
- **Damping.** NPG/TRPO solve (F̂ + λI)x = ĝ; with the default λ = 0.1, of the size of this small Fisher's
  eigenvalues, the step leans towards the plain gradient (the "default damping" row); the other natural
  rows use λ = 0.01.
- **The optimiser.** PPO's whole update is 40 Adam steps, whose first steps are ≈ lr·sign(g) per parameter,
  on a surrogate that drifts from θ_old: its direction is not a gradient direction and is shown for what it
  is.

The learned-critic and differentiable-simulator rows:

- **A fresh critic.** The actor gradient of DDPG, TD3, SAC and CrossQ is ∇ₐQ_φ(s, a) ∇θa: through an
  untrained critic it is unrelated to ∇J (DDPG, TD3: cos ≈ 0; SAC, CrossQ with its 256×256 batch-normalised
  critic, discrete SAC: the mean points away), and one critic step per update does not change that within
  the first updates. SHAC, AHAC and SAPO run 2-step windows, each one episode from a fresh start closed by
  γ²V̄(x₂), so the bootstrap carries most of the return's dependence on θ: an untrained (linear) V̄ leaves
  the myopic 2-step gradient, which points away from the window objective. With the exact critic every one
  of them is aligned and, against the objective it estimates, no bias is found.
- **Which states the replay holds.** The off-policy actor loss averages over replay states, so with the
  exact Q its expectation is the policy gradient under the replay's state distribution, not under the
  discounted visitation of ∇J. The first replay is the 32 steps after a synchronised reset: cos 0.97–0.99
  with ∇J (a bias of the direction is found), while against the gradient under those states (the notes) no
  bias is found, and over the next updates the cosines with it stay at 0.99–1.00 (DDPG, TD3; SAC and
  CrossQ, noisier: 0.90–0.98). DDPG's and TD3's k-update cosines with ∇J drop to 0.6–0.8 once the action
  offset b leaves 0 (their first Adam step at 1e-3 moves it): ∇J weights a constant offset by its cost over
  the 1/(1 − γ) = 100-step horizon, the replay (64–192 steps from a reset) sees its first steps only; each
  parameter block still points the right way (DDPG: weights 0.88–0.92, offset 0.92–1.00), their
  proportions differ.
- **The window.** With the exact critic the windowed methods are unbiased for the window objective: the
  policy-gradient theorem cut at h = 2 (the bootstrap holds the policy fixed beyond the window). Against
  ∇J_∞ (the notes) their first updates have cos ≈ 0.88: each window here is one 2-step episode, so the
  later actions' contributions, which later windows of a long episode would bring, are never seen.
- **Entropy.** SAC, CrossQ (α = 0.2), SAPO (α = 0.1) and discrete SAC (α = 0.05) are compared with the
  entropy-regularised objective at their fixed α; the entropy term moves only the log-std parameters (the
  log-probabilities of discrete SAC) and is a small part of the direction.
- **The squash.** The continuous policies other than APG's are squashed into a ±20 box, a = 20 tanh(v);
  their pre-squash values v (mean and noise) have standard deviation ≈ 0.03, where tanh(v) = v(1 − v²/3 + …)
  is linear to ~3·10⁻⁴ (0.3% at three standard deviations), and the lab reads them as linear. APG's
  unbounded deterministic head is exactly linear.

How large a bias is depends on the problem (`--problem-seed`: the MDP, θ₀ and the LQR system): on problem
seed 3, for instance, default GRPO's first update has cosine 0.94 with ∇J.

The same direction test catches broken variants (tests/lab/test_lab_algorithms.py, on problem seed 3, each
bug injected by monkeypatching the shared function or method an algorithm calls; cosine of one first
update, threshold 0.9): a sign flip of the advantage in every score-function algorithm (cosine ≈ −0.99),
IS-PG without its importance ratios (0.63), an action-dependent baseline (REINFORCE minus r(s_t, a_t):
−0.07; VPG, PPO, NPG minus Q(s_t, a_t): −0.80, −0.26, −0.15), NPG/TRPO with the identity for the Fisher
matrix (0.65, 0.65), a detached action at the critic's input (DDPG, TD3: no actor gradient at all, autograd
raises; SAC −0.66, CrossQ 0.15), a sign flip of SAC's and CrossQ's actor loss (−0.99, −0.99), SHAC, AHAC and
SAPO bootstrapping from the reset observation instead of the final one (−0.76, −0.73, −0.73), and APG and
SHAC with the state detached between steps (−0.90, −0.92). Two bugs it does not see here: a sign flip of
SAC's entropy term (cos 0.994: on this LQR the entropy term is well under 1% of the actor gradient) and a
missing γʰ on SHAC's bootstrap (γ² = 0.98 rescales the bootstrap by 2%: cos 0.999999).
"""


def algorithms_report(
    results: Sequence[CaseResult],
    seconds: float,
    command: str = "pgrad lab algorithms",
    problem_seed: int = 0,
) -> str:
    """The markdown page of ``pgrad lab algorithms``: set-up, the table, notes and how to read it."""
    problem = lab_problem(problem_seed)
    estimates = results[0].estimates if results else 0
    lines = [
        "# The algorithms' own updates against the exact gradient",
        "",
        f"`{command}` ({seconds:.0f} s on one thread; modules `pgrad.lab.algorithms` and "
        "`pgrad.lab.algorithms_pathwise`, whose docstrings have the details). Each algorithm's real "
        "`iteration` runs, built as the Trainer builds it. The score-function algorithms and discrete SAC "
        "run "
        f"on `{problem.mdp.name}`: a random 5-state, 3-action MDP whose episodes end with probability "
        "0.15–0.35 per step, no time limit, γ = 1 in every algorithm, so every estimator targets the same "
        "J = E[Σ r_t] and its exact ∇J (`pgrad.lab.exact`; discrete SAC: the entropy-regularised J_α). The "
        "policy is a tabular softmax (`hidden_sizes=()`: one-hot states into a linear categorical head), "
        "started from the same random table θ₀ in every run.",
        "",
        "The learned-critic and differentiable-simulator algorithms run on pgrad's differentiable LQR "
        f"(`DiffLQR.random(4, 2, seed={problem_seed}, spectral_radius=0.95)`, Q = I, R = I, x₀ ~ N(0, I), "
        "γ = 0.99) with a linear(-Gaussian) policy u = −Kx + b + σε (`hidden_sizes=()`), started from half "
        "the optimal gain, b = 0 and σ = 0.5, and are held against the exact gradient, in their own "
        'parameters, of the objective each estimates ("what is compared"): ∇J₃₂ of APG\'s 32-step return; '
        "∇J_win of the 2-step window return closed by γ²V^π (SHAC, AHAC, SAPO; SAPO's with its entropy "
        "bonus); ∇J of the discounted return (DDPG, TD3) or of the entropy-regularised one, ∇J_α (SAC, "
        "CrossQ). `hidden_sizes=()` makes the algorithms' own critics linear too, unable to hold a quadratic "
        'value, so the "exact critic" rows replace the critic by the exact V^π or Q^π of the current policy, '
        "recomputed at every update (`ExactCritic`: the algorithm's critic steps leave it exact); discrete "
        "SAC's tabular critic is set to the exact soft Q once and learns from there.",
        "",
        f"Columns: **cos, first update**: mean cosine of the {estimates} single first-update directions (one "
        "run seed each, at the env steps shown) with the exact direction; **cos of the mean**: of their mean "
        "ḡ; **rel. bias of the direction**: ‖ḡ − c g‖ / ‖c g‖ with c = ḡ·g / ‖g‖² (the tangent of the angle "
        "between ḡ and g; the updates have their own scales) and its 99% interval from `pgrad.lab.measure`; "
        "**noise**: tr Cov ĝ / ‖ḡ‖²; **cos, first k updates**: one run's first updates, the exact direction "
        "recomputed at each θ; **verdict**: aligned when both cosines are ≥ 0.9, and whether a bias of the "
        "direction was found. The natural rows (NPG, TRPO) hold the step, projected on the row space of the "
        "exact Fisher matrix, against F⁺∇J.",
        "",
        algorithms_table(results),
        "",
    ]
    notes = [note for r in results for note in r.notes]
    if notes:
        lines += ["Notes:", "", *[f"- {note}" for note in notes], ""]
    lines += [_READING]
    return "\n".join(lines)
