"""Critic targets of the learned-critic family (pgrad.estimators.targets) against hand computations.

td_target on literal rows (terminated rows never read V(s'), truncated rows bootstrap) and on n-step samples
of a real ReplayBuffer whose expected targets are worked out by hand; ensemble_min, soft_value and
expected_soft_value against plain loops; temperature_loss's gradient sign; polyak_update against
θ̄(1 − τ) + τθ; one-line ConfigErrors for bad arguments.
"""

from __future__ import annotations

import math

import pytest
import torch

from pgrad.errors import ConfigError
from pgrad.estimators import (
    ensemble_min,
    expected_soft_value,
    polyak_update,
    soft_value,
    td_target,
    temperature_loss,
)
from pgrad.run.replay import ReplayBuffer

F64 = torch.float64


# ---------------------------------------------------------------------------------------------------------
# td_target


def test_td_target_hand_computation_terminated_rows_do_not_bootstrap():
    # rows: running (γ), truncated at a time limit (terminated False: bootstraps), terminated, 2-step
    # sum that truncated (γ²), 3-step sum that terminated (γ³)
    rewards = torch.tensor([1.0, 2.0, -1.0, 0.5, 3.0], dtype=F64)
    discount = torch.tensor([0.9, 0.9, 0.9, 0.81, 0.729], dtype=F64)
    terminated = torch.tensor([False, False, True, False, True])
    next_values = torch.tensor([10.0, -3.0, 1000.0, 20.0, -1000.0], dtype=F64)
    y = td_target(rewards, discount, terminated, next_values)
    expected = torch.tensor([1.0 + 9.0, 2.0 - 2.7, -1.0, 0.5 + 16.2, 3.0], dtype=F64)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    # a float γ for one-step transitions, and 0/1 flags instead of bools, give the same
    y_float = td_target(rewards[:3], 0.9, terminated[:3].double(), next_values[:3])
    torch.testing.assert_close(y_float, expected[:3], rtol=1e-12, atol=1e-12)


def test_td_target_never_reads_a_terminal_value_and_is_detached():
    next_values = torch.tensor([math.nan, math.inf, 2.0], requires_grad=True)
    y = td_target(torch.ones(3), torch.full((3,), 0.5), torch.tensor([True, True, False]), next_values)
    assert y.tolist() == [1.0, 1.0, 2.0]  # V(s') at a terminal, even NaN, never enters
    assert not y.requires_grad


def test_td_target_on_n_step_replay_samples_with_truncation_and_termination():
    """One sub-env, n = 2, γ = 0.9. obs = step index t; the final observation of a step t that ended an
    episode is 50 + t; V(s) = 10·s. Episodes: steps 0–2 (truncated at 2), 3–4 (terminated at 4), 5–7
    (still running: step 7 waits for its second reward)."""
    gamma, rewards = 0.9, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    buffer = ReplayBuffer(16, 1, (1,), 1, n_step=2, gamma=gamma)
    for t, r in enumerate(rewards):
        terminated, truncated = t == 4, t == 2
        next_obs = 50.0 + t if terminated or truncated else t + 1.0
        buffer.add(
            torch.tensor([[float(t)]]),
            torch.zeros(1, 1),
            torch.tensor([r]),
            torch.tensor([terminated]),
            torch.tensor([truncated]),
            torch.tensor([[next_obs]]),
        )
    # by hand: y = R + discount·(1 − terminated)·10·s'
    expected = {
        0: 1 + 0.9 * 2 + 0.81 * 10 * 2,  # 19.0: s' = obs 2, still in the episode
        1: 2 + 0.9 * 3 + 0.81 * 10 * 52,  # 425.9: the sum stops at the truncation, bootstraps from final 52
        2: 3 + 0.9 * 10 * 52,  # 471.0: one reward, then the truncation's final observation
        3: 4 + 0.9 * 5,  # 8.5: terminated inside the sum: no bootstrap
        4: 5.0,  # terminated at once
        5: 6 + 0.9 * 7 + 0.81 * 10 * 7,  # 69.0
        6: 7 + 0.9 * 8 + 0.81 * 10 * 8,  # 79.0: s' = the pending next_obs of the newest step
    }
    generator = torch.Generator().manual_seed(0)
    batch = type(buffer.sample(1, generator))(
        *map(torch.cat, zip(*(buffer.sample(7, generator) for _ in range(40)), strict=True))
    )
    y = td_target(batch.rewards, batch.discount, batch.terminated, 10.0 * batch.next_obs[:, 0])
    starts = batch.obs[:, 0].long().tolist()
    assert set(starts) == set(expected)
    torch.testing.assert_close(y, torch.tensor([expected[t] for t in starts]), rtol=1e-6, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# ensemble_min, soft values


def test_ensemble_min_is_the_elementwise_minimum_over_members():
    q = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = ensemble_min(q)
    assert out.shape == (5, 4)
    for b in range(5):
        for a in range(4):
            assert out[b, a].item() == min(q[e, b, a].item() for e in range(3))
    single = torch.randn(1, 6, dtype=F64)
    assert torch.equal(ensemble_min(single), single[0])


@pytest.mark.parametrize("alpha", [0.0, 0.3, torch.tensor(0.3, requires_grad=True)])
def test_soft_value_is_q_minus_alpha_log_prob(alpha):
    q = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    log_prob = torch.tensor([-1.0, 0.25, 2.0], dtype=F64)
    a = float(alpha.detach()) if isinstance(alpha, torch.Tensor) else alpha
    expected = torch.tensor([q[i].item() - a * log_prob[i].item() for i in range(3)], dtype=F64)
    v = soft_value(q, log_prob, alpha)
    torch.testing.assert_close(v, expected, rtol=1e-12, atol=1e-12)
    assert not v.requires_grad  # α enters detached: its own loss tunes it


def test_expected_soft_value_against_a_plain_loop():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(6, 4, generator=g, dtype=F64)
    logits = torch.randn(6, 4, generator=g, dtype=F64)
    log_probs = torch.log_softmax(logits, -1)
    probs = log_probs.exp()
    alpha = 0.2
    expected = []
    for b in range(6):
        total = 0.0
        for a in range(4):
            p = math.exp(logits[b, a].item()) / sum(math.exp(x) for x in logits[b].tolist())
            total += p * (q[b, a].item() - alpha * math.log(p))
        expected.append(total)
    out = expected_soft_value(q, probs, log_probs, alpha)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=F64), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# temperature


@pytest.mark.parametrize(("entropy", "direction"), [(2.0, "lower"), (-3.0, "raise")])
def test_temperature_loss_lowers_alpha_above_the_target_entropy_and_raises_it_below(entropy, direction):
    target_entropy = -1.0
    log_prob = torch.full((8,), -entropy, requires_grad=True)  # E[−log π] = entropy
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    loss = temperature_loss(log_alpha, log_prob, target_entropy)
    loss.backward()
    # ∂L/∂log α = −E[log π + H̄] = entropy − H̄
    assert log_alpha.grad.item() == pytest.approx(entropy - target_entropy)
    stepped = log_alpha.detach() - 0.1 * log_alpha.grad  # a gradient-descent step
    assert (stepped < log_alpha.detach()) if direction == "lower" else (stepped > log_alpha.detach())
    assert log_prob.grad is None  # log π is a constant here


# ---------------------------------------------------------------------------------------------------------
# Polyak averaging


@pytest.mark.parametrize("tau", [0.0, 0.005, 0.3, 1.0])
def test_polyak_update_is_convex_combination(tau):
    g = torch.Generator().manual_seed(2)
    target = [torch.randn(3, 4, generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)]
    online = [torch.nn.Parameter(torch.randn(3, 4, generator=g, dtype=F64)), torch.randn(5, dtype=F64)]
    expected = [t.clone() * (1 - tau) + tau * o.detach() for t, o in zip(target, online, strict=True)]
    before = [o.detach().clone() for o in online]
    polyak_update(target, online, tau)
    for t, e in zip(target, expected, strict=True):
        torch.testing.assert_close(t, e, rtol=1e-14, atol=1e-14)
    for o, b in zip(online, before, strict=True):
        assert torch.equal(o.detach(), b)  # online weights untouched
    if tau == 0.0:
        assert all(torch.equal(t, e) for t, e in zip(target, expected, strict=True))
    if tau == 1.0:
        assert all(torch.equal(t, o.detach()) for t, o in zip(target, online, strict=True))


# ---------------------------------------------------------------------------------------------------------
# argument errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: td_target(torch.ones(3), 0.9, torch.zeros(3), torch.ones(4)), "next_values has shape"),
        (
            lambda: td_target(torch.ones(3), torch.ones(2), torch.zeros(3), torch.ones(3)),
            "discount has shape",
        ),
        (lambda: td_target(torch.ones(3), 1.5, torch.zeros(3), torch.ones(3)), "discount must be in [0, 1]"),
        (lambda: td_target(torch.ones(3), 0.9, torch.zeros(2), torch.ones(3)), "terminated has shape"),
        (lambda: td_target(torch.ones(3, dtype=torch.long), 0.9, torch.zeros(3), torch.ones(3)), "rewards"),
        (lambda: ensemble_min(torch.tensor(1.0)), "q_values must be [E, ...]"),
        (lambda: ensemble_min(torch.ones(2, 3, dtype=torch.long)), "q_values must have a floating dtype"),
        (lambda: soft_value(torch.ones(3), torch.ones(2), 0.1), "log_prob has shape"),
        (lambda: soft_value(torch.ones(3), torch.ones(3), -0.1), "alpha must be >= 0"),
        (lambda: soft_value(torch.ones(3), torch.ones(3), torch.ones(2)), "alpha must be a scalar"),
        (lambda: expected_soft_value(torch.ones(2, 3), torch.ones(2, 2), torch.ones(2, 3), 0.1), "probs"),
        (lambda: temperature_loss(torch.tensor(0.0), torch.ones(3), math.inf), "target_entropy must be"),
        (lambda: polyak_update([torch.ones(2)], [torch.ones(2)] * 2, 0.1), "1 target tensors for 2"),
        (lambda: polyak_update([torch.ones(2)], [torch.ones(2)], 1.5), "tau must be in [0, 1]"),
    ],
)
def test_bad_arguments_raise_one_line_config_errors(call, message):
    with pytest.raises(ConfigError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)
