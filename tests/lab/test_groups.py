"""The closed forms behind claim 17 against plain references: the length-weighted moments by enumerating every
episode of a small goal MDP, the group-advantage moments by enumerating every group of outcomes."""

import functools
import itertools

import pytest
import torch

from pgrad.estimators import group_relative_advantages, leave_one_out_advantages
from pgrad.lab import groups

F64 = torch.float64


def enumerate_moments(problem, start, power):
    """E[R·S/L^λ], E[S/L^λ] and J(start) over every episode from `start`: a recursion over (action, next
    state) until a terminal state or the time limit, each episode with its probability."""
    probs = problem.probs.tolist()
    P = problem.mdp.P.tolist()
    terminal = problem.mdp.terminal.tolist()
    n, A = problem.probs.shape
    rs, s_only, success = torch.zeros(n * A, dtype=F64), torch.zeros(n * A, dtype=F64), 0.0

    def score_of(s, a):
        psi = torch.zeros(n, A, dtype=F64)
        psi[s] = -torch.tensor(probs[s], dtype=F64)
        psi[s, a] += 1.0
        return psi.reshape(-1)

    def walk(s, t, p, score):
        nonlocal rs, s_only, success
        for a in range(A):
            for nxt in range(n):
                q = p * probs[s][a] * P[s][a][nxt]
                if q == 0.0:
                    continue
                total = score + score_of(s, a)
                if terminal[nxt] or t + 1 == problem.horizon:
                    reward = 1.0 if nxt == problem.goal else 0.0
                    weight = 1.0 / (t + 1) ** power
                    rs = rs + q * reward * weight * total
                    s_only = s_only + q * weight * total
                    success += q * reward
                else:
                    walk(nxt, t + 1, q, total)

    walk(start, 0, 1.0, torch.zeros(n * A, dtype=F64))
    return rs, s_only, success


@pytest.mark.parametrize("power", [0, 1])
@pytest.mark.parametrize("seed", [0, 3])
def test_outcome_moments_equal_enumeration_of_every_episode(seed, power):
    problem = groups.group_problem(seed, num_states=2, horizon=3, theta_scale=1.0)
    for start in problem.starts:
        rs, s_only, success = groups.outcome_moments(problem, start, power)
        ref_rs, ref_s, ref_success = enumerate_moments(problem, start, power)
        torch.testing.assert_close(rs, ref_rs, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(s_only, ref_s, rtol=1e-12, atol=1e-14)
        assert success == pytest.approx(ref_success, rel=1e-12)
        if power == 0:  # E[S] = E[Σ_t ∇ log π] = 0
            assert float(s_only.abs().max()) < 1e-12
    # with λ = 0, E[R S] averaged over the starts is ∇J
    mean = sum(groups.outcome_moments(problem, s, 0)[0] for s in problem.starts) / len(problem.starts)
    torch.testing.assert_close(mean, problem.exact, rtol=1e-12, atol=1e-14)


def enumerate_advantages(advantage, p, G):
    """(E[Â_1 | R_1 = 1], E[Â_1 | R_1 = 0]) over all 2^(G−1) outcomes of the other G − 1 episodes."""
    f1 = f0 = 0.0
    for rest in itertools.product([0.0, 1.0], repeat=G - 1):
        chance = 1.0
        for r in rest:
            chance *= p if r else 1 - p
        for first in (1.0, 0.0):
            value = float(advantage(torch.tensor([first, *rest], dtype=F64))[0])
            if first:
                f1 += chance * value
            else:
                f0 += chance * value
    return f1, f0


@pytest.mark.parametrize("G", [2, 4, 6])
@pytest.mark.parametrize("p", [0.05, 0.3, 0.8])
def test_advantage_moments_equal_enumeration_of_every_group(G, p):
    dr = functools.partial(group_relative_advantages, scale=False)
    for advantage in (leave_one_out_advantages, dr, group_relative_advantages):
        assert groups.advantage_moments(advantage, p, G) == pytest.approx(
            enumerate_advantages(advantage, p, G), rel=1e-12, abs=1e-14
        )
    # RLOO: f₁ − f₀ = 1 and f₀ = −p; the plain group mean: (G − 1)/G times those
    f1, f0 = groups.advantage_moments(leave_one_out_advantages, p, G)
    assert (f1 - f0, f0) == pytest.approx((1.0, -p))
    g1, g0 = groups.advantage_moments(dr, p, G)
    assert (g1 - g0, g0) == pytest.approx(((G - 1) / G, -(G - 1) / G * p))
