"""The exact references of `pgrad lab algorithms` for the learned-critic and differentiable-simulator
families: the affine LQR objectives against `pgrad.lab.exact` and `DiffLQR`'s own closed forms, the reading
of a pgrad policy as u = −Kx + b + σε, the exact critics, and the soft objective of discrete SAC."""

import pytest
import torch

from pgrad.errors import ConfigError
from pgrad.lab.algorithms import CASES, build_algorithm, episodic_mdp, lab_problem
from pgrad.lab.algorithms_pathwise import (
    ExactCritic,
    LinearPolicy,
    discounted_objective,
    linear_policy,
    lqr_q_values,
    lqr_task,
    policy_twin,
    replay_moment,
    soft_objective,
    soft_values,
    value_matrix,
    window_objective,
)
from pgrad.lab.exact import LQRProblem, lqr_cost, lqr_solution, policy_evaluation

TASK = lqr_task(3)
PROBLEM = lab_problem(3)
CASE = {case.label: case for case in CASES}


def _policy(K=None, b=None, sigma=0.5, requires_grad=False) -> LinearPolicy:
    K = TASK.gain.clone() if K is None else K
    b = torch.zeros(2, dtype=torch.float64) if b is None else b
    return LinearPolicy(
        K.requires_grad_(requires_grad), b.requires_grad_(requires_grad), torch.full((2,), sigma).double()
    )


def test_window_objective_is_diff_lqr_expected_return_and_tends_to_the_discounted_one():
    env, gamma = TASK.env, TASK.problem.gamma
    for horizon in (1, 2, 7):
        expected = env.expected_return(TASK.gain, gamma, 0.5, horizon)
        torch.testing.assert_close(window_objective(TASK.problem, _policy(), horizon), expected)
    base = LQRProblem(env.A, env.B, env.Q, env.R, torch.eye(4, dtype=torch.float64), gamma)
    torch.testing.assert_close(discounted_objective(TASK.problem, _policy()), -lqr_cost(base, TASK.gain, 0.5))
    b = torch.tensor([0.3, -0.2], dtype=torch.float64)
    long = window_objective(TASK.problem, _policy(b=b), 4000)  # γ^4000 ≈ 4e-18
    torch.testing.assert_close(long, discounted_objective(TASK.problem, _policy(b=b)), rtol=1e-10, atol=0)


def test_the_bootstrap_closes_the_window_exactly():
    """J_h with the terminal P̄ of the same policy is J_∞ up to the noise constant (V^π's constant is not in
    P̄), for any h: the window return plus γʰ V^π(x_h) is the discounted return."""
    policy = _policy(b=torch.tensor([0.1, 0.2], dtype=torch.float64), sigma=0.0)
    P = value_matrix(TASK.problem, policy)
    for horizon in (1, 3):
        closed = window_objective(TASK.problem, policy, horizon, terminal=P)
        torch.testing.assert_close(closed, discounted_objective(TASK.problem, policy))


def test_the_offset_gradient_vanishes_at_zero_offset():
    """∂J/∂b = 0 at b = 0 (the odd moments of the zero-mean state vanish): why the log-std weights' exact
    derivative is 0 too."""
    policy = _policy(requires_grad=True)
    for J in (discounted_objective(TASK.problem, policy), window_objective(TASK.problem, policy, 3)):
        grad_K, grad_b = torch.autograd.grad(J, [policy.K, policy.b])
        assert grad_K.abs().max() > 1e-3 and grad_b.abs().max() < 1e-12


def test_replay_moment_of_one_step_is_the_start_moment_and_averages_the_steps():
    policy = _policy()
    torch.testing.assert_close(replay_moment(TASK.problem, [policy], 1), TASK.problem.Sigma0)
    two = replay_moment(TASK.problem, [policy, policy], 3)
    torch.testing.assert_close(two, replay_moment(TASK.problem, [policy], 6))
    with pytest.raises(ConfigError, match="at least one policy"):
        replay_moment(TASK.problem, [], 3)


@pytest.mark.parametrize("label", ["apg", "shac", "ddpg", "sac", "sapo (exact critic)"])
def test_every_lqr_case_starts_from_the_task_policy(label):
    algo = build_algorithm(CASE[label], PROBLEM, 0)
    linear = linear_policy(policy_twin(algo.policy)[0])
    deterministic = label in ("apg", "ddpg")
    torch.testing.assert_close(linear.K, PROBLEM.lqr.gain, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(linear.b, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-7)
    sigma = 0.0 if deterministic else PROBLEM.lqr.sigma
    torch.testing.assert_close(linear.sigma, torch.full((2,), sigma, dtype=torch.float64), rtol=1e-5, atol=0)


def test_linear_policy_reads_the_normaliser_and_refuses_a_nonlinear_policy():
    algo = build_algorithm(CASE["shac"], PROBLEM, 0)
    algo.iteration(0)  # updates the policy's observation normaliser
    twin = policy_twin(algo.policy)[0]
    linear = linear_policy(twin)
    x = torch.randn(5, 4, dtype=torch.float64)
    head = twin.head
    mean = head.mean_layer(twin.features(x)) * (head.high - head.low) / 2
    torch.testing.assert_close(mean, linear.b - x @ linear.K.T)
    deep = build_algorithm(CASE["apg"], PROBLEM, 0).policy
    deep.hidden_sizes = (8,)  # a trunk would make the map nonlinear
    with pytest.raises(ConfigError, match="must be linear"):
        linear_policy(deep)


@pytest.mark.parametrize("label", ["ddpg (exact critic)", "sac (exact critic)", "shac (exact critic)"])
def test_an_exact_critic_is_exact_and_the_algorithm_cannot_move_it(label):
    algo = build_algorithm(CASE[label], PROBLEM, 0)
    critic = algo.critic
    assert isinstance(critic, ExactCritic)
    inner = [p.detach().clone() for p in critic.inner.parameters()]
    obs = torch.randn(6, 4)
    actions = torch.randn(6, 2)
    before = critic(obs, actions).detach()
    P = lqr_solution(PROBLEM.lqr.problem, torch.cat([PROBLEM.lqr.gain, torch.zeros(2, 1).double()], 1)).P
    if hasattr(algo, "buffer"):  # Q(x, u), one row per ensemble member
        expected = lqr_q_values(PROBLEM.lqr.problem, P, obs.double(), actions.double()).float()
        torch.testing.assert_close(before, expected.expand_as(before))
    algo.iteration(0)  # collects, fits its critic (zero gradients reach the wrapped weights), steps the actor
    for old, new in zip(inner, critic.inner.parameters(), strict=True):
        torch.testing.assert_close(new.detach(), old)
    torch.testing.assert_close(critic(obs, actions).detach(), before)  # until the next refresh


def test_soft_objective_gradient_is_the_soft_policy_gradient_theorem():
    mdp = episodic_mdp(4, 3, seed=2)
    theta = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    theta.requires_grad_(True)
    alpha = 0.3
    (grad,) = torch.autograd.grad(soft_objective(mdp, torch.softmax(theta, -1), alpha), theta)
    probs = torch.softmax(theta.detach(), -1)
    V, Q = soft_values(mdp, probs, alpha)
    d = policy_evaluation(mdp, probs).d * mdp.live
    expected = d[:, None] * probs * (Q - alpha * probs.log() - V[:, None])
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(soft_values(mdp, probs, 0.0)[0], policy_evaluation(mdp, probs).V)
