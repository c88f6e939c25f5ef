"""Pathwise, relaxed and zeroth-order estimators on problems with an exact (or precisely known) gradient.

- DPG through a critic (LQR, deterministic linear policy u = −Kx): ĝ = Σ_t γᵗ ∇_u Q̂(x_t, u)|_{u=−Kx_t} ∇_K u,
  via `deterministic_actor_loss`, with Q̂ the exact Q of the policy (cost matrix P from the Lyapunov equation)
  plus a controlled perturbation of P: exact Q gives ∇J, a wrong one a bias that grows with its error.
- BPTT through `pgrad.envs.diff` (reparameterised u = −Kx + σε, `bptt_loss`) against the score-function
  estimate on the same rollouts; exact ∇J from `DiffLQR.expected_return`.
- Categorical relaxations (straight-through, Gumbel-Softmax, ReinMax) on E_{D∼Cat(softmax θ)}[f(D)], whose
  exact gradient is Σ_k ∇π_k f(e_k).
- Central finite differences of a deterministic objective, across ε.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pgrad.envs.diff import ContactToy, DiffLQR
from pgrad.estimators import (
    bptt_loss,
    deterministic_actor_loss,
    finite_difference_gradient,
    gumbel_softmax,
    reinmax,
    straight_through,
)
from pgrad.lab.exact import lqr_objective_gradient, lqr_problem, lqr_solution
from pgrad.lab.measure import Estimator

# -- DPG through a critic with controllable error -----------------------------------------------------------


def dpg_problem(seed: int = 0):
    """A 3-state, 2-input discounted LQR (γ 0.9) and a stabilising gain K (half the optimal one)."""
    from pgrad.lab.exact import lqr_optimal_gain

    problem = lqr_problem(3, 2, seed=seed, gamma=0.9)
    K = 0.5 * lqr_optimal_gain(problem)
    return problem, K, lqr_objective_gradient(problem, K).reshape(-1)


def exact_q(problem, P: Tensor, x: Tensor, u: Tensor) -> Tensor:
    """Q(x, u) = −[xᵀQx + uᵀRu + γ x'ᵀ P x'] with x' = Ax + Bu (the objective is minus the cost)."""
    x_next = x @ problem.A.T + u @ problem.B.T
    return (
        -((x @ problem.Q) * x).sum(1)
        - ((u @ problem.R) * u).sum(1)
        - problem.gamma * ((x_next @ P) * x_next).sum(1)
    )


def fitted_q_network(problem, K: Tensor, samples: int, seed: int = 5, steps: int = 500):
    """A 64×64 tanh MLP Q_w(x, u) regressed on the exact Q at `samples` state-action pairs drawn around the
    policy (x from its discounted state covariance, u = −Kx + 0.5 ε): a learned critic whose error shrinks
    with the data. Returns the critic as a function (x, u) -> [B]."""
    from pgrad.policies.networks import mlp

    solution = lqr_solution(problem, K)
    gen = torch.Generator().manual_seed(seed)
    cov = solution.Sigma * (1 - problem.gamma)
    x = torch.randn(samples, problem.n, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    u = -x @ K.T + 0.5 * torch.randn(samples, problem.m, generator=gen, dtype=torch.float64)
    target = exact_q(problem, solution.P, x, u)
    torch.manual_seed(seed)
    net = mlp(problem.n + problem.m, (64, 64), 1, activation="tanh").double()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    inputs = torch.cat([x, u], 1)
    for _ in range(steps):
        loss = (net(inputs).squeeze(-1) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.requires_grad_(False)
    return lambda x, u: net(torch.cat([x, u], 1)).squeeze(-1)


def dpg_estimator(
    problem, K: Tensor, critic_error: float = 0.0, horizon: int = 120, seed: int = 3, critic=None
) -> Estimator:
    """B initial states x_0 ~ N(0, Σ₀); critic Q̂(x, u) = −[xᵀQx + uᵀRu + γ x'ᵀ P̂ x'], P̂ = P + error·E."""
    P = lqr_solution(problem, K).P
    gen0 = torch.Generator().manual_seed(seed)
    E = torch.randn(P.shape, generator=gen0, dtype=torch.float64)
    P_hat = P + critic_error * float(P.norm()) * (E + E.T) / float((E + E.T).norm())
    chol = torch.linalg.cholesky(problem.Sigma0)
    A, B, Qc, R, gamma = problem.A, problem.B, problem.Q, problem.R, problem.gamma

    def estimate(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        x = torch.randn(budget, problem.n, generator=gen, dtype=torch.float64) @ chol.T
        K_var = K.clone().requires_grad_(True)
        total = torch.zeros(budget, dtype=torch.float64)
        for t in range(horizon):
            u = -x @ K_var.T  # only the action depends on K: DPG differentiates Q̂ through u alone
            x_next = x @ A.T + u @ B.T
            if critic is not None:  # a fitted network instead of the (perturbed) exact Q
                q = critic(x, u)
            else:
                q = -((x @ Qc) * x).sum(1) - ((u @ R) * u).sum(1) - gamma * ((x_next @ P_hat) * x_next).sum(1)
            total = total + gamma**t * q
            x = (x @ (A - B @ K).T).detach()
        loss, _ = deterministic_actor_loss(total)
        (grad,) = torch.autograd.grad(loss, K_var)
        return -grad.reshape(-1), float(budget * horizon)

    return estimate


# -- BPTT vs the score function through a differentiable LQR ------------------------------------------------


def diff_lqr_problem(horizon: int = 20, sigma: float = 0.3, seed: int = 0):
    env = DiffLQR.random(3, 2, seed, horizon=horizon, dtype=torch.float64)
    K = 0.2 * torch.ones(2, 3, dtype=torch.float64)
    K_var = K.clone().requires_grad_(True)
    J = env.expected_return(K_var, gamma=1.0, action_std=sigma)
    (exact,) = torch.autograd.grad(J, K_var)
    return env, K, sigma, exact.reshape(-1)


def bptt_estimator(env, K: Tensor, sigma: float, method: str) -> Estimator:
    """`bptt`: autograd through dynamics and reparameterised actions; `score`: REINFORCE with reward-to-go."""

    def estimate(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        K_var = K.clone().requires_grad_(True)
        x = env.reset(budget, generator=gen)
        rewards, log_probs = [], []
        for _ in range(env.horizon):
            eps = torch.randn(budget, K.shape[0], generator=gen, dtype=x.dtype)
            mean = -x @ K_var.T
            u = mean + sigma * eps
            if method == "score":
                u = u.detach()
                log_probs.append(-0.5 * (((u - mean) / sigma) ** 2).sum(1))
                x_in = x.detach()
            else:
                x_in = x
            x, r, _ = env.step(x_in, u)
            rewards.append(r)
        R = torch.stack(rewards)
        done = torch.zeros_like(R, dtype=torch.bool)
        if method == "bptt":
            loss, _ = bptt_loss(R, 1.0, done)
        else:
            rtg = R.detach().flip(0).cumsum(0).flip(0)
            loss = -(torch.stack(log_probs) * rtg).sum(0).mean()
        (grad,) = torch.autograd.grad(loss, K_var)
        return -grad.reshape(-1), float(budget * env.horizon)

    return estimate


def contact_bptt(env: ContactToy, theta: Tensor, sigma: float, budget: int, gen: torch.Generator) -> Tensor:
    """BPTT gradient of the mean return of u = θ₀ + θ₁ x + θ₂ v + σε on the contact toy."""
    theta = theta.clone().requires_grad_(True)
    s = env.reset(budget, generator=gen)
    rewards = []
    for _ in range(env.horizon):
        u = (theta[0] + theta[1] * s[:, 0] + theta[2] * s[:, 1])[:, None]
        u = u + sigma * torch.randn(u.shape, generator=gen, dtype=u.dtype)
        s, r, _ = env.step(s, u)
        rewards.append(r)
    R = torch.stack(rewards)
    loss, _ = bptt_loss(R, 1.0, torch.zeros_like(R, dtype=torch.bool))
    (grad,) = torch.autograd.grad(loss, theta)
    return -grad


def contact_expected_return(env: ContactToy, theta: Tensor, sigma: float, samples: int, seed: int) -> Tensor:
    """Mean return over `samples` rollouts with common random numbers (same seed for every θ)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        s = env.reset(samples, generator=gen)
        total = torch.zeros(samples, dtype=s.dtype)
        for _ in range(env.horizon):
            u = (theta[0] + theta[1] * s[:, 0] + theta[2] * s[:, 1])[:, None]
            u = u + sigma * torch.randn(u.shape, generator=gen, dtype=u.dtype)
            s, r, _ = env.step(s, u)
            total = total + r
    return total.mean()


# -- categorical relaxations --------------------------------------------------------------------------------


def relaxation_problem(k: int = 5, seed: int = 0):
    """Logits θ [K] and a quadratic f(D) = (cᵀD − 1)² + dᵀD; exact ∇θ E[f(D)] = Σ_k ∇π_k f(e_k)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(k, generator=gen, dtype=torch.float64)
    c = torch.randn(k, generator=gen, dtype=torch.float64)
    d = torch.randn(k, generator=gen, dtype=torch.float64)

    def f(D: Tensor) -> Tensor:
        return (D @ c - 1.0) ** 2 + D @ d

    theta = logits.clone().requires_grad_(True)
    exact_value = (torch.softmax(theta, -1) * f(torch.eye(k, dtype=torch.float64))).sum()
    (exact,) = torch.autograd.grad(exact_value, theta)
    return logits, f, exact


def relaxation_estimator(logits: Tensor, f, method: str, temperature: float = 1.0) -> Estimator:
    def estimate(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        theta = logits.clone().requires_grad_(True)
        batch = theta.expand(budget, -1)
        if method == "straight_through":
            D = straight_through(batch, generator=gen)
        elif method == "gumbel_softmax":
            D = gumbel_softmax(batch, temperature, generator=gen)
        else:
            D = reinmax(batch, temperature, generator=gen)
        (grad,) = torch.autograd.grad(f(D).mean(), theta)
        return grad, float(budget)

    return estimate


# -- finite differences -------------------------------------------------------------------------------------


def finite_difference_errors(epsilons: tuple[float, ...]) -> tuple[list[float], int, int]:
    """Relative error of central differences of the exact LQR J(K) per ε; returns (errors, d, evaluations)."""
    env, K, sigma, exact = diff_lqr_problem()

    def objective(flat: Tensor) -> Tensor:  # batched [B, P] -> [B]
        return torch.stack([env.expected_return(k.reshape(K.shape), 1.0, sigma) for k in flat])

    errors, evaluations = [], 0
    for eps in epsilons:
        grad, evaluations = finite_difference_gradient(objective, K.reshape(-1), eps, central=True)
        errors.append(float((grad - exact).norm() / exact.norm()))
    return errors, K.numel(), int(evaluations)


# -- zeroth order on the differentiable LQR --------------------------------------------------------------


def sampled_returns(env, gains: Tensor, sigma: float, rollouts: int, gen: torch.Generator) -> Tensor:
    """Mean return of `rollouts` rollouts for each gain in `gains` [G, m, n], all gains sharing the same
    start states and action noise (common random numbers); returns [G]."""
    G = gains.shape[0]
    x = env.reset(rollouts, generator=gen).expand(G, rollouts, -1).reshape(G * rollouts, -1)
    K = gains.repeat_interleave(rollouts, dim=0)  # [G·R, m, n]
    total = torch.zeros(G * rollouts, dtype=x.dtype)
    with torch.no_grad():
        for _ in range(env.horizon):
            eps = torch.randn(rollouts, gains.shape[1], generator=gen, dtype=x.dtype).repeat(G, 1)
            u = -(K @ x.unsqueeze(-1)).squeeze(-1) + sigma * eps
            x, r, _ = env.step(x, u)
            total = total + r
    return total.reshape(G, rollouts).mean(1)


def zeroth_order_estimator(env, K: Tensor, sigma: float, method: str, alpha: float = 0.5) -> Estimator:
    """`fd`: central finite differences (ε = 1e-3) of the CRN-sampled return, budget = rollouts per
    evaluation (2d evaluations); `smoothing`: antithetic Gaussian smoothing (σ_s = 0.01) with budget pairs,
    one CRN rollout per pair; `alpha`: α·BPTT + (1 − α)·smoothing (Suh et al. 2022), same budget each."""
    shape = K.shape
    bptt = bptt_estimator(env, K, sigma, "bptt")

    def estimate(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        theta = K.reshape(-1)
        if method == "fd":
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))

            def f(points: Tensor) -> Tensor:
                return sampled_returns(
                    env, points.reshape(-1, *shape), sigma, budget, torch.Generator().manual_seed(seed)
                )

            grad, evaluations = finite_difference_gradient(f, theta, 1e-3, central=True)
            return grad, float(evaluations * budget * env.horizon)
        smoothing_sigma = 0.01
        noise = torch.randn(budget, theta.numel(), generator=gen, dtype=theta.dtype)
        seeds = torch.randint(0, 2**31 - 1, (budget,), generator=gen).tolist()
        diffs = torch.stack(
            [
                sampled_returns(
                    env,
                    torch.stack([theta + smoothing_sigma * e, theta - smoothing_sigma * e]).reshape(
                        2, *shape
                    ),
                    sigma,
                    1,
                    torch.Generator().manual_seed(s),
                )
                for e, s in zip(noise, seeds, strict=True)
            ]
        )
        zeroth = ((diffs[:, 0] - diffs[:, 1])[:, None] * noise).mean(0) / (2 * smoothing_sigma)
        cost = float(2 * budget * env.horizon)
        if method == "smoothing":
            return zeroth, cost
        first, first_cost = bptt(budget, gen)
        return alpha * first + (1 - alpha) * zeroth, cost + first_cost

    return estimate
