"""Pathwise, relaxed and zeroth-order estimators on problems with an exact (or precisely known) gradient.

- DPG through a critic (LQR, deterministic linear policy u = −Kx): ĝ = Σ_t γᵗ ∇_u Q̂(x_t, u)|_{u=−Kx_t} ∇_K u,
  via `deterministic_actor_loss`, with Q̂ the exact Q of the policy (cost matrix P from the Lyapunov equation)
  plus a controlled perturbation of P: exact Q gives ∇J, a wrong one a bias that grows with its error.
- The shipped actor losses of DDPG, TD3 and SAC (`deterministic_actor_loss`, `reparameterised_actor_loss` with
  `ensemble_min`) on the same LQR, through a `QEnsemble` critic (exact Q, or members regressed on samples of
  the exact Q), with states drawn from the policy's discounted state distribution as a replay batch would
  give them; exact ∇J from `lqr_objective_gradient` (σ = 0 for DDPG/TD3, the SAC policy's σ for SAC).
- BPTT through `pgrad.envs.diff` (reparameterised u = −Kx + σε, `bptt_loss`) against the score-function
  estimate on the same rollouts; exact ∇J from `DiffLQR.expected_return`.
- Categorical relaxations (straight-through, Gumbel-Softmax, ReinMax) on E_{D∼Cat(softmax θ)}[f(D)], whose
  exact gradient is Σ_k ∇π_k f(e_k).
- Central finite differences of a deterministic objective, across ε.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pgrad.envs.diff import ContactToy, DiffLQR
from pgrad.errors import ConfigError
from pgrad.estimators import (
    bptt_loss,
    deterministic_actor_loss,
    ensemble_min,
    finite_difference_gradient,
    gumbel_softmax,
    reinmax,
    reparameterised_actor_loss,
    straight_through,
)
from pgrad.lab.exact import lqr_objective_gradient, lqr_problem, lqr_solution
from pgrad.lab.measure import Estimator
from pgrad.policies.critics import QEnsemble

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


# -- the shipped actor losses (DDPG, TD3, SAC) through a critic ensemble -------------------------------------

ACTOR_LOSSES = ("ddpg", "td3", "sac", "sac_q1")
"""ddpg: −mean Q(x, μ(x)) of a one-member critic; td3: −mean Q₁(x, μ(x)) of twin critics; sac:
mean[α log π(u|x) − min_j Q_j(x, u)], u = −Kx + σε reparameterised; sac_q1: SAC's loss on Q₁ alone (not
shipped: the ablation that isolates what the min of the twins does)."""

CRITIC_SAMPLES = (300, 3000, 30000)  # the sample budgets N of the fitted critics of the critic study
CRITIC_SIGMA = 0.5  # σ of the SAC policy u = −Kx + σε and of the behaviour that collects the critic's data


class ExactQ(torch.nn.Module):
    """E copies of the exact Q(x, u) of the gain K (cost matrix P, `exact_q`) as an ensemble: (x [N, n],
    u [N, m]) -> [E, N], the output of a `QEnsemble`. The Q of the noisy policy u = −Kx + σε differs from
    the deterministic policy's by a constant, so the same critic is exact for DDPG, TD3 and SAC."""

    def __init__(self, problem, K: Tensor, members: int = 1):
        super().__init__()
        self.problem, self.members = problem, members
        self.P = lqr_solution(problem, K).P

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        return exact_q(self.problem, self.P, x, u).expand(self.members, -1)


def visitation_sampler(problem, K: Tensor, sigma: float = 0.0, tolerance: float = 1e-12, stride: int = 1):
    """A sampler (count, generator) -> x [count, n] of the normalised discounted state distribution
    d(x) = (1 − γ) Σ_t γᵗ p_t(x) of u = −Kx + σε from x₀ ~ N(0, Σ₀): t ~ Geometric (P(t) = (1 − γ)γᵗ), then
    x_t ~ N(0, C_t), C_t = A_Kᵗ Σ₀ A_Kᵗᵀ + σ² Σ_{k<t} A_Kᵏ BBᵀ A_Kᵏᵀ (a symmetric square root of each C_t is
    precomputed; t is truncated where γᵗ < `tolerance`). E_d[xxᵀ] = (1 − γ)Σ, Σ of `lqr_solution`.

    With `stride` s > 1 it samples the states at the multiples of s instead, the distribution of the start
    states of s-step windows d_s(x) = (1 − γˢ) Σ_i γ^{si} p_{si}(x): t = s·i with P(i) = (1 − γˢ)γ^{si}
    (`pgrad.lab.windows`)."""
    gamma = problem.gamma
    if not 0.0 < gamma < 1.0:
        raise ConfigError(f"visitation_sampler: needs 0 < γ < 1, got {gamma}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"visitation_sampler: stride must be an integer >= 1, got {stride!r}")
    A_K = problem.A - problem.B @ K
    noise = sigma**2 * problem.B @ problem.B.T
    horizon = math.ceil(math.log(tolerance) / math.log(gamma))
    starts = math.ceil(horizon / stride)  # the start times 0, s, 2s, … below the truncation
    roots, power, noise_sum = [], torch.eye(problem.n, dtype=torch.float64), torch.zeros_like(noise)
    for t in range(starts * stride):
        if t % stride == 0:
            lam, V = torch.linalg.eigh(power @ problem.Sigma0 @ power.T + noise_sum)
            roots.append(V @ torch.diag(lam.clamp_min(0.0).sqrt()) @ V.T)
        noise_sum = A_K @ noise_sum @ A_K.T + noise
        power = A_K @ power
    roots_t = torch.stack(roots)  # [I, n, n]: the square root of C_{s·i}
    log_ratio = stride * math.log(gamma)

    def sample(count: int, gen: torch.Generator) -> Tensor:
        uniform = torch.rand(count, generator=gen, dtype=torch.float64).clamp_min(1e-300)
        i = torch.floor(torch.log(uniform) / log_ratio).long().clamp_max(starts - 1)
        z = torch.randn(count, problem.n, 1, generator=gen, dtype=torch.float64)
        return (roots_t[i] @ z).squeeze(-1)

    return sample


def actor_loss_problem(seed: int = 0, sigma: float = CRITIC_SIGMA):
    """`dpg_problem`'s LQR and gain K, with the exact ∇_K J of the deterministic policy u = −Kx (DDPG, TD3)
    and of the Gaussian policy u = −Kx + σε (SAC): returns (problem, K, {"deterministic": ∇J, "sac": ∇J})."""
    problem, K, exact = dpg_problem(seed)
    return problem, K, {"deterministic": exact, "sac": lqr_objective_gradient(problem, K, sigma).reshape(-1)}


def fitted_q_ensemble(
    problem,
    K: Tensor,
    samples: int,
    members: int = 2,
    seed: int = 0,
    steps: int = 3000,
    hidden_sizes: tuple[int, ...] = (64, 64),
    activation: str = "relu",
    batch_size: int = 256,
    lr: float = 1e-3,
    behaviour_std: float = CRITIC_SIGMA,
) -> QEnsemble:
    """A `QEnsemble` (the shipped critic class, ReLU as shipped, 64×64 to keep the study fast) regressed on
    the exact Q at `samples` state-action pairs of a replay: x from the discounted state distribution of the
    behaviour u = −Kx + σ_b ε and u that behaviour's action. Each member fits its own bootstrap resample of
    the samples from its own initialisation with its own minibatches (`steps` Adam steps of `batch_size`,
    float32, the training loop's squared error), so twins differ as they do in training. No TD
    bootstrapping: the critic's error is approximation and finite-data error only. Returned in float64,
    frozen."""
    gen = torch.Generator().manual_seed(seed)
    x = visitation_sampler(problem, K, behaviour_std)(samples, gen)
    u = -x @ K.T + behaviour_std * torch.randn(samples, problem.m, generator=gen, dtype=torch.float64)
    inputs = torch.cat([x, u], 1).float()
    target = exact_q(problem, lqr_solution(problem, K).P, x, u).float()
    boot = torch.randint(0, samples, (members, samples), generator=gen)  # member e's bootstrap sample
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = QEnsemble(problem.n, problem.m, hidden_sizes, activation, members)
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr)
    for _ in range(steps):
        index = boot.gather(1, torch.randint(0, samples, (members, batch_size), generator=gen))  # [E, b]
        loss = 0.5 * (critic.net(inputs[index]).squeeze(-1) - target[index]).square().mean(1).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return critic.double().requires_grad_(False)


def actor_loss_estimator(
    problem,
    K: Tensor,
    algorithm: str,
    critic,
    sigma: float = CRITIC_SIGMA,
    alpha: float = 0.2,
    chunk: int = 1 << 15,
) -> Estimator:
    """The actor gradient exactly as the shipped `algorithm` (`ACTOR_LOSSES`) forms it, on a batch of B
    states x from the policy's normalised discounted state distribution (on-policy, as in a replay batch):

        ddpg, td3   q = critic(x, μ(x))[0]                 loss = deterministic_actor_loss(q)
        sac         u = −Kx + σε, log π(u|x) of N(−Kx, σ²)  loss = reparameterised_actor_loss(
                    q = ensemble_min(critic(x, u))                      q, log π, α)
        sac_q1      as sac with q = critic(x, u)[0]

    `critic` maps (x [N, n], u [N, m]) to [E, N] (a `QEnsemble` or `ExactQ`); ddpg needs E = 1. The estimate
    is −∇_K loss / (1 − γ): the batch mean estimates (1 − γ)∇J, the gradient of the unnormalised
    discounted objective (a positive factor, which the learning rate absorbs in training). With the exact
    Q it is unbiased for every algorithm: ∇_K E[Q(x, −Kx + σε)] = ∇_K J of the noisy policy
    (reparameterised policy gradient theorem) and α log π(u|x) = log N(σε; 0, σ²) does not depend on K.
    M estimates are drawn at once: each batch of B states has its own copy of K and its own loss, so one
    backward pass gives every estimate (in chunks of at most `chunk` states)."""
    if algorithm not in ACTOR_LOSSES:
        raise ConfigError(f"unknown actor loss '{algorithm}' (known: {', '.join(ACTOR_LOSSES)})")
    stochastic = algorithm.startswith("sac")
    sigma = sigma if stochastic else 0.0
    sample_states = visitation_sampler(problem, K, sigma)
    n, m, scale = problem.n, problem.m, 1.0 / (1.0 - problem.gamma)

    def gradients(budget: int, estimates: int, gen: torch.Generator) -> Tensor:
        K_var = K.expand(estimates, m, n).clone().requires_grad_(True)  # [M, m, n]
        x = sample_states(budget * estimates, gen).reshape(estimates, budget, n)
        mean = -x @ K_var.transpose(1, 2)  # μ(x) = −Kx, [M, B, m]
        if stochastic:
            u = mean + sigma * torch.randn(estimates, budget, m, generator=gen, dtype=torch.float64)
            log_prob = torch.distributions.Normal(mean, sigma).log_prob(u).sum(-1)  # [M, B]
        else:
            u = mean
        q = critic(x.reshape(-1, n), u.reshape(-1, m)).reshape(-1, estimates, budget)  # [E, M, B]
        if algorithm == "ddpg" and q.shape[0] != 1:
            raise ConfigError(f"ddpg's critic is a single network, got an ensemble of {q.shape[0]}")
        if stochastic:
            q_pi = ensemble_min(q) if algorithm == "sac" else q[0]
            batch = [reparameterised_actor_loss(q_pi[j], log_prob[j], alpha)[0] for j in range(estimates)]
        else:  # DDPG's only critic, TD3's Q₁
            batch = [deterministic_actor_loss(q[0, j])[0] for j in range(estimates)]
        (grad,) = torch.autograd.grad(torch.stack(batch).sum(), K_var)  # batch j's loss reaches K_var[j] only
        return -scale * grad.reshape(estimates, -1)

    def draw(budget: int, estimates: int, gen: torch.Generator) -> tuple[Tensor, float]:
        per_chunk = max(1, chunk // budget)
        sizes = [min(per_chunk, estimates - i) for i in range(0, estimates, per_chunk)]
        return torch.cat([gradients(budget, size, gen) for size in sizes]), float(budget)

    def estimate(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        grads, cost = draw(budget, 1, gen)
        return grads[0], cost

    estimate.batch = draw  # type: ignore[attr-defined]
    return estimate


def paired_difference_estimator(first: Estimator, second: Estimator, exact: Tensor) -> Estimator:
    """ĝ₁ − ĝ₂ + ∇J with both estimators drawing the same random numbers (a copy of the generator for the
    second): its bias against ∇J is E[ĝ₁ − ĝ₂], measured on paired samples, so the noise the two share
    cancels (e.g. the min of twin critics against Q₁ alone, the min's own bias). The estimators must draw
    the same random numbers in the same order (sac and sac_q1 do)."""

    def twin(gen: torch.Generator) -> torch.Generator:
        copy = torch.Generator()
        copy.set_state(gen.get_state())
        return copy

    def draw(budget: int, estimates: int, gen: torch.Generator) -> tuple[Tensor, float]:
        other = twin(gen)
        a, cost_a = first.batch(budget, estimates, gen)  # type: ignore[attr-defined]
        b, cost_b = second.batch(budget, estimates, other)  # type: ignore[attr-defined]
        return a - b + exact.reshape(-1), cost_a + cost_b

    def estimate(budget: int, gen: torch.Generator) -> tuple[Tensor, float]:
        grads, cost = draw(budget, 1, gen)
        return grads[0], cost

    estimate.batch = draw  # type: ignore[attr-defined]
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
    env: ContactToy,
    theta: Tensor,
    sigma: float,
    rollouts: int,
    gen: torch.Generator,
    window: int | None = None,
) -> Tensor:
    """BPTT gradients [R, 3] of the return of each of R independent rollouts of u = θ₀ + θ₁ x + θ₂ v + σε
    (one batch, each rollout with its own copy of θ, so one backward pass gives every rollout's gradient).

    With `window` h the episode is cut into windows of h steps as APG and SHAC cut it: the state carried into
    a window is a constant (detached) and each window's loss is `bptt_loss` of its own rewards, with no
    bootstrap (V = 0); the gradient is the sum over the windows. None (or h ≥ horizon) is full BPTT."""
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ConfigError(f"contact_bptt_per_rollout: window must be an integer >= 1 or None, got {window!r}")
    thetas = theta.expand(rollouts, -1).clone().requires_grad_(True)
    s = env.reset(rollouts, generator=gen)
    h = env.horizon if window is None else window
    losses, rewards = [], []
    for t in range(env.horizon):
        if t % h == 0 and t > 0:  # a window ends: its loss, and the next one starts from a constant state
            R = torch.stack(rewards)
            losses.append(bptt_loss(R, 1.0, torch.zeros_like(R, dtype=torch.bool), normalizer=1.0)[0])
            s, rewards = s.detach(), []
        u = (thetas[:, 0] + thetas[:, 1] * s[:, 0] + thetas[:, 2] * s[:, 1])[:, None]
        u = u + sigma * torch.randn(u.shape, generator=gen, dtype=u.dtype)
        s, r, _ = env.step(s, u)
        rewards.append(r)
    R = torch.stack(rewards)
    losses.append(bptt_loss(R, 1.0, torch.zeros_like(R, dtype=torch.bool), normalizer=1.0)[0])  # −Σ_i G_i
    (grad,) = torch.autograd.grad(torch.stack(losses).sum(), thetas)
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
