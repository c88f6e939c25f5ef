"""Property-based tests (hypothesis) of the pure estimators: random lengths T, widths N, termination and
truncation patterns, γ and λ. Each property is an identity the estimators must satisfy for every input, so it
holds them to each other (GAE(1) = reward-to-go, TD(λ) = GAE returns, n ≥ T steps = reward-to-go …) and to
the episode structure (nothing leaks between episodes, terminated next-values are never read)."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgrad.estimators import (
    clip_weights,
    episode_index,
    gae,
    group_relative_advantages,
    importance_weighted_advantages,
    leave_one_out_advantages,
    n_step_return,
    normalize,
    per_decision_weights,
    reward_to_go,
    td_lambda_return,
    total_return,
    trajectory_weights,
)

FAST = settings(max_examples=40, deadline=None)
F64 = torch.float64
unit = st.floats(0.0, 1.0)


@st.composite
def batches(draw, max_T=10, max_N=4):
    """A consistent rollout: next_values[t] = values[t+1] inside an episode, V(final obs) (unrelated to the
    next row) on a truncation or at the last row, and NaN (never to be read) on a termination."""
    T, N = draw(st.integers(1, max_T)), draw(st.integers(1, max_N))
    flags = st.lists(st.sampled_from([0, 0, 0, 1, 2, 3]), min_size=T * N, max_size=T * N)
    kinds = torch.tensor(draw(flags)).view(T, N)  # 0 none, 1 terminated, 2 truncated, 3 both
    terminated, truncated = (kinds == 1) | (kinds == 3), (kinds == 2) | (kinds == 3)
    numbers = st.lists(st.floats(-5, 5), min_size=3 * T * N, max_size=3 * T * N)
    rewards, values, finals = torch.tensor(draw(numbers), dtype=F64).view(3, T, N)
    next_values = finals.clone()
    inside = ~(terminated | truncated)
    next_values[:-1][inside[:-1]] = values[1:][inside[:-1]]
    next_values[terminated] = math.nan
    return rewards, values, next_values, terminated, truncated


def episodes(terminated, truncated):
    """(column, first row, last row) of every episode."""
    done = terminated | truncated
    T, N = done.shape
    out = []
    for n in range(N):
        start = 0
        for t in range(T):
            if done[t, n] or t == T - 1:
                out.append((n, start, t))
                start = t + 1
    return out


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


# -- the estimators agree with each other --------------------------------------------------------------------
@FAST
@given(batches(), unit)
def test_gae_lambda_one_returns_are_the_bootstrapped_reward_to_go(batch, gamma):
    rewards, values, next_values, term, trunc = batch
    _, returns = gae(rewards, values, next_values, term, trunc, gamma, 1.0)
    close(returns, reward_to_go(rewards, term, trunc, gamma, next_values))


@FAST
@given(batches(), unit)
def test_gae_lambda_zero_is_the_td_error_and_one_step_returns_the_td_target(batch, gamma):
    rewards, values, next_values, term, trunc = batch
    advantages, _ = gae(rewards, values, next_values, term, trunc, gamma, 0.0)
    target = rewards + gamma * torch.where(term, torch.zeros_like(next_values), next_values)
    close(advantages, target - values)
    close(n_step_return(rewards, next_values, term, trunc, gamma, 1), target)
    close(td_lambda_return(rewards, values, next_values, term, trunc, gamma, 0.0), target)


@FAST
@given(batches(), unit, unit)
def test_td_lambda_return_is_the_gae_return(batch, gamma, lam):
    rewards, values, next_values, term, trunc = batch
    _, returns = gae(rewards, values, next_values, term, trunc, gamma, lam)
    close(td_lambda_return(rewards, values, next_values, term, trunc, gamma, lam), returns)


@FAST
@given(batches(), unit, st.integers(0, 5))
def test_n_step_with_n_at_least_t_is_the_bootstrapped_reward_to_go(batch, gamma, extra):
    rewards, _, next_values, term, trunc = batch
    n = rewards.shape[0] + extra
    close(
        n_step_return(rewards, next_values, term, trunc, gamma, n),
        reward_to_go(rewards, term, trunc, gamma, next_values),
    )


@FAST
@given(batches(), unit, st.integers(1, 4))
def test_n_step_return_is_the_plain_sum(batch, gamma, n):
    rewards, _, next_values, term, trunc = batch
    out = n_step_return(rewards, next_values, term, trunc, gamma, n)
    T = rewards.shape[0]
    for col, first, last in episodes(term, trunc):
        for t in range(first, last + 1):
            j = min(t + n - 1, last)  # the last step used
            g = sum(gamma ** (k - t) * float(rewards[k, col]) for k in range(t, j + 1))
            if not term[j, col]:
                g += gamma ** (j - t + 1) * float(next_values[j, col])
            assert math.isclose(float(out[t, col]), g, rel_tol=1e-9, abs_tol=1e-9), (t, col, T)


@FAST
@given(batches(), unit)
def test_total_return_is_the_reward_to_go_of_the_first_step_everywhere_in_the_episode(batch, gamma):
    rewards, _, _, term, trunc = batch
    total = total_return(rewards, term, trunc, gamma)
    to_go = reward_to_go(rewards, term, trunc, gamma)
    for col, first, last in episodes(term, trunc):
        assert torch.all(total[first : last + 1, col] == to_go[first, col])


@FAST
@given(batches(), unit)
def test_reward_to_go_is_linear_and_gamma_zero_gives_the_rewards(batch, gamma):
    rewards, _, next_values, term, trunc = batch
    close(reward_to_go(rewards, term, trunc, 0.0), rewards)
    a = reward_to_go(rewards, term, trunc, gamma, next_values)
    b = reward_to_go(2 * rewards, term, trunc, gamma, 2 * next_values)
    close(b, 2 * a)


# -- nothing leaks between episodes -----------------------------------------------------------------------
@FAST
@given(batches(), unit, unit, st.data())
def test_changing_one_episode_changes_no_other_episode(batch, gamma, lam, data):
    rewards, values, next_values, term, trunc = batch
    all_episodes = episodes(term, trunc)
    col, first, last = data.draw(st.sampled_from(all_episodes))
    changed = rewards.clone()
    changed[first : last + 1, col] += data.draw(st.floats(0.5, 3.0))
    changed_values = values.clone()
    changed_values[first : last + 1, col] -= 1.0
    outside = torch.ones_like(term)
    outside[first : last + 1, col] = False

    def outputs(r, v):
        yield gae(r, v, next_values, term, trunc, gamma, lam)[0]
        yield reward_to_go(r, term, trunc, gamma, next_values)
        yield total_return(r, term, trunc, gamma)
        yield n_step_return(r, next_values, term, trunc, gamma, 3)
        yield td_lambda_return(r, v, next_values, term, trunc, gamma, lam)

    for before, after in zip(outputs(rewards, values), outputs(changed, changed_values), strict=True):
        assert torch.equal(before[outside], after[outside])
        assert torch.isfinite(after).all()  # NaN next-values on terminated steps are never read


@FAST
@given(batches(), unit, unit)
def test_the_estimators_run_column_by_column(batch, gamma, lam):
    rewards, values, next_values, term, trunc = batch
    full = gae(rewards, values, next_values, term, trunc, gamma, lam)[0]
    for n in range(rewards.shape[1]):
        s = slice(n, n + 1)
        column = gae(rewards[:, s], values[:, s], next_values[:, s], term[:, s], trunc[:, s], gamma, lam)[0]
        assert torch.equal(column, full[:, s])


@FAST
@given(batches())
def test_episode_index_counts_steps_from_each_start(batch):
    _, _, _, term, trunc = batch
    ids, steps = episode_index(term, trunc)
    for k, (col, first, last) in enumerate(episodes(term, trunc)):
        assert steps[first : last + 1, col].tolist() == list(range(last - first + 1))
        assert ids[first : last + 1, col].eq(k).all()


# -- importance weights ------------------------------------------------------------------------------------
@FAST
@given(batches(), unit)
def test_ratio_one_gives_weights_one_and_the_on_policy_estimate(batch, gamma):
    rewards, values, next_values, term, trunc = batch
    zeros = torch.zeros_like(rewards)
    for weights in (per_decision_weights(zeros, term, trunc), trajectory_weights(zeros, term, trunc)):
        assert torch.equal(weights, torch.ones_like(rewards))
        assert torch.equal(clip_weights(weights, 2.0), weights)
        psi = importance_weighted_advantages(weights, rewards, term, trunc, gamma, values, next_values)
        close(psi, reward_to_go(rewards, term, trunc, gamma, next_values) - values)


@FAST
@given(batches(), st.data())
def test_per_decision_weights_are_products_within_the_episode(batch, data):
    rewards, _, _, term, trunc = batch
    log_ratio = torch.tensor(
        data.draw(st.lists(st.floats(-1, 1), min_size=rewards.numel(), max_size=rewards.numel())), dtype=F64
    ).view_as(rewards)
    per_decision = per_decision_weights(log_ratio, term, trunc)
    trajectory = trajectory_weights(log_ratio, term, trunc)
    for col, first, last in episodes(term, trunc):
        product = 1.0
        for t in range(first, last + 1):
            product *= math.exp(float(log_ratio[t, col]))
            assert math.isclose(float(per_decision[t, col]), product, rel_tol=1e-9)
        assert torch.allclose(trajectory[first : last + 1, col], torch.tensor(product, dtype=F64), rtol=1e-9)


# -- normalisation and group advantages ---------------------------------------------------------------------
@FAST
@given(
    st.lists(st.floats(-10, 10), min_size=2, max_size=20),
    st.floats(0.1, 10),
    st.floats(-5, 5),
    st.data(),
)
def test_normalize_standardises_the_masked_entries_and_ignores_affine_maps(xs, scale, shift, data):
    x = torch.tensor(xs, dtype=F64)
    mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=len(xs), max_size=len(xs))))
    out = normalize(x, mask)
    assert torch.all(out[~mask] == 0)
    selected = x[mask]
    if len(selected) >= 2 and float(selected.std(correction=0)) > 1e-3:
        assert abs(float(out[mask].mean())) < 1e-9
        assert math.isclose(float(out[mask].std(correction=0)), 1.0, rel_tol=1e-4)  # σ/(σ + ε)
        torch.testing.assert_close(normalize(scale * x + shift, mask), out, rtol=1e-4, atol=1e-4)
    elif len(selected) < 2 or bool((selected == selected[0]).all()):  # one element or all equal: zeros
        assert torch.all(out == 0)


@FAST
@given(st.integers(1, 3), st.integers(2, 6), st.data())
def test_group_advantages_are_centred_and_leave_one_out_is_a_rescaling(groups, size, data):
    r = torch.tensor(
        data.draw(st.lists(st.floats(-5, 5), min_size=groups * size, max_size=groups * size)), dtype=F64
    ).view(groups, size)
    centred = r - r.mean(-1, keepdim=True)
    close(group_relative_advantages(r, scale=False), centred)
    close(leave_one_out_advantages(r), size / (size - 1) * centred)
    scaled = group_relative_advantages(r)
    assert torch.all(scaled.mean(-1).abs() < 1e-9)
    spread = r.std(-1, correction=1)
    for g in range(groups):
        if float(spread[g]) > 1e-3:
            close(scaled[g], centred[g] / (spread[g] + 1e-8))
