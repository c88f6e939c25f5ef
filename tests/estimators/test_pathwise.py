"""Pathwise losses against hand-written references: the actor losses' gradients against ∇ₐQ ∇θμ written out,
``bptt_loss`` against a plain Python loop over segments, and ``bptt_loss`` through ``DiffLQR`` against finite
differences of the rollout return for fixed start states."""

from __future__ import annotations

import math

import pytest
import torch

from pgrad.envs.diff import DiffLQR
from pgrad.errors import ConfigError
from pgrad.estimators.pathwise import bptt_loss, deterministic_actor_loss, reparameterised_actor_loss

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------
# actor losses


def critic(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """A fixed nonlinear Q(s, a) = −‖a − tanh(s W)‖² + sin(a)·1 (any smooth function of a will do)."""
    W = torch.tensor([[0.5, -1.0], [1.5, 0.3], [-0.2, 0.8]], dtype=F64)
    return -(actions - torch.tanh(states @ W)).square().sum(-1) + torch.sin(actions).sum(-1)


def critic_action_grad(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    W = torch.tensor([[0.5, -1.0], [1.5, 0.3], [-0.2, 0.8]], dtype=F64)
    return -2.0 * (actions - torch.tanh(states @ W)) + torch.cos(actions)


def test_deterministic_actor_loss_gradient_is_minus_mean_grad_a_q_times_grad_theta_mu():
    """μθ(s) = θ s (θ [2, 3]): ∂μ_j/∂θ_jk = s_k, so ∇θJ = mean_i ∇ₐQ(s_i, μ(s_i)) s_iᵀ."""
    states = torch.randn(16, 3, generator=gen(0), dtype=F64)
    theta = torch.randn(2, 3, generator=gen(1), dtype=F64, requires_grad=True)
    actions = states @ theta.T
    loss, info = deterministic_actor_loss(critic(states, actions))
    (grad,) = torch.autograd.grad(loss, theta)
    dq_da = critic_action_grad(states, actions.detach())
    expected = -(dq_da.unsqueeze(-1) * states.unsqueeze(-2)).mean(0)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    assert loss.item() == pytest.approx(-critic(states, actions.detach()).mean().item())
    assert info["q_mean"] == pytest.approx(-loss.item())


def test_reparameterised_actor_loss_matches_the_sac_objective_and_leaves_alpha_alone():
    """a = μ + σ ε with θ = (μ, log σ); log π(a) of a diagonal Gaussian; alpha is a tensor with grad."""
    states = torch.randn(32, 3, generator=gen(2), dtype=F64)
    eps = torch.randn(32, 2, generator=gen(3), dtype=F64)
    mu = torch.tensor([0.2, -0.5], dtype=F64, requires_grad=True)
    log_std = torch.tensor([-0.3, 0.1], dtype=F64, requires_grad=True)
    log_alpha = torch.tensor(math.log(0.2), dtype=F64, requires_grad=True)

    def parts(mu, log_std):
        actions = mu + log_std.exp() * eps
        log_prob = torch.distributions.Normal(mu, log_std.exp()).log_prob(actions).sum(-1)
        return critic(states, actions), log_prob

    q, log_prob = parts(mu, log_std)
    loss, info = reparameterised_actor_loss(q, log_prob, log_alpha.exp())
    grads = torch.autograd.grad(loss, (mu, log_std, log_alpha), allow_unused=True)
    q_ref, logp_ref = parts(mu, log_std)
    reference = (0.2 * logp_ref - q_ref).mean()
    ref_grads = torch.autograd.grad(reference, (mu, log_std))
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads[:2], ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    assert grads[2] is None  # alpha is detached
    assert info["entropy"] == pytest.approx(-log_prob.mean().item())
    # the pathwise part by hand: ∂/∂μ mean(−Q(μ + σε)) = −mean ∇ₐQ; log π(μ + σε) does not depend on μ
    q_again, log_prob_again = parts(mu, log_std)
    q_only, _ = reparameterised_actor_loss(q_again, torch.zeros_like(log_prob_again), 0.0)
    (g_mu,) = torch.autograd.grad(q_only, mu)
    expected = -critic_action_grad(states, (mu + log_std.exp() * eps).detach()).mean(0)
    torch.testing.assert_close(g_mu, expected, rtol=1e-12, atol=1e-12)


def test_actor_losses_reject_bad_arguments():
    q = torch.zeros(4, dtype=F64)
    with pytest.raises(ConfigError, match="alpha"):
        reparameterised_actor_loss(q, q, -0.1)
    with pytest.raises(ConfigError, match="log_prob"):
        reparameterised_actor_loss(q, torch.zeros(5, dtype=F64), 0.1)
    with pytest.raises(ConfigError, match="q_values"):
        deterministic_actor_loss(torch.zeros(4, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------------
# bptt_loss against a plain loop


def reference_bptt(rewards, gamma, terminated, values, truncated, normalizer):
    """Column by column, segment by segment: G = Σ γ^{t−s} r_t + γ^{e−s+1} B_e (B = 0 on termination,
    the given value on truncation or at the window end, nothing when values is None)."""
    T, N = rewards.shape
    total = rewards.new_zeros(())
    for n in range(N):
        start = 0
        for t in range(T):
            end = bool(terminated[t, n]) or bool(truncated[t, n]) or t == T - 1
            if not end:
                continue
            G = rewards.new_zeros(())
            for k in range(start, t + 1):
                G = G + gamma ** (k - start) * rewards[k, n]
            if values is not None and not bool(terminated[t, n]):
                G = G + gamma ** (t - start + 1) * values[t, n]
            total = total + G
            start = t + 1
    return -total / normalizer


def random_window(seed, T=7, N=5, p_end=0.25):
    g = gen(seed)
    rewards = torch.randn(T, N, generator=g, dtype=F64, requires_grad=True)
    values = torch.randn(T, N, generator=g, dtype=F64, requires_grad=True)
    ends = torch.rand(T, N, generator=g) < p_end
    kind = torch.rand(T, N, generator=g)
    terminated = ends & (kind < 0.5)
    truncated = ends & (kind >= 0.3)  # some rows both: termination wins
    return rewards, values, terminated, truncated


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("gamma", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("bootstrap", ["none", "TN"])
def test_bptt_loss_and_its_gradient_match_the_reference(seed, gamma, bootstrap):
    rewards, values, terminated, truncated = random_window(seed)
    boot = values if bootstrap == "TN" else None
    loss, info = bptt_loss(rewards, gamma, terminated, boot, truncated, normalizer=3.5)
    ref = reference_bptt(rewards, gamma, terminated, boot, truncated, 3.5)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    inputs = (rewards, values) if boot is not None else (rewards,)
    grads = torch.autograd.grad(loss, inputs)
    ref_grads = torch.autograd.grad(ref, inputs)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)
    assert info["window_return"] == pytest.approx(-ref.item() * 3.5 / rewards.shape[1])
    assert info["episode_ends"] == float((terminated | truncated).sum())


def test_bptt_loss_with_final_values_of_shape_n_and_the_default_normalizer():
    """[N] bootstrap = V(s_T), read at the window end only; default Z = N (mean window return per env)."""
    rewards, values, terminated, _ = random_window(10)
    truncated = torch.zeros_like(terminated)
    truncated[-1] = True
    final = values[-1]
    loss, _ = bptt_loss(rewards, 0.95, terminated, final, truncated)
    full = torch.zeros_like(values).index_put((torch.tensor([rewards.shape[0] - 1]),), final.unsqueeze(0))
    ref = reference_bptt(rewards, 0.95, terminated, full, truncated, rewards.shape[1])
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    # truncated=None is the same as no truncation: the last row still bootstraps
    loss2, _ = bptt_loss(rewards, 0.95, terminated, final)
    torch.testing.assert_close(loss2, loss, rtol=0, atol=0)


def test_bptt_loss_never_reads_values_of_terminated_rows():
    rewards, values, terminated, truncated = random_window(11, p_end=0.5)
    assert terminated.any()
    poisoned = (
        torch.where(terminated, torch.full_like(values, float("nan")), values).detach().requires_grad_(True)
    )
    loss, _ = bptt_loss(rewards, 0.9, terminated, poisoned, truncated)
    (g_rewards, g_values) = torch.autograd.grad(loss, (rewards, poisoned))
    assert torch.isfinite(loss) and torch.isfinite(g_rewards).all() and torch.isfinite(g_values).all()
    assert g_values[terminated].abs().max() == 0


def test_bptt_loss_shac_normalisation_and_a_hand_example():
    """One env, γ = 0.5, rewards 1, 2, 3, 4, terminated after row 1, truncated after row 3 with V = 10:
    G = (1 + 0.5·2) + (3 + 0.5·4 + 0.25·10) = 2 + 7.5; SHAC divides by T·N = 4."""
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=F64)
    terminated = torch.tensor([[False], [True], [False], [False]])
    truncated = torch.tensor([[False], [False], [False], [True]])
    values = torch.full((4, 1), 10.0, dtype=F64)
    values[1] = float("nan")
    loss, info = bptt_loss(rewards, 0.5, terminated, values, truncated, normalizer=4)
    assert loss.item() == pytest.approx(-9.5 / 4)
    assert info["bootstrap_mean"] == pytest.approx(2.5)


def test_bptt_loss_rejects_bad_arguments():
    rewards, values, terminated, truncated = random_window(12)
    truncated[0, 0] = True
    with pytest.raises(ConfigError, match=r"\[T, N\]"):
        bptt_loss(rewards, 0.9, terminated, values[-1], truncated)
    with pytest.raises(ConfigError, match="gamma"):
        bptt_loss(rewards, 1.5, terminated)
    with pytest.raises(ConfigError, match="terminated"):
        bptt_loss(rewards, 0.9, terminated[:-1])
    with pytest.raises(ConfigError, match="time-major"):
        bptt_loss(rewards[0], 0.9, terminated[0])
    with pytest.raises(ConfigError, match="normalizer"):
        bptt_loss(rewards, 0.9, terminated, normalizer=0)


# ---------------------------------------------------------------------------------------------------------
# through a differentiable env


def lqr_window_loss(env, K, x0, gamma, steps, P_boot):
    """u = −K x for ``steps`` steps, then bootstrap with V(x) = −xᵀ P x (a quadratic 'critic')."""
    x = x0
    rewards, terms = [], []
    for _ in range(steps):
        x, r, term = env.step(x, -x @ K.T)
        rewards.append(r)
        terms.append(term)
    final_value = -((x @ P_boot) * x).sum(-1)
    truncated = torch.zeros(steps, x0.shape[0], dtype=torch.bool)
    truncated[-1] = True
    return bptt_loss(torch.stack(rewards), gamma, torch.stack(terms), final_value, truncated)[0]


def test_bptt_loss_through_diff_lqr_equals_finite_differences_of_the_return():
    env = DiffLQR.random(3, 2, seed=0, dtype=F64)
    x0 = env.reset(8, generator=gen(20))
    K = 0.1 * torch.randn(2, 3, generator=gen(21), dtype=F64)
    P_boot = torch.eye(3, dtype=F64) * 2.0
    K_var = K.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(lqr_window_loss(env, K_var, x0, 0.97, 12, P_boot), K_var)
    fd = torch.zeros_like(K)
    h = 1e-6
    for i in range(2):
        for j in range(3):
            E = torch.zeros_like(K)
            E[i, j] = h
            up = lqr_window_loss(env, K + E, x0, 0.97, 12, P_boot)
            down = lqr_window_loss(env, K - E, x0, 0.97, 12, P_boot)
            fd[i, j] = (up - down) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)
