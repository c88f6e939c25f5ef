"""Return estimators against slow, plain-Python references (one env column, one episode at a time)."""

from __future__ import annotations

import math

import pytest
import torch

from pgrad.errors import ConfigError
from pgrad.estimators import n_step_return, reward_to_go, td_lambda_return, total_return

from .conftest import SPECIAL_CASES, Batch, column, episodes_of, make_random_batch

SHAPES = [(1, 1), (1, 5), (9, 1), (13, 3), (40, 6)]
SEEDS = range(len(SPECIAL_CASES))  # every special case once per shape
GAMMAS = [0.0, 0.9, 0.99, 1.0]
LAMS = [0.0, 0.5, 0.95, 1.0]


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------------------
# references: plain floats, one column and one episode at a time, written as sums (not recursions)


def ref_total_return(batch, gamma):
    T, N = batch.shape
    out = [[0.0] * N for _ in range(T)]
    for n in range(N):
        r = column(batch.rewards, n)
        for s, e, _ in episodes_of(batch, n):
            G = sum(gamma**k * r[s + k] for k in range(e - s + 1))
            for t in range(s, e + 1):
                out[t][n] = G
    return torch.tensor(out, dtype=torch.float64)


def end_bootstrap(kind: str, nv_e: float) -> float:
    """Value after the last step e of an episode: 0 if terminated, else V(s_{e+1}) = next_values[e]."""
    return 0.0 if kind == "term" else nv_e


def ref_reward_to_go(batch, gamma, bootstrap: bool):
    T, N = batch.shape
    out = [[0.0] * N for _ in range(T)]
    for n in range(N):
        r, nv = column(batch.rewards, n), column(batch.next_values, n)
        for s, e, kind in episodes_of(batch, n):
            B = end_bootstrap(kind, nv[e]) if bootstrap else 0.0
            for t in range(s, e + 1):
                out[t][n] = sum(gamma ** (k - t) * r[k] for k in range(t, e + 1)) + gamma ** (e - t + 1) * B
    return torch.tensor(out, dtype=torch.float64)


def ref_n_step_one(r, nv, t, e, kind, gamma, n):
    """G_t^(n) for one step t of an episode ending at row e."""
    m = min(n, e - t + 1)
    last = t + m - 1
    B = end_bootstrap(kind, nv[e]) if last == e else nv[last]
    return sum(gamma**k * r[t + k] for k in range(m)) + gamma**m * B


def ref_n_step(batch, gamma, n_steps):
    T, N = batch.shape
    out = [[0.0] * N for _ in range(T)]
    for n in range(N):
        r, nv = column(batch.rewards, n), column(batch.next_values, n)
        for s, e, kind in episodes_of(batch, n):
            for t in range(s, e + 1):
                out[t][n] = ref_n_step_one(r, nv, t, e, kind, gamma, n_steps)
    return torch.tensor(out, dtype=torch.float64)


def ref_td_lambda(batch, gamma, lam):
    """Forward view G^λ = (1−λ) Σ_{k=1}^{m−1} λ^{k−1} G^(k) + λ^{m−1} G^(m), m = steps left in the episode."""
    T, N = batch.shape
    out = [[0.0] * N for _ in range(T)]
    for n in range(N):
        r, nv = column(batch.rewards, n), column(batch.next_values, n)
        for s, e, kind in episodes_of(batch, n):
            for t in range(s, e + 1):
                m = e - t + 1
                G = [ref_n_step_one(r, nv, t, e, kind, gamma, k) for k in range(1, m + 1)]
                out[t][n] = (1 - lam) * sum(lam ** (k - 1) * G[k - 1] for k in range(1, m)) + lam ** (
                    m - 1
                ) * G[m - 1]
    return torch.tensor(out, dtype=torch.float64)


def td0_target(batch, gamma):
    return batch.rewards + gamma * torch.where(batch.terminated, 0.0, batch.next_values)


# ---------------------------------------------------------------------------------------------------------
# the references themselves, on a hand-computed column (so a wrong reference cannot hide a wrong function)


def hand_batch():
    # one column, episodes: rows 0-1 truncated at 1, row 2 terminated, rows 3-4 open at the end
    t = torch.tensor
    return Batch(
        rewards=t([[1.0], [2.0], [4.0], [8.0], [16.0]], dtype=torch.float64),
        values=t([[0.5], [0.25], [3.0], [0.125], [0.0625]], dtype=torch.float64),
        next_values=t([[0.25], [100.0], [-1000.0], [0.0625], [32.0]], dtype=torch.float64),
        terminated=t([[False], [False], [True], [False], [False]]),
        truncated=t([[False], [True], [False], [False], [False]]),
    )


def test_hand_computed_column():
    b = hand_batch()
    g = 0.5
    col = lambda *v: torch.tensor(v, dtype=torch.float64).reshape(-1, 1)  # noqa: E731
    expected_total = col(1 + g * 2, 1 + g * 2, 4, 8 + g * 16, 8 + g * 16)
    expected_rtg = col(1 + g * 2, 2, 4, 8 + g * 16, 16)
    expected_rtg_boot = col(1 + g * 2 + g * g * 100, 2 + g * 100, 4, 8 + g * 16 + g * g * 32, 16 + g * 32)
    expected_1step = col(1 + g * 0.25, 2 + g * 100, 4, 8 + g * 0.0625, 16 + g * 32)
    for fast, ref, expected in [
        (total_return(b.rewards, b.terminated, b.truncated, g), ref_total_return(b, g), expected_total),
        (reward_to_go(b.rewards, b.terminated, b.truncated, g), ref_reward_to_go(b, g, False), expected_rtg),
        (
            reward_to_go(b.rewards, b.terminated, b.truncated, g, next_values=b.next_values),
            ref_reward_to_go(b, g, True),
            expected_rtg_boot,
        ),
        (
            n_step_return(b.rewards, b.next_values, b.terminated, b.truncated, g, 1),
            ref_n_step(b, g, 1),
            expected_1step,
        ),
        (
            n_step_return(b.rewards, b.next_values, b.terminated, b.truncated, g, 5),
            ref_n_step(b, g, 5),
            expected_rtg_boot,
        ),
    ]:
        close(ref, expected)
        close(fast, expected)
    # λ = 0.5 by hand at row 3: r + γ[(1−λ) V(s_4) + λ G_4], G_4 = 16 + γ·32
    lam_ret = td_lambda_return(b.rewards, b.values, b.next_values, b.terminated, b.truncated, g, 0.5)
    G4 = 16 + g * 32
    G3 = 8 + g * (0.5 * 0.0625 + 0.5 * G4)
    G0 = 1 + g * (0.5 * 0.25 + 0.5 * (2 + g * 100))
    close(lam_ret, col(G0, 2 + g * 100, 4, G3, G4))
    close(ref_td_lambda(b, g, 0.5), col(G0, 2 + g * 100, 4, G3, G4))


# ---------------------------------------------------------------------------------------------------------
# fast vs reference on random batches


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_total_return_matches_reference(seed, shape, gamma):
    b = make_random_batch(seed, *shape)
    close(total_return(b.rewards, b.terminated, b.truncated, gamma), ref_total_return(b, gamma))


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_reward_to_go_matches_reference(seed, shape, gamma):
    b = make_random_batch(seed, *shape)
    close(reward_to_go(b.rewards, b.terminated, b.truncated, gamma), ref_reward_to_go(b, gamma, False))
    close(
        reward_to_go(b.rewards, b.terminated, b.truncated, gamma, next_values=b.next_values),
        ref_reward_to_go(b, gamma, True),
    )


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_n_step_return_matches_reference(seed, shape, gamma):
    b = make_random_batch(seed, *shape)
    for n in (1, 2, 3, 7, 100):
        fast = n_step_return(b.rewards, b.next_values, b.terminated, b.truncated, gamma, n)
        close(fast, ref_n_step(b, gamma, n))


@pytest.mark.parametrize("lam", LAMS)
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_td_lambda_return_matches_reference(seed, shape, gamma, lam):
    b = make_random_batch(seed, *shape)
    fast = td_lambda_return(b.rewards, b.values, b.next_values, b.terminated, b.truncated, gamma, lam)
    close(fast, ref_td_lambda(b, gamma, lam))


def test_batches_cover_the_edge_cases():
    """The random batches above do contain the cases they are meant to exercise."""
    batches = [make_random_batch(seed, *shape) for seed in SEEDS for shape in SHAPES]
    multi = [b for b in batches if b.shape[0] > 1]
    assert any(not b.done.any() for b in multi)  # no episode end at all
    assert any((b.terminated & b.truncated)[:-1].any() for b in multi)  # both flags on one step
    assert any((b.terminated & b.truncated)[-1].any() for b in multi)  # both flags at the last row
    assert any(b.done[0].any() for b in multi)  # an episode cut at row 0
    assert any((~b.done[-1]).any() and b.done[:-1].any() for b in multi)  # open last row after an end
    assert any((b.done[:-1].sum(dim=0) > 1).any() for b in multi)  # several episodes in one column


# ---------------------------------------------------------------------------------------------------------
# real Gymnasium rollouts


def test_gym_rollouts_match_reference(gym_batch):
    b = gym_batch
    T = b.shape[0]
    # Monte-Carlo functions: the caller marks the end of the rollout as a truncation
    trunc_mc = b.truncated.clone()
    trunc_mc[-1] = True
    for gamma in GAMMAS:
        close(total_return(b.rewards, b.terminated, trunc_mc, gamma), ref_total_return(b, gamma))
        close(reward_to_go(b.rewards, b.terminated, trunc_mc, gamma), ref_reward_to_go(b, gamma, False))
        close(
            reward_to_go(b.rewards, b.terminated, b.truncated, gamma, next_values=b.next_values),
            ref_reward_to_go(b, gamma, True),
        )
        for n in (1, 3, T):
            close(
                n_step_return(b.rewards, b.next_values, b.terminated, b.truncated, gamma, n),
                ref_n_step(b, gamma, n),
            )
        for lam in LAMS:
            close(
                td_lambda_return(b.rewards, b.values, b.next_values, b.terminated, b.truncated, gamma, lam),
                ref_td_lambda(b, gamma, lam),
            )


# ---------------------------------------------------------------------------------------------------------
# identities


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_total_return_is_episode_constant_and_equals_reward_to_go_at_first_step(seed, shape):
    b = make_random_batch(seed, *shape)
    for gamma in GAMMAS:
        total = total_return(b.rewards, b.terminated, b.truncated, gamma)
        rtg = reward_to_go(b.rewards, b.terminated, b.truncated, gamma)
        for n in range(shape[1]):
            for s, e, _ in episodes_of(b, n):
                assert torch.all(total[s : e + 1, n] == total[s, n])
                assert total[s, n] == rtg[s, n]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_n_step_identities(seed, shape):
    b = make_random_batch(seed, *shape)
    T = shape[0]
    for gamma in GAMMAS:
        args = (b.rewards, b.next_values, b.terminated, b.truncated, gamma)
        close(n_step_return(*args, 1), td0_target(b, gamma))
        boot = reward_to_go(b.rewards, b.terminated, b.truncated, gamma, next_values=b.next_values)
        close(n_step_return(*args, T), boot)
        close(n_step_return(*args, T + 5), boot)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_td_lambda_limits(seed, shape):
    b = make_random_batch(seed, *shape)
    for gamma in GAMMAS:
        args = (b.rewards, b.values, b.next_values, b.terminated, b.truncated, gamma)
        close(td_lambda_return(*args, 0.0), td0_target(b, gamma))
        boot = reward_to_go(b.rewards, b.terminated, b.truncated, gamma, next_values=b.next_values)
        close(td_lambda_return(*args, 1.0), boot)


@pytest.mark.parametrize("seed", SEEDS)
def test_open_last_row_is_the_same_as_a_truncated_last_row(seed):
    b = make_random_batch(seed, 11, 4)
    cut = b.truncated.clone()
    cut[-1] = True
    for gamma in (0.9, 1.0):
        for fn in (
            lambda tr, g: reward_to_go(b.rewards, b.terminated, tr, g, next_values=b.next_values),
            lambda tr, g: n_step_return(b.rewards, b.next_values, b.terminated, tr, g, 3),
            lambda tr, g: td_lambda_return(b.rewards, b.values, b.next_values, b.terminated, tr, g, 0.7),
            lambda tr, g: total_return(b.rewards, b.terminated, tr, g),
            lambda tr, g: reward_to_go(b.rewards, b.terminated, tr, g),
        ):
            close(fn(b.truncated, gamma), fn(cut, gamma))


def test_next_values_at_terminated_steps_are_never_read():
    b = make_random_batch(3, 30, 5)
    assert b.terminated.any()
    poisoned = torch.where(b.terminated, torch.nan, b.next_values)
    for gamma in (0.0, 0.9, 1.0):
        for fn in (
            lambda nv, g: reward_to_go(b.rewards, b.terminated, b.truncated, g, next_values=nv),
            lambda nv, g: n_step_return(b.rewards, nv, b.terminated, b.truncated, g, 4),
            lambda nv, g: td_lambda_return(b.rewards, b.values, nv, b.terminated, b.truncated, g, 0.5),
        ):
            close(fn(poisoned, gamma), fn(b.next_values, gamma))


def test_nothing_leaks_across_an_episode_end():
    """Changing anything after a truncation/termination at row k leaves rows ≤ k unchanged."""
    b = make_random_batch(4, 12, 3)
    term = torch.zeros(12, 3, dtype=torch.bool)
    trunc = torch.zeros(12, 3, dtype=torch.bool)
    term[5, 0] = True
    trunc[5, 1] = True
    term[5, 2] = trunc[5, 2] = True
    r2, v2, nv2 = b.rewards.clone(), b.values.clone(), b.next_values.clone()
    r2[6:] += 100.0
    v2[6:] -= 50.0
    nv2[6:] += 70.0
    args, args2 = (b.rewards, term, trunc, 0.9), (r2, term, trunc, 0.9)
    close(total_return(*args)[:6], total_return(*args2)[:6])
    close(reward_to_go(*args)[:6], reward_to_go(*args2)[:6])
    close(reward_to_go(*args, next_values=b.next_values)[:6], reward_to_go(*args2, next_values=nv2)[:6])
    close(
        n_step_return(b.rewards, b.next_values, term, trunc, 1.0, 20)[:6],
        n_step_return(r2, nv2, term, trunc, 1.0, 20)[:6],
    )
    close(
        td_lambda_return(b.rewards, b.values, b.next_values, term, trunc, 1.0, 0.8)[:6],
        td_lambda_return(r2, v2, nv2, term, trunc, 1.0, 0.8)[:6],
    )


# ---------------------------------------------------------------------------------------------------------
# dtype, device, flags, autograd, errors


def test_float32_dtype_float_flags_and_no_grad():
    b = make_random_batch(2, 10, 3)
    r32 = b.rewards.float().requires_grad_()
    v32 = b.values.float().requires_grad_()
    nv32 = b.next_values.float().requires_grad_()
    term01, trunc01 = b.terminated.float(), b.truncated.float()
    outs = [
        total_return(r32, term01, trunc01, 0.9),
        reward_to_go(r32, term01, trunc01, 0.9),
        reward_to_go(r32, term01, trunc01, 0.9, next_values=nv32),
        n_step_return(r32, nv32, term01, trunc01, 0.9, 3),
        td_lambda_return(r32, v32, nv32, term01, trunc01, 0.9, 0.5),
    ]
    refs = [
        ref_total_return(b, 0.9),
        ref_reward_to_go(b, 0.9, False),
        ref_reward_to_go(b, 0.9, True),
        ref_n_step(b, 0.9, 3),
        ref_td_lambda(b, 0.9, 0.5),
    ]
    for out, ref in zip(outs, refs, strict=True):
        assert out.dtype == torch.float32 and out.device == r32.device and out.shape == r32.shape
        assert not out.requires_grad
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)
    assert r32.grad is None


def test_empty_rollout_and_trailing_batch_dims():
    empty = torch.zeros(0, 3, dtype=torch.float64)
    flags = torch.zeros(0, 3, dtype=torch.bool)
    assert total_return(empty, flags, flags, 0.9).shape == (0, 3)
    assert n_step_return(empty, empty, flags, flags, 0.9, 2).shape == (0, 3)
    b = make_random_batch(0, 8, 6)
    r3 = b.rewards.reshape(8, 2, 3)
    out3 = reward_to_go(r3, b.terminated.reshape(8, 2, 3), b.truncated.reshape(8, 2, 3), 0.9)
    close(out3.reshape(8, 6), ref_reward_to_go(b, 0.9, False))


@pytest.mark.parametrize("gamma", [1.5, -0.1, math.nan, "0.9", True])
def test_bad_gamma_raises(gamma):
    b = make_random_batch(0, 4, 2)
    with pytest.raises(ConfigError, match="gamma"):
        reward_to_go(b.rewards, b.terminated, b.truncated, gamma)
    with pytest.raises(ConfigError, match="gamma"):
        total_return(b.rewards, b.terminated, b.truncated, gamma)
    with pytest.raises(ConfigError, match="gamma"):
        n_step_return(b.rewards, b.next_values, b.terminated, b.truncated, gamma, 2)
    with pytest.raises(ConfigError, match="gamma"):
        td_lambda_return(b.rewards, b.values, b.next_values, b.terminated, b.truncated, gamma, 0.5)


def test_bad_arguments_raise():
    b = make_random_batch(0, 4, 2)
    with pytest.raises(ConfigError, match="lam"):
        td_lambda_return(b.rewards, b.values, b.next_values, b.terminated, b.truncated, 0.9, 1.01)
    with pytest.raises(ConfigError, match=r"terminated has shape \(4, 1\)"):
        reward_to_go(b.rewards, b.terminated[:, :1], b.truncated, 0.9)
    with pytest.raises(ConfigError, match="truncated has shape"):
        total_return(b.rewards, b.terminated, b.truncated[:3], 0.9)
    with pytest.raises(ConfigError, match="next_values has shape"):
        reward_to_go(b.rewards, b.terminated, b.truncated, 0.9, next_values=b.next_values[:, 0])
    with pytest.raises(ConfigError, match="values has shape"):
        td_lambda_return(b.rewards, b.values.T, b.next_values, b.terminated, b.truncated, 0.9, 0.5)
    for n in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match="n must be"):
            n_step_return(b.rewards, b.next_values, b.terminated, b.truncated, 0.9, n)
    with pytest.raises(ConfigError, match="rewards must have a floating dtype"):
        reward_to_go(torch.ones(4, 2, dtype=torch.int64), b.terminated, b.truncated, 0.9)
    with pytest.raises(ConfigError, match=r"rewards must be a torch\.Tensor"):
        reward_to_go([[1.0]], b.terminated, b.truncated, 0.9)
