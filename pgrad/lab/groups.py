r"""GRPO, Dr. GRPO and RLOO's group baselines on an episodic MDP with a binary outcome: sampled, closed form.

Problem (`group_problem`): a seeded MDP with S live states and two terminal ones, *goal* (reward 1) and *fail*
(reward 0). Each live state ends the episode with its own probability q_end(s) ~ U(0.05, 0.9) per step, in
goal with share q_goal(s) ~ Beta(0.4, 0.4), else moves to a live state, so the start states range from
nearly hopeless to nearly certain (GRPO's questions of every difficulty) and episodes last from 1 to H steps
(the time limit; an episode cut there fails). The outcome R ∈ {0, 1} of an episode is whether it reached
goal, and J = Σ_{s₀} ρ(s₀) P(goal within H | s₀) with ρ uniform over the live states; the exact ∇J is
`pgrad.lab.exact.tabular_finite_horizon`'s (the expected reward R[s, a] = P(goal | s, a)).

Estimator (`group_estimates`): for every start s₀, groups of G episodes from s₀ (GRPO's G answers to one
question); each episode i gets the advantage Â_i of its group from pgrad's own functions
(`leave_one_out_advantages`, `group_relative_advantages` with or without the std) and

    ĝ = Σ_{s₀} ρ(s₀) mean_i  w_i Â_i Σ_t ∇ log π(a_t|s_t),      w_i = 1 / |o_i| (length-normalised) or 1

Closed form of its mean (`group_estimator_mean`). With binary outcomes, Â_i = f(R_i, K) where K ~ Bin(G − 1,
p = J(s₀)) counts the other episodes' successes and is independent of episode i, so with f₁ = E_K f(1, K),
f₀ = E_K f(0, K) (a sum over K = 0 … G − 1, each term the advantage function applied to one group):

    E[w_i Â_i S_i] = (f₁ − f₀) E[R S / L^λ] + f₀ E[S / L^λ]          (S = Σ_t ∇ log π, L = |o|, λ ∈ {0, 1})

and E[X · Σ_t ∇ log π(a_t|s_t)] = Σ_t Σ_s d_t(s) Σ_a π(a|s) ∇ log π(a|s) x_t(s, a) for X = R/L^λ or 1/L^λ,
where x_t(s, a) = E[X | s_t = s, a_t = a] comes from a backward induction over (t, s, a) (an episode that
ends at step t has L = t + 1; one cut by the time limit has L = H and R = 0). RLOO: f₁ − f₀ = 1, f₀ = −p, so
its mean is ∇J; Dr. GRPO (mean only): f₁ − f₀ = (G − 1)/G, so (G − 1)/G · ∇J; GRPO divides by the group's
std, a weight f₁ − f₀ that depends on p: questions of different difficulty are weighted differently (Liu et
al. 2025, "Understanding R1-Zero-Like Training", section 3.1); 1/|o_i| weights the score of each episode by
its length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from pgrad.envs.tabular import TabularMDP
from pgrad.envs.tabular_batch import sample_episodes
from pgrad.lab.exact import finite_horizon_evaluation, softmax_policy, tabular_finite_horizon

Advantage = Callable[[Tensor], Tensor]  # group rewards [..., G] -> advantages [..., G]


def goal_mdp(seed: int, num_states: int = 6, num_actions: int = 3) -> TabularMDP:
    """The episodic MDP of the module docstring: live states 0 … S − 1, goal = S, fail = S + 1."""
    rng = np.random.default_rng(seed)
    S, A, n = num_states, num_actions, num_states + 2
    ends = rng.uniform(0.05, 0.9, size=S)
    goal_share = rng.beta(0.4, 0.4, size=S)
    P = np.zeros((n, A, n))
    for s in range(S):
        for a in range(A):
            P[s, a, :S] = rng.dirichlet(np.ones(S)) * (1 - ends[s])
            P[s, a, S] = goal_share[s] * ends[s]
            P[s, a, S + 1] = (1 - goal_share[s]) * ends[s]
    P[S, :, S] = P[S + 1, :, S + 1] = 1.0
    R = np.zeros((n, A))
    R[:S] = P[:S, :, S]  # expected reward: the probability of entering goal
    rho = np.zeros(n)
    rho[:S] = 1.0 / S
    terminal = np.zeros(n, dtype=bool)
    terminal[S:] = True
    return TabularMDP(
        P=torch.from_numpy(P),
        R=torch.from_numpy(R),
        rho=torch.from_numpy(rho),
        gamma=1.0,
        terminal=torch.from_numpy(terminal),
        name=f"goal-mdp-S{S}-A{A}-seed{seed}",
    )


@dataclass
class GroupProblem:
    """A goal MDP, a softmax policy θ [S + 2, A], the horizon H and the exact ∇J (flat)."""

    mdp: TabularMDP
    theta: Tensor
    horizon: int
    exact: Tensor  # [(S + 2)·A]
    starts: list[int]  # the live states, each with ρ = 1/S

    @property
    def probs(self) -> Tensor:
        return softmax_policy(self.theta)

    @property
    def goal(self) -> int:
        return len(self.starts)

    def start_mdp(self, start: int) -> TabularMDP:
        """The same MDP with every episode starting in `start`."""
        rho = torch.zeros_like(self.mdp.rho)
        rho[start] = 1.0
        return replace(self.mdp, rho=rho)


def group_problem(
    seed: int, num_states: int = 4, horizon: int = 10, theta_scale: float = 0.5
) -> GroupProblem:
    """`goal_mdp(seed, num_states)` with θ ~ theta_scale · N(0, I) (seed + 1) and its exact gradient."""
    mdp = goal_mdp(seed, num_states)
    gen = torch.Generator().manual_seed(seed + 1)
    theta = theta_scale * torch.randn(mdp.num_states, mdp.num_actions, generator=gen, dtype=torch.float64)
    exact = tabular_finite_horizon(mdp, theta, horizon).grad.reshape(-1)
    starts = mdp.rho.nonzero().squeeze(-1).tolist()
    return GroupProblem(mdp, theta, horizon, exact, starts)


def _episode_scores(problem: GroupProblem, episodes) -> Tensor:
    """S_i = Σ_t ∇ log π(a_t|s_t) of each episode [N, (S + 2)·A]: the softmax score e_a − π(·|s) in row s."""
    probs = problem.probs
    n, A = probs.shape
    m = episodes.mask
    column = torch.arange(m.shape[1]).expand_as(m)[m]
    s, a = episodes.states[m], episodes.actions[m]
    score = torch.nn.functional.one_hot(a, A).to(probs.dtype) - probs[s]
    sums = torch.zeros(m.shape[1] * n, A, dtype=probs.dtype).index_add_(0, column * n + s, score)
    return sums.reshape(m.shape[1], n * A)


def group_estimates(
    problem: GroupProblem,
    variants: dict[str, tuple[Advantage, bool]],
    group_size: int,
    groups: int,
    estimates: int,
    seed: int,
) -> tuple[dict[str, Tensor], float]:
    """M = `estimates` independent estimates ĝ [M, P] (module docstring) of every variant name → (advantage
    function, length-normalised), all from the same episodes: `groups` groups of `group_size` per start state
    and estimate. Also returns the env steps per estimate."""
    G = int(group_size)
    gen = torch.Generator().manual_seed(seed)
    totals = {name: torch.zeros(estimates, problem.exact.numel(), dtype=torch.float64) for name in variants}
    steps = 0.0
    for start in problem.starts:
        episodes = sample_episodes(
            problem.start_mdp(start), problem.probs, estimates * groups * G, problem.horizon, gen
        )
        ends = episodes.terminated & episodes.mask
        outcome = (ends & (episodes.next_states == problem.goal)).any(0).to(torch.float64)
        length = episodes.mask.sum(0).to(torch.float64)
        scores = _episode_scores(problem, episodes)
        for name, (advantage, length_normalized) in variants.items():
            adv = advantage(outcome.reshape(estimates, groups, G)).reshape(-1)
            if length_normalized:
                adv = adv / length
            per_episode = (adv[:, None] * scores).reshape(estimates, groups * G, -1)
            totals[name] += per_episode.mean(1) / len(problem.starts)
        steps += float(episodes.mask.sum()) / estimates
    return totals, steps


def advantage_moments(advantage: Advantage, p: float, group_size: int) -> tuple[float, float]:
    """(f₁, f₀) = (E_K f(1, K), E_K f(0, K)), K ~ Bin(G − 1, p): the mean advantage of an episode that
    succeeded / failed, its group's other G − 1 outcomes drawn with success probability p."""
    G = int(group_size)
    f1 = f0 = 0.0
    for k in range(G):
        chance = math.comb(G - 1, k) * p**k * (1 - p) ** (G - 1 - k)
        rest = [1.0] * k + [0.0] * (G - 1 - k)
        groups = torch.tensor([[1.0, *rest], [0.0, *rest]], dtype=torch.float64)
        first = advantage(groups)[:, 0]
        f1 += chance * float(first[0])
        f0 += chance * float(first[1])
    return f1, f0


def outcome_moments(problem: GroupProblem, start: int, power: int) -> tuple[Tensor, Tensor, float]:
    """(E[R·S/L^λ], E[S/L^λ], J(start)) for episodes from `start`, λ = `power`, S = Σ_t ∇ log π (flat), by the
    backward induction of the module docstring."""
    mdp, probs, H = problem.mdp, problem.probs, problem.horizon
    ends = mdp.terminal
    goal = torch.zeros_like(ends)
    goal[problem.goal] = True
    to_goal = mdp.P[:, :, goal].sum(-1)  # [S, A]
    to_end = mdp.P[:, :, ends].sum(-1)
    live = (~ends).to(probs.dtype)
    r_next = torch.zeros_like(probs)  # E[R/L^λ | s_{t+1}, a_{t+1}] and E[1/L^λ | ...], next step
    l_next = torch.zeros_like(probs)
    r_steps, l_steps = [], []
    for t in reversed(range(H)):
        length = 1.0 / (t + 1) ** power  # an episode that ends after this step lasts t + 1 steps
        if t == H - 1:  # cut by the time limit: L = H, R = 0
            r = to_goal * length
            x = to_end * length + (1 - to_end) / H**power
        else:
            r = to_goal * length + torch.einsum("sat,t->sa", mdp.P, live * (probs * r_next).sum(-1))
            x = to_end * length + torch.einsum("sat,t->sa", mdp.P, live * (probs * l_next).sum(-1))
        r_steps.append(r)
        l_steps.append(x)
        r_next, l_next = r, x
    values = finite_horizon_evaluation(problem.start_mdp(start), probs, H)
    d = values.d  # [H, S]: Pr(s_t = s, the episode still running)

    def score_weighted(steps: list[Tensor]) -> Tensor:
        x = torch.stack(steps[::-1])  # [H, S, A]
        centred = x - (probs * x).sum(-1, keepdim=True)  # Σ_a π ∇log π x = π (x − Σ_b π x) in row s
        return (d[..., None] * probs * centred).sum(0).reshape(-1)

    return score_weighted(r_steps), score_weighted(l_steps), float(values.J)


def group_estimator_mean(
    problem: GroupProblem, advantage: Advantage, group_size: int, length_normalized: bool = False
) -> Tensor:
    """The exact mean of the estimator of `group_estimates` (module docstring), flat [(S + 2)·A]."""
    power = 1 if length_normalized else 0
    total = torch.zeros_like(problem.exact)
    for start in problem.starts:
        rs, s, p = outcome_moments(problem, start, power)
        f1, f0 = advantage_moments(advantage, p, group_size)
        total += ((f1 - f0) * rs + f0 * s) / len(problem.starts)
    return total
