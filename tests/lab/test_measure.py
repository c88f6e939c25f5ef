import math

import pytest
import torch

from pgrad.lab import score_function
from pgrad.lab.measure import (
    ALPHA,
    bias_test,
    draw_estimates,
    f_quantile,
    f_survival,
    gradient_statistics,
    loglog_slope,
    measure,
)


def gaussian_estimator(g, bias, scale):
    def estimate(budget, gen):
        noise = torch.randn(g.shape, generator=gen, dtype=torch.float64) * scale / math.sqrt(budget)
        return g + bias + noise, float(budget)

    return estimate


def test_f_distribution():
    assert f_quantile(0.95, 5, 10) == pytest.approx(3.3258, abs=1e-4)
    assert f_quantile(0.99, 2, 20) == pytest.approx(5.8489, abs=1e-4)
    assert f_quantile(0.99, 1, 1e7) == pytest.approx(6.6349, abs=1e-3)  # χ²₁
    assert f_quantile(0.5, 2, 2) == pytest.approx(1.0)
    for d1, d2 in [(1.3, 2.7), (3.7, 100.3), (40, 12_000)]:
        q = f_quantile(0.99, d1, d2)
        assert f_survival(q, d1, d2) == pytest.approx(0.01, rel=1e-6)
    torch.manual_seed(0)
    samples = torch.distributions.FisherSnedecor(3.7, 100.3).sample((200_000,))
    assert float((samples > f_quantile(0.95, 3.7, 100.3)).double().mean()) == pytest.approx(0.05, abs=3e-3)


def _correlated(d, decay, gen):
    """L with L Lᵀ = Σ: a random rotation of the eigenvalues decay^i (few effective dimensions)."""
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q * (decay ** torch.arange(d, dtype=torch.float64)).sqrt()


def _old_z(x, g):
    """The statistic the lab used before: (M‖ḡ − g‖² − tr S) / √(2 tr S²), read as N(0, 1)."""
    m = x.shape[0]
    centred = x - x.mean(0)
    gram = centred @ centred.T / (m - 1)
    tr_s, tr_s2 = float(gram.trace()), float((gram * gram).sum())
    return (m * float((x.mean(0) - g).square().sum()) - tr_s) / math.sqrt(2 * tr_s2)


@pytest.mark.parametrize("m, d, decay", [(20, 10, 0.5), (30, 20, 0.7), (20, 50, 0.9)])
def test_bias_test_is_calibrated_for_few_estimates_and_correlated_coordinates(m, d, decay):
    """Under H0 (g + correlated Gaussian noise) the test rejects at about its level: within a factor 1.5 of α
    plus the binomial noise of 400 repeats (the scaled χ² slightly underestimates the upper tail of a
    weighted χ²: over 4000 repeats the rate at α = 1% is 1.0–1.6%). The old z-test (z > 2.576, nominal
    0.5%) is outside the same band, rejecting 4–7 times too often, when the effective number of dimensions
    ν = (tr Σ)² / tr Σ² is small."""
    repeats = 400
    gen = torch.Generator().manual_seed(1)
    L = _correlated(d, decay, gen)
    g = torch.randn(d, generator=gen, dtype=torch.float64)
    p_values, old, covered = [], 0, 0
    for _ in range(repeats):
        x = g + torch.randn(m, d, generator=gen, dtype=torch.float64) @ L.T
        _, _, p, low, high = bias_test(x, g)
        p_values.append(p)
        old += _old_z(x, g) > 2.576
        covered += low <= 0.0 <= high

    def band(alpha):
        return 0.5 * alpha + 3 * math.sqrt(alpha * (1 - alpha) / repeats)

    for alpha in (0.01, 0.05):
        rate = sum(p < alpha for p in p_values) / repeats
        assert abs(rate - alpha) <= band(alpha), (alpha, rate)
    assert covered / repeats >= 0.99 - band(0.01)  # the interval contains 0 exactly when p >= 1%
    lam = decay ** torch.arange(d, dtype=torch.float64)
    nu = float(lam.sum() ** 2 / lam.square().sum())
    new = sum(p < 0.01 for p in p_values) / repeats
    print(f"M={m} d={d} ν={nu:.1f}: rejection at 1% {new:.3f}, old z-test at 0.5% {old / repeats:.3f}")
    if nu < 6:  # few effective dimensions: the z-test's N(0, 1) reference is far off
        assert old / repeats > 0.005 + band(0.005)


def test_bias_test_has_power_against_a_small_bias_and_its_interval_covers_it():
    """A bias of 3 standard errors of the mean (√(tr Σ / M)) along the main noise direction is found on
    nearly every repeat, and the 99% interval for ‖E ĝ − g‖ / ‖g‖ contains the true value."""
    m, d, repeats = 30, 20, 200
    gen = torch.Generator().manual_seed(2)
    L = _correlated(d, 0.7, gen)
    g = torch.randn(d, generator=gen, dtype=torch.float64)
    trace = float((0.7 ** torch.arange(d, dtype=torch.float64)).sum())
    shift = 3 * math.sqrt(trace / m) * L[:, 0] / L[:, 0].norm()
    true = float(shift.norm() / g.norm())
    rejected = covered = 0
    for _ in range(repeats):
        x = g + shift + torch.randn(m, d, generator=gen, dtype=torch.float64) @ L.T
        _, _, p, low, high = bias_test(x, g)
        rejected += p < ALPHA
        covered += low <= true <= high
    print(f"relative bias {true:.3f}: power {rejected / repeats:.3f}, coverage {covered / repeats:.3f}")
    assert rejected / repeats >= 0.95
    assert covered / repeats >= 0.97


def test_unbiased_estimator_passes_and_biased_one_fails():
    g = torch.linspace(-1, 1, 20, dtype=torch.float64)
    p_values = []
    for seed in range(20):
        m = measure("unbiased", gaussian_estimator(g, 0.0, 2.0), g, budget=10, estimates=400, seed=seed)
        p_values.append(m.bias_p)
        assert m.cosine < 1 and m.bias_low <= m.relative_bias <= m.bias_high
    assert sum(p >= ALPHA for p in p_values) >= 18
    biased = measure("biased", gaussian_estimator(g, 0.1, 2.0), g, budget=10, estimates=400, seed=0)
    true = 0.1 * math.sqrt(20) / float(g.norm())
    assert not biased.unbiased and biased.relative_bias == pytest.approx(true, rel=0.2)
    assert biased.bias_low <= true <= biased.bias_high
    assert biased.bias_dof == pytest.approx(20, rel=0.3)  # isotropic noise: ν ≈ P


def test_deterministic_estimator():
    g = torch.ones(3, dtype=torch.float64)
    exact = gradient_statistics(g.expand(5, 3), g)
    assert exact["bias_p"] == 1.0 and exact["bias_high"] == 0.0
    off = gradient_statistics((g + 0.1).expand(5, 3), g)
    assert off["bias_p"] == 0.0 and off["bias_low"] == pytest.approx(0.1)


def test_variance_and_snr_match_the_construction():
    g = torch.ones(50, dtype=torch.float64)
    m = measure("x", gaussian_estimator(g, 0.0, 1.0), g, budget=4, estimates=2000)
    assert m.total_variance == pytest.approx(50 / 4, rel=0.05)  # tr Cov = P σ² / B
    assert m.snr == pytest.approx(50 / (50 / 4), rel=0.05)
    assert m.cost == 4


def test_statistics_reject_bad_shapes():
    with pytest.raises(ValueError):
        gradient_statistics(torch.zeros(1, 3), torch.zeros(3))


def test_loglog_slope():
    xs = [1, 10, 100, 1000]
    assert loglog_slope(xs, [x**-0.5 for x in xs]) == pytest.approx(-0.5)


@pytest.mark.parametrize(
    "kind, options",
    [
        ("total", {"constant": 1.0}),
        ("reward_to_go", {}),
        ("mean_baseline", {}),
        ("per_step_baseline", {}),
        ("value_baseline", {"error": 0.1}),
        ("gae", {"lam": 0.5, "error": 0.15}),
        ("optimal_baseline", {"baseline": 2.0}),
        ("off_policy", {}),
    ],
)
def test_batched_estimates_equal_one_batch_at_a_time(monkeypatch, kind, options):
    """M estimates drawn as one sample of M·B episodes equal the M estimates of its batches taken alone
    (batch baselines use their own batch only)."""
    problem = score_function.make_problem("random", horizon=6, seed=3)
    if kind == "off_policy":
        est = score_function.off_policy_estimator(problem, 0.3)
    else:
        est = score_function.estimator(problem, kind, **options)
    real = score_function.sample_episodes
    drawn = []
    monkeypatch.setattr(
        score_function, "sample_episodes", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1]
    )
    grads, cost = est.batch(7, 4, torch.Generator().manual_seed(0))
    episodes = drawn[-1]
    for j in range(4):
        part = type(episodes)(*[x[:, 7 * j : 7 * j + 7] for x in episodes])
        monkeypatch.setattr(score_function, "sample_episodes", lambda *a, part=part, **k: part)
        one, _ = est(7, torch.Generator())
        assert torch.allclose(grads[j], one, rtol=0, atol=1e-12)
    assert cost == pytest.approx(float(episodes.mask.sum()) / 4)
    monkeypatch.setattr(score_function, "sample_episodes", real)
    stacked, _, _ = draw_estimates(est, 7, 4, seed=0)
    assert stacked.shape == (4, problem.theta.numel())
