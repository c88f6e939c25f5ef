"""Advantage estimators and baselines against slow, plain-Python references and known identities."""

from __future__ import annotations

import math
import random
import statistics

import pytest
import torch

from pgrad.errors import ConfigError
from pgrad.estimators import (
    discount_weights,
    episode_index,
    episode_time,
    gae,
    group_relative_advantages,
    leave_one_out_advantages,
    mean_baseline,
    normalize,
    optimal_baseline,
    per_step_mean_baseline,
    reward_to_go,
    td_lambda_return,
)

from .conftest import SPECIAL_CASES, column, episodes_of, make_random_batch

SHAPES = [(1, 1), (1, 5), (9, 1), (13, 3), (40, 6)]
SEEDS = range(len(SPECIAL_CASES))
GAMMAS = [0.0, 0.9, 0.99, 1.0]
LAMS = [0.0, 0.5, 0.95, 1.0]


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def f64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------------
# GAE


def ref_gae(batch, gamma, lam):
    """Â_t = Σ_{k=0}^{e−t} (γλ)^k δ_{t+k} per episode; δ_t = r_t + γ·(0 if term else V(s_{t+1})) − V(s_t)."""
    T, N = batch.shape
    adv = [[0.0] * N for _ in range(T)]
    for n in range(N):
        r, v, nv = column(batch.rewards, n), column(batch.values, n), column(batch.next_values, n)
        term = batch.terminated[:, n].tolist()
        delta = [r[t] + gamma * (0.0 if term[t] else nv[t]) - v[t] for t in range(T)]
        for s, e, _ in episodes_of(batch, n):
            for t in range(s, e + 1):
                adv[t][n] = sum((gamma * lam) ** (k - t) * delta[k] for k in range(t, e + 1))
    adv = f64(adv)
    return adv, adv + batch.values


def call_gae(b, gamma, lam, values=None, next_values=None, truncated=None):
    return gae(
        b.rewards,
        b.values if values is None else values,
        b.next_values if next_values is None else next_values,
        b.terminated,
        b.truncated if truncated is None else truncated,
        gamma,
        lam,
    )


def test_gae_hand_computed():
    # one column: rows 0-1 truncated at 1 (V(final obs) = 100), row 2 terminated, row 3 open at the end
    r = f64([[1.0], [2.0], [4.0], [8.0]])
    v = f64([[0.5], [0.25], [3.0], [1.0]])
    nv = f64([[0.25], [100.0], [-1000.0], [6.0]])
    term = torch.tensor([[False], [False], [True], [False]])
    trunc = torch.tensor([[False], [True], [False], [False]])
    g, lam = 0.5, 0.5
    d0, d1, d2, d3 = 1 + g * 0.25 - 0.5, 2 + g * 100 - 0.25, 4 - 3.0, 8 + g * 6 - 1
    adv, ret = gae(r, v, nv, term, trunc, g, lam)
    close(adv, f64([[d0 + g * lam * d1], [d1], [d2], [d3]]))
    close(ret, adv + v)


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_gae_matches_reference(seed, shape, gamma, lam):
    b = make_random_batch(seed, *shape)
    adv, ret = call_gae(b, gamma, lam)
    ref_adv, ref_ret = ref_gae(b, gamma, lam)
    close(adv, ref_adv)
    close(ret, ref_ret)


@pytest.mark.parametrize("seed", SEEDS)
def test_gae_matches_reference_with_inconsistent_values(seed):
    """The GAE definition does not need values[t+1] == next_values[t]: check with unrelated values too."""
    b = make_random_batch(seed, 15, 4)
    b.values = torch.randn(15, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    for gamma, lam in [(0.9, 0.95), (1.0, 1.0), (0.99, 0.0)]:
        adv, ret = call_gae(b, gamma, lam)
        ref_adv, ref_ret = ref_gae(b, gamma, lam)
        close(adv, ref_adv)
        close(ret, ref_ret)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_gae_identities(seed, shape):
    b = make_random_batch(seed, *shape)
    zeros = torch.zeros_like(b.rewards)
    for gamma in GAMMAS:
        # λ = 1 without any value function: plain Monte-Carlo reward-to-go (no bootstrap anywhere)
        adv, ret = call_gae(b, gamma, 1.0, values=zeros, next_values=zeros)
        close(adv, reward_to_go(b.rewards, b.terminated, b.truncated, gamma))
        close(ret, adv)
        # λ = 1 with values: returns are the bootstrapped reward-to-go
        _, ret = call_gae(b, gamma, 1.0)
        close(ret, reward_to_go(b.rewards, b.terminated, b.truncated, gamma, next_values=b.next_values))
        # λ = 0: the TD error
        adv, _ = call_gae(b, gamma, 0.0)
        td_error = b.rewards + gamma * torch.where(b.terminated, 0.0, b.next_values) - b.values
        close(adv, td_error)
        # GAE returns are the λ-returns
        for lam in LAMS:
            _, ret = call_gae(b, gamma, lam)
            close(
                ret,
                td_lambda_return(b.rewards, b.values, b.next_values, b.terminated, b.truncated, gamma, lam),
            )


def test_gae_without_truncation_needs_no_values_when_lambda_is_one():
    """No truncation and a done last row: λ=1 advantages + V(s_t) = Monte-Carlo return, whatever V is."""
    b = make_random_batch(2, 20, 4)  # special case 'both_at_last_row'
    trunc = torch.zeros_like(b.truncated)
    term = b.terminated | b.truncated
    _, ret = gae(b.rewards, b.values, b.next_values, term, trunc, 0.97, 1.0)
    close(ret, reward_to_go(b.rewards, term, trunc, 0.97))


def test_gae_next_values_at_terminated_steps_are_never_read():
    b = make_random_batch(3, 30, 5)
    assert b.terminated.any()
    poisoned = torch.where(b.terminated, torch.nan, b.next_values)
    for gamma, lam in [(0.0, 0.5), (0.9, 0.95), (1.0, 1.0)]:
        close(call_gae(b, gamma, lam, next_values=poisoned)[0], call_gae(b, gamma, lam)[0])


def test_gae_open_last_row_is_the_same_as_truncated_last_row():
    b = make_random_batch(4, 11, 4)
    cut = b.truncated.clone()
    cut[-1] = True
    close(call_gae(b, 0.9, 0.8, truncated=cut)[0], call_gae(b, 0.9, 0.8)[0])


def test_gae_dtype_flags_and_no_grad():
    b = make_random_batch(1, 12, 3)
    r = b.rewards.float().requires_grad_()
    v = b.values.float().requires_grad_()
    nv = b.next_values.float().requires_grad_()
    adv, ret = gae(r, v, nv, b.terminated.float(), b.truncated.int(), 0.99, 0.95)
    ref_adv, ref_ret = ref_gae(b, 0.99, 0.95)
    for out, ref in ((adv, ref_adv), (ret, ref_ret)):
        assert out.dtype == torch.float32 and out.shape == r.shape and not out.requires_grad
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)


def test_gae_bad_arguments():
    b = make_random_batch(0, 4, 2)
    with pytest.raises(ConfigError, match="gamma"):
        call_gae(b, 1.5, 0.9)
    with pytest.raises(ConfigError, match="lam"):
        call_gae(b, 0.9, -0.5)
    with pytest.raises(ConfigError, match=r"values has shape \(4, 1\)"):
        call_gae(b, 0.9, 0.9, values=b.values[:, :1])
    with pytest.raises(ConfigError, match="next_values has shape"):
        call_gae(b, 0.9, 0.9, next_values=b.next_values[1:])
    with pytest.raises(ConfigError, match="truncated has shape"):
        call_gae(b, 0.9, 0.9, truncated=b.truncated.reshape(2, 4))


def test_gym_rollouts_gae(gym_batch):
    b = gym_batch
    for gamma in GAMMAS:
        for lam in LAMS:
            adv, ret = call_gae(b, gamma, lam)
            ref_adv, ref_ret = ref_gae(b, gamma, lam)
            close(adv, ref_adv)
            close(ret, ref_ret)
            tdl = td_lambda_return(b.rewards, b.values, b.next_values, b.terminated, b.truncated, gamma, lam)
            close(ret, tdl)
        _, ret = call_gae(b, gamma, 1.0)
        close(ret, reward_to_go(b.rewards, b.terminated, b.truncated, gamma, next_values=b.next_values))


# ---------------------------------------------------------------------------------------------------------
# episode_index and per-step baseline


def ref_episode_index(batch):
    T, N = batch.shape
    ids = [[0] * N for _ in range(T)]
    steps = [[0] * N for _ in range(T)]
    next_id = 0
    for n in range(N):
        for s, e, _ in episodes_of(batch, n):
            for t in range(s, e + 1):
                ids[t][n] = next_id
                steps[t][n] = t - s
            next_id += 1
    return torch.tensor(ids, dtype=torch.int64).reshape(T, N), torch.tensor(steps).reshape(T, N)


def check_episode_index(b):
    ids, steps = episode_index(b.terminated, b.truncated)
    ref_ids, ref_steps = ref_episode_index(b)
    assert ids.dtype == torch.int64 and steps.dtype == torch.int64
    torch.testing.assert_close(ids, ref_ids, rtol=0, atol=0)
    torch.testing.assert_close(steps, ref_steps, rtol=0, atol=0)
    assert sorted(set(ids.flatten().tolist())) == list(range(int(ids.max()) + 1 if ids.numel() else 0))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_episode_index_matches_reference(seed, shape):
    check_episode_index(make_random_batch(seed, *shape))


def test_episode_index_hand_computed_and_float_flags():
    term = torch.tensor([[0, 0], [1, 0], [0, 0], [0, 1]], dtype=torch.float32)
    trunc = torch.tensor([[1, 0], [0, 0], [0, 0], [0, 0]], dtype=torch.float32)
    ids, steps = episode_index(term, trunc)
    assert ids.tolist() == [[0, 3], [1, 3], [2, 3], [2, 3]]
    assert steps.tolist() == [[0, 0], [0, 1], [0, 2], [1, 3]]
    with pytest.raises(ConfigError, match=r"truncated has shape \(4, 1\), expected the shape of terminated"):
        episode_index(term, trunc[:, :1])


# ---------------------------------------------------------------------------------------------------------
# episode time across rollouts and the γᵗ weights of the discounted gradient


def ref_episode_time(batch, start):
    """t counted step by step in each column from start[n]; back to 0 after every episode end."""
    T, N = batch.shape
    done = batch.done.tolist()
    time = [[0] * N for _ in range(T)]
    next_start = []
    for n in range(N):
        t = int(start[n])
        for k in range(T):
            time[k][n] = t
            t = 0 if done[k][n] else t + 1
        next_start.append(t)
    return torch.tensor(time, dtype=torch.int64).reshape(T, N), torch.tensor(next_start, dtype=torch.int64)


def random_start(seed, N):
    return torch.randint(0, 7, (N,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_episode_time_matches_reference(seed, shape):
    b = make_random_batch(seed, *shape)
    start = random_start(seed, shape[1])
    time, next_start = episode_time(b.terminated, b.truncated, start)
    ref_time, ref_next = ref_episode_time(b, start)
    assert time.dtype == torch.int64 and next_start.dtype == torch.int64
    torch.testing.assert_close(time, ref_time, rtol=0, atol=0)
    torch.testing.assert_close(next_start, ref_next, rtol=0, atol=0)
    # Without a start every column begins an episode at row 0: episode_index's step_in_episode.
    time0, _ = episode_time(b.terminated, b.truncated)
    torch.testing.assert_close(time0, episode_index(b.terminated, b.truncated)[1], rtol=0, atol=0)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_discount_weights_are_gamma_to_the_time_in_episode(seed, shape, gamma):
    b = make_random_batch(seed, *shape)
    start = random_start(seed, shape[1])
    weights, next_start = discount_weights(b.terminated, b.truncated, gamma, start, dtype=torch.float64)
    ref_time, ref_next = ref_episode_time(b, start)
    T, N = shape
    expected = f64([[gamma ** int(ref_time[k, n]) for n in range(N)] for k in range(T)]).reshape(T, N)
    close(weights, expected)
    assert weights.dtype == torch.float64 and next_start.tolist() == ref_next.tolist()
    assert discount_weights(b.terminated, b.truncated, gamma)[0].dtype == torch.get_default_dtype()


def test_discount_weights_of_ragged_episodes_in_vector_envs_hand_computed():
    # column 0: episodes of 2, 1 and 2+ steps; column 1: one episode cut by the rollout end; column 2: an
    # episode that began 4 steps before this rollout and terminates at row 1.
    term = torch.tensor([[0, 0, 0], [1, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.bool)
    trunc = torch.zeros_like(term)
    start = torch.tensor([0, 0, 4])
    weights, next_start = discount_weights(term, trunc, 0.5, start, dtype=torch.float64)
    expected = [
        [1, 1, 1 / 16],
        [1 / 2, 1 / 2, 1 / 32],
        [1, 1 / 4, 1],
        [1, 1 / 8, 1 / 2],
        [1 / 2, 1 / 16, 1 / 4],
    ]
    assert weights.tolist() == expected
    assert next_start.tolist() == [2, 5, 3]


@pytest.mark.parametrize("cut", [1, 5, 12])
@pytest.mark.parametrize("seed", SEEDS)
def test_an_episode_spanning_two_rollouts_keeps_counting(seed, cut):
    """Two rollouts chained through next_start number every step as the whole rollout does."""
    b = make_random_batch(seed, 13, 3)
    start = random_start(seed, 3)
    whole, whole_next = discount_weights(b.terminated, b.truncated, 0.9, start, dtype=torch.float64)
    first, middle = discount_weights(b.terminated[:cut], b.truncated[:cut], 0.9, start, dtype=torch.float64)
    second, last = discount_weights(b.terminated[cut:], b.truncated[cut:], 0.9, middle, dtype=torch.float64)
    close(torch.cat([first, second]), whole)
    assert last.tolist() == whole_next.tolist()
    # an empty rollout changes nothing
    empty, same = episode_time(b.terminated[:0], b.truncated[:0], middle)
    assert empty.shape == (0, 3) and same.tolist() == middle.tolist()


@pytest.mark.parametrize(
    ("start", "match"),
    [
        (torch.tensor([0, -1]), "start must be >= 0"),
        (torch.tensor([0.0, 1.0]), "start must be an integer tensor"),
        (torch.tensor([0, 1, 2]), r"start has shape \(3,\), expected the shape of one row of terminated"),
    ],
)
def test_a_bad_start_is_a_one_line_error(start, match):
    flags = torch.zeros(4, 2, dtype=torch.bool)
    with pytest.raises(ConfigError, match=match):
        episode_time(flags, flags, start)
    with pytest.raises(ConfigError, match="dtype must be a floating"):
        discount_weights(flags, flags, 0.9, dtype=torch.long)


def test_gym_rollouts_episode_index_and_baselines(gym_batch):
    check_episode_index(gym_batch)
    _, steps = episode_index(gym_batch.terminated, gym_batch.truncated)
    G = reward_to_go(gym_batch.rewards, gym_batch.terminated, gym_batch.truncated, 0.99)
    close(per_step_mean_baseline(G, steps), ref_per_step_mean(G, steps, None))


def ref_per_step_mean(returns, steps, mask):
    groups: dict[int, list[float]] = {}
    T, N = returns.shape
    for t in range(T):
        for n in range(N):
            if mask is None or bool(mask[t, n]):
                groups.setdefault(int(steps[t, n]), []).append(float(returns[t, n]))
    out = [[0.0] * N for _ in range(T)]
    for t in range(T):
        for n in range(N):
            k = int(steps[t, n])
            out[t][n] = statistics.fmean(groups[k]) if k in groups else 0.0
    return f64(out).reshape(T, N)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_per_step_mean_baseline_matches_reference(seed, shape):
    b = make_random_batch(seed, *shape)
    _, steps = episode_index(b.terminated, b.truncated)
    G = reward_to_go(b.rewards, b.terminated, b.truncated, 0.9)
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.6
    close(per_step_mean_baseline(G, steps), ref_per_step_mean(G, steps, None))
    close(per_step_mean_baseline(G, steps, mask), ref_per_step_mean(G, steps, mask))
    close(per_step_mean_baseline(G, steps, mask.double()), ref_per_step_mean(G, steps, mask))


def test_per_step_mean_baseline_hand_computed():
    G = f64([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    steps = torch.tensor([[0, 0], [1, 0], [0, 1]])
    mask = torch.tensor([[True, True], [True, True], [True, False]])
    b = per_step_mean_baseline(G, steps, mask)
    # index 0: (1 + 10 + 20 + 3) / 4; index 1: only G[1, 0] = 2 (G[2, 1] is masked out)
    close(b, f64([[8.5, 8.5], [2.0, 8.5], [8.5, 2.0]]))
    with pytest.raises(ConfigError, match="step_in_episode must be an integer"):
        per_step_mean_baseline(G, steps.double())
    with pytest.raises(ConfigError, match="step_in_episode has shape"):
        per_step_mean_baseline(G, steps[:2])


def test_mean_baseline():
    G = f64([[1.0, 2.0], [3.0, 10.0]])
    close(mean_baseline(G), f64(4.0))
    close(mean_baseline(G, torch.tensor([[True, False], [True, False]])), f64(2.0))
    close(mean_baseline(G, torch.tensor([[1.0, 0.0], [0.0, 1.0]])), f64(5.5))
    none = mean_baseline(G, torch.zeros(2, 2, dtype=torch.bool))
    assert none.shape == () and float(none) == 0.0
    assert mean_baseline(G.float()).dtype == torch.float32
    with pytest.raises(ConfigError, match="mask has shape"):
        mean_baseline(G, torch.ones(3, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------------------
# optimal baseline


def make_score_episodes(seed, M=30, obs_dim=2, n_actions=3):
    """Episodes of a linear-softmax policy: per-step scores ∂ log π(a|s)/∂θ = vec((onehot(a) − π) ⊗ s)."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(n_actions, obs_dim, dtype=torch.float64, generator=gen)
    episodes = []
    for _ in range(M):
        length = int(torch.randint(1, 8, (1,), generator=gen))
        obs = torch.randn(length, obs_dim, dtype=torch.float64, generator=gen)
        probs = torch.softmax(obs @ theta.T, dim=-1)
        actions = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        scores = (torch.nn.functional.one_hot(actions, n_actions) - probs)[:, :, None] * obs[:, None, :]
        rewards = (actions == 0).double() + 0.3 * torch.randn(length, dtype=torch.float64, generator=gen)
        to_go = rewards.flip(0).cumsum(0).flip(0)
        episodes.append((scores.reshape(length, -1).tolist(), to_go.tolist()))
    return episodes


def score_sums_of(episodes, k=None, whole=False):
    """S_i and W_i per episode (plain loops); whole=True uses G(τ_i) for every step instead of G_t."""
    S, W = [], []
    for scores, to_go in episodes:
        P = len(scores[0])
        S.append([sum(s[p] for s in scores) for p in range(P)])
        G = [to_go[0]] * len(to_go) if whole else to_go
        W.append([sum(s[p] * g for s, g in zip(scores, G, strict=True)) for p in range(P)])
    return f64(S), f64(W)


def second_moment(episodes, p, b, whole=False):
    """Σ_i (Σ_t s_tp (G_t − b))², straight from the per-step scores and returns."""
    total = 0.0
    for scores, to_go in episodes:
        G = [to_go[0]] * len(to_go) if whole else to_go
        total += sum(s[p] * (g - b) for s, g in zip(scores, G, strict=True)) ** 2
    return total


def minimise(f, lo=-1e3, hi=1e3, iterations=200):
    """Golden-section search for the minimiser of a unimodal f on [lo, hi]."""
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(iterations):
        a, c = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if f(a) < f(c):
            hi = c
        else:
            lo = a
    return (lo + hi) / 2


@pytest.mark.parametrize("whole", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_optimal_baseline_minimises_the_empirical_second_moment(seed, whole):
    episodes = make_score_episodes(seed)
    S, W = score_sums_of(episodes, whole=whole)
    b = optimal_baseline(S, W)
    assert b.shape == (S.shape[1],)
    for p in range(S.shape[1]):
        numeric = minimise(lambda x, p=p: second_moment(episodes, p, x, whole))
        assert abs(float(b[p]) - numeric) <= 1e-6 * max(1.0, abs(numeric))
        best = second_moment(episodes, p, float(b[p]), whole)
        for other in (0.0, 1.0, float(b[p]) + 0.01, float(b[p]) - 0.01):
            assert best <= second_moment(episodes, p, other, whole) + 1e-12
    if whole:  # textbook form: b_k = Σ_i S_ik² G(τ_i) / Σ_i S_ik²
        G_tau = f64([to_go[0] for _, to_go in episodes])
        close(b, (S.square() * G_tau[:, None]).sum(0) / S.square().sum(0))


def test_optimal_baseline_zero_scores_and_no_episodes():
    S = f64([[0.0, 1.0], [0.0, -2.0]])
    W = f64([[3.0, 2.0], [5.0, 1.0]])
    b = optimal_baseline(S, W)
    close(b, f64([0.0, (2.0 - 2.0) / 5.0]))
    assert torch.isfinite(b).all()
    empty = optimal_baseline(torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.float64))
    close(empty, torch.zeros(3, dtype=torch.float64))
    assert optimal_baseline(S.float(), W.float()).dtype == torch.float32
    with pytest.raises(ConfigError, match="weighted_score_sums has shape"):
        optimal_baseline(S, W[:1])


# ---------------------------------------------------------------------------------------------------------
# GRPO, RLOO, normalisation


def random_groups(seed, shape):
    rng = random.Random(seed)
    flat = [rng.choice([0.0, 1.0, rng.gauss(0, 1)]) for _ in range(math.prod(shape))]
    return f64(flat).reshape(shape)


GROUP_SHAPES = [(1,), (2,), (5,), (4, 1), (4, 2), (3, 8), (2, 3, 4)]


def ref_group_relative(rewards, eps, scale):
    flat = rewards.reshape(-1, rewards.shape[-1]).tolist()
    out = []
    for group in flat:
        mean = statistics.fmean(group)
        if len(group) < 2 or all(x == group[0] for x in group):
            out.append([0.0] * len(group))
        elif scale:
            std = statistics.stdev(group)
            out.append([(x - mean) / (std + eps) for x in group])
        else:
            out.append([x - mean for x in group])
    return f64(out).reshape(rewards.shape)


@pytest.mark.parametrize("shape", GROUP_SHAPES)
@pytest.mark.parametrize("seed", range(4))
def test_group_relative_advantages(seed, shape):
    R = random_groups(seed, shape)
    for scale in (True, False):
        A = group_relative_advantages(R, eps=1e-8, scale=scale)
        close(A, ref_group_relative(R, 1e-8, scale))
        close(A.sum(-1), torch.zeros(shape[:-1], dtype=torch.float64))
        assert torch.isfinite(A).all()


def test_group_relative_constant_and_single_groups_are_exactly_zero():
    R = f64([[0.1, 0.1, 0.1], [7.0, 7.0, 7.0], [0.3, 0.3, 0.3]])
    for scale in (True, False):
        assert torch.equal(group_relative_advantages(R, scale=scale), torch.zeros_like(R))
        assert torch.equal(group_relative_advantages(R[:, :1], scale=scale), torch.zeros(3, 1).double())
    # known values: group [0, 1]: mean 0.5, sample std sqrt(0.5)
    A = group_relative_advantages(f64([0.0, 1.0]), eps=0.0)
    close(A, f64([-0.5, 0.5]) / math.sqrt(0.5))
    assert group_relative_advantages(f64([[1.0, 3.0]]).float()).dtype == torch.float32


def ref_leave_one_out(rewards):
    flat = rewards.reshape(-1, rewards.shape[-1]).tolist()
    out = [
        [x - sum(g[j] for j in range(len(g)) if j != i) / (len(g) - 1) for i, x in enumerate(g)] for g in flat
    ]
    return f64(out).reshape(rewards.shape)


@pytest.mark.parametrize("shape", [s for s in GROUP_SHAPES if s[-1] >= 2])
@pytest.mark.parametrize("seed", range(4))
def test_leave_one_out_advantages(seed, shape):
    R = random_groups(seed, shape)
    A = leave_one_out_advantages(R)
    k = shape[-1]
    close(A, ref_leave_one_out(R))
    close(A, k / (k - 1) * (R - R.mean(-1, keepdim=True)))
    close(A.sum(-1), torch.zeros(shape[:-1], dtype=torch.float64))


def test_leave_one_out_needs_two_samples():
    close(leave_one_out_advantages(f64([1.0, 3.0])), f64([-2.0, 2.0]))
    with pytest.raises(ConfigError, match="group size"):
        leave_one_out_advantages(f64([[1.0], [2.0]]))


def ref_normalize(a, mask, eps):
    flat = a.flatten().tolist()
    keep = [True] * len(flat) if mask is None else [bool(m) for m in mask.flatten().tolist()]
    chosen = [x for x, k in zip(flat, keep, strict=True) if k]
    if len(chosen) <= 1 or all(x == chosen[0] for x in chosen):
        return torch.zeros_like(a)
    mean, std = statistics.fmean(chosen), statistics.pstdev(chosen)
    return f64([(x - mean) / (std + eps) if k else 0.0 for x, k in zip(flat, keep, strict=True)]).reshape(
        a.shape
    )


@pytest.mark.parametrize("shape", [(1,), (7,), (5, 3), (2, 3, 4)])
@pytest.mark.parametrize("seed", range(4))
def test_normalize_matches_reference(seed, shape):
    a = random_groups(seed, shape) * 3.0 + 1.0
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.7
    for m in (None, mask):
        out = normalize(a, m)
        close(out, ref_normalize(a, m, 1e-8))
        assert torch.isfinite(out).all()
    out = normalize(a, mask)
    if mask.sum() > 1 and out[mask].abs().sum() > 0:
        close(out[mask].mean(), f64(0.0))
        torch.testing.assert_close(out[mask].std(correction=0), f64(1.0), rtol=1e-6, atol=0)


def test_normalize_degenerate_inputs_are_zero():
    for a, mask in [
        (f64([3.5]), None),
        (f64([0.1, 0.1, 0.1]), None),
        (f64([[2.0, 5.0], [2.0, 9.0]]), torch.tensor([[True, False], [True, False]])),  # constant under mask
        (f64([2.0, 5.0, 9.0]), torch.tensor([False, True, False])),  # a single masked element
        (f64([2.0, 5.0]), torch.tensor([False, False])),  # nothing selected
        (torch.zeros(0, 3, dtype=torch.float64), None),
    ]:
        out = normalize(a, mask)
        assert torch.equal(out, torch.zeros_like(a)), (a, mask, out)
    out = normalize(f64([1.0, 2.0, 1000.0]), torch.tensor([1.0, 1.0, 0.0]), eps=0.0)
    close(out, f64([-1.0, 1.0, 0.0]))
    assert normalize(f64([1.0, 2.0]).float()).dtype == torch.float32
    assert not normalize(f64([1.0, 2.0]).requires_grad_()).requires_grad


def test_group_functions_bad_arguments():
    with pytest.raises(ConfigError, match="eps"):
        group_relative_advantages(f64([1.0, 2.0]), eps=-1.0)
    with pytest.raises(ConfigError, match="eps"):
        normalize(f64([1.0, 2.0]), eps=math.nan)
    with pytest.raises(ConfigError, match="mask has shape"):
        normalize(f64([1.0, 2.0]), torch.tensor([True]))
    with pytest.raises(ConfigError, match="floating dtype"):
        normalize(torch.tensor([1, 2]))
