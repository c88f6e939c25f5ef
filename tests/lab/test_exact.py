"""Exact objectives and gradients: closed forms == autograd == central finite differences, values against
plain references (iteration, enumeration of every trajectory, Monte-Carlo rollouts)."""

import itertools

import numpy as np
import pytest
import torch
from gymnasium import spaces

from pgrad.envs.bandit import ContextualBandit
from pgrad.envs.tabular import TabularMDP, frozen_lake, random_mdp
from pgrad.errors import ConfigError
from pgrad.lab import exact
from pgrad.policies.networks import Policy

F64 = torch.float64
FD_TOL = 1e-6  # relative error of an exact gradient against central finite differences


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny float64 linear algebra: one thread is several times faster on a shared 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def fd_gradient(f, x, eps=1e-6):
    """Central differences of the scalar f at every element of x (a float64 tensor)."""
    x = x.detach().clone()
    grad = torch.zeros_like(x)
    flat, out = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        hi = float(f(x))
        flat[i] = old - eps
        lo = float(f(x))
        flat[i] = old
        out[i] = (hi - lo) / (2 * eps)
    return grad


def autograd(f, x):
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x), x)
    return grad


def random_theta(mdp, seed, scale=1.0, horizon=None):
    g = torch.Generator().manual_seed(seed)
    shape = (
        (mdp.num_states, mdp.num_actions) if horizon is None else (horizon, mdp.num_states, mdp.num_actions)
    )
    return scale * torch.randn(*shape, dtype=F64, generator=g)


MDPS = {
    "frozen4-slippery": lambda: frozen_lake("4x4", is_slippery=True, gamma=0.99),
    "frozen4-deterministic": lambda: frozen_lake("4x4", is_slippery=False, gamma=0.95),
    "frozen4-undiscounted": lambda: frozen_lake("4x4", is_slippery=True, gamma=1.0),
    "frozen8-slippery": lambda: frozen_lake("8x8", is_slippery=True, gamma=0.99),
    "random-S6-A3": lambda: random_mdp(6, 3, gamma=0.9, seed=0),
    "random-S10-A4-sparse": lambda: random_mdp(10, 4, gamma=0.95, seed=1, branching=2, concentration=0.5),
    "random-S4-A2": lambda: random_mdp(4, 2, gamma=0.5, seed=2),
}


@pytest.fixture(scope="module", params=sorted(MDPS))
def mdp(request):
    return MDPS[request.param]()


# ---------------------------------------------------------------------------------------------------------
# infinite horizon, softmax policy


def test_values_match_iterative_policy_evaluation(mdp):
    pi = exact.softmax_policy(random_theta(mdp, 0))
    V, Q, d = exact.tabular_values(mdp, random_theta(mdp, 0))
    # plain references: V ← r_π + γ P_π V and d ← ρ + γ P_πᵀ d iterated (episodes stop at terminal states)
    live = torch.ones(mdp.num_states, dtype=F64) if mdp.terminal is None else (~mdp.terminal).to(F64)
    P_pi = torch.einsum("sa,sat->st", pi, mdp.P) * live[:, None]
    r_pi = (pi * mdp.R).sum(1)
    V_ref, d_ref = torch.zeros_like(V), torch.zeros_like(d)
    for _ in range(100_000):
        V_new = r_pi + mdp.gamma * P_pi @ V_ref
        d_new = mdp.rho + mdp.gamma * P_pi.T @ d_ref
        converged = torch.equal(V_new, V_ref) and torch.equal(d_new, d_ref)
        V_ref, d_ref = V_new, d_new
        if converged:
            break
    torch.testing.assert_close(V, V_ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(d, d_ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(
        Q, mdp.R + mdp.gamma * torch.einsum("sat,t->sa", mdp.P, V_ref), rtol=1e-9, atol=1e-11
    )
    torch.testing.assert_close((pi * Q).sum(1), V)  # V = Σ_a π Q
    if mdp.terminal is None:
        assert d.sum().item() == pytest.approx(1 / (1 - mdp.gamma), rel=1e-10)
    else:
        assert (V[mdp.terminal] == 0).all() and (Q[mdp.terminal] == 0).all()


def test_softmax_gradient_closed_form_equals_autograd_and_finite_differences(mdp):
    for seed in (0, 1):
        theta = random_theta(mdp, seed)
        closed = exact.tabular_gradient(mdp, theta)
        assert closed.shape == theta.shape and closed.dtype == F64
        assert rel_err(closed, autograd(lambda t: exact.tabular_objective(mdp, t), theta)) < 1e-10
        fd = fd_gradient(lambda t: exact.tabular_objective(mdp, t), theta)
        assert rel_err(fd, closed) < FD_TOL


def test_frozen_lake_objective_is_the_success_probability():
    # γ = 1: J = probability of reaching the goal; a policy walking into a hole at once scores little,
    # and the optimal finite-horizon (H = 100) value is Gymnasium's stated optimum 0.74.
    mdp = frozen_lake("4x4", is_slippery=False, gamma=1.0)
    path = {0: 1, 4: 1, 8: 2, 9: 1, 13: 2, 14: 2}  # down, down, right, down, right, right
    theta = torch.zeros(16, 4, dtype=F64)
    for s, a in path.items():
        theta[s, a] = 30.0  # nearly deterministic
    assert exact.tabular_objective(mdp, theta).item() == pytest.approx(1.0, abs=1e-10)
    slippery = frozen_lake("4x4", is_slippery=True, gamma=1.0)
    V = torch.zeros(16, dtype=F64)
    for _ in range(100):
        V = (slippery.R + torch.einsum("sat,t->sa", slippery.P, V)).max(1).values
    assert (slippery.rho @ V).item() == pytest.approx(0.7442, abs=1e-4)


def test_general_policy_linear_softmax_on_features():
    mdp = random_mdp(7, 3, gamma=0.9, seed=3)
    g = torch.Generator().manual_seed(0)
    features = torch.randn(7, 4, dtype=F64, generator=g)
    weights = torch.randn(4, 3, dtype=F64, generator=g)

    def objective(w):
        return exact.policy_objective(mdp, torch.softmax(features @ w, dim=1))

    def theorem(w):  # Σ_s d(s) Σ_a ∇π(a|s) Q(s, a), with d and Q held fixed
        return exact.policy_gradient_surrogate(mdp, torch.softmax(features @ w, dim=1))

    grad = autograd(objective, weights)
    assert rel_err(autograd(theorem, weights), grad) < 1e-10
    assert rel_err(fd_gradient(objective, weights), grad) < FD_TOL


def test_general_policy_pgrad_network_on_one_hot_states():
    mdp = frozen_lake("4x4", is_slippery=True, gamma=0.95)
    torch.manual_seed(0)
    policy = Policy(mdp.num_states, spaces.Discrete(mdp.num_actions), hidden_sizes=(8,)).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.5 * torch.randn_like(p))  # away from the near-uniform initial policy

    def J():
        return exact.policy_objective(mdp, exact.policy_table(policy))

    params = list(policy.parameters())
    grads = torch.autograd.grad(J(), params)
    theorem = torch.autograd.grad(exact.policy_gradient_surrogate(mdp, exact.policy_table(policy)), params)
    flat = torch.cat([g.reshape(-1) for g in grads])
    assert rel_err(torch.cat([g.reshape(-1) for g in theorem]), flat) < 1e-10
    fd = []
    with torch.no_grad():
        for p in params:
            fd.append(
                fd_gradient(lambda value, p=p: (p.copy_(value), J())[1], p.detach().clone()).reshape(-1)
            )
    assert rel_err(torch.cat(fd), flat) < FD_TOL
    # the table is the policy's action distribution on one-hot observations
    table = exact.policy_table(policy)
    assert table.shape == (16, 4) and torch.allclose(table.sum(1), torch.ones(16, dtype=F64))


def test_invalid_inputs_raise_config_error():
    mdp = random_mdp(3, 2, gamma=0.9, seed=0)
    with pytest.raises(ConfigError, match="theta"):
        exact.tabular_gradient(mdp, torch.zeros(2, 3, dtype=F64))
    with pytest.raises(ConfigError, match="sum"):
        exact.policy_objective(mdp, torch.full((3, 2), 0.7, dtype=F64))
    with pytest.raises(ConfigError, match="singular"):  # no terminal state: γ = 1 has no finite value
        exact.tabular_objective(mdp.with_gamma(1.0), torch.zeros(3, 2, dtype=F64))
    lake = frozen_lake("4x4", is_slippery=False, gamma=1.0)
    stay = torch.zeros(16, 4, dtype=F64)
    stay[:, 0] = 1.0  # always left: state 0 never ends its episode
    with pytest.raises(ConfigError, match=r"states \[0"):
        exact.policy_objective(lake, stay)
    assert exact.policy_objective(lake.with_gamma(0.9), stay).item() == 0.0
    with pytest.raises(ConfigError, match="horizon"):
        exact.tabular_finite_horizon(mdp, torch.zeros(3, 2, dtype=F64), 0)


# ---------------------------------------------------------------------------------------------------------
# finite horizon


def tiny_mdp(gamma, terminal=False):
    """2 live states and 2 actions (plus an absorbing terminal state when asked)."""
    if not terminal:
        P = torch.tensor([[[0.7, 0.3], [0.2, 0.8]], [[0.5, 0.5], [0.9, 0.1]]], dtype=F64)
        R = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=F64)
        return TabularMDP(P, R, torch.tensor([0.6, 0.4], dtype=F64), gamma)
    P = torch.tensor(
        [
            [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]],
            [[0.5, 0.4, 0.1], [0.1, 0.1, 0.8]],
            [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],
        ],
        dtype=F64,
    )
    R = torch.tensor([[1.0, -0.5], [0.3, 2.0], [0.0, 0.0]], dtype=F64)
    rho = torch.tensor([0.6, 0.4, 0.0], dtype=F64)
    return TabularMDP(P, R, rho, gamma, terminal=torch.tensor([False, False, True]))


def brute_force(mdp, theta, horizon):
    """J and ∇J by enumerating every trajectory:
    J = Σ_τ p(τ) G(τ), ∇J = Σ_τ p(τ) G(τ) Σ_t ∇ log π(a_t|s_t)."""
    pi = torch.softmax(theta, -1).tolist()
    S, A = mdp.num_states, mdp.num_actions
    P, R, rho = mdp.P.tolist(), mdp.R.tolist(), mdp.rho.tolist()
    J, grad = 0.0, np.zeros((S, A))
    for states in itertools.product(range(S), repeat=horizon):
        for actions in itertools.product(range(A), repeat=horizon):
            p = rho[states[0]]
            for t in range(horizon):
                p *= pi[states[t]][actions[t]]
                if t + 1 < horizon:
                    p *= P[states[t]][actions[t]][states[t + 1]]
            if p == 0.0:
                continue
            G = sum(mdp.gamma**t * R[s][a] for t, (s, a) in enumerate(zip(states, actions, strict=True)))
            score = np.zeros((S, A))
            for s, a in zip(states, actions, strict=True):
                score[s] -= pi[s]  # ∂ log π(a|s)/∂θ[s, b] = 1[a = b] − π(b|s)
                score[s][a] += 1.0
            J += p * G
            grad += p * G * score
    return J, torch.tensor(grad)


@pytest.mark.parametrize("gamma", [1.0, 0.8])
@pytest.mark.parametrize("terminal", [False, True])
def test_finite_horizon_matches_enumeration_of_all_trajectories(gamma, terminal):
    mdp = tiny_mdp(gamma, terminal)
    theta = random_theta(mdp, 5)
    solution = exact.tabular_finite_horizon(mdp, theta, horizon=3)
    J_ref, grad_ref = brute_force(mdp, theta, horizon=3)
    assert solution.J.item() == pytest.approx(J_ref, rel=1e-12)
    assert rel_err(solution.grad, grad_ref) < 1e-12
    assert solution.V.shape == (4, mdp.num_states) and solution.Q.shape == (3, mdp.num_states, 2)
    assert solution.d.shape == (3, mdp.num_states)


@pytest.mark.parametrize("time_dependent", [False, True])
def test_finite_horizon_gradient_equals_autograd_and_finite_differences(time_dependent):
    mdp = frozen_lake("4x4", is_slippery=True, gamma=1.0)
    H = 6
    theta = random_theta(mdp, 2, horizon=H if time_dependent else None)
    solution = exact.tabular_finite_horizon(mdp, theta, H)
    assert solution.grad.shape == theta.shape

    def J(t):
        return exact.tabular_finite_horizon(mdp, t, H).J

    assert rel_err(solution.grad, autograd(J, theta)) < 1e-10
    assert rel_err(fd_gradient(J, theta), solution.grad) < FD_TOL


@pytest.mark.parametrize("gamma", [1.0, 0.8])
def test_batched_finite_horizon_gradients_equal_one_policy_at_a_time(gamma):
    for mdp in (random_mdp(5, 3, gamma=gamma, seed=1), frozen_lake("4x4", is_slippery=True, gamma=gamma)):
        thetas = torch.stack([random_theta(mdp, seed) for seed in range(4)])
        batched = exact.tabular_finite_horizon_gradients(mdp, thetas, 7)
        for theta, grad in zip(thetas, batched, strict=True):
            assert rel_err(grad, exact.tabular_finite_horizon(mdp, theta, 7).grad) < 1e-12
    with pytest.raises(ConfigError, match="thetas must have shape"):
        exact.tabular_finite_horizon_gradients(mdp, thetas[0], 7)


@pytest.mark.parametrize("gamma", [0.5, 0.9])
def test_fisher_is_the_hessian_of_the_mean_kl_and_preconditions_to_the_advantage(gamma):
    mdp = random_mdp(5, 3, gamma=gamma, seed=2)
    theta = random_theta(mdp, 3)
    F = exact.tabular_fisher(mdp, theta)
    values = exact.tabular_values(mdp, theta)
    weights = values.d / values.d.sum()
    assert weights.sum().item() == pytest.approx(1.0) and values.d.sum().item() == pytest.approx(
        1 / (1 - gamma)
    )
    old = torch.log_softmax(theta, -1)

    def mean_kl(t):
        new = torch.log_softmax(t.reshape(theta.shape), -1)
        return (weights * (old.exp() * (old - new)).sum(-1)).sum()

    hessian = torch.autograd.functional.hessian(mean_kl, theta.reshape(-1).clone())
    assert rel_err(F, hessian) < 1e-12
    # E[ψψᵀ] by enumeration of (s, a): ψ = ∂ log π(a|s)/∂θ
    pi = exact.softmax_policy(theta)
    outer = torch.zeros_like(F)
    for s in range(mdp.num_states):
        for a in range(mdp.num_actions):
            psi = torch.zeros(theta.shape, dtype=F64)
            psi[s] = -pi[s]
            psi[s, a] += 1.0
            outer += weights[s] * pi[s, a] * torch.outer(psi.reshape(-1), psi.reshape(-1))
    assert rel_err(F, outer) < 1e-12
    # Kakade (2001): F⁺∇J = A / (1 − γ), up to per-state constants (the null space of F)
    natural = torch.linalg.pinv(F, hermitian=True) @ exact.tabular_gradient(mdp, theta).reshape(-1)
    advantage = (values.Q - values.V[:, None]) / (1 - gamma)

    def centred(x):
        x = x.reshape(theta.shape)
        return x - x.mean(-1, keepdim=True)

    assert rel_err(centred(natural), centred(advantage)) < 1e-10


def test_finite_horizon_tends_to_the_infinite_horizon_value():
    for mdp in (random_mdp(6, 3, gamma=0.9, seed=4), frozen_lake(gamma=0.95)):
        theta = random_theta(mdp, 3)
        long = exact.tabular_finite_horizon(mdp, theta, 400)
        assert long.J.item() == pytest.approx(exact.tabular_objective(mdp, theta).item(), rel=1e-12)
        assert rel_err(long.grad, exact.tabular_gradient(mdp, theta)) < 1e-10
        short = exact.tabular_finite_horizon(mdp, theta, 5)
        assert abs(short.J.item() - long.J.item()) > 1e-6  # the horizon matters


# ---------------------------------------------------------------------------------------------------------
# LQR


def stabilising_gain(problem, seed, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(problem.m, problem.n, dtype=F64, generator=g)


def test_lqr_lyapunov_solutions_match_fixed_point_iteration():
    problem = exact.lqr_problem(4, 2, seed=1, gamma=0.95)
    K = stabilising_gain(problem, 0)
    solution = exact.lqr_solution(problem, K, sigma=0.3)
    A_K = problem.A - problem.B @ K
    g = problem.gamma
    P, Sigma = torch.zeros(4, 4, dtype=F64), torch.zeros(4, 4, dtype=F64)
    for _ in range(5000):
        P = problem.Q + K.T @ problem.R @ K + g * A_K.T @ P @ A_K
        Sigma = solution.Sigma0_eff + g * A_K @ Sigma @ A_K.T
    torch.testing.assert_close(solution.P, P, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(solution.Sigma, Sigma, rtol=1e-10, atol=1e-12)
    # the two ways of writing the cost agree: tr(P Σ₀') = tr((Q + KᵀRK) Σ)
    noise = torch.trace(problem.R @ solution.W) / (1 - g)
    cost_sigma = torch.trace((problem.Q + K.T @ problem.R @ K) @ solution.Sigma) + noise
    assert solution.cost.item() == pytest.approx(cost_sigma.item(), rel=1e-12)


def test_lqr_cost_matches_monte_carlo_rollouts():
    problem = exact.lqr_problem(3, 2, seed=0, gamma=0.9)
    K, sigma = stabilising_gain(problem, 0), 0.5
    solution = exact.lqr_solution(problem, K, sigma)
    g = torch.Generator().manual_seed(1)
    N, T = 6000, 200  # γ^T ≈ 7e-10: the truncation is negligible
    x = torch.randn(N, 3, dtype=F64, generator=g) @ torch.linalg.cholesky(problem.Sigma0).T
    total = torch.zeros(N, dtype=F64)
    for t in range(T):
        u = -x @ K.T + sigma * torch.randn(N, 2, dtype=F64, generator=g)
        total += problem.gamma**t * (((x @ problem.Q) * x).sum(1) + ((u @ problem.R) * u).sum(1))
        x = x @ problem.A.T + u @ problem.B.T
    mean, se = total.mean().item(), total.std().item() / N**0.5
    assert abs(mean - solution.cost.item()) < 4 * se
    # the test has the power to catch a wrong noise term: plausible mistakes are many SEs away
    P, W, B, R, gamma = solution.P, solution.W, problem.B, problem.R, problem.gamma
    wrong = {
        "no γ in Σ₀'": torch.trace(P @ (problem.Sigma0 + B @ W @ B.T / (1 - gamma)))
        + torch.trace(R @ W) / (1 - gamma),
        "no σ² tr(R) term": torch.trace(P @ solution.Sigma0_eff),
        "no noise in Σ₀'": torch.trace(P @ problem.Sigma0) + torch.trace(R @ W) / (1 - gamma),
    }
    for name, value in wrong.items():
        assert abs(mean - value.item()) > 10 * se, name


@pytest.mark.parametrize(
    "seed,gamma,sigma", [(0, 0.9, 0.0), (1, 0.99, 0.3), (2, 0.95, [0.2, 0.7]), (3, 1.0, 0.0)]
)
def test_lqr_gradient_equals_autograd_and_finite_differences(seed, gamma, sigma):
    problem = exact.lqr_problem(3, 2, seed=seed, gamma=gamma)
    K = stabilising_gain(problem, seed)
    grad = exact.lqr_gradient(problem, K, sigma)
    assert grad.shape == (2, 3)
    assert rel_err(grad, autograd(lambda k: exact.lqr_cost(problem, k, sigma), K)) < 1e-10
    assert rel_err(fd_gradient(lambda k: exact.lqr_cost(problem, k, sigma), K), grad) < FD_TOL
    # the objective to maximise is the negated cost
    assert exact.lqr_objective(problem, K, sigma).item() == -exact.lqr_cost(problem, K, sigma).item()
    torch.testing.assert_close(exact.lqr_objective_gradient(problem, K, sigma), -grad, rtol=0, atol=0)


@pytest.mark.parametrize("sigma", [0.4, [0.2, 0.7]])
def test_lqr_sigma_gradient_equals_finite_differences(sigma):
    problem = exact.lqr_problem(3, 2, seed=4, gamma=0.9)
    K = stabilising_gain(problem, 1)
    sigma = torch.tensor(sigma, dtype=F64)
    grad = exact.lqr_sigma_gradient(problem, K, sigma)
    assert grad.shape == sigma.shape
    assert rel_err(fd_gradient(lambda s: exact.lqr_cost(problem, K, s), sigma), grad) < FD_TOL
    assert rel_err(autograd(lambda s: exact.lqr_cost(problem, K, s), sigma), grad) < 1e-10


def test_lqr_gradient_vanishes_at_the_riccati_optimum():
    problem = exact.lqr_problem(4, 2, seed=5, gamma=0.95)
    K_star = exact.lqr_optimal_gain(problem)
    scale = exact.lqr_gradient(problem, torch.zeros(2, 4, dtype=F64), 0.3).norm()
    assert exact.lqr_gradient(problem, K_star, 0.3).norm() < 1e-9 * scale
    for seed in range(3):  # and it is a minimum
        nearby = K_star + 0.01 * stabilising_gain(problem, seed, scale=1.0)
        assert exact.lqr_cost(problem, nearby, 0.3) > exact.lqr_cost(problem, K_star, 0.3)


def test_lqr_rejects_unstable_gains_and_bad_noise():
    problem = exact.lqr_problem(2, 1, seed=0, gamma=0.99)
    with pytest.raises(ConfigError, match="stabilise"):
        exact.lqr_cost(problem, torch.tensor([[50.0, 50.0]], dtype=F64))
    with pytest.raises(ConfigError, match="infinite"):
        exact.lqr_cost(exact.lqr_problem(2, 1, seed=0, gamma=1.0), torch.zeros(1, 2, dtype=F64), 0.1)
    with pytest.raises(ConfigError, match="sigma"):
        exact.lqr_cost(problem, torch.zeros(1, 2, dtype=F64), [0.1, 0.2])
    with pytest.raises(ConfigError, match="K must"):
        exact.lqr_cost(problem, torch.zeros(2, 2, dtype=F64))


# ---------------------------------------------------------------------------------------------------------
# bandits


@pytest.mark.parametrize("contextual", [False, True])
def test_bandit_gradient_equals_autograd_and_finite_differences(contextual):
    g = torch.Generator().manual_seed(0)
    shape = (3, 4) if contextual else (4,)
    rewards = torch.rand(*shape, dtype=F64, generator=g)
    theta = torch.randn(*shape, dtype=F64, generator=g)
    context_probs = torch.tensor([0.5, 0.3, 0.2], dtype=F64) if contextual else None
    closed = exact.bandit_gradient(rewards, context_probs, theta)
    assert closed.shape == theta.shape

    def J(t):
        return exact.bandit_objective(rewards, context_probs, t)

    assert rel_err(closed, autograd(J, theta)) < 1e-12
    assert rel_err(fd_gradient(J, theta), closed) < FD_TOL
    pi = torch.softmax(theta, -1)
    weights = torch.ones(1, dtype=F64) if context_probs is None else context_probs
    assert J(theta).item() == pytest.approx((weights * (pi * rewards).reshape(-1, 4).sum(-1)).sum().item())


def test_bandit_problem_from_pgrad_contextual_bandit():
    env = ContextualBandit(num_contexts=5, num_actions=3, table_seed=7)
    rewards, context_probs = exact.contextual_bandit_problem(env)
    assert rewards.shape == (5, 3) and context_probs.shape == (5,)
    probs = torch.softmax(random_theta(random_mdp(5, 3, seed=0), 1), -1)
    J = exact.bandit_policy_objective(rewards, context_probs, probs)
    assert J.item() == pytest.approx(env.expected_reward(probs), rel=1e-12)
    with pytest.raises(ConfigError, match="ContextualBandit"):
        exact.contextual_bandit_problem(object())
