r"""NPG/TRPO's natural gradient and PPO's clipped surrogate on a tabular softmax policy, against exact values.

**Natural gradient** (`natural_problem`): a seeded random MDP (S states, A actions, γ < 1), a softmax policy
πθ(a|s) ∝ exp θ[s, a], the exact ∇J and the exact Fisher matrix F under the normalised discounted state
distribution d̄ (`pgrad.lab.exact.tabular_fisher`), and the exact natural gradient x* = F⁺∇J. F is singular
along the per-state constant shifts of θ (they leave π unchanged) and ∇J is orthogonal to them, so every
comparison is made in the row space of F (`row_space`: the per-state mean over actions removed). NPG and TRPO
solve F x = g by `pgrad.estimators.conjugate_gradient` on Fisher-vector products by double backprop of the
mean KL (`pgrad.estimators.make_fisher_vector_product` with `mean_kl`): with the exact state weights d̄ the
product is F v exactly; with N states drawn from d̄ (NPG/TRPO's mean over the batch) it is an unbiased
estimate.

**PPO's epochs** (`ppo_epochs`): B episodes per estimate from π_old on a finite-horizon random MDP
(`pgrad.lab.score_function.make_problem`), the exact advantages A_t(s, a) = Q_t(s, a) − V_t(s) of π_old, and
for k = 1 … K one full-batch ascent step per epoch on PPO's clipped surrogate (`clipped_surrogate`):

    ĝ_k = −(steps per episode) · ∇θ L_clip(θ_k)   (the per-episode sum, comparable with ∇J)
    θ_{k+1} = θ_k + η ĝ_k,    η = step / ‖∇J(θ_old)‖

At k = 1 the ratio is 1 and ĝ_1 is the score-function estimate Σ_t ∇ log π(a_t|s_t) A_t: unbiased for
∇J(θ_old). Each later ĝ_k is compared with the exact gradient at the parameters it was taken at, ∇J(θ_k)
(`pgrad.lab.exact.tabular_finite_horizon_gradients`, one per estimate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pgrad.envs.tabular import TabularMDP, random_mdp
from pgrad.envs.tabular_batch import sample_episodes
from pgrad.lab.exact import softmax_policy, tabular_finite_horizon_gradients, tabular_fisher, tabular_values
from pgrad.lab.measure import Estimator
from pgrad.lab.score_function import TabularProblem

Solver = Callable[..., Tensor]  # conjugate_gradient(matvec, b, iterations=k) -> x
FvpFactory = Callable[..., Callable[[Tensor], Tensor]]  # make_fisher_vector_product(kl_fn, params)
Surrogate = Callable[..., tuple[Tensor, dict]]  # clipped_surrogate(log_prob, old_log_prob, adv, clip_coef)


# -- natural gradient ---------------------------------------------------------------------------------------


@dataclass
class NaturalProblem:
    """A random MDP, θ [S, A], the state weights d̄ [S], ∇J and F⁺∇J (flat, row space of F), F, A = Q − V."""

    mdp: TabularMDP
    theta: Tensor
    weights: Tensor
    gradient: Tensor
    natural: Tensor
    fisher: Tensor
    advantage: Tensor

    @property
    def probs(self) -> Tensor:
        return softmax_policy(self.theta)


def row_space(x: Tensor, shape: torch.Size) -> Tensor:
    """x (flat) with the per-state mean over actions removed: its projection onto the row space of F."""
    x = x.reshape(shape)
    return (x - x.mean(-1, keepdim=True)).reshape(-1)


def natural_problem(
    seed: int, num_states: int = 20, num_actions: int = 4, gamma: float = 0.9, theta_scale: float = 1.0
) -> NaturalProblem:
    """The problem of the module docstring; F⁺∇J by an eigendecomposition of F (relative cutoff 1e-12)."""
    mdp = random_mdp(num_states, num_actions, gamma=gamma, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    theta = theta_scale * torch.randn(num_states, num_actions, generator=gen, dtype=torch.float64)
    V, Q, d = tabular_values(mdp, theta)
    probs = softmax_policy(theta)
    gradient = (d[:, None] * probs * (Q - V[:, None])).reshape(-1)
    fisher = tabular_fisher(mdp, theta)
    natural = row_space(torch.linalg.pinv(fisher, hermitian=True, rtol=1e-12) @ gradient, theta.shape)
    return NaturalProblem(mdp, theta, d / d.sum(), gradient, natural, fisher, Q - V[:, None])


def mean_kl(
    problem: NaturalProblem, weights: Tensor | None = None
) -> tuple[Callable[[], Tensor], list[Tensor]]:
    """(kl_fn, [θ]) for `make_fisher_vector_product`: kl_fn() = Σ_s w(s) KL(π_old(·|s) ‖ π_θ(·|s)) with π_old
    the policy at problem.theta held fixed and θ a fresh leaf at the same values; w = d̄ (exact) or given (the
    empirical frequencies of sampled states: NPG/TRPO's mean over a batch)."""
    w = problem.weights if weights is None else weights
    theta = problem.theta.clone().requires_grad_(True)
    old = torch.log_softmax(problem.theta, -1)

    def kl() -> Tensor:
        new = torch.log_softmax(theta, -1)
        return (w * (old.exp() * (old - new)).sum(-1)).sum()

    return kl, [theta]


def cg_errors(
    problem: NaturalProblem, fvp: Callable[[Tensor], Tensor], iterations: Sequence[int], solver: Solver
) -> tuple[list[float], list[float]]:
    """Relative errors of `solver`(fvp, ∇J, iterations=k) against F⁺∇J for each k, in the row space of F:
    Euclidean ‖x_k − x*‖ / ‖x*‖ and in the F-norm ‖x_k − x*‖_F / ‖x*‖_F (‖v‖_F = √(vᵀFv), the norm CG
    minimises over its Krylov space)."""
    shape = problem.theta.shape
    x_star, F = problem.natural, problem.fisher
    f_norm = float((x_star @ F @ x_star).sqrt())
    euclid, fisher = [], []
    for k in iterations:
        error = row_space(solver(fvp, problem.gradient, iterations=k), shape) - x_star
        euclid.append(float(error.norm() / x_star.norm()))
        fisher.append(float((error @ F @ error).clamp_min(0).sqrt()) / f_norm)
    return euclid, fisher


def sampled_fvp_estimator(
    problem: NaturalProblem, vector: Tensor, kind: str, fvp_factory: FvpFactory, states: Tensor | None = None
) -> Estimator:
    """F v estimated from N = budget samples; the cost is N.

    kind "states": N states s ~ d̄ and the double-backprop product of the mean KL over them (NPG/TRPO's);
    kind "states_actions": N pairs s ~ d̄, a ~ π(·|s) and the score outer product 1/N Σ ψ (ψ·v),
    ψ = ∇θ log π(a|s) = e_a − π(·|s) in row s. `states` overrides the distribution states are drawn from."""
    if kind not in ("states", "states_actions"):
        raise ValueError(f"unknown Fisher-vector product estimator '{kind}' (states, states_actions)")
    S, A = problem.theta.shape
    probs = problem.probs
    state_probs = problem.weights if states is None else states
    v = vector.reshape(S, A)

    def one(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        s = torch.multinomial(state_probs, budget, replacement=True, generator=gen)
        if kind == "states":
            frequency = torch.bincount(s, minlength=S).to(probs.dtype) / budget
            kl, params = mean_kl(problem, frequency)
            return fvp_factory(kl, params)(vector), float(budget)
        a = torch.multinomial(probs[s], 1, generator=gen).squeeze(1)
        psi = torch.nn.functional.one_hot(a, A).to(probs.dtype) - probs[s]
        along = (psi * v[s]).sum(-1)
        out = torch.zeros(S, A, dtype=probs.dtype).index_add_(0, s, psi * along[:, None]) / budget
        return out.reshape(-1), float(budget)

    return one


# -- PPO's clipped surrogate over epochs --------------------------------------------------------------------


@dataclass
class PPOEpochs:
    """Per epoch k = 1 … K: the surrogate gradients ĝ_k [M, P], the exact ∇J(θ_k) [M, P] at the parameters
    each was taken at, and the mean clip fraction."""

    estimates: list[Tensor]
    exact: list[Tensor]
    clip_fraction: list[float]


def ppo_epochs(
    problem: TabularProblem,
    clip_coef: float,
    epochs: int,
    episodes: int,
    estimates: int,
    step: float,
    seed: int,
    surrogate: Surrogate,
) -> PPOEpochs:
    """The epochs of the module docstring for M = `estimates` independent batches of B = `episodes` episodes
    (all M at once: θ [M, S, A]); the same `seed` gives the same episodes for every clip_coef."""
    mdp, H = problem.mdp, problem.horizon
    S, A = problem.theta.shape
    M, B = int(estimates), int(episodes)
    gen = torch.Generator().manual_seed(seed)
    ep = sample_episodes(mdp, problem.probs, M * B, H, gen)
    # Estimate m owns episode columns m·B … m·B + B − 1; a random MDP has no terminal state: H steps each.
    s = ep.states.T.reshape(M, B * H)
    a = ep.actions.T.reshape(M, B * H)
    t = torch.arange(H).repeat(B).expand(M, -1)
    advantages = problem.Q[t, s, a] - problem.V[t, s]
    old_log_prob = torch.log_softmax(problem.theta, -1)[s, a]
    rows = torch.arange(M)[:, None]
    exact_old = problem.exact.reshape(-1)
    lr = step / float(exact_old.norm())
    theta = problem.theta.expand(M, S, A).clone()
    out = PPOEpochs([], [], [])
    for _ in range(epochs):
        theta.requires_grad_(True)
        log_prob = torch.log_softmax(theta, -1)[rows, s, a]
        loss, info = surrogate(log_prob, old_log_prob, advantages, clip_coef)
        (grad,) = torch.autograd.grad(loss, theta)
        # The loss is a mean over all M·B·H samples; estimate m's per-episode sum is −M·H × its block.
        g = -M * H * grad.detach()
        out.estimates.append(g.reshape(M, -1))
        out.exact.append(tabular_finite_horizon_gradients(mdp, theta.detach(), H).reshape(M, -1))
        out.clip_fraction.append(float(info["clip_fraction"]))
        theta = (theta.detach() + lr * g).detach()
    return out
