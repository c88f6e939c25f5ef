"""Zeroth-order estimators: finite differences (exactness, the error-vs-ε V shape, evaluation counts),
Gaussian smoothing (unbiased for the smoothed objective, antithetic variance) and the α-order mix of
Suh et al. 2022."""

from __future__ import annotations

import math

import pytest
import torch

from pgrad.errors import ConfigError
from pgrad.estimators.zeroth_order import (
    adaptive_alpha_order_gradient,
    alpha_order_gradient,
    batched,
    finite_difference_gradient,
    gaussian_smoothing_gradient,
    gaussian_smoothing_samples,
)

F64 = torch.float64
P = 4


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


_A = torch.randn(P, P, generator=gen(0), dtype=F64)
H = _A @ _A.T + torch.eye(P, dtype=F64)  # symmetric positive definite
B = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
OFFSET = 50.0
THETA = torch.tensor([0.3, -0.7, 1.1, 0.2], dtype=F64)


def quadratic(thetas: torch.Tensor) -> torch.Tensor:
    """f(θ) = ½ θᵀHθ + bᵀθ + c, batched [B, P] -> [B]; ∇f = Hθ + b."""
    return 0.5 * ((thetas @ H) * thetas).sum(-1) + thetas @ B + OFFSET


def quadratic_grad(theta: torch.Tensor) -> torch.Tensor:
    return H @ theta + B


def smooth(thetas: torch.Tensor) -> torch.Tensor:
    """f(θ) = Σ_i sin(θ_i) + exp(θ_0): not a polynomial, so finite differences have a truncation error."""
    return torch.sin(thetas).sum(-1) + torch.exp(thetas[:, 0])


def smooth_grad(theta: torch.Tensor) -> torch.Tensor:
    g = torch.cos(theta)
    g[0] += torch.exp(theta[0])
    return g


# ---------------------------------------------------------------------------------------------------------
# finite differences


def test_central_differences_are_exact_on_a_quadratic_up_to_round_off():
    grad, evaluations = finite_difference_gradient(quadratic, THETA, 1e-3)
    assert evaluations == 2 * P
    torch.testing.assert_close(grad, quadratic_grad(THETA), rtol=0, atol=1e-9)


def test_forward_differences_have_the_predicted_truncation_error_and_count():
    """On a quadratic, (f(θ+εe_i) − f(θ))/ε = ∂_i f + ε H_ii / 2 exactly."""
    eps = 1e-2
    grad, evaluations = finite_difference_gradient(quadratic, THETA, eps, central=False)
    assert evaluations == P + 1
    torch.testing.assert_close(grad, quadratic_grad(THETA) + 0.5 * eps * H.diagonal(), rtol=0, atol=1e-9)
    # f(θ) supplied: P evaluations, same answer
    f_theta = float(quadratic(THETA.unsqueeze(0)))
    grad2, evaluations2 = finite_difference_gradient(quadratic, THETA, eps, central=False, f_theta=f_theta)
    assert evaluations2 == P
    torch.testing.assert_close(grad2, grad, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("central", "best"), [(False, 1e-8), (True, 1e-5)])
def test_error_against_epsilon_is_v_shaped(central, best):
    """Truncation error falls with ε until round-off (∝ u/ε) takes over: minimum near u^½ (forward) or u^⅓
    (central) in float64, and both ends are much worse than the bottom."""
    exponents = list(range(1, 15))
    errors = []
    for e in exponents:
        grad, _ = finite_difference_gradient(smooth, THETA, 10.0**-e, central=central)
        errors.append(float((grad - smooth_grad(THETA)).abs().max()))
    i_min = min(range(len(errors)), key=errors.__getitem__)
    assert abs(exponents[i_min] - (-math.log10(best))) <= 1, errors
    assert errors[0] > 100 * errors[i_min] and errors[-1] > 100 * errors[i_min], errors
    # monotone on either side, up to a little noise from round-off
    assert all(errors[i + 1] > 0.5 * errors[i] for i in range(i_min, len(errors) - 1))
    assert all(errors[i] > errors[i + 1] for i in range(i_min - 1))


def test_chunked_and_batched_wrappers_give_the_same_gradient():
    full, n_full = finite_difference_gradient(smooth, THETA, 1e-4)
    chunked, n_chunked = finite_difference_gradient(smooth, THETA, 1e-4, chunk_size=3)
    calls = []

    def one(theta: torch.Tensor) -> float:
        calls.append(1)
        return float(smooth(theta.unsqueeze(0)))

    looped, n_looped = finite_difference_gradient(batched(one), THETA, 1e-4)
    assert n_full == n_chunked == n_looped == len(calls) == 2 * P
    torch.testing.assert_close(chunked, full, rtol=0, atol=0)
    torch.testing.assert_close(looped, full, rtol=0, atol=1e-12)
    forward, _ = finite_difference_gradient(smooth, THETA, 1e-6, central=False)
    forward_chunked, _ = finite_difference_gradient(smooth, THETA, 1e-6, central=False, chunk_size=2)
    torch.testing.assert_close(forward_chunked, forward, rtol=0, atol=0)
    smoothed, _ = gaussian_smoothing_gradient(smooth, THETA, 0.1, 7, generator=gen(9))
    smoothed_chunked, _ = gaussian_smoothing_gradient(smooth, THETA, 0.1, 7, generator=gen(9), chunk_size=4)
    torch.testing.assert_close(smoothed_chunked, smoothed, rtol=0, atol=0)


def test_float32_works():
    grad, _ = finite_difference_gradient(quadratic_f32, THETA.float(), 1e-2)
    assert grad.dtype == torch.float32
    torch.testing.assert_close(grad, quadratic_grad(THETA).float(), rtol=1e-3, atol=1e-2)


def quadratic_f32(thetas: torch.Tensor) -> torch.Tensor:
    return quadratic(thetas.double()).float()


# ---------------------------------------------------------------------------------------------------------
# Gaussian smoothing


def assert_unbiased(samples: torch.Tensor, target: torch.Tensor, z: float = 4.5) -> None:
    mean, stderr = samples.mean(0), samples.std(0) / samples.shape[0] ** 0.5
    assert ((mean - target).abs() < z * stderr).all(), (mean, target, stderr)


@pytest.mark.parametrize(
    ("antithetic", "baseline"), [(True, None), (False, None), (False, "center"), (False, 49.0)]
)
def test_smoothing_is_unbiased_for_the_gradient_of_a_quadratic(antithetic, baseline):
    """For quadratic f, ∇E f(θ + σε) = ∇f(θ): the mean of the per-direction estimates matches it."""
    S = 20000
    samples, evaluations = gaussian_smoothing_samples(
        quadratic, THETA, 0.3, S, antithetic=antithetic, baseline=baseline, generator=gen(1)
    )
    assert samples.shape == (S, P)
    assert evaluations == (2 * S if antithetic else S + (baseline == "center"))
    assert_unbiased(samples, quadratic_grad(THETA))


def test_smoothing_targets_the_smoothed_objective_not_f():
    """E sin(θ + σε) = sin(θ) e^{−σ²/2}: the estimate converges to cos(θ) e^{−σ²/2}, not to cos(θ)."""
    sigma, S = 1.0, 40000

    def sines(thetas):
        return torch.sin(thetas).sum(-1)

    samples, _ = gaussian_smoothing_samples(sines, THETA, sigma, S, generator=gen(2))
    target = torch.cos(THETA) * math.exp(-(sigma**2) / 2)
    assert_unbiased(samples, target)
    assert ((samples.mean(0) - torch.cos(THETA)).abs() > 0.1).any()
    grad, _ = gaussian_smoothing_gradient(sines, THETA, sigma, S, generator=gen(2))
    torch.testing.assert_close(grad, samples.mean(0), rtol=0, atol=0)


def test_antithetic_pairs_have_lower_variance_at_equal_cost():
    """Linear + quadratic f with a large offset: one-sided estimates carry f(θ) ε/σ and the curvature term;
    the antithetic pair cancels both. Compare the variance of the mean at the same number of evaluations."""
    S = 4000
    anti, n_anti = gaussian_smoothing_samples(quadratic, THETA, 0.3, S, generator=gen(3))
    one, n_one = gaussian_smoothing_samples(quadratic, THETA, 0.3, 2 * S, antithetic=False, generator=gen(4))
    assert n_anti == n_one == 2 * S
    var_anti = anti.var(0).sum() / S
    var_one = one.var(0).sum() / (2 * S)
    assert var_anti < var_one / 20, (var_anti, var_one)  # measured: ~70x lower
    # the antithetic sample on a quadratic is exactly (∇f·ε) ε: its variance does not see OFFSET or H's size
    g = quadratic_grad(THETA)
    expected_trace = float(g @ g * (P + 1))  # Σ_i Var((gᵀε) ε_i) = ‖g‖² (P + 1) for ε ~ N(0, I)
    assert abs(float(anti.var(0).sum()) - expected_trace) < 0.1 * expected_trace


def test_generator_makes_smoothing_reproducible():
    a, _ = gaussian_smoothing_gradient(smooth, THETA, 0.1, 10, generator=gen(5))
    b, _ = gaussian_smoothing_gradient(smooth, THETA, 0.1, 10, generator=gen(5))
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------------------
# α-order


def test_alpha_order_gradient_mixes_linearly():
    g1 = torch.tensor([1.0, 2.0], dtype=F64)
    g0 = torch.tensor([-1.0, 4.0], dtype=F64)
    torch.testing.assert_close(alpha_order_gradient(g1, g0, 0.25), 0.25 * g1 + 0.75 * g0)
    assert torch.equal(alpha_order_gradient(g1, g0, 1.0), g1)
    assert torch.equal(alpha_order_gradient(g1, g0, 0), g0)
    with pytest.raises(ConfigError, match="alpha"):
        alpha_order_gradient(g1, g0, 1.5)
    with pytest.raises(ConfigError, match="shape"):
        alpha_order_gradient(g1, g0[:1], 0.5)


def reference_alpha(first, zeroth, gamma, L, delta):
    """The rule written out: ε from the Bernstein bound, α = 0 if ε > γ, else the variance optimum clipped
    to the bias constraint ε + α‖ḡ1 − ḡ0‖ ≤ γ."""
    B0, dim = zeroth.shape
    g1, g0 = first.mean(0), zeroth.mean(0)
    s0 = sum(float((row - g0) @ (row - g0)) for row in zeroth) / B0
    s1 = sum(float((row - g1) @ (row - g1)) for row in first) / first.shape[0]
    v0, v1 = s0 / B0, s1 / first.shape[0]
    log_term = math.log((dim + 1) / delta)
    eps = math.sqrt(2 * s0 * log_term / B0) + 2 * L * log_term / (3 * B0)
    if eps > gamma:
        return 0.0, eps
    gap = float(torch.linalg.vector_norm(g1 - g0))
    return min(v0 / (v0 + v1), (gamma - eps) / gap), eps


@pytest.mark.parametrize(
    ("gamma", "regime"), [(0.05, "too_uncertain"), (50.0, "optimum"), (2.0, "constrained")]
)
def test_adaptive_alpha_follows_the_three_regimes(gamma, regime):
    first = 1.0 + 0.1 * torch.randn(64, 3, generator=gen(6), dtype=F64)  # low variance, biased (mean 1)
    zeroth = 0.0 + 2.0 * torch.randn(256, 3, generator=gen(7), dtype=F64)  # high variance, unbiased (mean 0)
    grad, info = adaptive_alpha_order_gradient(first, zeroth, gamma=gamma, bound=10.0, delta=0.05)
    alpha, eps = reference_alpha(first, zeroth, gamma, 10.0, 0.05)
    assert info["alpha"] == pytest.approx(alpha, rel=1e-12) and info["epsilon"] == pytest.approx(
        eps, rel=1e-12
    )
    torch.testing.assert_close(grad, alpha * first.mean(0) + (1 - alpha) * zeroth.mean(0))
    v0, v1 = info["var_zeroth"], info["var_first"]
    if regime == "too_uncertain":
        assert eps > gamma and alpha == 0.0
    elif regime == "optimum":
        assert alpha == pytest.approx(v0 / (v0 + v1)) and alpha > 0.9
    else:
        assert 0.0 < alpha < v0 / (v0 + v1)
        assert eps + alpha * info["gap"] == pytest.approx(gamma)


def test_adaptive_alpha_pulls_away_from_a_biased_pathwise_gradient_on_a_heaviside():
    """f(θ) = H(θ) (Suh et al. 2022): ∇f = 0 almost surely, so every first-order sample is 0 (zero variance),
    yet ∇E H(θ + σε) = φ(θ/σ)/σ. The variance optimum alone would take α = 1 (all bias); the bias constraint
    keeps the mix close to the unbiased zeroth-order estimate."""
    theta, sigma, S = torch.tensor([0.1], dtype=F64), 0.5, 4000

    def heaviside(thetas):
        return (thetas[:, 0] >= 0).to(thetas.dtype)

    zeroth, _ = gaussian_smoothing_samples(heaviside, theta, sigma, S, generator=gen(8))
    first = torch.zeros(S, 1, dtype=F64)  # the pathwise gradient of H at every sample
    truth = math.exp(-0.5 * (0.1 / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    assert_unbiased(zeroth, torch.tensor([truth], dtype=F64))
    grad, info = adaptive_alpha_order_gradient(first, zeroth, gamma=0.2, bound=4.0 / sigma)
    assert info["var_first"] == 0.0 and info["alpha"] < 0.5
    assert abs(float(grad) - truth) < 0.25 * truth
    assert abs(float(alpha_order_gradient(first.mean(0), zeroth.mean(0), 1.0)) - truth) == pytest.approx(
        truth
    )


# ---------------------------------------------------------------------------------------------------------
# errors


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="epsilon"):
        finite_difference_gradient(quadratic, THETA, 0.0)
    with pytest.raises(ConfigError, match="theta"):
        finite_difference_gradient(quadratic, THETA.unsqueeze(0), 1e-3)
    with pytest.raises(ConfigError, match=r"\[B\] tensor"):
        finite_difference_gradient(lambda t: t, THETA, 1e-3)
    with pytest.raises(ConfigError, match="num_samples"):
        gaussian_smoothing_gradient(quadratic, THETA, 0.1, 0)
    with pytest.raises(ConfigError, match="sigma"):
        gaussian_smoothing_gradient(quadratic, THETA, -1.0, 5)
    with pytest.raises(ConfigError, match="baseline"):
        gaussian_smoothing_gradient(quadratic, THETA, 0.1, 5, antithetic=True, baseline="center")
    with pytest.raises(ConfigError, match="baseline"):
        gaussian_smoothing_gradient(quadratic, THETA, 0.1, 5, antithetic=False, baseline="middle")
    zs = torch.zeros(5, 2, dtype=F64)
    with pytest.raises(ConfigError, match="delta"):
        adaptive_alpha_order_gradient(zs, zs, 1.0, 1.0, delta=1.0)
    with pytest.raises(ConfigError, match="P ="):
        adaptive_alpha_order_gradient(zs, torch.zeros(5, 3, dtype=F64), 1.0, 1.0)
