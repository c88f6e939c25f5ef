"""The differentiable-simulator family (APG, SHAC): each update against a plainly written BPTT reference, the
window mechanics (carried state constant, resets cut the return), the critic's TD(λ) fit, exact resume."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import pgrad
from pgrad.algorithms import get_algorithm
from pgrad.algorithms.differentiable.base import rollout
from pgrad.envs.make import make_env
from pgrad.errors import ConfigError
from pgrad.estimators import td_lambda_return
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint

CPU = torch.device("cpu")
QUIET = {"progress": False, "tensorboard": False}


def build(name: str, env_id: str, num_envs: int = 4, **options):
    cls = get_algorithm(name)
    envs = make_env(env_id, num_envs, backend="native")
    config = cls.Config(num_envs=num_envs, **options)
    return cls(config, envs, seed=0, device=CPU, total_steps=10_000)


def plain_window(algo, horizon: int, gamma: float, bootstrap=None):
    """BPTT written out: roll the batch from the env's state with the algorithm's policy, summing discounted
    rewards per episode segment, closing segments with γ·V(s') where given; returns (loss, final state)."""
    envs = copy.deepcopy(algo.envs)
    env = envs.diff_env
    state = envs.state.detach()
    total = 0.0
    discount = torch.ones(envs.num_envs, dtype=state.dtype)
    for t in range(horizon):
        action = algo.act(env.observe(state))
        state, reward, terminated, truncated, true_next, _ = envs.advance(state, action.to(state.dtype))
        total = total + (discount * reward).sum()
        ends = terminated | truncated
        if bootstrap is not None:
            v = bootstrap(env.observe(true_next).float()).to(state.dtype)
            closing = (truncated & ~terminated) | (torch.zeros_like(ends) if t < horizon - 1 else ~terminated)
            total = total + (gamma * discount * torch.where(closing, v, torch.zeros_like(v))).sum()
        discount = torch.where(ends, torch.ones_like(discount), discount * gamma)
    return -total / (horizon * envs.num_envs), state


def test_apg_step_is_plain_sgd_on_the_bptt_window_return():
    options = dict(hidden_sizes=(8,), optimizer="sgd", lr=0.1, max_grad_norm=0.0, horizon=12, gamma=0.9)
    algo = build("apg", "pgrad/DiffPendulum-v0", **options)
    algo.envs.reset(seed=3)
    before = [p.detach().clone() for p in algo.params]
    reference = copy.deepcopy(algo)
    loss, _ = plain_window(reference, 12, 0.9)
    grads = torch.autograd.grad(loss, reference.params)
    algo.iteration(0)
    for p0, g, p1 in zip(before, grads, algo.params, strict=True):
        torch.testing.assert_close(p1.detach(), p0 - 0.1 * g, rtol=1e-5, atol=1e-6)


def test_apg_window_starts_from_the_carried_state_as_a_constant():
    algo = build("apg", "pgrad/DiffLQR-v0", horizon=5)
    algo.envs.reset(seed=1)
    algo.iteration(0)
    carried = algo.envs.state
    assert not carried.requires_grad and algo.envs.global_step == 5 * 4
    algo.iteration(1)  # a second window backpropagates only through its own 5 steps (no error, no growth)
    assert algo.envs.global_step == 10 * 4


def test_shac_actor_loss_is_the_window_return_closed_by_the_target_critic():
    algo = build("shac", "pgrad/DiffPendulum-v0", hidden_sizes=(8,), horizon=6, gamma=0.95)
    algo.envs.reset(seed=2)
    with torch.no_grad():  # a non-trivial target critic, so the bootstrap term matters
        for p in algo.critic_target.parameters():
            p.add_(0.3)
    reference = copy.deepcopy(algo)
    torch.manual_seed(5)  # the same exploration noise in both
    loss, _ = plain_window(reference, 6, 0.95, bootstrap=reference.critic_target)
    expected = torch.autograd.grad(loss, reference.actor_params)
    torch.manual_seed(5)
    window = rollout(algo.envs, algo.act, 6, seed=0)
    got_loss, _ = algo.window_loss(window)
    got = torch.autograd.grad(got_loss, algo.actor_params)
    torch.testing.assert_close(got_loss, loss.float(), rtol=1e-5, atol=1e-6)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b.float(), rtol=1e-4, atol=1e-6)
    # the target critic's weights get no gradient from the actor's loss
    assert all(not p.requires_grad for p in algo.critic_target.parameters())


def test_shac_critic_regresses_on_td_lambda_targets_and_target_moves_by_alpha():
    algo = build("shac", "pgrad/DiffLQR-v0", hidden_sizes=(8,), horizon=5, critic_iterations=1,
                 critic_minibatches=1)  # fmt: skip
    algo.envs.reset(seed=0)
    window = rollout(algo.envs, algo.act, 5, seed=0)
    target_before = [p.detach().clone() for p in algo.critic_target.parameters()]
    with torch.no_grad():
        obs = window.obs.float()
        values, next_values = algo.critic_target(obs), algo.critic_target(window.final_obs.detach().float())
        targets = td_lambda_return(window.rewards.detach().float(), values, next_values, window.terminated,
                                   window.truncated, algo.config.gamma, algo.config.lam)  # fmt: skip
        expected_loss = 0.5 * (algo.critic(obs).flatten() - targets.flatten()).square().mean()
    metrics = algo.fit_critic(window)  # one full-batch step: its loss is the loss before the step
    torch.testing.assert_close(metrics["loss/value"], expected_loss, rtol=1e-5, atol=1e-6)
    online = [p.detach() for p in algo.critic.parameters()]
    a = algo.config.target_alpha
    for t0, w, t1 in zip(target_before, online, algo.critic_target.parameters(), strict=True):
        torch.testing.assert_close(t1, a * t0 + (1 - a) * w)


def test_episode_ends_cut_the_return_and_restart_without_gradient():
    envs = make_env("pgrad/DiffPendulum-v0", 2, backend="native")
    envs.reset(seed=0)
    envs._steps[:] = envs.max_episode_steps - 1  # both rows end (truncated) at the next step
    state = envs.state.detach().requires_grad_(True)
    action = torch.zeros(2, 1, dtype=state.dtype, requires_grad=True)
    next_state, _, terminated, truncated, true_next, stats = envs.advance(state, action)
    assert truncated.all() and not terminated.any() and len(stats.env_index) == 2
    assert not torch.equal(next_state, true_next)  # reset rows
    (g,) = torch.autograd.grad(next_state.sum(), state, allow_unused=True, retain_graph=True)
    assert g is None or torch.count_nonzero(g) == 0  # nothing flows into the old episode from the new one
    (g,) = torch.autograd.grad(true_next.sum(), state)
    assert torch.count_nonzero(g) > 0


@pytest.mark.parametrize("name", ["apg", "shac"])
def test_a_non_differentiable_env_is_refused_in_one_line(name):
    with pytest.raises(ConfigError, match="needs a differentiable env") as info:
        pgrad.train(name, "CartPole-v1", total_steps=100)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "options"), [("apg", {}), ("shac", {"critic_iterations": 2})])
def test_resume_is_bitwise(tmp_path, name, options):
    common = dict(seed=1, num_envs=4, horizon=8, eval_every=0, eval_episodes=0, checkpoint_every=0, **options)
    pgrad.train(
        name, "pgrad/DiffPendulum-v0", total_steps=640, run_dir=str(tmp_path / "a"), **common, **QUIET
    )
    pgrad.train(
        name, "pgrad/DiffPendulum-v0", total_steps=320, run_dir=str(tmp_path / "b"), **common, **QUIET
    )
    pgrad.resume(tmp_path / "b", total_steps=640, progress=False)
    a, _ = load_checkpoint(latest_checkpoint(Path(tmp_path / "a") / "checkpoints"))
    b, _ = load_checkpoint(latest_checkpoint(Path(tmp_path / "b") / "checkpoints"))
    assert b["envs"] is not None
    for key in a["algorithm"]:
        sa, sb = a["algorithm"][key], b["algorithm"][key]
        for k in sa:
            if isinstance(sa[k], torch.Tensor):
                assert torch.equal(sa[k], sb[k]), (key, k)
