import math

import pytest
import torch

from pgrad.lab.measure import Z_99, gradient_statistics, loglog_slope, measure


def gaussian_estimator(g, bias, scale):
    def estimate(budget, gen):
        noise = torch.randn(g.shape, generator=gen, dtype=torch.float64) * scale / math.sqrt(budget)
        return g + bias + noise, float(budget)

    return estimate


def test_unbiased_estimator_passes_and_biased_one_fails():
    g = torch.linspace(-1, 1, 20, dtype=torch.float64)
    z_scores = []
    for seed in range(20):
        m = measure("unbiased", gaussian_estimator(g, 0.0, 2.0), g, budget=10, estimates=400, seed=seed)
        z_scores.append(m.bias_z)
        assert m.cosine < 1
    # Under the null the z-score is approximately standard normal: most seeds pass, mean near 0.
    assert sum(z < Z_99 for z in z_scores) >= 18
    assert abs(sum(z_scores) / len(z_scores)) < 0.8
    biased = measure("biased", gaussian_estimator(g, 0.1, 2.0), g, budget=10, estimates=400, seed=0)
    assert not biased.unbiased and biased.relative_bias == pytest.approx(
        0.1 * math.sqrt(20) / float(g.norm()), rel=0.2
    )
    assert biased.bias_low <= biased.relative_bias <= biased.bias_high


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
