"""The window-length study: SHAC's windowed estimator against the exact LQR gradient, its closed-form mean,
the window-start sampler, the contact toy's windows and reference, and the study's page through the CLI."""

import functools
import math

import pytest
import torch

import pgrad.lab.studies as studies
from pgrad.cli import main
from pgrad.errors import ConfigError
from pgrad.lab.measure import measure
from pgrad.lab.pathwise import contact_bptt_per_rollout, visitation_sampler
from pgrad.lab.windows import (
    CONTACT_SIGMA,
    CONTACT_THETA,
    ROW_KEYS,
    WINDOWS,
    contact_reference,
    contact_window_env,
    contact_window_gradients,
    plot_windows,
    shac_window_estimator,
    window_expected_gradient,
    window_lqr_problem,
    window_page,
    window_start_moment,
    window_study,
)

TINY = dict(windows=(1, 2), stiffnesses=(1e3,), rollouts=8, reference_samples=50)


@pytest.fixture(scope="module")
def lqr():
    return window_lqr_problem(0)


def _relative(a, b):
    return float((a - b).norm() / b.norm())


def test_the_study_runs_at_a_tiny_budget_with_the_documented_keys(tmp_path):
    study = window_study(budget=3, estimates=4, **TINY)
    rows = study.rows()
    assert len(rows) == 3 * 2 + 1 * 2  # three critics × two windows on the LQR, one stiffness × two windows
    for row in rows:
        assert tuple(row) == ROW_KEYS
        numbers = {k: v for k, v in row.items() if isinstance(v, float)}
        if row["setting"] == "contact":  # no closed form on the contact toy
            assert math.isnan(numbers.pop("predicted_bias"))
        assert all(math.isfinite(v) for v in numbers.values()), row
    assert set(study.references) == {1e3} and set(study.start_ablation) == {1, 2}
    page = window_page(study, 3, 4)
    assert "| critic | h |" in page and "| stiffness | h |" in page
    assert plot_windows(study, tmp_path / "windows.png").stat().st_size > 0


def test_the_closed_form_mean_with_the_exact_critic_is_the_gradient(lqr):
    problem, K, sigma, exact = lqr
    for h in WINDOWS:
        assert _relative(window_expected_gradient(problem, K, sigma, h, 1.0), exact) < 1e-10
    # Started from the one-step distribution d instead of d_h, the same window is biased for h > 1.
    assert _relative(window_expected_gradient(problem, K, sigma, 1, 1.0, stride=1), exact) < 1e-10
    assert _relative(window_expected_gradient(problem, K, sigma, 8, 1.0, stride=1), exact) > 0.1
    # A wrong critic's bias is proportional to its error: V̂ = 1.3 V is 0.3 times V̂ = 0's.
    wrong = window_expected_gradient(problem, K, sigma, 4, 1.3) - exact
    none = window_expected_gradient(problem, K, sigma, 4, 0.0) - exact
    assert torch.allclose(wrong, -0.3 * none, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("h, budget", [(1, 4000), (4, 2000), (16, 500)])
def test_the_windowed_estimator_with_the_exact_critic_matches_the_gradient(lqr, h, budget):
    """Fails if the bootstrap, its γʰ or the 1/(1 − γʰ) were dropped, or the starts came from d."""
    problem, K, sigma, exact = lqr
    m = measure("exact V", shac_window_estimator(problem, K, sigma, h, 1.0), exact, budget, 50, seed=h)
    assert m.relative_bias < 0.04 and m.bias_p > 1e-3, m
    assert m.cosine > 0.95 and m.cost == budget * h


@pytest.mark.parametrize("scale", [0.0, 1.3])
def test_the_windowed_estimator_has_the_closed_form_mean(lqr, scale):
    problem, K, sigma, exact = lqr
    predicted = window_expected_gradient(problem, K, sigma, 4, scale)
    assert _relative(predicted, exact) > 0.2  # a bias the measurement can see
    m = measure(
        "wrong critic", shac_window_estimator(problem, K, sigma, 4, scale), predicted, 2000, 50, seed=3
    )
    assert m.relative_bias < 0.04 and m.bias_p > 1e-3, m


def test_window_starts_follow_their_distribution(lqr):
    problem, K, sigma, _ = lqr
    for h in (1, 8):
        x = visitation_sampler(problem, K, sigma, stride=h)(200_000, torch.Generator().manual_seed(h))
        assert _relative(x.T @ x / x.shape[0], window_start_moment(problem, K, sigma, h)) < 0.02
    with pytest.raises(ConfigError):
        visitation_sampler(problem, K, sigma, stride=0)
    with pytest.raises(ConfigError):
        shac_window_estimator(problem, K, sigma, 0)


def test_contact_windows_cut_the_episode_and_agree_with_the_reference_when_whole():
    env = contact_window_env(1e3, horizon=16)
    theta = torch.tensor(CONTACT_THETA, dtype=torch.float64)

    def gen():
        return torch.Generator().manual_seed(0)

    full = contact_bptt_per_rollout(env, theta, CONTACT_SIGMA, 64, gen())
    assert torch.equal(contact_window_gradients(env, theta, CONTACT_SIGMA, 16, 64, gen()), full)
    assert torch.equal(contact_window_gradients(env, theta, CONTACT_SIGMA, 40, 64, gen()), full)
    cut = contact_window_gradients(env, theta, CONTACT_SIGMA, 4, 64, gen())
    assert not torch.allclose(cut, full)  # the carried state is a constant: later windows lose the past
    # Full BPTT (unbiased on this smooth, soft wall) agrees with the finite-difference reference.
    grads = contact_window_gradients(env, theta, CONTACT_SIGMA, 16, 2000, gen())
    reference, error = contact_reference(env, theta, CONTACT_SIGMA, 4000, seed=1)
    se = (grads.var(0) / grads.shape[0] + error.square()).sqrt()
    assert ((grads.mean(0) - reference).abs() < 4 * se).all(), (grads.mean(0), reference, se)
    with pytest.raises(ConfigError):
        contact_window_gradients(env, theta, CONTACT_SIGMA, 0, 4, gen())


def test_pgrad_lab_windows_writes_its_page(tmp_path, monkeypatch):
    monkeypatch.setattr(studies, "window_study", functools.partial(window_study, **TINY))
    assert main(["lab", "windows", "--out", str(tmp_path), "--estimates", "4", "--budgets", "3"]) == 0
    page = (tmp_path / "windows.md").read_text()
    assert page.startswith("# SHAC's window length h") and "pgrad lab windows" in page
    assert "## The estimator, as SHAC computes it" in page and (tmp_path / "windows.png").exists()
