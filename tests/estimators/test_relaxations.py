"""Straight-through, Gumbel-Softmax and ReinMax: exact one-hot samples from the right distribution, backward
passes against the formulas written out plainly, and their bias against the exact gradient of E[f(D)].

Given the sample D, straight-through and ReinMax are deterministic, so their expectation is computed EXACTLY
by enumeration: E[ĝ] = Σ_k π_k ĝ(e_k). That turns the paper's claims (Liu et al. 2023) into equalities to
1e-12: straight-through (τ = 1) is unbiased for linear f only, ReinMax (τ = 1) for linear and quadratic f.
"""

from __future__ import annotations

import pytest
import torch

from pgrad.errors import ConfigError
from pgrad.estimators.relaxations import gumbel_softmax, reinmax, straight_through

F64 = torch.float64
K = 5
LOGITS = torch.tensor([0.3, -1.0, 1.2, 0.0, -0.4], dtype=F64)
HARD = {
    "straight_through": lambda z, g: straight_through(z, generator=g),
    "reinmax": lambda z, g: reinmax(z, generator=g),
    "gumbel_hard": lambda z, g: gumbel_softmax(z, 0.5, hard=True, generator=g),
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def softmax_jacobian(p: torch.Tensor) -> torch.Tensor:
    """J_ij = ∂p_i/∂θ_j = p_i (δ_ij − p_j) for p = softmax(θ), batched over leading dims."""
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


# ---------------------------------------------------------------------------------------------------------
# forward pass


@pytest.mark.parametrize("name", sorted(HARD))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_hard_outputs_are_exactly_one_hot(name, dtype):
    logits = torch.randn(3, 4, K, generator=gen(0), dtype=dtype, requires_grad=True)
    out = HARD[name](logits, gen(1))
    assert out.shape == logits.shape and out.dtype == dtype and out.requires_grad
    assert set(out.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out.detach().sum(-1), torch.ones(3, 4, dtype=dtype))


@pytest.mark.parametrize("name", sorted(HARD))
def test_samples_follow_the_categorical_distribution(name):
    """Pearson chi-square over S draws: below the 0.999 quantile of chi²(K−1 = 4), 18.47."""
    S = 20000
    logits = LOGITS.expand(S, K).clone()
    counts = HARD[name](logits, gen(2)).detach().sum(0)
    expected = S * torch.softmax(LOGITS, -1)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 18.47, (name, chi2, counts, expected)


@pytest.mark.parametrize("name", sorted(HARD))
def test_generator_makes_samples_reproducible(name):
    logits = torch.randn(50, K, generator=gen(3), dtype=F64)
    a, b = HARD[name](logits, gen(4)), HARD[name](logits, gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, HARD[name](logits, gen(5)))


def test_soft_gumbel_softmax_is_a_point_of_the_simplex_that_sharpens_as_tau_falls():
    logits = LOGITS.expand(2000, K)
    hot = gumbel_softmax(logits, 5.0, generator=gen(6))
    cold = gumbel_softmax(logits, 0.05, generator=gen(6))
    for y in (hot, cold):
        assert (y > 0).all() and torch.allclose(y.sum(-1), torch.ones(2000, dtype=F64))
    assert hot.max(-1).values.mean() < 0.5 < 0.95 < cold.max(-1).values.mean()
    # same noise: the soft sample's argmax is the hard sample
    hard = gumbel_softmax(logits, 0.05, hard=True, generator=gen(6))
    assert torch.equal(hard.argmax(-1), cold.argmax(-1))


def test_minus_infinity_logits_are_never_sampled_and_get_zero_gradient():
    logits = torch.tensor([0.5, float("-inf"), -0.2, float("-inf")], dtype=F64).expand(500, 4).clone()
    logits.requires_grad_(True)
    weights = torch.arange(4, dtype=F64)
    for fn in (straight_through, reinmax):
        out = fn(logits, generator=gen(7))
        assert out.detach()[:, [1, 3]].sum() == 0
        (grad,) = torch.autograd.grad((out * weights).sum(), logits)
        assert torch.isfinite(grad).all() and grad[:, [1, 3]].abs().max() == 0
    out = gumbel_softmax(logits, 0.7, hard=True, generator=gen(7))
    (grad,) = torch.autograd.grad((out * weights).sum(), logits)
    assert out.detach()[:, [1, 3]].sum() == 0 and torch.isfinite(grad).all()


# ---------------------------------------------------------------------------------------------------------
# backward pass against the formulas


def test_straight_through_backward_is_the_softmax_jacobian_at_theta_over_tau():
    logits = torch.randn(6, K, generator=gen(8), dtype=F64, requires_grad=True)
    upstream = torch.randn(6, K, generator=gen(9), dtype=F64)
    out = straight_through(logits, temperature=2.0, generator=gen(10))
    (grad,) = torch.autograd.grad((out * upstream).sum(), logits)
    p = torch.softmax(logits.detach() / 2.0, -1)
    expected = (softmax_jacobian(p).transpose(-1, -2) @ upstream.unsqueeze(-1)).squeeze(-1) / 2.0
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tau", [1.0, 1.7])
def test_reinmax_backward_matches_algorithm_2_of_the_paper(tau):
    """∇θ = 2 J(π₁)ᵀ g − ½ J(π₀)ᵀ g, π₀ = softmax θ, π₁ = (D + softmax(θ/τ)) / 2, J(p) = diag p − p pᵀ."""
    logits = torch.randn(6, K, generator=gen(11), dtype=F64, requires_grad=True)
    upstream = torch.randn(6, K, generator=gen(12), dtype=F64)
    out = reinmax(logits, temperature=tau, generator=gen(13))
    (grad,) = torch.autograd.grad((out * upstream).sum(), logits)
    D = out.detach()
    pi0 = torch.softmax(logits.detach(), -1)
    pi1 = 0.5 * (D + torch.softmax(logits.detach() / tau, -1))
    g = upstream.unsqueeze(-1)
    expected = (2.0 * softmax_jacobian(pi1) @ g - 0.5 * softmax_jacobian(pi0) @ g).squeeze(-1)  # J symmetric
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)


def test_gumbel_softmax_hard_backward_is_the_soft_samples_gradient():
    logits = torch.randn(6, K, generator=gen(14), dtype=F64, requires_grad=True)
    upstream = torch.randn(6, K, generator=gen(15), dtype=F64)
    (g_hard,) = torch.autograd.grad((gumbel_softmax(logits, 0.4, True, gen(16)) * upstream).sum(), logits)
    (g_soft,) = torch.autograd.grad((gumbel_softmax(logits, 0.4, False, gen(16)) * upstream).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# bias of E[ĝ] against ∇θ E[f(D)] = Σ_k f(e_k) ∇θ π_k

C = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=F64)
M = torch.tensor(
    [
        [0.5, -1.0, 0.3, 2.0, 0.0],
        [1.5, -0.2, 0.0, -0.7, 1.1],
        [0.0, 0.9, 1.3, -1.2, 0.4],
        [-0.6, 0.2, 2.2, 0.1, -1.5],
        [1.0, 0.0, -0.8, 0.6, 0.9],
    ],
    dtype=F64,
)


def f_linear(D: torch.Tensor) -> torch.Tensor:
    return D @ C


def f_quadratic(D: torch.Tensor) -> torch.Tensor:
    return ((D @ M) * D).sum(-1) + D @ C


def f_cubic(D: torch.Tensor) -> torch.Tensor:
    return (D @ C) ** 3 + f_quadratic(D)


def exact_gradient(f) -> torch.Tensor:
    theta = LOGITS.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((torch.softmax(theta, -1) * f(torch.eye(K, dtype=F64))).sum(), theta)
    return grad


def enumerated_expectation(estimator, f) -> torch.Tensor:
    """E_D[ĝ(D)] = Σ_k π_k ĝ(e_k) for an estimator that is deterministic given D (checked)."""
    S = 600
    theta = LOGITS.expand(S, K).clone().requires_grad_(True)
    out = estimator(theta, gen(17))
    (grads,) = torch.autograd.grad(f(out).sum(), theta)
    index = out.detach().argmax(-1)
    pi = torch.softmax(LOGITS, -1)
    total = torch.zeros(K, dtype=F64)
    for k in range(K):
        rows = grads[index == k]
        assert rows.shape[0] > 0, "every category must be drawn"
        torch.testing.assert_close(rows, rows[:1].expand_as(rows), rtol=0, atol=1e-13)
        total += pi[k] * rows[0]
    return total


def bias(estimator, f) -> torch.Tensor:
    return enumerated_expectation(estimator, f) - exact_gradient(f)


def st(tau: float = 1.0):
    return lambda z, g: straight_through(z, temperature=tau, generator=g)


def rm(tau: float = 1.0):
    return lambda z, g: reinmax(z, temperature=tau, generator=g)


def test_straight_through_is_unbiased_for_linear_f_and_biased_for_quadratic_f():
    assert bias(st(), f_linear).abs().max() < 1e-12
    assert torch.linalg.vector_norm(bias(st(), f_quadratic)) > 0.05
    # with τ ≠ 1 even the linear case is biased
    assert torch.linalg.vector_norm(bias(st(2.0), f_linear)) > 0.1


def test_reinmax_is_unbiased_for_linear_and_quadratic_f():
    """Heun's method (trapezoidal rule) is exact on quadratics: the paper's second-order accuracy."""
    assert bias(rm(), f_linear).abs().max() < 1e-12
    assert bias(rm(), f_quadratic).abs().max() < 1e-12


def test_reinmax_bias_beyond_second_order_and_away_from_tau_1():
    """Not unbiased in general: a cubic f or τ ≠ 1 leaves a bias (the paper only claims second order)."""
    assert torch.linalg.vector_norm(bias(rm(), f_cubic)) > 1e-3
    assert torch.linalg.vector_norm(bias(rm(2.0), f_quadratic)) > 1e-2


@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_is_biased_even_for_linear_f(hard):
    """Monte Carlo over 100k draws: the mean gradient misses the exact one by far more than its std error."""
    S = 100_000
    theta = LOGITS.expand(S, K).clone().requires_grad_(True)
    out = gumbel_softmax(theta, 0.5, hard=hard, generator=gen(18))
    (grads,) = torch.autograd.grad(f_linear(out).sum(), theta)
    mean, stderr = grads.mean(0), grads.std(0) / S**0.5
    err = (mean - exact_gradient(f_linear)).abs()
    assert (err > 6 * stderr).any(), (err, stderr)


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="temperature"):
        straight_through(LOGITS, temperature=0.0)
    with pytest.raises(ConfigError, match="temperature"):
        gumbel_softmax(LOGITS, float("nan"))
    with pytest.raises(ConfigError, match="temperature"):
        reinmax(LOGITS, temperature=True)
    with pytest.raises(ConfigError, match="floating"):
        reinmax(torch.tensor([1, 2, 3]))
    with pytest.raises(ConfigError, match=r"torch\.Tensor"):
        straight_through([0.1, 0.2])
