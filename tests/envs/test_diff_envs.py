"""The differentiable tasks (Pendulum, cart-pole swing-up), LQR's optimal-control references, the contact
signal, and the standard env layer (Gymnasium adapter, batched VecEnv twin): dynamics against Gymnasium and
their equations, policy gradients against finite differences (float64), and the three ways of stepping a task
agreeing with each other. The contact toy's stiffness/variance behaviour is tested in test_diff.py."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from pgrad.envs.diff import (
    DIFF_ENV_FACTORIES,
    CartPoleSwingUp,
    ContactToy,
    DiffEnv,
    DiffGymEnv,
    DiffLQR,
    DiffPendulum,
    DiffVecEnv,
    make_diff_env,
)
from pgrad.envs.diff.cartpole_swingup import (
    GRAVITY,
    MASS_CART,
    MASS_POLE,
    POLE_COM,
    POLE_INERTIA,
    accelerations,
    wrap_angle,
)
from pgrad.envs.diff.pendulum import angle_normalize
from pgrad.envs.make import make_env
from pgrad.errors import ConfigError, EnvError

F64 = torch.float64
IDS = sorted(DIFF_ENV_FACTORIES)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------
# interface of the new envs


NEW_ENVS = {"pendulum": DiffPendulum, "swingup": CartPoleSwingUp}


@pytest.mark.parametrize("name", sorted(NEW_ENVS))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_interface_dtypes_and_batching_equals_looping(name, dtype):
    env = NEW_ENVS[name](dtype=dtype)
    assert isinstance(env, DiffEnv)
    s = env.reset(6, generator=gen(0))
    assert s.shape == (6, env.state_dim) and s.dtype == dtype
    a = torch.rand(6, 1, generator=gen(1), dtype=dtype) * 2 - 1
    s2, r, term = env.step(s, a)
    assert s2.dtype == r.dtype == dtype and r.shape == (6,) and term.dtype == torch.bool and not term.any()
    assert env.observe(s2).shape == (6, env.obs_dim)
    for i in range(6):
        row = env.step(s[i : i + 1], a[i : i + 1])
        torch.testing.assert_close(row[0][0], s2[i])
        torch.testing.assert_close(row[1][0], r[i])
    s64 = NEW_ENVS[name](dtype=F64).reset(6, generator=gen(0))
    torch.testing.assert_close(s, s64.to(dtype), rtol=0, atol=0)


def test_new_envs_reject_bad_arguments():
    with pytest.raises(ConfigError, match=r"action must have shape \[N, 1\]"):
        DiffPendulum().step(torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ConfigError, match=r"state must have shape \[N, 4\]"):
        CartPoleSwingUp().step(torch.zeros(3, 2), torch.zeros(3, 1))
    with pytest.raises(ConfigError, match="init_noise"):
        CartPoleSwingUp(init_noise=-1.0)
    with pytest.raises(ConfigError, match="action_bound"):
        ContactToy(action_bound=0.0)
    with pytest.raises(EnvError, match="no differentiable env 'pgrad/Nope-v0'"):
        make_diff_env("pgrad/Nope-v0")


# ---------------------------------------------------------------------------------------------------------
# Pendulum = Gymnasium's Pendulum-v1


def test_pendulum_agrees_with_gymnasium_step_by_step():
    """300 steps with torques in [−4, 4] (half of them clipped) from states re-drawn every 20 steps with
    θ̇ up to ±8 (the speed clip is hit): the gym env is put in our state, observations and rewards agree."""
    env, ref = DiffPendulum(dtype=F64), gym.make("Pendulum-v1").unwrapped
    ref.reset(seed=0)
    rng = np.random.default_rng(0)
    clipped_speed = clipped_torque = 0
    s = env.reset(1, generator=gen(0))
    for t in range(300):
        if t % 20 == 10:
            s = torch.tensor([[rng.uniform(-3 * np.pi, 3 * np.pi), rng.uniform(-8, 8)]], dtype=F64)
        a = rng.uniform(-4, 4, size=1).astype(np.float32)
        ref.state = s[0].numpy().copy()
        obs, reward, terminated, truncated, _ = ref.step(a)
        s, r, term = env.step(s, torch.tensor(a, dtype=F64)[None])
        np.testing.assert_allclose(env.observe(s)[0].numpy(), obs, rtol=0, atol=1e-5)
        assert r.item() == pytest.approx(reward, abs=1e-5)
        assert not term.item() and not terminated and not truncated
        clipped_speed += abs(s[0, 1].item()) == 8.0
        clipped_torque += abs(a[0]) > 2
    assert clipped_speed >= 5 and clipped_torque >= 100, (clipped_speed, clipped_torque)


def test_pendulum_start_states_follow_gymnasium():
    s = DiffPendulum(dtype=F64).reset(4000, generator=gen(1))
    assert s[:, 0].abs().max() <= math.pi and s[:, 1].abs().max() <= 1.0
    assert s[:, 0].abs().max() > 3.1 and s[:, 1].abs().max() > 0.99


# ---------------------------------------------------------------------------------------------------------
# cart-pole swing-up


def test_swingup_accelerations_solve_the_equations_of_motion():
    theta, theta_dot, force = torch.randn(3, 50, generator=gen(2), dtype=F64) * torch.tensor(
        [[3], [5], [500]]
    )
    x_acc, theta_acc = accelerations(theta, theta_dot, force)
    b = MASS_POLE * POLE_COM * torch.cos(theta)
    M = torch.stack(
        (
            torch.stack((torch.full_like(b, MASS_CART + MASS_POLE), b), -1),
            torch.stack((b, torch.full_like(b, POLE_INERTIA + MASS_POLE * POLE_COM**2)), -1),
        ),
        -2,
    )
    rhs = torch.stack(
        (
            force + MASS_POLE * POLE_COM * theta_dot.square() * torch.sin(theta),
            MASS_POLE * GRAVITY * POLE_COM * torch.sin(theta),
        ),
        -1,
    )
    torch.testing.assert_close(torch.stack((x_acc, theta_acc), -1), torch.linalg.solve(M, rhs))


def step_jacobian(env: CartPoleSwingUp, state: list[float]) -> torch.Tensor:
    zero = torch.zeros(1, 1, dtype=F64)
    return torch.autograd.functional.jacobian(
        lambda s: env.step(s[None], zero)[0][0], torch.tensor(state, dtype=F64)
    )


def test_swingup_upright_is_unstable_and_hanging_is_stable():
    env = CartPoleSwingUp(dtype=F64)
    assert torch.linalg.eigvals(step_jacobian(env, [0.0, 0.0, 0.0, 0.0])).abs().max() > 1.05
    assert torch.linalg.eigvals(step_jacobian(env, [0.0, math.pi, 0.0, 0.0])).abs().max() < 1 + 1e-6
    s, zero = torch.tensor([[0.0, 0.01, 0.0, 0.0], [0.0, math.pi + 0.1, 0.0, 0.0]], dtype=F64), None
    zero = torch.zeros(2, 1, dtype=F64)
    largest = torch.zeros(2, dtype=F64)
    for _ in range(60):
        s, _, _ = env.step(s, zero)
        largest = torch.maximum(largest, (s[:, 1] - torch.tensor([0.0, math.pi], dtype=F64)).abs())
    assert largest[0] > 1.0  # upright: a 0.01 rad tilt falls over within a second
    assert largest[1] < 0.11  # hanging: a 0.1 rad swing stays a 0.1 rad swing


def test_swingup_hanging_still_scores_about_minus_240_pi_squared():
    env = CartPoleSwingUp(dtype=F64)
    s = torch.cat((torch.tensor([[0.0, math.pi, 0.0, 0.0]], dtype=F64), env.reset(256, generator=gen(3))))
    total = torch.zeros(257, dtype=F64)
    for _ in range(env.horizon):
        s, r, _ = env.step(s, torch.zeros(257, 1, dtype=F64))
        total = total + r
    assert total[0].item() == pytest.approx(-240 * math.pi**2, rel=1e-12)
    assert total[1:].mean().item() == pytest.approx(-2322, abs=5)  # the module docstring's figure (SE 1.5)
    assert total[1:].min() > -2370 and total[1:].max() < -2275


def test_swingup_clips_the_force_observes_sin_cos_and_wraps_the_reward_angle():
    env = CartPoleSwingUp(dtype=F64)
    s = env.reset(3, generator=gen(4))
    torch.testing.assert_close(
        env.step(s, torch.full((3, 1), 5.0, dtype=F64)), env.step(s, torch.ones(3, 1, dtype=F64))
    )
    state = torch.tensor([[0.3, 2 * math.pi + 0.2, -0.4, 1.5]], dtype=F64)
    torch.testing.assert_close(
        env.observe(state), torch.tensor([[0.3, -0.4, math.sin(0.2), math.cos(0.2), 1.5]], dtype=F64)
    )
    expected = -(0.2**2 + 0.1 * 1.5**2 + 0.05 * 0.3**2 + 0.1 * 0.4**2)
    assert env.reward(state).item() == pytest.approx(expected, rel=1e-12)
    assert env.reward(torch.tensor([[0.0, -math.pi, 0.0, 0.0]], dtype=F64)).item() == pytest.approx(
        -(math.pi**2)
    )


# ---------------------------------------------------------------------------------------------------------
# LQR: optimal-control references


@pytest.mark.parametrize("gamma", [0.9, 1.0])
def test_lqr_optimal_gain_solves_the_riccati_equation_and_beats_perturbed_gains(gamma):
    env = DiffLQR.random(3, 2, seed=1, dtype=F64, action_cost=0.5)
    A, B, Q, R = env.A, env.B, env.Q, env.R
    K = env.optimal_gain(gamma)
    A_K = A - B @ K
    P = Q.clone()
    for _ in range(3000):  # P of K: the fixed point of P = Q + KᵀRK + γ A_Kᵀ P A_K
        P = Q + K.T @ R @ K + gamma * A_K.T @ P @ A_K
    S = R + gamma * B.T @ P @ B
    dare = Q + gamma * A.T @ P @ A - gamma**2 * A.T @ P @ B @ torch.linalg.solve(S, B.T @ P @ A)
    torch.testing.assert_close(P, dare, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(K, gamma * torch.linalg.solve(S, B.T @ P @ A), rtol=1e-10, atol=1e-10)
    K_var = K.clone().requires_grad_(True)
    best = env.expected_return(K_var, gamma=gamma, horizon=300)  # long enough to be the infinite horizon
    (grad,) = torch.autograd.grad(best, K_var)
    assert grad.abs().max() < 1e-8  # stationary
    for scale in (0.02, 0.3):
        deltas = scale * torch.randn(10, 2, 3, generator=gen(5), dtype=F64)
        worse = torch.stack([env.expected_return(K + d, gamma=gamma, horizon=300) for d in deltas])
        assert (worse < best).all(), (best, worse.max())


def test_lqr_riccati_gains_are_the_finite_horizon_optimum():
    """σ = 0: every start state's return under the time-varying gains is exactly −x₀ᵀP₀x₀, BPTT finds no
    direction of improvement in any gain K_t (it does at perturbed gains), no stationary gain does better."""
    env = DiffLQR.random(3, 2, seed=1, dtype=F64, horizon=12, x0_std=0.8)
    gains, P0 = env.riccati_gains()
    assert gains.shape == (12, 2, 3) and gains[-1].abs().max() == 0.0  # last step: nothing left to steer for
    x0 = env.reset(64, generator=gen(6))

    def returns(K_seq: torch.Tensor) -> torch.Tensor:
        x, total = x0, x0.new_zeros(64)
        for K in K_seq:
            x, r, _ = env.step(x, -x @ K.T)
            total = total + r
        return total

    torch.testing.assert_close(
        returns(gains), -torch.einsum("ni,ij,nj->n", x0, P0, x0), rtol=1e-12, atol=1e-12
    )
    for K_seq, stationary in (
        (gains, True),
        (gains + 0.05 * torch.randn(12, 2, 3, generator=gen(7), dtype=F64), False),
    ):
        K_var = K_seq.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(returns(K_var).sum(), K_var)
        assert (grad.abs().max() < 1e-10) == stationary, grad.abs().max()
    optimum = env.optimal_return()
    assert optimum == pytest.approx(-(0.64 * torch.trace(P0)).item(), rel=1e-12)
    assert (
        optimum
        > env.expected_return(env.optimal_gain()).item()
        > env.expected_return(0.2 * env.optimal_gain()).item()
    )


def test_lqr_optimal_return_with_exploration_noise_matches_monte_carlo():
    env = DiffLQR.random(3, 2, seed=2, dtype=F64, horizon=10)
    gains, _ = env.riccati_gains(gamma=0.95)
    N, sigma = 4000, 0.4
    x, total = env.reset(N, generator=gen(8)), torch.zeros(N, dtype=F64)
    noise = torch.randn(10, N, 2, generator=gen(9), dtype=F64)
    for t, K in enumerate(gains):
        x, r, _ = env.step(x, -x @ K.T + sigma * noise[t])
        total = total + 0.95**t * r
    exact = env.optimal_return(gamma=0.95, action_std=sigma)
    assert abs(total.mean().item() - exact) < 4.5 * total.std().item() / math.sqrt(N)
    assert exact < env.optimal_return(gamma=0.95)


def test_lqr_bptt_of_a_linear_policy_is_the_closed_form_exactly():
    """Start states ±x0_std·√n·e_i have second moment x0_std² I, so with σ = 0 their mean return is exactly
    ``expected_return`` and BPTT through the env is exactly its gradient (no Monte-Carlo error)."""
    env = DiffLQR.random(3, 2, seed=3, dtype=F64, horizon=15, x0_std=0.7)
    x0 = 0.7 * math.sqrt(3) * torch.cat((torch.eye(3, dtype=F64), -torch.eye(3, dtype=F64)))
    K = (0.3 * torch.randn(2, 3, generator=gen(10), dtype=F64)).requires_grad_(True)
    x, total = x0, torch.zeros(6, dtype=F64)
    for t in range(15):
        x, r, _ = env.step(x, -x @ K.T)
        total = total + 0.9**t * r
    (bptt,) = torch.autograd.grad(total.mean(), K)
    exact = env.expected_return(K, gamma=0.9)
    (exact_grad,) = torch.autograd.grad(exact, K)
    assert total.mean().item() == pytest.approx(exact.item(), rel=1e-12)
    torch.testing.assert_close(bptt, exact_grad, rtol=1e-10, atol=1e-12)


def test_action_bound_clips_lqr_and_contact_actions():
    lqr = DiffLQR.random(3, 2, seed=0, dtype=F64, action_bound=1.0)
    x = lqr.reset(4, generator=gen(11))
    big = torch.tensor([[3.0, -0.5]], dtype=F64).expand(4, 2)
    torch.testing.assert_close(lqr.step(x, big), lqr.step(x, big.clamp(-1, 1)))
    assert math.isinf(DiffLQR.random(3, 2, seed=0).action_bound)
    toy = ContactToy(action_bound=2.0, dtype=F64)
    s = toy.reset(4, generator=gen(12))
    torch.testing.assert_close(
        toy.step(s, torch.full((4, 1), -7.0, dtype=F64)), toy.step(s, torch.full((4, 1), -2.0, dtype=F64))
    )


# ---------------------------------------------------------------------------------------------------------
# contact toy: the contact signal


def test_contact_force_is_the_wall_spring_force_and_sees_bounces_inside_a_step():
    env = ContactToy(stiffness=1e4, dt=0.05, substeps=10, dtype=F64)
    s = torch.tensor([[0.5, 0.0], [-0.01, 0.0], [0.01, -1.0]], dtype=F64)
    torch.testing.assert_close(env.contact_force(s), torch.tensor([0.0, 100.0, 0.0], dtype=F64))
    u = torch.zeros(3, 1, dtype=F64)
    during = env.contact_force(s, u)
    s2, _, _ = env.step(s, u)
    # row 2 hits the wall at 1 m/s and leaves it within the step: 0 before and after, the peak in between
    assert s2[2, 0] > 0 and env.contact_force(s2)[2] == 0
    assert 60 < during[2] < 120  # peak ≈ |v|√(km) = 100 (the discrete bounce, sampled at the substeps)
    assert during[0] == 0 and during[1] >= 100.0


def test_peak_contact_force_grows_like_the_square_root_of_stiffness():
    peaks = []
    for k in (1e3, 1e4):
        env = ContactToy(stiffness=k, dt=0.01, substeps=4, dtype=F64)
        s, u, peak = torch.tensor([[0.2, -1.0]], dtype=F64), torch.zeros(1, 1, dtype=F64), 0.0
        with torch.no_grad():
            for _ in range(60):
                peak = max(peak, env.contact_force(s, u).item())
                s, _, _ = env.step(s, u)
        peaks.append(peak)
    assert peaks[1] / peaks[0] == pytest.approx(math.sqrt(10), rel=0.1), peaks


# ---------------------------------------------------------------------------------------------------------
# policy gradients through the dynamics = finite differences (float64)


def mlp_policy(theta: torch.Tensor, obs: torch.Tensor, action_dim: int, scale: float) -> torch.Tensor:
    """a = scale · tanh(W₂ tanh(W₁ o + b₁) + b₂), 6 hidden units, all weights in the flat vector θ."""
    d, h = obs.shape[1], 6
    sizes = (h * d, h, action_dim * h, action_dim)
    W1, b1, W2, b2 = torch.split(theta, sizes)
    hidden = torch.tanh(obs @ W1.reshape(h, d).T + b1)
    return scale * torch.tanh(hidden @ W2.reshape(action_dim, h).T + b2)


GRAD_CASES = {
    # env, start states, action scale (inside the action bound), a check that the window avoids the kinks
    "pendulum": (
        lambda: DiffPendulum(dtype=F64),
        lambda n: torch.tensor([math.pi, 0.0]) + torch.rand(n, 2, generator=gen(20), dtype=F64) * 2 - 1,
        1.0,
        lambda s: bool(
            (s[:, 1].abs() < 7.9).all() and (angle_normalize(s[:, 0]).abs() < math.pi - 1e-3).all()
        ),
    ),
    "swingup": (
        lambda: CartPoleSwingUp(dtype=F64),
        lambda n: (
            (torch.rand(n, 4, generator=gen(21), dtype=F64) * 2 - 1) * torch.tensor([0.5, 1.0, 0.5, 0.5])
        ),
        0.3,
        lambda s: bool((wrap_angle(s[:, 1]).abs() < math.pi - 1e-3).all()),
    ),
    "lqr": (
        lambda: DiffLQR.random(3, 2, seed=4, dtype=F64),
        lambda n: torch.randn(n, 3, generator=gen(22), dtype=F64),
        1.0,
        lambda s: True,
    ),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_bptt_policy_gradient_of_a_window_matches_central_differences(name):
    """∇θ of the mean 15-step return of a tiny tanh MLP policy from fixed start states, BPTT against central
    differences (step 1e-6): relative error < 1e-4. The action scales keep actions inside the clip; every
    state of the window stays clear of the speed clip and at least 1e-3 from the angle wrap's kink at θ = π
    (checked), so the return is smooth around θ."""
    make, starts, scale, smooth = GRAD_CASES[name]
    env = make()
    s0 = starts(8)
    n_params = 6 * env.obs_dim + 6 + env.action_dim * 6 + env.action_dim
    theta = 0.5 * torch.randn(n_params, generator=gen(23), dtype=F64)

    def window_return(th: torch.Tensor) -> torch.Tensor:
        s, total = s0, s0.new_zeros(8)
        for _ in range(15):
            s, r, _ = env.step(s, mlp_policy(th, env.observe(s), env.action_dim, scale))
            assert smooth(s)
            total = total + r
        return total.mean()

    th = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(window_return(th), th)
    fd = torch.zeros_like(theta)
    with torch.no_grad():
        for j in range(n_params):
            e = torch.zeros_like(theta)
            e[j] = 1e-6
            fd[j] = (window_return(theta + e) - window_return(theta - e)) / 2e-6
    assert ((grad - fd).norm() / fd.norm()).item() < 1e-4
    assert fd.norm() > 1e-3  # not a trivially flat window


# ---------------------------------------------------------------------------------------------------------
# the standard env layer: Gymnasium adapter and DiffVecEnv


@pytest.mark.filterwarnings("ignore:.*Box observation space m:UserWarning")  # unbounded observations
@pytest.mark.filterwarnings("ignore:.*symmetric and normalized:UserWarning")  # torques in [-2, 2] etc.
@pytest.mark.parametrize("env_id", IDS)
def test_registered_ids_are_valid_gymnasium_envs(env_id):
    env = gym.make(env_id)
    diff_env = env.unwrapped.diff_env
    assert isinstance(env.unwrapped, DiffGymEnv) and isinstance(diff_env, DiffEnv) and diff_env.dtype == F64
    assert env.spec.max_episode_steps == diff_env.horizon
    assert env.observation_space.dtype == np.float32 and env.observation_space.shape == (diff_env.obs_dim,)
    assert env.action_space.shape == (diff_env.action_dim,)
    assert np.all(env.action_space.high == diff_env.action_bound) and math.isfinite(diff_env.action_bound)
    check_env(env.unwrapped, skip_render_check=True)
    first, _ = env.reset(seed=5)
    np.testing.assert_array_equal(env.reset(seed=5)[0], first)
    assert not np.array_equal(env.reset(seed=6)[0], first)
    vec = make_env(env_id, 3, backend="native")
    assert isinstance(vec, DiffVecEnv) and vec.spec_id == env_id and vec.max_episode_steps == diff_env.horizon
    assert (
        vec.single_action_space == env.action_space and vec.single_observation_space == env.observation_space
    )
    torch.testing.assert_close(vec.reset(seed=5), vec.reset(seed=5), rtol=0, atol=0)
    assert vec.reset(seed=5).dtype == torch.float32 and vec.diff_env.dtype == F64
    assert make_env(env_id, 2).max_episode_steps == diff_env.horizon  # the Gymnasium backend


@pytest.mark.parametrize("env_id", IDS)
def test_adapter_vec_env_and_raw_env_agree_across_an_episode_boundary(env_id):
    """One fixed action sequence (actions up to 1.5× the bound) through gymnasium.make(id), a one-env
    DiffVecEnv and the raw DiffEnv from the same seed: same observations and rewards, truncation at the
    horizon, and the same next start state (the generator's stream continues)."""
    adapter = gym.make(env_id)
    vec = make_env(env_id, 1, backend="native", dtype=F64)
    raw = make_diff_env(env_id, dtype=F64)
    bound = min(raw.action_bound, 4.0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1.5 * bound, 1.5 * bound, size=(raw.horizon + 15, raw.action_dim)).astype(
        np.float32
    )
    obs_a, _ = adapter.reset(seed=7)
    obs_v = vec.reset(seed=7)
    generator = gen(7)
    s = raw.reset(1, generator)
    for t, a in enumerate(actions):
        np.testing.assert_allclose(obs_a, raw.observe(s)[0].numpy(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(obs_v[0], raw.observe(s)[0], rtol=0, atol=0)
        obs_a, r_a, term_a, trunc_a, _ = adapter.step(a)
        step, stats = vec.step(torch.from_numpy(a)[None])
        s, r, term = raw.step(s, torch.from_numpy(a).to(F64)[None])
        np.testing.assert_allclose(obs_a, raw.observe(s)[0].numpy(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(step.final_obs[0], raw.observe(s)[0], rtol=0, atol=0)
        assert r_a == r.item() == step.reward.item()
        assert term_a == bool(term) == bool(step.terminated) == False  # noqa: E712  (no default task terminates)
        assert trunc_a == bool(step.truncated) == (t + 1 == raw.horizon)
        if trunc_a:
            assert stats.lengths.tolist() == [raw.horizon]
            obs_a, _ = adapter.reset()
            s = raw.reset(1, generator)
        obs_v = step.next_obs
    assert vec.global_step == len(actions)


def test_vec_env_same_step_autoreset_with_terminations_and_truncations():
    """Rows 0-1 push the mass away (terminated past x_limit), rows 2-3 hold it at x = 0.5 with a PD law
    (truncated at the 30-step horizon): final/next observations, episode stats and the carried state."""
    env = ContactToy(x_limit=1.5, horizon=30, dtype=F64)
    vec = DiffVecEnv(env, 4, dtype=torch.float32)
    obs = vec.reset(seed=0)
    returns, lengths, ends = np.zeros(4), np.zeros(4, dtype=int), {"term": 0, "trunc": 0}
    for _ in range(70):
        before = vec.state.clone()
        pd = 4 * (0.5 - obs[:, 0]) - 2 * obs[:, 1]
        actions = torch.where(torch.arange(4) < 2, torch.full((4,), 5.0), pd)[:, None].requires_grad_(True)
        step, stats = vec.step(actions)
        assert not any(x.requires_grad for x in step)
        want_state, want_r, want_term = env.step(before, actions.detach().to(F64).clamp(-1e9, 1e9))
        torch.testing.assert_close(step.final_obs, want_state.float())
        torch.testing.assert_close(step.reward, want_r.float())
        assert torch.equal(step.terminated, want_term) and not (step.terminated & step.truncated).any()
        returns += want_r.numpy()
        lengths += 1
        done = (step.terminated | step.truncated).numpy()
        assert sorted(stats.env_index.tolist()) == np.flatnonzero(done).tolist()
        np.testing.assert_allclose(stats.returns, returns[stats.env_index], rtol=1e-12)
        np.testing.assert_array_equal(stats.lengths, lengths[stats.env_index])
        assert torch.equal(
            step.next_obs[~step.terminated & ~step.truncated], step.final_obs[~torch.from_numpy(done)]
        )
        assert ((step.next_obs[torch.from_numpy(done), 0] - 1.0).abs() < 0.5).all()  # fresh throws
        torch.testing.assert_close(step.next_obs, env.observe(vec.state).float())
        assert (step.truncated.numpy() == (lengths == 30) & ~step.terminated.numpy()).all()
        ends["term"] += int(step.terminated.sum())
        ends["trunc"] += int(step.truncated.sum())
        returns[done], lengths[done] = 0.0, 0
        obs = step.next_obs
    assert ends["term"] >= 4 and ends["trunc"] == 4 and not step.truncated[:2].any()
    assert vec.global_step == 280 and vec.diff_env is env
    with pytest.raises(EnvError, match="step\\(\\) called before reset\\(\\)"):
        DiffVecEnv(env, 2).step(torch.zeros(2, 1))
    with pytest.raises(EnvError, match="actions must be"):
        vec.step(torch.zeros(4, 3))
