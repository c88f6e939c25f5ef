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
    policy (x from its discounted state covariance, u = −Kx + 0.5 ε): a learned critic. Trained in float32
    (`steps` full-batch Adam steps), evaluated in float64. With 500 steps the fit, not the data, often limits
    the error of ∇_u Q_w: on most seeds the network fitted on 5000 samples gives a *larger* DPG bias than the
    one fitted on 200. Returns the critic as a function (x, u) -> [B]."""
    from pgrad.policies.networks import mlp

    solution = lqr_solution(problem, K)
    gen = torch.Generator().manual_seed(seed)
    cov = solution.Sigma * (1 - problem.gamma)
    x = torch.randn(samples, problem.n, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    u = -x @ K.T + 0.5 * torch.randn(samples, problem.m, generator=gen, dtype=torch.float64)
    target = exact_q(problem, solution.P, x, u).float()
    torch.manual_seed(seed)
    net = mlp(problem.n + problem.m, (64, 64), 1, activation="tanh").float()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    inputs = torch.cat([x, u], 1).float()
    for _ in range(steps):
        loss = (net(inputs).squeeze(-1) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net = net.double().requires_grad_(False)
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
    A_K = A - B @ K
    powers = [torch.eye(problem.n, dtype=torch.float64)]
    for _ in range(horizon - 1):
        powers.append(A_K @ powers[-1])
    transitions = torch.stack(powers).transpose(1, 2)  # [H, n, n]: x_t = x_0 (A_K^t)ᵀ
    discount = gamma ** torch.arange(horizon, dtype=torch.float64)

    def estimate(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        # The states do not depend on K through the critic (DPG differentiates Q̂ through u alone), so the
        # whole trajectory x_0 … x_{H−1} [H, B, n] is rolled out first and Q̂ evaluated on it in one batch.
        x = torch.randn(budget, problem.n, generator=gen, dtype=torch.float64) @ chol.T
        xs = (x @ transitions).reshape(horizon * budget, problem.n)  # x_t = A_K^t x_0, [H·B, n]
        K_var = K.clone().requires_grad_(True)
        u = -xs @ K_var.T
        if critic is not None:  # a fitted network instead of the (perturbed) exact Q
            q = critic(xs, u)
        else:
            x_next = xs @ A.T + u @ B.T
            q = -((xs @ Qc) * xs).sum(1) - ((u @ R) * u).sum(1) - gamma * ((x_next @ P_hat) * x_next).sum(1)
        total = (discount[:, None] * q.reshape(horizon, budget)).sum(0)  # Σ_t γᵗ Q̂(x_t, u_t) per start state
        loss, _ = deterministic_actor_loss(total)
        (grad,) = torch.autograd.grad(loss, K_var)
        return -grad.reshape(-1), float(budget * horizon)

    return estimate


# -- BPTT vs the score function through a differentiable LQR ------------------------------------------------


def diff_lqr_problem(horizon: int = 20, sigma: float = 0.3, seed: int = 0, n: int = 3, m: int = 2):
    """A random n-state, m-input `DiffLQR` (float64), a stabilising gain K (all entries 0.2, halved until
    A − BK is stable), the action noise σ and the exact ∇_K J of the undiscounted H-step return (autograd of
    `DiffLQR.expected_return`)."""
    env = DiffLQR.random(n, m, seed, horizon=horizon, dtype=torch.float64)
    K = 0.2 * torch.ones(m, n, dtype=torch.float64)
    while torch.linalg.eigvals(env.A - env.B @ K).abs().max() >= 1:
        K = K / 2
    K_var = K.clone().requires_grad_(True)
    J = env.expected_return(K_var, gamma=1.0, action_std=sigma)
    (exact,) = torch.autograd.grad(J, K_var)
    return env, K, sigma, exact.reshape(-1)


def bptt_estimator(env, K: Tensor, sigma: float, method: str) -> Estimator:
    """`bptt`: autograd through dynamics and reparameterised actions; `score`: REINFORCE with reward-to-go.

    M estimates of B rollouts each are drawn as M·B rollouts at once, each batch of B with its own copy of K
    (so autograd gives the M per-batch gradients in one backward pass)."""

    def draw(budget: int, estimates: int, gen: torch.Generator) -> tuple[Tensor, float]:
        K_var = K.expand(estimates, *K.shape).clone().requires_grad_(True)  # [M, m, n]
        gains = K_var.repeat_interleave(budget, dim=0)  # [M·B, m, n]
        x = env.reset(budget * estimates, generator=gen)
        rewards, log_probs = [], []
        for _ in range(env.horizon):
            eps = torch.randn(budget * estimates, K.shape[0], generator=gen, dtype=x.dtype)
            mean = -(gains @ x.unsqueeze(-1)).squeeze(-1)
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
        if method == "bptt":  # normalised per batch of B: −∂L/∂K_var[j] is the mean over batch j
            loss, _ = bptt_loss(R, 1.0, done, normalizer=float(budget))
        else:
            rtg = R.detach().flip(0).cumsum(0).flip(0)
            loss = -(torch.stack(log_probs) * rtg).sum() / budget
        (grad,) = torch.autograd.grad(loss, K_var)
        return -grad.reshape(estimates, -1), float(budget * env.horizon)

    def estimate(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        grads, cost = draw(budget, 1, gen)
        return grads[0], cost

    estimate.batch = draw  # type: ignore[attr-defined]
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


def contact_bptt_per_rollout(
    env: ContactToy, theta: Tensor, sigma: float, rollouts: int, gen: torch.Generator
) -> Tensor:
    """BPTT gradients [R, 3] of the return of each of R independent rollouts of u = θ₀ + θ₁ x + θ₂ v + σε
    (one batch, each rollout with its own copy of θ, so one backward pass gives every rollout's gradient)."""
    thetas = theta.expand(rollouts, -1).clone().requires_grad_(True)
    s = env.reset(rollouts, generator=gen)
    rewards = []
    for _ in range(env.horizon):
        u = (thetas[:, 0] + thetas[:, 1] * s[:, 0] + thetas[:, 2] * s[:, 1])[:, None]
        u = u + sigma * torch.randn(u.shape, generator=gen, dtype=u.dtype)
        s, r, _ = env.step(s, u)
        rewards.append(r)
    R = torch.stack(rewards)
    loss, _ = bptt_loss(R, 1.0, torch.zeros_like(R, dtype=torch.bool), normalizer=1.0)  # −Σ_i G_i
    (grad,) = torch.autograd.grad(loss, thetas)
    return -grad


def contact_returns(env: ContactToy, theta: Tensor, sigma: float, samples: int, seed: int) -> Tensor:
    """Returns [samples] of `samples` rollouts with common random numbers (same seed, same noise for every
    θ), so differences between two θ are paired."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        s = env.reset(samples, generator=gen)
        total = torch.zeros(samples, dtype=s.dtype)
        for _ in range(env.horizon):
            u = (theta[0] + theta[1] * s[:, 0] + theta[2] * s[:, 1])[:, None]
            u = u + sigma * torch.randn(u.shape, generator=gen, dtype=u.dtype)
            s, r, _ = env.step(s, u)
            total = total + r
    return total


def contact_expected_return(env: ContactToy, theta: Tensor, sigma: float, samples: int, seed: int) -> Tensor:
    """Mean return over `samples` rollouts with common random numbers (same seed for every θ)."""
    return contact_returns(env, theta, sigma, samples, seed).mean()


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


def finite_difference_errors(
    epsilons: tuple[float, ...], seed: int = 0, n: int = 3, m: int = 2, gradient=finite_difference_gradient
) -> tuple[list[float], int, list[int]]:
    """Relative error of central differences of the exact LQR J(K) per ε; returns (errors, d, evaluations).

    The evaluations of J per gradient are counted by a counter wrapped around the objective (one per row
    of each batched call), not taken from `gradient`'s own report. `gradient` is the finite-difference
    function, (f, θ, ε) -> (gradient, reported evaluations)."""
    env, K, sigma, exact = diff_lqr_problem(seed=seed, n=n, m=m)
    counter = [0]

    def objective(flat: Tensor) -> Tensor:  # batched [B, P] -> [B]
        counter[0] += flat.shape[0]
        return torch.stack([env.expected_return(k.reshape(K.shape), 1.0, sigma) for k in flat])

    errors, evaluations = [], []
    for eps in epsilons:
        counter[0] = 0
        grad, _ = gradient(objective, K.reshape(-1), eps)
        errors.append(float((grad - exact).norm() / exact.norm()))
        evaluations.append(counter[0])
    return errors, K.numel(), evaluations


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
