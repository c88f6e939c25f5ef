"""Importance-weight estimators against plain per-episode loops (one env column, one episode at a time)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from pgrad.errors import ConfigError
from pgrad.estimators import reward_to_go
from pgrad.estimators.importance import (
    clip_weights,
    cumulative_log_ratio,
    effective_sample_size,
    importance_weighted_advantages,
    per_decision_weights,
    trajectory_weights,
)

from .conftest import SPECIAL_CASES, column, episodes_of, make_random_batch

SHAPES = [(1, 1), (1, 5), (9, 1), (13, 3), (40, 6)]
SEEDS = range(len(SPECIAL_CASES))


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def log_ratios(seed: int, T: int, N: int, scale: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + seed)
    return scale * torch.randn(T, N, generator=g, dtype=torch.float64)


def episode_mask(batch, seed: int) -> torch.Tensor:
    """A random selection of whole episodes (as collect_episodes leaves out unfinished ones)."""
    rng = random.Random(seed)
    T, N = batch.shape
    mask = torch.zeros(T, N, dtype=torch.bool)
    for n in range(N):
        for s, e, _ in episodes_of(batch, n):
            mask[s : e + 1, n] = rng.random() < 0.7
    return mask


# ---------------------------------------------------------------------------------------------------------
# references: products of ratios and sums written out per episode


def ref_cumulative(batch, log_ratio):
    T, N = batch.shape
    out = [[0.0] * N for _ in range(T)]
    for n in range(N):
        x = column(log_ratio, n)
        for s, e, _ in episodes_of(batch, n):
            for t in range(s, e + 1):
                out[t][n] = sum(x[s : t + 1])
    return torch.tensor(out, dtype=torch.float64)


def ref_per_decision(batch, log_ratio):
    T, N = batch.shape
    out = [[0.0] * N for _ in range(T)]
    for n in range(N):
        rho = [math.exp(v) for v in column(log_ratio, n)]
        for s, e, _ in episodes_of(batch, n):
            for t in range(s, e + 1):
                out[t][n] = math.prod(rho[s : t + 1])
    return torch.tensor(out, dtype=torch.float64)


def ref_trajectory(batch, log_ratio):
    T, N = batch.shape
    out = [[0.0] * N for _ in range(T)]
    for n in range(N):
        rho = [math.exp(v) for v in column(log_ratio, n)]
        for s, e, _ in episodes_of(batch, n):
            w = math.prod(rho[s : e + 1])
            for t in range(s, e + 1):
                out[t][n] = w
    return torch.tensor(out, dtype=torch.float64)


def ref_self_normalize(batch, weights, mask):
    """w_t / Z_k, Z_k = mean over the masked episodes j of w^j at step min(k, L_j − 1)."""
    T, N = batch.shape
    episodes = []  # (column, first row, last row)
    for n in range(N):
        episodes += [(n, s, e) for s, e, _ in episodes_of(batch, n)]
    in_batch = [(n, s, e) for n, s, e in episodes if mask[s, n]]
    if not in_batch:
        return weights.clone()

    def Z(k):
        return sum(float(weights[min(s + k, e), n]) for n, s, e in in_batch) / len(in_batch)

    out = [[0.0] * N for _ in range(T)]
    for n, s, e in episodes:
        for t in range(s, e + 1):
            out[t][n] = float(weights[t, n]) / Z(t - s)
    return torch.tensor(out, dtype=torch.float64)


def ref_advantages(batch, weights, gamma, baselines, bootstrap):
    T, N = batch.shape
    out = [[0.0] * N for _ in range(T)]
    for n in range(N):
        r, w, nv = column(batch.rewards, n), column(weights, n), column(batch.next_values, n)
        b = column(baselines, n) if baselines is not None else [0.0] * T
        for s, e, kind in episodes_of(batch, n):
            B = (0.0 if kind == "term" else w[e] * nv[e]) if bootstrap else 0.0
            for t in range(s, e + 1):
                out[t][n] = (
                    sum(gamma ** (k - t) * w[k] * r[k] for k in range(t, e + 1))
                    + gamma ** (e - t + 1) * B
                    - w[t] * b[t]
                )
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------------
# against the references


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_weights_match_plain_loops(shape, seed):
    batch = make_random_batch(seed, *shape)
    x = log_ratios(seed, *shape)
    close(cumulative_log_ratio(x, batch.terminated, batch.truncated), ref_cumulative(batch, x))
    close(per_decision_weights(x, batch.terminated, batch.truncated), ref_per_decision(batch, x))
    close(trajectory_weights(x, batch.terminated, batch.truncated), ref_trajectory(batch, x))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["per_decision", "trajectory"])
def test_self_normalised_weights_match_plain_loop(shape, seed, kind):
    batch = make_random_batch(seed, *shape)
    x = log_ratios(seed, *shape, scale=1.0)
    make = per_decision_weights if kind == "per_decision" else trajectory_weights
    w = make(x, batch.terminated, batch.truncated)
    flags = {"terminated": batch.terminated, "truncated": batch.truncated}
    for mask in (None, episode_mask(batch, seed)):
        full = torch.ones(shape, dtype=torch.bool) if mask is None else mask
        out = clip_weights(w, self_normalize=True, mask=mask, **flags)
        close(out, ref_self_normalize(batch, w, full))
        # truncation happens first
        clipped = clip_weights(w, 1.5, self_normalize=True, mask=mask, **flags)
        close(clipped, ref_self_normalize(batch, w.clamp(max=1.5), full))
        if kind == "trajectory" and full.any():  # weighted IS: the weights of the M episodes average 1
            starts = torch.ones_like(full)
            starts[1:] = batch.done[:-1]
            selected = out[starts & full]
            close(selected.mean(), torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma", [0.0, 0.9, 1.0])
def test_weighted_advantages_match_plain_loop(shape, seed, gamma):
    batch = make_random_batch(seed, *shape)
    x = log_ratios(seed, *shape)
    flags = (batch.terminated, batch.truncated)
    for w in (per_decision_weights(x, *flags), trajectory_weights(x, *flags)):
        for baselines in (None, batch.values):
            close(
                importance_weighted_advantages(w, batch.rewards, *flags, gamma, baselines),
                ref_advantages(batch, w, gamma, baselines, bootstrap=False),
            )
            close(
                importance_weighted_advantages(w, batch.rewards, *flags, gamma, baselines, batch.next_values),
                ref_advantages(batch, w, gamma, baselines, bootstrap=True),
            )


def test_weighted_advantages_special_forms():
    batch = make_random_batch(0, 30, 4)
    flags = (batch.terminated, batch.truncated)
    x = log_ratios(0, 30, 4)
    gamma = 0.95
    G = reward_to_go(batch.rewards, *flags, gamma, batch.next_values)
    # ρ = 1: the on-policy reward-to-go minus the baseline
    ones = torch.ones_like(batch.rewards)
    close(
        importance_weighted_advantages(ones, batch.rewards, *flags, gamma, batch.values, batch.next_values),
        G - batch.values,
    )
    # trajectory weights: w (G_t − b_t)
    w = trajectory_weights(x, *flags)
    close(
        importance_weighted_advantages(w, batch.rewards, *flags, gamma, batch.values, batch.next_values),
        w * (G - batch.values),
    )
    # NaN in next_values at terminated steps (never to be read) does not leak
    nv = torch.where(batch.terminated, torch.nan, batch.next_values)
    out = importance_weighted_advantages(w, batch.rewards, *flags, gamma, None, nv)
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------------------
# clipping, ESS, numerics


def test_truncation_is_an_elementwise_min_and_needs_no_flags():
    w = torch.tensor([[0.1, 3.0], [7.0, 1.0]])
    torch.testing.assert_close(clip_weights(w, 2.0), torch.tensor([[0.1, 2.0], [2.0, 1.0]]))
    torch.testing.assert_close(clip_weights(w), w)
    torch.testing.assert_close(clip_weights(w.flatten(), 2.0), torch.tensor([0.1, 2.0, 2.0, 1.0]))


def test_self_normalisation_of_unit_weights_and_scale_invariance():
    batch = make_random_batch(3, 20, 3)
    flags = {"terminated": batch.terminated, "truncated": batch.truncated}
    ones = torch.ones(20, 3, dtype=torch.float64)
    close(clip_weights(ones, self_normalize=True, **flags), ones)
    w = per_decision_weights(log_ratios(3, 20, 3), batch.terminated, batch.truncated)
    close(clip_weights(1e6 * w, self_normalize=True, **flags), clip_weights(w, self_normalize=True, **flags))
    # no episode in the mask: nothing to normalise by
    none = torch.zeros(20, 3, dtype=torch.bool)
    close(clip_weights(w, self_normalize=True, mask=none, **flags), w)


def test_hand_computed_self_normalisation():
    # one column: episode A = rows 0-1 (weights 1, 3), episode B = row 2 (weight 2, terminated)
    w = torch.tensor([[1.0], [3.0], [2.0]], dtype=torch.float64)
    term = torch.tensor([[False], [False], [True]])
    trunc = torch.tensor([[False], [True], [False]])
    out = clip_weights(w, self_normalize=True, terminated=term, truncated=trunc)
    # Z_0 = (1 + 2)/2, Z_1 = (3 + 2)/2 (B has ended and keeps its last weight 2)
    close(out, torch.tensor([[1 / 1.5], [3 / 2.5], [2 / 1.5]], dtype=torch.float64))


def test_effective_sample_size():
    assert effective_sample_size(torch.ones(7)) == pytest.approx(7.0)
    assert effective_sample_size(torch.tensor([0.0, 5.0, 0.0])) == pytest.approx(1.0)
    w = torch.tensor([0.5, 2.0, 1.0, 0.25], dtype=torch.float64)
    assert effective_sample_size(w) == pytest.approx(float(w.sum() ** 2 / (w**2).sum()), rel=1e-12)
    assert effective_sample_size(w) == pytest.approx(3.75**2 / 5.3125, rel=1e-12)
    # scale invariant, also where w² would overflow
    assert effective_sample_size(1e300 * w) == pytest.approx(effective_sample_size(w), rel=1e-12)
    assert effective_sample_size(torch.tensor([1e30, 1e30], dtype=torch.float32)) == pytest.approx(2.0)
    assert effective_sample_size(torch.tensor([float("inf"), 1.0, 2.0])) == 1.0
    mask = torch.tensor([True, False, True, False])
    assert effective_sample_size(w, mask) == pytest.approx(1.5**2 / 1.25, rel=1e-12)
    assert effective_sample_size(torch.zeros(3)) == 0.0
    assert effective_sample_size(torch.zeros(0)) == 0.0
    with pytest.raises(ConfigError, match="non-negative"):
        effective_sample_size(torch.tensor([1.0, -1.0]))


def test_weights_in_log_space():
    T = 50
    x = torch.full((T, 1), 2.0)  # Π ρ = e^100: beyond float32, fine in float64
    term = torch.zeros(T, 1, dtype=torch.bool)
    term[-1] = True
    trunc = torch.zeros_like(term)
    assert torch.isinf(trajectory_weights(x, term, trunc)).all()
    w64 = trajectory_weights(x.double(), term, trunc)
    close(torch.log(w64), torch.full((T, 1), 100.0, dtype=torch.float64))
    # ESS survives the huge weights; the log of the per-decision weight is exact
    assert effective_sample_size(w64) == pytest.approx(T)
    close(cumulative_log_ratio(x.double(), term, trunc)[:, 0], 2.0 * torch.arange(1, T + 1).double())


def test_zero_probability_action_zeroes_only_its_own_episode():
    # column: episode rows 0-2 with π_θ(a_1) = 0, then episode rows 3-4
    x = torch.tensor([[0.1], [-math.inf], [0.2], [0.3], [0.4]], dtype=torch.float64)
    term = torch.tensor([[False], [False], [True], [False], [True]])
    trunc = torch.zeros_like(term)
    w = per_decision_weights(x, term, trunc)
    close(w[:, 0], torch.tensor([math.exp(0.1), 0.0, 0.0, math.exp(0.3), math.exp(0.7)], dtype=torch.float64))
    close(
        trajectory_weights(x, term, trunc)[:, 0],
        torch.tensor([0, 0, 0, math.exp(0.7), math.exp(0.7)], dtype=torch.float64),
    )


def test_bad_arguments_are_named():
    w = torch.ones(3, 2)
    flags = torch.zeros(3, 2, dtype=torch.bool)
    with pytest.raises(ConfigError, match="max_weight"):
        clip_weights(w, 0.0)
    with pytest.raises(ConfigError, match="max_weight"):
        clip_weights(w, True)
    with pytest.raises(ConfigError, match="self_normalize"):
        clip_weights(w, self_normalize=True)
    with pytest.raises(ConfigError, match="terminated"):
        per_decision_weights(w, torch.zeros(4, 2, dtype=torch.bool), flags)
    with pytest.raises(ConfigError, match="log_ratio"):
        trajectory_weights(torch.ones(3, 2, dtype=torch.long), flags, flags)
    with pytest.raises(ConfigError, match="weights"):
        importance_weighted_advantages(torch.ones(2, 2), w, flags, flags, 0.9)
    with pytest.raises(ConfigError, match="gamma"):
        importance_weighted_advantages(w, w, flags, flags, 1.5)
