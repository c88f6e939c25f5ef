"""Surrogate losses, KL estimators and the critic loss (pgrad.estimators.losses) against plain references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from pgrad.errors import ConfigError
from pgrad.estimators import (
    adaptive_kl_beta,
    clipped_surrogate,
    explained_variance,
    importance_ratio,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_penalty_surrogate,
    score_function_loss,
    value_loss,
)

from .test_trust_region import LinearSoftmax

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=gen(seed), dtype=F64)


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-10) -> None:
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


# =========================================================================================================
# score function / ratios / clipped surrogate


def masked_batch(n: int = 12, seed: int = 0):
    log_prob = (randn(n, seed=seed) - 1.5).requires_grad_()
    old = log_prob.detach() + randn(n, seed=seed + 1, scale=0.4)
    adv = randn(n, seed=seed + 2)
    mask = torch.rand(n, generator=gen(seed + 3)) > 0.3
    mask[0] = True
    return log_prob, old, adv, mask


def test_score_function_loss():
    log_prob, _, adv, mask = masked_batch()
    adv = adv.requires_grad_()
    loss, info = score_function_loss(log_prob, adv, mask=mask)
    m = mask.to(F64)
    close(loss, -(log_prob * adv * m).sum() / m.sum())
    loss.backward()
    close(log_prob.grad, -adv.detach() * m / m.sum())
    assert adv.grad is None  # advantages are detached
    assert info["advantage_mean"] == pytest.approx(float(adv.detach()[mask].mean()))
    loss, _ = score_function_loss(log_prob, adv, normalizer=4.0)
    close(loss, -(log_prob * adv).sum() / 4.0)
    with pytest.raises(ConfigError, match="normalizer"):
        score_function_loss(log_prob, adv, normalizer=0.0)
    with pytest.raises(ConfigError, match="advantages"):
        score_function_loss(log_prob, adv[:-1])


def test_importance_ratio():
    log_prob, old, _, _ = masked_batch()
    old = old.requires_grad_()
    ratio = importance_ratio(log_prob, old)
    close(ratio, torch.exp(log_prob - old).detach())
    ratio.sum().backward()
    close(log_prob.grad, ratio.detach())
    assert old.grad is None


def reference_clipped(log_prob, old, adv, mask, eps, eps_low):
    total, count, clipped = 0.0, 0, 0
    for lp, olp, a, m in zip(log_prob.tolist(), old.tolist(), adv.tolist(), mask.tolist(), strict=True):
        if not m:
            continue
        r = math.exp(lp - olp)
        total += min(r * a, min(max(r, 1 - eps_low), 1 + eps) * a)
        count += 1
        clipped += r > 1 + eps or r < 1 - eps_low
    return -total / count, clipped / count


@pytest.mark.parametrize("eps, eps_low", [(0.2, None), (0.28, 0.2), (0.1, 0.3)])
def test_clipped_surrogate_matches_loop(eps, eps_low):
    for seed in range(3):
        log_prob, old, adv, mask = masked_batch(30, seed=10 * seed)
        loss, info = clipped_surrogate(log_prob, old, adv, eps, mask=mask, clip_coef_low=eps_low)
        ref_loss, ref_frac = reference_clipped(
            log_prob, old, adv, mask, eps, eps if eps_low is None else eps_low
        )
        assert loss.item() == pytest.approx(ref_loss, rel=1e-12)
        assert info["clip_fraction"] == pytest.approx(ref_frac)
        r = torch.exp(log_prob - old).detach()[mask]
        assert info["ratio_mean"] == pytest.approx(float(r.mean()), rel=1e-12)
        assert info["ratio_max"] == pytest.approx(float(r.max()), rel=1e-12)
        assert info["approx_kl"] == pytest.approx(float(((r - 1) - r.log()).mean()), rel=1e-9)


def test_clipped_surrogate_gradient_zero_only_where_clip_active():
    eps, eps_low = 0.2, 0.1
    ratios = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.05, 0.95, 1.0, 0.85], dtype=F64)
    adv = torch.tensor([2.0, -2.0, -1.0, 1.0, 3.0, -3.0, 0.5, 1.0], dtype=F64)
    # clip active: (ρ > 1.2, Â > 0) and (ρ < 0.9, Â < 0); the last one ρ = 0.85 < 0.9 but Â > 0: not active
    active = torch.tensor([True, False, True, False, False, False, False, False])
    old = randn(8, seed=3) - 1.0
    log_prob = (old + ratios.log()).requires_grad_()
    loss, info = clipped_surrogate(log_prob, old, adv, eps, clip_coef_low=eps_low)
    loss.backward()
    expected = torch.where(active, torch.zeros_like(adv), -adv * ratios / 8)  # −(1/B) Â ∂ρ/∂log π
    close(log_prob.grad, expected)
    assert info["clip_fraction"] == pytest.approx(5 / 8)  # 1.5, 1.5, 0.5, 0.5, 0.85 are out of [0.9, 1.2]


def test_clipped_surrogate_at_ratio_one_and_detaching():
    old = randn(10, seed=1)
    log_prob = old.clone().requires_grad_()
    adv = randn(10, seed=2).requires_grad_()
    loss, info = clipped_surrogate(log_prob, old, adv, 0.2)
    close(loss, -adv.detach().mean())
    assert info == {"approx_kl": 0.0, "clip_fraction": 0.0, "ratio_mean": 1.0, "ratio_max": 1.0}
    loss.backward()
    close(log_prob.grad, -adv.detach() / 10)
    assert adv.grad is None


def test_clipped_surrogate_mask_ignores_garbage():
    log_prob, old, adv, mask = masked_batch(10)
    lp_bad = torch.where(mask, log_prob.detach(), torch.tensor(-math.inf, dtype=F64)).requires_grad_()
    old_bad = torch.where(mask, old, torch.tensor(math.nan, dtype=F64))
    adv_bad = torch.where(mask, adv, torch.tensor(math.inf, dtype=F64))
    loss, info = clipped_surrogate(lp_bad, old_bad, adv_bad, 0.2, mask=mask.to(torch.int64))
    ref = clipped_surrogate(log_prob[mask].detach().requires_grad_(), old[mask], adv[mask], 0.2)[0]
    close(loss, ref)
    loss.backward()
    assert torch.isfinite(lp_bad.grad).all() and (lp_bad.grad[~mask] == 0).all()
    assert all(math.isfinite(v) for v in info.values())
    empty = torch.zeros(10, dtype=torch.bool)
    loss, info = clipped_surrogate(lp_bad, old_bad, adv_bad, 0.2, mask=empty)
    assert loss.item() == 0.0 and loss.requires_grad
    assert info == {"approx_kl": 0.0, "clip_fraction": 0.0, "ratio_mean": 1.0, "ratio_max": 1.0}


def test_clipped_surrogate_float32_and_bad_arguments():
    log_prob, old, adv, _ = masked_batch()
    loss, _ = clipped_surrogate(log_prob.detach().float(), old.float(), adv, 0.2)
    assert loss.dtype == torch.float32
    with pytest.raises(ConfigError, match="clip_coef"):
        clipped_surrogate(log_prob, old, adv, 0.0)
    with pytest.raises(ConfigError, match="clip_coef_low"):
        clipped_surrogate(log_prob, old, adv, 0.2, clip_coef_low=-0.1)
    with pytest.raises(ConfigError, match="old_log_prob"):
        clipped_surrogate(log_prob, old[:3], adv, 0.2)
    with pytest.raises(ConfigError, match="mask"):
        clipped_surrogate(log_prob, old, adv, 0.2, mask=torch.ones(3, dtype=torch.bool))


# =========================================================================================================
# KL penalty


def test_kl_penalty_surrogate_k3_default():
    log_prob, old, adv, mask = masked_batch(16)
    beta = 0.7
    loss, info = kl_penalty_surrogate(log_prob, old, adv, beta, mask=mask)
    r = torch.exp(log_prob - old)[mask]
    kl = ((r - 1) - r.log()).mean()
    close(loss, -(r * adv[mask]).mean() + beta * kl)
    assert info["kl"] == pytest.approx(kl.item()) and info["approx_kl"] == pytest.approx(kl.item())


def test_kl_penalty_surrogate_gradient_at_old_policy_is_pg():
    """At θ = θ_old the k3 term's gradient ((ρ − 1) per sample) vanishes: only −Â/B is left."""
    old = randn(6, seed=1)
    log_prob = old.clone().requires_grad_()
    adv = randn(6, seed=2)
    loss, info = kl_penalty_surrogate(log_prob, old, adv, beta=5.0)
    loss.backward()
    close(log_prob.grad, -adv / 6)
    assert info["kl"] == 0.0


def test_kl_penalty_surrogate_given_kl():
    policy = LinearSoftmax()
    logits = policy.x @ policy.w
    actions = torch.tensor([0, 1, 2, 3, 1])
    old_logits = logits.detach() + randn(5, 4, seed=3, scale=0.3)
    log_prob = Categorical(logits=logits).log_prob(actions)
    old_lp = Categorical(logits=old_logits).log_prob(actions)
    adv = randn(5, seed=4)
    per_state = kl_divergence(Categorical(logits=old_logits), Categorical(logits=logits))
    loss, info = kl_penalty_surrogate(log_prob, old_lp, adv, 2.0, kl=per_state.mean())
    close(loss, -(torch.exp(log_prob - old_lp) * adv).mean() + 2.0 * per_state.mean())
    assert info["kl"] == pytest.approx(per_state.mean().item())
    mask = torch.tensor([True, False, True, True, False])
    loss2, _ = kl_penalty_surrogate(log_prob, old_lp, adv, 2.0, kl=per_state, mask=mask)
    close(loss2, -(torch.exp(log_prob - old_lp) * adv)[mask].mean() + 2.0 * per_state[mask].mean())
    loss2.backward()
    assert policy.w.grad is not None and policy.w.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="beta"):
        kl_penalty_surrogate(log_prob, old_lp, adv, -1.0)
    with pytest.raises(ConfigError, match="kl"):
        kl_penalty_surrogate(log_prob, old_lp, adv, 1.0, kl=per_state[:2])


@pytest.mark.parametrize(
    "kl, expected",
    [(0.1, 2.0), (0.016, 2.0), (0.0149, 1.0), (0.0066, 0.5), (0.0067, 1.0), (0.01, 1.0), (0.0, 0.5)],
)
def test_adaptive_kl_beta(kl, expected):
    assert adaptive_kl_beta(1.0, kl, target_kl=0.01) == pytest.approx(expected)


def test_adaptive_kl_beta_options():
    assert adaptive_kl_beta(3.0, torch.tensor(1.0), 0.1, factor=2.0, scale=10.0) == pytest.approx(30.0)
    assert adaptive_kl_beta(3.0, 0.19, 0.1, factor=2.0, scale=10.0) == 3.0
    assert adaptive_kl_beta(3.0, 0.04, 0.1, factor=2.0, scale=10.0) == pytest.approx(0.3)
    assert adaptive_kl_beta(3.0, 0.5, 0.25, factor=2.0) == 3.0  # both boundaries (exact in binary) keep β
    assert adaptive_kl_beta(3.0, 0.125, 0.25, factor=2.0) == 3.0
    assert adaptive_kl_beta(3.0, float("nan"), 0.1) == 3.0
    with pytest.raises(ConfigError, match="target_kl"):
        adaptive_kl_beta(1.0, 0.1, 0.0)
    with pytest.raises(ConfigError, match="factor"):
        adaptive_kl_beta(1.0, 0.1, 0.1, factor=0.5)


# =========================================================================================================
# KL estimators


def categorical_pair():
    q = Categorical(logits=torch.tensor([0.3, -1.0, 1.2, 0.0, -0.4], dtype=F64))
    p = Categorical(logits=torch.tensor([-0.5, 0.4, 0.9, 0.8, -1.5], dtype=F64))
    return q, p


def test_kl_estimators_exact_expectation():
    """Σ_x q(x) k(x) over all x: k1 and k3 give KL(q‖p) exactly; k2 does not (it is biased)."""
    q, p = categorical_pair()
    xs = torch.arange(5)
    log_q, log_p = q.log_prob(xs), p.log_prob(xs)
    true = kl_divergence(q, p)
    close((q.probs * kl_k1(log_q, log_p)).sum(), true, tol=1e-12)
    close((q.probs * kl_k3(log_q, log_p)).sum(), true, tol=1e-12)
    assert abs((q.probs * kl_k2(log_q, log_p)).sum() - true) > 1e-3
    close(kl_k2(log_q, log_p), 0.5 * (log_p - log_q) ** 2)
    # swapped arguments estimate KL(p‖q) under q-samples: wrong, and the exact check catches it
    assert abs((q.probs * kl_k1(log_p, log_q)).sum() - true) > 1e-2


def test_kl_k3_gradient_is_unbiased_for_kl_gradient():
    """Σ_a π_old(a) ∇k3(q=π_old, p=π_θ) = ∇ KL(π_old ‖ π_θ) at any θ (not only θ = θ_old)."""
    logits_old = torch.tensor([0.3, -1.0, 1.2, 0.0], dtype=F64)
    theta = torch.tensor([0.1, 0.5, -0.3, 0.7], dtype=F64, requires_grad=True)
    old = Categorical(logits=logits_old)
    xs = torch.arange(4)
    est = (old.probs * kl_k3(old.log_prob(xs), Categorical(logits=theta).log_prob(xs))).sum()
    (g_est,) = torch.autograd.grad(est, theta)
    (g_true,) = torch.autograd.grad(kl_divergence(old, Categorical(logits=theta)), theta)
    close(g_est, g_true, tol=1e-12)


def test_kl_estimators_sampled_unbiased():
    q, p = categorical_pair()
    n = 200_000
    torch.manual_seed(0)
    x = q.sample((n,))
    log_q, log_p = q.log_prob(x), p.log_prob(x)
    true = kl_divergence(q, p).item()
    support = torch.arange(5)
    for estimator in (kl_k1, kl_k3):
        values = estimator(log_q, log_p)
        per_x = estimator(q.log_prob(support), p.log_prob(support))
        var = float((q.probs * per_x**2).sum() - ((q.probs * per_x).sum()) ** 2)  # exact variance
        assert abs(values.mean().item() - true) < 5 * math.sqrt(var / n), estimator.__name__
    # k2 is biased here by more than its CLT band
    values = kl_k2(log_q, log_p)
    assert abs(values.mean().item() - true) > 10 * values.std().item() / math.sqrt(n)


def test_kl_k3_non_negative_and_grpo_form():
    d = torch.cat(
        [randn(1000, seed=1, scale=5.0), torch.tensor([0.0, 1e-12, -1e-12, 1e-8, 40.0, -40.0], dtype=F64)]
    )
    log_q = randn(d.numel(), seed=2)
    k3 = kl_k3(log_q, log_q + d)
    assert (k3 >= 0).all() and torch.isfinite(k3).all()
    k3_32 = kl_k3(log_q.float(), (log_q + d).float())
    assert (k3_32 >= 0).all()
    # GRPO: per-token KL to π_ref with samples from π_θ = π_ref/π_θ − log(π_ref/π_θ) − 1
    logp_theta, logp_ref = randn(50, seed=3) - 2, randn(50, seed=4) - 2
    ratio = torch.exp(logp_ref - logp_theta)
    close(kl_k3(log_q=logp_theta, log_p=logp_ref), ratio - ratio.log() - 1)
    close(kl_k1(logp_theta, logp_ref), logp_theta - logp_ref)
    with pytest.raises(ConfigError, match="log_p"):
        kl_k3(logp_theta, logp_ref[:3])


# =========================================================================================================
# critic


def test_value_loss_unclipped():
    values = randn(9, seed=1).requires_grad_()
    returns = randn(9, seed=2).requires_grad_()
    loss, info = value_loss(values, returns)
    close(loss, 0.5 * (values - returns).square().mean())
    assert info == {}
    loss.backward()
    close(values.grad, (values - returns).detach() / 9)
    assert returns.grad is None
    mask = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 1])
    loss, _ = value_loss(values, returns, old_values=returns, mask=mask)  # old_values alone: no clipping
    m = mask.bool()
    close(loss, 0.5 * (values - returns)[m].square().mean())


def reference_value_loss(values, returns, old, c, mask):
    total, count, clipped = 0.0, 0, 0
    for v, r, o, m in zip(values.tolist(), returns.tolist(), old.tolist(), mask.tolist(), strict=True):
        if not m:
            continue
        v_clip = o + min(max(v - o, -c), c)
        total += 0.5 * max((v - r) ** 2, (v_clip - r) ** 2)
        count += 1
        clipped += abs(v - o) > c
    return total / count, clipped / count


def test_value_loss_clipped():
    values = randn(40, seed=1).requires_grad_()
    returns = randn(40, seed=2)
    old = values.detach() + randn(40, seed=3, scale=0.3)
    mask = torch.rand(40, generator=gen(4)) > 0.25
    loss, info = value_loss(values, returns, old_values=old, clip_coef=0.2, mask=mask)
    ref_loss, ref_frac = reference_value_loss(values, returns, old, 0.2, mask)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-12)
    assert info["value_clip_fraction"] == pytest.approx(ref_frac)
    assert 0 < ref_frac < 1
    loss.backward()
    # gradient: (V − R)/|S| where the unclipped term wins, 0 where the clipped (constant) term wins
    v, r, o = values.detach(), returns, old
    v_clip = o + (v - o).clamp(-0.2, 0.2)
    unclipped_wins = (v - r).square() >= (v_clip - r).square()
    clamp_inactive = (v - o).abs() <= 0.2
    expected = torch.where(unclipped_wins | clamp_inactive, (v - r) / mask.sum(), torch.zeros_like(v))
    close(values.grad, torch.where(mask, expected, torch.zeros_like(v)))
    assert (values.grad[mask] == 0).any() and (values.grad[mask] != 0).any()


def test_value_loss_bad_arguments():
    v = randn(4, seed=1)
    with pytest.raises(ConfigError, match="old_values"):
        value_loss(v, v, clip_coef=0.2)
    with pytest.raises(ConfigError, match="clip_coef"):
        value_loss(v, v, old_values=v, clip_coef=-0.2)
    with pytest.raises(ConfigError, match="returns"):
        value_loss(v, v[:2])


def test_explained_variance():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    y_hat = y + rng.normal(scale=0.5, size=50)
    expected = 1 - np.var(y - y_hat) / np.var(y)
    assert explained_variance(torch.from_numpy(y_hat), torch.from_numpy(y)) == pytest.approx(
        expected, rel=1e-12
    )
    mask = rng.random(50) > 0.4
    expected_m = 1 - np.var((y - y_hat)[mask]) / np.var(y[mask])
    got = explained_variance(torch.from_numpy(y_hat), torch.from_numpy(y), mask=torch.from_numpy(mask))
    assert got == pytest.approx(expected_m, rel=1e-12)
    assert explained_variance(torch.from_numpy(y), torch.from_numpy(y)) == 1.0
    assert math.isnan(explained_variance(torch.zeros(5), torch.ones(5)))
    assert math.isnan(
        explained_variance(torch.zeros(5), torch.arange(5.0), mask=torch.zeros(5, dtype=torch.bool))
    )
    assert explained_variance(torch.full((4,), 10.0), torch.arange(4.0)) == 0.0  # a constant explains nothing
    assert explained_variance(-torch.arange(4.0), torch.arange(4.0)) == pytest.approx(-3.0)
