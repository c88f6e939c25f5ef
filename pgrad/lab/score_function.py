"""Score-function estimators on a tabular MDP, measured against the exact finite-horizon gradient.

Problem: a seeded random MDP (or FrozenLake's exact model), a tabular softmax policy πθ(a|s) ∝ exp θ[s, a],
the finite-horizon objective J(θ) = E[Σ_{t<H} γᵗ r_t] (undiscounted, γ = 1, unless asked), and its exact
gradient by backward induction (`pgrad.lab.exact.tabular_finite_horizon`). Each estimate draws B episodes,
forms the weights Ψ_t with pgrad's own estimator functions (the ones the algorithms use) and returns

    ĝ = 1/B Σ_episodes Σ_t ∇θ log πθ(a_t|s_t) Ψ_t,    ∇θ[s, ·] log πθ(a|s) = e_a − πθ(·|s)

(the softmax score in closed form, accumulated with index_add: the same estimate autograd would give, without
a backward pass per estimate). Ψ options: whole-episode return (naive PG), reward-to-go, minus a baseline
(batch mean, per-time-step mean, the optimal per-parameter constant, V with controllable error), GAE(λ) with
a critic of controllable error, and per-decision importance weights for episodes of another policy. With
γ < 1, `discount_weighting` multiplies Ψ_t by γᵗ (`pgrad.estimators.discount_weights`): the exact gradient
is ∇J = E[Σ_t γᵗ ∇ log π(a_t|s_t) Q_t(s_t, a_t)], and without the factor the estimator's mean is
Σ_t Σ_s d_t(s) Σ_a ∇π(a|s) Q_t(s, a) (`gamma_free_mean`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pgrad.envs.tabular import TabularMDP, frozen_lake, random_mdp
from pgrad.envs.tabular_batch import TabularEpisodes, sample_episodes
from pgrad.estimators import (
    discount_weights,
    gae,
    importance_weighted_advantages,
    mean_baseline,
    optimal_baseline,
    per_decision_weights,
    per_step_mean_baseline,
    reward_to_go,
    total_return,
)
from pgrad.lab.exact import softmax_policy, tabular_finite_horizon
from pgrad.lab.measure import Estimator


@dataclass
class TabularProblem:
    """An MDP, a softmax policy θ [S, A], a horizon H, and the exact J and ∇J (discount γ = mdp.gamma)."""

    name: str
    mdp: TabularMDP
    theta: Tensor
    horizon: int
    J: float
    exact: Tensor  # [S, A]
    V: Tensor  # [H + 1, S] exact values V_t(s), V_H = 0
    Q: Tensor  # [H, S, A]
    d: Tensor | None = None  # [H, S] Pr(s_t = s), undiscounted

    @property
    def probs(self) -> Tensor:
        return softmax_policy(self.theta)


def make_problem(
    kind: str = "random", horizon: int = 10, seed: int = 0, theta_scale: float = 0.5, gamma: float = 1.0
) -> TabularProblem:
    """`random`: a 6-state, 3-action random MDP; `frozenlake`: FrozenLake 4x4 (slippery) from Gymnasium.
    The same seed gives the same MDP and policy for every γ."""
    if kind == "random":
        mdp = random_mdp(6, 3, gamma=gamma, seed=seed)
    elif kind == "frozenlake":
        mdp = frozen_lake("4x4", is_slippery=True, gamma=gamma)
    else:
        raise ValueError(f"unknown tabular problem '{kind}' (random, frozenlake)")
    gen = torch.Generator().manual_seed(seed + 1)
    theta = theta_scale * torch.randn(mdp.P.shape[0], mdp.P.shape[1], generator=gen, dtype=torch.float64)
    solution = tabular_finite_horizon(mdp, theta, horizon)
    return TabularProblem(
        kind,
        mdp,
        theta,
        horizon,
        float(solution.J),
        solution.grad.detach(),
        solution.V.detach(),
        solution.Q.detach(),
        solution.d.detach(),
    )


def gamma_free_mean(problem: TabularProblem) -> Tensor:
    """E[Σ_t ∇ log π(a_t|s_t) G_t] without the γᵗ factor, flat [S·A]:
    Σ_t Σ_s d_t(s) π(a|s)(Q_t(s, a) − V_t(s)) (the exact gradient has γᵗ in the sum; at γ = 1 they agree)."""
    if problem.d is None:
        raise ValueError(f"gamma_free_mean: problem '{problem.name}' has no state distribution d")
    H = problem.horizon
    probs = problem.probs
    per_step = problem.d[..., None] * probs * (problem.Q - problem.V[:H, :, None])
    return per_step.sum(0).reshape(-1)


def score_gradient(
    problem: TabularProblem, episodes: TabularEpisodes, psi: Tensor, groups: int = 1
) -> Tensor:
    """ĝ = 1/B Σ Σ_t (e_{a_t} − π(·|s_t)) Ψ_t accumulated into row s_t, masked, as a flat [S·A] vector.

    With `groups` = M > 1 the N = M·B episode columns are M independent batches of B (columns j·B to
    j·B + B − 1 form batch j) and the result is [M, S·A], one estimate per batch."""
    S, A = problem.theta.shape
    probs = problem.probs
    m = episodes.mask
    batch = m.shape[1] // groups
    group = torch.arange(m.shape[1]).expand_as(m)[m] // batch
    s, a, w = episodes.states[m], episodes.actions[m], psi[m].to(probs.dtype)
    score = torch.nn.functional.one_hot(a, A).to(probs.dtype) - probs[s]
    grad = torch.zeros(groups * S, A, dtype=probs.dtype).index_add_(0, group * S + s, score * w[:, None])
    grad = (grad / batch).reshape(groups, S * A)
    return grad if groups > 1 else grad[0]


def per_episode_scores(
    problem: TabularProblem, episodes: TabularEpisodes, psi: Tensor
) -> tuple[Tensor, Tensor]:
    """Per-episode S_i = Σ_t ∇ log π and W_i = Σ_t ∇ log π Ψ_t, both [B, S·A] (for the optimal baseline)."""
    S, A = problem.theta.shape
    probs = problem.probs
    m = episodes.mask
    column = torch.arange(m.shape[1]).expand_as(m)[m]
    s, a = episodes.states[m], episodes.actions[m]
    score = torch.nn.functional.one_hot(a, A).to(probs.dtype) - probs[s]
    index = column * S + s
    B = m.shape[1]
    scores = torch.zeros(B * S, A, dtype=probs.dtype).index_add_(0, index, score).reshape(B, S * A)
    weighted = torch.zeros(B * S, A, dtype=probs.dtype).index_add_(0, index, score * psi[m][:, None])
    return scores, weighted.reshape(B, S * A)


def value_error(problem: TabularProblem, scale: float, seed: int = 7) -> Tensor:
    """A fixed perturbation ξ [H + 1, S] of the exact values (zero at t = H), scaled by `scale`."""
    gen = torch.Generator().manual_seed(seed)
    xi = torch.randn(problem.V.shape, generator=gen, dtype=torch.float64)
    xi[-1] = 0.0
    return scale * xi


def step_index(mask: Tensor) -> Tensor:
    return torch.arange(mask.shape[0]).unsqueeze(1).expand_as(mask)


# -- estimators: (budget B episodes, generator) -> (flat gradient, env steps) --------------------------


def _in_groups(x: Tensor, groups: int) -> list[Tensor]:
    """The M = `groups` batches [T, B] of a time-major [T, M·B] tensor."""
    return list(x.reshape(x.shape[0], groups, -1).unbind(1))


def _batched(draw) -> Estimator:
    """An `Estimator` from draw(budget, estimates, gen) -> ([M, P] estimates, mean cost); the estimator
    keeps `draw` as its `batch` attribute so that `pgrad.lab.measure` can draw all M estimates at once."""

    def estimate(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        grads, cost = draw(budget, 1, gen)
        return grads[0], cost

    estimate.batch = draw  # type: ignore[attr-defined]
    return estimate


def estimator(problem: TabularProblem, kind: str, **options: float) -> Estimator:
    """A score-function estimator of ∇J for `problem`; see the module docstring for the kinds.

    Options: `constant` (kind total), `error` and `error_seed` (the critic's error ξ, kinds value_baseline
    and gae), `lam` (gae), `baseline` (optimal_baseline), `discount_weighting` (multiply Ψ_t by γᵗ; not for
    optimal_baseline). Returns are discounted with the problem's γ. M estimates are drawn as one sample of M·B
    episodes cut into M independent batches of B; baselines computed from a batch (batch mean, per-step mean)
    use that batch only."""
    kinds = ("total", "reward_to_go", "mean_baseline", "per_step_baseline", "value_baseline", "gae")
    if kind not in (*kinds, "optimal_baseline"):
        raise ValueError(f"unknown estimator kind '{kind}'")
    v_hat = problem.V + value_error(problem, options.get("error", 0.0), int(options.get("error_seed", 7)))
    gamma = problem.mdp.gamma
    weighting = bool(options.get("discount_weighting", False))
    if weighting and kind == "optimal_baseline":
        raise ValueError("discount_weighting does not apply to the optimal_baseline estimator")

    def draw(budget: int, estimates: int, gen: torch.Generator) -> tuple[Tensor, float]:
        ep = sample_episodes(problem.mdp, problem.probs, budget * estimates, problem.horizon, gen)
        steps = float(ep.mask.sum()) / estimates
        rtg = reward_to_go(ep.rewards, ep.terminated, ep.truncated, gamma)
        if kind == "total":
            psi = total_return(ep.rewards, ep.terminated, ep.truncated, gamma) - options.get("constant", 0.0)
        elif kind == "reward_to_go":
            psi = rtg
        elif kind == "mean_baseline":
            means = [
                mean_baseline(g, m)
                for g, m in zip(_in_groups(rtg, estimates), _in_groups(ep.mask, estimates), strict=True)
            ]
            psi = rtg - torch.stack(means).repeat_interleave(budget)
        elif kind == "per_step_baseline":
            steps_in = step_index(ep.mask)
            baselines = [
                per_step_mean_baseline(g, k, m)
                for g, k, m in zip(
                    _in_groups(rtg, estimates),
                    _in_groups(steps_in, estimates),
                    _in_groups(ep.mask, estimates),
                    strict=True,
                )
            ]
            psi = rtg - torch.stack(baselines, 1).reshape(rtg.shape)
        elif kind == "value_baseline":
            psi = rtg - v_hat[step_index(ep.mask), ep.states]
        elif kind == "gae":
            t = step_index(ep.mask)
            values = v_hat[t, ep.states]
            next_values = v_hat[(t + 1).clamp(max=problem.horizon), ep.next_states]
            psi, _ = gae(ep.rewards, values, next_values, ep.terminated, ep.truncated, gamma, options["lam"])
        else:  # optimal_baseline
            total = total_return(ep.rewards, ep.terminated, ep.truncated, gamma)
            S_i, W_i = per_episode_scores(problem, ep, total)
            grads = (W_i - options["baseline"] * S_i).reshape(estimates, budget, -1).mean(1)
            return grads, steps
        if weighting:  # every episode starts at row 0
            psi = psi * discount_weights(ep.terminated, ep.truncated, gamma, dtype=psi.dtype)[0]
        return score_gradient(problem, ep, psi, estimates).reshape(estimates, -1), steps

    return _batched(draw)


def optimal_constant_baseline(problem: TabularProblem, episodes: int = 50_000, seed: int = 123) -> Tensor:
    """b_k = E[S_k² G] / E[S_k²] for the naive (whole-return) estimator, from a large independent batch."""
    gen = torch.Generator().manual_seed(seed)
    ep = sample_episodes(problem.mdp, problem.probs, episodes, problem.horizon, gen)
    total = total_return(ep.rewards, ep.terminated, ep.truncated, problem.mdp.gamma)
    S_i, W_i = per_episode_scores(problem, ep, total)
    return optimal_baseline(S_i, W_i)


def off_policy_estimator(problem: TabularProblem, mismatch: float, seed: int = 11) -> Estimator:
    """Per-decision importance-sampled REINFORCE from episodes of π_b = softmax(θ + mismatch·ξ)."""
    gen0 = torch.Generator().manual_seed(seed)
    behaviour = softmax_policy(
        problem.theta + mismatch * torch.randn(problem.theta.shape, generator=gen0, dtype=torch.float64)
    )
    target = problem.probs

    def draw(budget: int, estimates: int, gen: torch.Generator) -> tuple[Tensor, float]:
        ep = sample_episodes(problem.mdp, behaviour, budget * estimates, problem.horizon, gen)
        log_ratio = torch.where(
            ep.mask, target[ep.states, ep.actions].log() - behaviour[ep.states, ep.actions].log(), 0.0
        )
        weights = per_decision_weights(log_ratio, ep.terminated, ep.truncated)
        psi = importance_weighted_advantages(
            weights, ep.rewards, ep.terminated, ep.truncated, problem.mdp.gamma
        )
        grads = score_gradient(problem, ep, psi, estimates).reshape(estimates, -1)
        return grads, float(ep.mask.sum()) / estimates

    return _batched(draw)
