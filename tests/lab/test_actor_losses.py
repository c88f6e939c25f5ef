"""The critic study's estimators of the shipped actor losses (DDPG, TD3, SAC) on the LQR.

They are unbiased through the exact critic, biased through a wrong one by exactly what the wrong critic
predicts, and form their gradient with the shipped estimator functions (a counter and a scaled loss
substituted for each prove it)."""

import pytest
import torch

import pgrad.estimators.pathwise as shipped_pathwise
import pgrad.estimators.targets as shipped_targets
import pgrad.lab.pathwise as pathwise
from pgrad.errors import ConfigError
from pgrad.lab.exact import lqr_solution
from pgrad.lab.measure import draw_estimates, measure
from pgrad.lab.pathwise import (
    CRITIC_SIGMA,
    ExactQ,
    actor_loss_estimator,
    actor_loss_problem,
    exact_q,
    fitted_q_ensemble,
    paired_difference_estimator,
    visitation_sampler,
)
from pgrad.policies.critics import QEnsemble

MEMBERS = {"ddpg": 1, "td3": 2, "sac": 2, "sac_q1": 2}


@pytest.fixture(scope="module")
def lqr():
    return actor_loss_problem(0)


def _exact(exacts, algorithm):
    return exacts["sac" if algorithm.startswith("sac") else "deterministic"]


class LinearInActionError(torch.nn.Module):
    """Twin critics Q + λ·s_e·uᵀWx (s = +1, −1): each member is shifted by a term linear in the action with a
    state-dependent slope (a constant slope cᵀu would average out, E[x] = 0). Through Q₁ the estimate's mean
    moves by exactly −λWΣ (Σ = Σ_t γᵗ E[x_t x_tᵀ] of the policy)."""

    def __init__(self, problem, K, scale, members=2):
        super().__init__()
        self.exact = ExactQ(problem, K, 1)
        gen = torch.Generator().manual_seed(11)
        W = torch.randn(problem.m, problem.n, generator=gen, dtype=torch.float64)
        self.W = scale * W / W.norm()
        self.signs = torch.tensor([1.0, -1.0], dtype=torch.float64)[:members, None]

    def forward(self, x, u):
        return self.exact(x, u) + self.signs * ((u * (x @ self.W.T)).sum(1))


@pytest.mark.parametrize("algorithm", sorted(MEMBERS))
def test_the_exact_critic_gives_an_unbiased_estimate(lqr, algorithm):
    problem, K, exacts = lqr
    est = actor_loss_estimator(problem, K, algorithm, ExactQ(problem, K, MEMBERS[algorithm]))
    m = measure(algorithm, est, _exact(exacts, algorithm), 300, 200, seed=1)
    assert m.unbiased, m
    assert m.bias_high < 0.1 and m.cosine > 0.8


@pytest.mark.parametrize("algorithm", ["ddpg", "td3", "sac_q1"])
def test_a_critic_wrong_by_a_term_linear_in_the_action_biases_it_by_what_it_predicts(lqr, algorithm):
    problem, K, exacts = lqr
    sigma = CRITIC_SIGMA if algorithm.startswith("sac") else 0.0
    critic = LinearInActionError(problem, K, 1.0, MEMBERS[algorithm])
    est = actor_loss_estimator(problem, K, algorithm, critic)
    exact = _exact(exacts, algorithm)
    m = measure(algorithm, est, exact, 300, 200, seed=1)
    assert not m.unbiased and m.bias_low > 0.05, m
    predicted = exact - (critic.W @ lqr_solution(problem, K, sigma).Sigma).reshape(-1)
    assert measure(algorithm, est, predicted, 300, 200, seed=1).unbiased


def test_the_min_of_twins_has_a_bias_of_its_own(lqr):
    """Twins Q ± δ: SAC's loss on Q₁ is biased by δ's predicted amount, the min (Q − |δ|) differently, and the
    paired difference of the two measures the min's own bias."""
    problem, K, exacts = lqr
    critic = LinearInActionError(problem, K, 1.0)
    sac = actor_loss_estimator(problem, K, "sac", critic)
    sac_q1 = actor_loss_estimator(problem, K, "sac_q1", critic)
    exact = exacts["sac"]
    difference = measure("min − Q₁", paired_difference_estimator(sac, sac_q1, exact), exact, 300, 100)
    assert not difference.unbiased and difference.bias_low > 0.05
    same = measure("Q₁ − Q₁", paired_difference_estimator(sac_q1, sac_q1, exact), exact, 300, 20)
    assert same.relative_bias == 0.0 and same.total_variance == 0.0


def _counting(monkeypatch, name, scale=1.0):
    """Substitute pathwise.<name> (the shipped function it imported) by a counter that scales the loss."""
    real = getattr(pathwise, name)
    assert real is getattr(shipped_pathwise if "loss" in name else shipped_targets, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(args[0].shape)
        out = real(*args, **kwargs)
        return (scale * out[0], out[1]) if isinstance(out, tuple) else out

    monkeypatch.setattr(pathwise, name, wrapper)
    return calls


@pytest.mark.parametrize(
    "algorithm, loss, uses_min",
    [
        ("ddpg", "deterministic_actor_loss", False),
        ("td3", "deterministic_actor_loss", False),
        ("sac", "reparameterised_actor_loss", True),
        ("sac_q1", "reparameterised_actor_loss", False),
    ],
)
def test_each_estimator_calls_the_shipped_functions(lqr, monkeypatch, algorithm, loss, uses_min):
    problem, K, _ = lqr
    critic = LinearInActionError(problem, K, 0.3, MEMBERS[algorithm])  # twins that differ: the min matters
    est = actor_loss_estimator(problem, K, algorithm, critic)
    plain, _, _ = draw_estimates(est, 16, 5, seed=3)
    losses = _counting(monkeypatch, loss, scale=2.0)
    (unused,) = {"deterministic_actor_loss", "reparameterised_actor_loss"} - {loss}
    other = _counting(monkeypatch, unused)
    mins = _counting(monkeypatch, "ensemble_min")
    doubled, _, _ = draw_estimates(est, 16, 5, seed=3)
    assert losses == [torch.Size([16])] * 5 and other == []  # one shipped loss per batch of B states
    assert mins == ([torch.Size([2, 5, 16])] if uses_min else [])
    torch.testing.assert_close(doubled, 2 * plain)  # the estimate is the gradient of the shipped loss


def test_ddpg_takes_a_single_critic_and_unknown_losses_are_refused(lqr):
    problem, K, _ = lqr
    with pytest.raises(ConfigError, match="single network"):
        draw_estimates(actor_loss_estimator(problem, K, "ddpg", ExactQ(problem, K, 2)), 4, 2)
    with pytest.raises(ConfigError, match="unknown actor loss"):
        actor_loss_estimator(problem, K, "ppo", ExactQ(problem, K, 1))


@pytest.mark.parametrize("sigma", [0.0, CRITIC_SIGMA])
def test_states_follow_the_discounted_state_distribution(lqr, sigma):
    problem, K, _ = lqr
    x = visitation_sampler(problem, K, sigma)(400_000, torch.Generator().manual_seed(0))
    second_moment = x.T @ x / x.shape[0] / (1 - problem.gamma)
    Sigma = lqr_solution(problem, K, sigma).Sigma
    assert float((second_moment - Sigma).norm() / Sigma.norm()) < 0.02


def test_fitted_twins_are_shipped_critics_that_differ(lqr):
    problem, K, _ = lqr
    critic = fitted_q_ensemble(problem, K, 500, members=2, seed=0, steps=300)
    assert isinstance(critic, QEnsemble) and not any(p.requires_grad for p in critic.parameters())
    gen = torch.Generator().manual_seed(1)
    x = visitation_sampler(problem, K, CRITIC_SIGMA)(2000, gen)
    u = -x @ K.T + CRITIC_SIGMA * torch.randn(2000, problem.m, generator=gen, dtype=torch.float64)
    q = critic(x, u)
    target = exact_q(problem, lqr_solution(problem, K).P, x, u)
    assert q.dtype == torch.float64 and q.shape == (2, 2000)
    assert float((q[0] - q[1]).abs().mean()) > 1e-3  # own bootstrap and initialisation per member
    assert float((q - target).square().mean() / target.var()) < 0.2  # and both fit Q
