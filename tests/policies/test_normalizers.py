"""Tests of RewardScaler (pgrad.policies.normalizers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgrad.errors import ConfigError
from pgrad.policies.normalizers import RewardScaler


def _reference(rewards, terminated, truncated, gamma, eps=1e-8, clip=10.0):
    """Plain numpy VecNormalize-style reward scaling (count starts at 0, var at 1)."""
    n_envs = rewards.shape[1]
    ret = np.zeros(n_envs)
    count, mean, var = 0.0, 0.0, 1.0
    out = []
    for r, te, tr in zip(rewards, terminated, truncated, strict=True):
        ret = gamma * ret + r
        b_mean, b_var, m = ret.mean(), ret.var(), len(ret)
        total = count + m
        delta = b_mean - mean
        mean = mean + delta * m / total
        var = (var * count + b_var * m + delta**2 * count * m / total) / total
        count = total
        out.append(np.clip(r / np.sqrt(var + eps), -clip, clip))
        ret[te | tr] = 0.0
    return np.stack(out), ret, (count, mean, var)


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    steps, n = 200, 3
    rewards = rng.normal(0.5, 2.0, size=(steps, n))
    terminated = rng.random((steps, n)) < 0.05
    truncated = rng.random((steps, n)) < 0.03
    expected, ret, (count, mean, var) = _reference(rewards, terminated, truncated, gamma=0.99)
    scaler = RewardScaler(n, gamma=0.99)
    got = [
        scaler.update_and_scale(torch.from_numpy(r), torch.from_numpy(te), torch.from_numpy(tr)).numpy()
        for r, te, tr in zip(rewards, terminated, truncated, strict=True)
    ]
    np.testing.assert_allclose(np.stack(got), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(scaler.returns.numpy(), ret, rtol=0, atol=1e-10)
    assert scaler.stats.count.item() == count
    assert abs(scaler.stats.mean.item() - mean) < 1e-10 and abs(scaler.stats.var.item() - var) < 1e-10
    assert got[0].dtype == np.float64


def test_returns_reset_only_on_ended_envs_after_the_update():
    scaler = RewardScaler(3, gamma=0.9)
    no = torch.zeros(3, dtype=torch.bool)
    ones = torch.ones(3, dtype=torch.float64)
    scaler.update_and_scale(ones, no, no)
    assert torch.allclose(scaler.returns, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))
    scaler.update_and_scale(ones, torch.tensor([False, True, False]), torch.tensor([False, False, True]))
    # the ended envs' returns counted in the stats (1.9 each), then restarted from 0
    assert scaler.stats.count.item() == 6
    assert abs(scaler.stats.mean.item() - (3 * 1.0 + 3 * 1.9) / 6) < 1e-12
    assert torch.allclose(scaler.returns, torch.tensor([1.9, 0.0, 0.0], dtype=torch.float64))
    scaler.update_and_scale(ones, no, no)
    assert torch.allclose(scaler.returns, torch.tensor([2.71, 1.0, 1.0], dtype=torch.float64))
    scaler.reset_returns(torch.tensor([True, False, False]))
    assert torch.allclose(scaler.returns, torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64))
    scaler.reset_returns()
    assert torch.count_nonzero(scaler.returns) == 0


def test_frozen_scale_changes_nothing():
    scaler = RewardScaler(3, gamma=0.99)
    gen = torch.Generator().manual_seed(0)
    no = torch.zeros(3, dtype=torch.bool)
    for _ in range(20):
        scaler.update_and_scale(torch.randn(3, generator=gen, dtype=torch.float64), no, no)
    before = {k: v.clone() for k, v in scaler.state_dict().items()}
    r = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    out = scaler.scale(r)
    assert torch.equal(scaler(r), out)
    assert torch.allclose(out, r / torch.sqrt(scaler.stats.var + 1e-8))
    for k, v in scaler.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_state_dict_round_trip_and_dtype():
    scaler = RewardScaler(3, gamma=0.95, clip=5.0)
    gen = torch.Generator().manual_seed(1)
    no = torch.zeros(3, dtype=torch.bool)
    for _ in range(10):
        scaler.update_and_scale(torch.randn(3, generator=gen, dtype=torch.float64) * 3, no, no)
    sd = scaler.state_dict()
    assert set(sd) == {"returns", "stats.count", "stats.mean", "stats.var"}
    assert all(v.dtype == torch.float64 for v in sd.values())
    loaded = RewardScaler(3, gamma=0.95, clip=5.0)
    loaded.load_state_dict(sd)
    r = torch.randn(3, generator=gen, dtype=torch.float64)
    done = torch.tensor([True, False, False])
    assert torch.equal(loaded.update_and_scale(r, done, no), scaler.update_and_scale(r, done, no))
    for k, v in scaler.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    # dtype casts keep float64 statistics; float32 rewards give float32 output
    loaded.float()
    assert loaded.returns.dtype == torch.float64 and loaded.stats.var.dtype == torch.float64
    assert loaded.scale(torch.ones(3)).dtype == torch.float32


@pytest.mark.parametrize("n", [1, 4])
def test_constant_zero_rewards_stay_finite(n):
    scaler = RewardScaler(n, gamma=0.99)
    zeros = torch.zeros(n)
    done = torch.zeros(n, dtype=torch.bool)
    for t in range(50):
        out = scaler.update_and_scale(zeros, done, done | (t % 7 == 0))
        assert torch.isfinite(out).all() and torch.count_nonzero(out) == 0
    assert scaler.stats.var.item() == 0.0


def test_clip_and_numpy_inputs():
    scaler = RewardScaler(2, gamma=0.99, clip=1.0)
    out = scaler.update_and_scale(np.array([100.0, -100.0]), np.array([False, False]), np.array([0, 0]))
    assert out.abs().max().item() <= 1.0


def test_invalid_arguments():
    with pytest.raises(ConfigError, match="num_envs"):
        RewardScaler(0, 0.99)
    with pytest.raises(ConfigError, match="gamma"):
        RewardScaler(2, 1.5)
    with pytest.raises(ConfigError, match="eps and clip"):
        RewardScaler(2, 0.99, clip=0.0)
    scaler = RewardScaler(2, 0.99)
    with pytest.raises(ConfigError, match=r"rewards must have shape \[2\]"):
        scaler.update_and_scale(
            torch.zeros(3), torch.zeros(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)
        )
    with pytest.raises(ConfigError, match="truncated"):
        scaler.update_and_scale(
            torch.zeros(2), torch.zeros(2, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)
        )
