"""Differentiable envs: dynamics against their equations, autograd against finite differences of the rollout
return for fixed noise (float64), float32 runs, batching = looping, LQR's closed-form expected return against
Monte Carlo, and the contact toy's documented behaviour (stiffness, horizon, the Heaviside bias)."""

from __future__ import annotations

import math

import pytest
import torch

from pgrad.envs.diff import ContactToy, DiffEnv, DiffLQR
from pgrad.errors import ConfigError

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def open_loop_return(env, x0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Σ_t r_t of each env [N] under a fixed action sequence [T, N, m]."""
    s, total = x0, x0.new_zeros(x0.shape[0])
    for a in actions:
        s, r, _ = env.step(s, a)
        total = total + r
    return total


def contact_gain_rollout(env, theta: torch.Tensor, s: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-env return [N] of u = θ₀ + θ₁ x + θ₂ v (θ [N, 3], one row of gains per env)."""
    total = s.new_zeros(s.shape[0])
    for _ in range(steps):
        u = theta[:, 0] + theta[:, 1] * s[:, 0] + theta[:, 2] * s[:, 1]
        s, r, _ = env.step(s, u.unsqueeze(-1))
        total = total + r
    return total


def per_sample_gain_gradients(env, gains, steps: int, N: int = 2000, seed: int = 0) -> torch.Tensor:
    theta = torch.as_tensor(gains, dtype=F64).repeat(N, 1).requires_grad_(True)
    returns = contact_gain_rollout(env, theta, env.reset(N, generator=gen(seed)), steps)
    (grad,) = torch.autograd.grad(returns.sum(), theta)
    return grad


# ---------------------------------------------------------------------------------------------------------
# interface, both envs


ENVS = {
    "lqr": lambda dtype: DiffLQR.random(3, 2, seed=0, dtype=dtype),
    "contact": lambda dtype: ContactToy(dtype=dtype),
    "contact_heaviside": lambda dtype: ContactToy(variant="heaviside", stiffness=5000.0, dtype=dtype),
}


@pytest.mark.parametrize("name", sorted(ENVS))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_interface_shapes_and_dtypes(name, dtype):
    env = ENVS[name](dtype)
    assert isinstance(env, DiffEnv)
    s = env.reset(5, generator=gen(0))
    assert s.shape == (5, env.state_dim) and s.dtype == dtype
    a = torch.randn(5, env.action_dim, generator=gen(1), dtype=dtype)
    s2, r, term = env.step(s, a)
    assert s2.shape == s.shape and s2.dtype == dtype
    assert r.shape == (5,) and r.dtype == dtype
    assert term.shape == (5,) and term.dtype == torch.bool
    assert env.observe(s2).shape == (5, env.obs_dim)
    assert env.horizon >= 1


@pytest.mark.parametrize("name", sorted(ENVS))
def test_reset_is_reproducible_and_float32_matches_float64(name):
    env32, env64 = ENVS[name](torch.float32), ENVS[name](F64)
    s32, s64 = env32.reset(64, generator=gen(3)), env64.reset(64, generator=gen(3))
    torch.testing.assert_close(s32, s64.float(), rtol=0, atol=0)
    assert not torch.equal(s64, env64.reset(64, generator=gen(4)))
    actions = 0.5 * torch.randn(20, 64, env64.action_dim, generator=gen(5), dtype=F64)
    r32 = open_loop_return(env32, s32, actions.float())
    r64 = open_loop_return(env64, s64, actions)
    assert r32.dtype == torch.float32
    torch.testing.assert_close(r32.double(), r64, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", sorted(ENVS))
def test_batching_equals_looping(name):
    env = ENVS[name](F64)
    s = env.reset(6, generator=gen(6))
    a = torch.randn(6, env.action_dim, generator=gen(7), dtype=F64)
    batch = env.step(s, a)
    for i in range(6):
        row = env.step(s[i : i + 1], a[i : i + 1])
        for got, want in zip(row, batch, strict=True):
            torch.testing.assert_close(got[0], want[i], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", ["lqr", "contact"])
def test_autograd_matches_finite_differences_of_the_return(name):
    """∂(Σ_n Σ_t r_t)/∂(x₀, u_{0..T−1}) by autograd = central differences (gradcheck), fixed noise."""
    env = ENVS[name](F64)
    x0 = env.reset(3, generator=gen(8)).requires_grad_(True)
    actions = (0.5 * torch.randn(25, 3, env.action_dim, generator=gen(9), dtype=F64)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, a: open_loop_return(env, x, a).sum(), (x0, actions), eps=1e-6, atol=1e-5, rtol=1e-4
    )


def test_policy_gradient_through_the_contact_toy_matches_finite_differences():
    """BPTT w.r.t. the gains of a linear feedback policy, fixed start states, through several bounces."""
    env = ContactToy(dtype=F64)
    s0 = env.reset(16, generator=gen(10))
    gains = torch.tensor([[0.5, -2.0, -0.5]], dtype=F64)

    def mean_return(g):
        return contact_gain_rollout(env, g.expand(16, 3), s0, env.horizon).mean()

    g = gains.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mean_return(g), g)
    fd = torch.zeros(3, dtype=F64)
    for j in range(3):
        e = torch.zeros(1, 3, dtype=F64)
        e[0, j] = 1e-6
        fd[j] = (mean_return(gains + e) - mean_return(gains - e)) / 2e-6
    torch.testing.assert_close(grad[0], fd, rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise():
    env = DiffLQR.random(3, 2, seed=0)
    s = env.reset(4)
    with pytest.raises(ConfigError, match=r"action must have shape \[N, 2\]"):
        env.step(s, torch.zeros(4, 3))
    with pytest.raises(ConfigError, match="state must have shape"):
        env.step(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ConfigError, match="batch_size"):
        env.reset(0)
    I2 = torch.eye(2)
    with pytest.raises(ConfigError, match="B must have shape"):
        DiffLQR(I2, torch.ones(3, 1), I2, torch.eye(1))
    with pytest.raises(ConfigError, match="Q must be positive semi-definite"):
        DiffLQR(I2, torch.ones(2, 1), -I2, torch.eye(1))
    with pytest.raises(ConfigError, match="R must be positive definite"):
        DiffLQR(I2, torch.ones(2, 1), I2, torch.zeros(1, 1))
    with pytest.raises(ConfigError, match="substeps >= 8"):
        ContactToy(stiffness=1e5)
    with pytest.raises(ConfigError, match="variant"):
        ContactToy(variant="sticky")
    with pytest.raises(ConfigError, match="dtype"):
        ContactToy(dtype=torch.float16)


# ---------------------------------------------------------------------------------------------------------
# LQR


def test_lqr_step_follows_its_equations():
    env = DiffLQR.random(4, 2, seed=1, dtype=F64, action_cost=0.3)
    x = env.reset(5, generator=gen(11))
    u = torch.randn(5, 2, generator=gen(12), dtype=F64)
    x2, r, term = env.step(x, u)
    torch.testing.assert_close(x2, (env.A @ x.T + env.B @ u.T).T)
    torch.testing.assert_close(r, -torch.einsum("ni,ij,nj->n", x, env.Q, x) - 0.3 * (u * u).sum(-1))
    assert not term.any()
    assert torch.equal(env.observe(x), x)


def test_random_lqr_is_stable_with_the_requested_spectral_radius_and_reproducible():
    env = DiffLQR.random(5, 2, seed=3, spectral_radius=0.8)
    assert torch.linalg.eigvals(env.A).abs().max().item() == pytest.approx(0.8)
    assert torch.equal(env.Q, torch.eye(5, dtype=F64)) and torch.equal(env.R, torch.eye(2, dtype=F64))
    assert torch.equal(DiffLQR.random(5, 2, seed=3, spectral_radius=0.8).A, env.A)
    assert not torch.equal(DiffLQR.random(5, 2, seed=4).A, env.A)


def test_lqr_expected_return_and_its_gradient_match_monte_carlo():
    """Closed form E[Σ γᵗ r_t] for u = −Kx + σε against 4000 noisy rollouts; ∇_K of the closed form against
    the mean of per-rollout BPTT gradients (the reparameterised noise is held fixed), both within 4.5 SE."""
    env = DiffLQR.random(3, 2, seed=2, dtype=F64, horizon=15)
    gamma, sigma, N = 0.95, 0.3, 4000
    K = torch.tensor([[0.2, -0.1, 0.0], [0.05, 0.3, -0.2]], dtype=F64)
    K_b = K.expand(N, 2, 3).clone().requires_grad_(True)
    x = env.reset(N, generator=gen(13))
    noise = torch.randn(env.horizon, N, 2, generator=gen(14), dtype=F64)
    returns = x.new_zeros(N)
    for t in range(env.horizon):
        u = -torch.einsum("nij,nj->ni", K_b, x) + sigma * noise[t]
        x, r, _ = env.step(x, u)
        returns = returns + gamma**t * r
    (grads,) = torch.autograd.grad(returns.sum(), K_b)
    K_var = K.clone().requires_grad_(True)
    exact = env.expected_return(K_var, gamma=gamma, action_std=sigma)
    (exact_grad,) = torch.autograd.grad(exact, K_var)
    se = returns.std() / math.sqrt(N)
    assert abs(returns.mean().item() - exact.item()) < 4.5 * se.item()
    grad_se = grads.std(0) / math.sqrt(N)
    assert ((grads.mean(0) - exact_grad).abs() < 4.5 * grad_se).all(), (grads.mean(0), exact_grad, grad_se)


def test_lqr_expected_return_without_noise_is_the_riccati_value():
    """σ = 0, γ = 1, T = 1: E[−x₀ᵀ(Q + KᵀRK)x₀] = −x0_std² tr(Q + KᵀRK)."""
    env = DiffLQR.random(3, 2, seed=5, dtype=F64, x0_std=0.5)
    K = torch.randn(2, 3, generator=gen(15), dtype=F64)
    expected = -(0.25 * torch.trace(env.Q + K.T @ env.R @ K))
    torch.testing.assert_close(env.expected_return(K, horizon=1), expected)


# ---------------------------------------------------------------------------------------------------------
# contact toy: physics


def test_free_flight_is_semi_implicit_euler_under_the_applied_force():
    env = ContactToy(dt=0.1, substeps=4, mass=2.0, dtype=F64)
    s = torch.tensor([[5.0, 1.0]], dtype=F64)
    (x2, v2), _, _ = (lambda out: (out[0][0], out[1], out[2]))(env.step(s, torch.tensor([[0.6]], dtype=F64)))
    h, a, n = 0.025, 0.3, 4
    assert v2.item() == pytest.approx(1.0 + 0.1 * a, abs=1e-14)
    assert x2.item() == pytest.approx(5.0 + 0.1 * 1.0 + h * h * a * n * (n + 1) / 2, abs=1e-14)


def bounce(stiffness: float, damping: float = 0.0):
    """Throw the mass at the wall at 1 m/s, fine steps: (max penetration, contact time, exit speed, env)."""
    env = ContactToy(stiffness=stiffness, damping=damping, dt=0.001, substeps=2, dtype=F64)
    s = torch.tensor([[0.002, -1.0]], dtype=F64)
    u = torch.zeros(1, 1, dtype=F64)
    depth, steps_in_contact = 0.0, 0
    for _ in range(round(2 * env.contact_duration / env.dt) + 10):
        s, _, _ = env.step(s, u)
        depth = max(depth, -s[0, 0].item())
        steps_in_contact += int(s[0, 0].item() < 0)
    return depth, steps_in_contact * env.dt, s[0, 1].item(), env


@pytest.mark.parametrize("stiffness", [1e2, 1e3, 1e4])
def test_the_wall_is_a_spring_stiffer_walls_bounce_faster_and_shallower(stiffness):
    depth, contact_time, exit_velocity, env = bounce(stiffness)
    assert depth == pytest.approx(math.sqrt(1.0 / stiffness), rel=0.05)  # |v| √(m/k)
    assert contact_time == pytest.approx(env.contact_duration, rel=0.05, abs=0.002)  # π √(m/k)
    assert exit_velocity == pytest.approx(1.0, abs=0.02)  # elastic
    damped_depth, _, damped_exit, _ = bounce(stiffness, damping=3.0)
    assert damped_exit < exit_velocity - 0.05 and damped_depth < depth


def test_x_limit_terminates_a_mass_that_flies_away():
    env = ContactToy(x_limit=1.5, dtype=F64)
    s = torch.tensor([[1.49, 1.0], [0.5, 1.0]], dtype=F64)
    _, _, term = env.step(s, torch.zeros(2, 1, dtype=F64))
    assert term.tolist() == [True, False]


# ---------------------------------------------------------------------------------------------------------
# contact toy: what the gradient lab should see (the numbers in the module docstring)


def test_bptt_gradient_variance_grows_with_stiffness_while_its_mean_does_not_move():
    pd = [2.0, -4.0, -2.0]
    soft = per_sample_gain_gradients(ContactToy(stiffness=1e3, dtype=F64), pd, 20)
    stiff = per_sample_gain_gradients(ContactToy(stiffness=3.6e4, dtype=F64), pd, 20)
    ratio = stiff.std(0).norm() / soft.std(0).norm()
    assert ratio > 5, ratio  # measured ≈ 10.7
    torch.testing.assert_close(stiff.mean(0), soft.mean(0), rtol=0.05, atol=0.05)


@pytest.mark.parametrize(("stiffness", "growth"), [(1e3, 20.0), (3e4, 1000.0)])
def test_bptt_gradient_variance_grows_with_the_horizon_through_repeated_contacts(stiffness, growth):
    push = [-2.0, 0.0, 0.0]
    env = ContactToy(stiffness=stiffness, dtype=F64)
    short = per_sample_gain_gradients(env, push, 10).std(0).norm()
    long = per_sample_gain_gradients(env, push, 40).std(0).norm()
    assert long > growth * short, (short, long)  # measured ×150 (k = 10³) and ×4000 (k = 3·10⁴)


def test_heaviside_variant_makes_bptt_blind_to_the_bonus():
    """c = 0: every return is a count of steps at x ≥ threshold, so BPTT's gradient is exactly 0, yet
    increasing the constant force θ₀ raises the expected count (central difference with common random
    numbers, far beyond its standard error)."""
    env = ContactToy(variant="heaviside", action_cost=0.0, dtype=F64)
    N = 4000
    s0 = env.reset(N, generator=gen(16))
    gains = torch.tensor([[0.3, 0.0, 0.0]], dtype=F64).expand(N, 3).clone().requires_grad_(True)
    returns = contact_gain_rollout(env, gains, s0, env.horizon)
    (grad,) = torch.autograd.grad(returns.mean(), gains)
    assert grad.abs().max() == 0.0
    step = torch.tensor([0.1, 0.0, 0.0], dtype=F64)
    with torch.no_grad():
        diff = (
            contact_gain_rollout(env, gains + step, s0, env.horizon)
            - contact_gain_rollout(env, gains - step, s0, env.horizon)
        ) / 0.2
    assert diff.mean().abs() > 5 * diff.std() / math.sqrt(N), (diff.mean(), diff.std())


def test_smooth_variant_bptt_is_exact_for_the_same_experiment():
    """The smooth reward in the same setting: each start state's BPTT gradient equals the central difference
    of its return (the rollout is piecewise smooth: the step must be small enough not to straddle the kink at
    a contact onset; 1e-5 does for one of these 2000 start states, 1e-7 for none)."""
    env = ContactToy(dtype=F64)
    N = 2000
    s0 = env.reset(N, generator=gen(17))
    gains = torch.tensor([[0.3, 0.0, 0.0]], dtype=F64).expand(N, 3).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(contact_gain_rollout(env, gains, s0, env.horizon).sum(), gains)
    step = torch.tensor([1e-7, 0.0, 0.0], dtype=F64)
    with torch.no_grad():
        fd = (
            contact_gain_rollout(env, gains + step, s0, env.horizon)
            - contact_gain_rollout(env, gains - step, s0, env.horizon)
        ) / 2e-7
    torch.testing.assert_close(grad[:, 0], fd, rtol=1e-5, atol=1e-4)
    assert grad[:, 0].abs().max() > 100  # some start states have large gradients (a bounce right at the end)
