"""The differentiable-simulator family (APG, SHAC, AHAC, SAPO): each update against a plainly written BPTT
reference, the window mechanics (carried state constant, resets and stiff contacts cut the return), the
critics' TD(λ) fits, AHAC's window control, SAPO's temperature, exact resume."""

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


@pytest.mark.parametrize("name", ["apg", "shac", "ahac", "sapo"])
def test_a_non_differentiable_env_is_refused_in_one_line(name):
    with pytest.raises(ConfigError, match="needs a differentiable env") as info:
        pgrad.train(name, "CartPole-v1", total_steps=100)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "env_id", "options"),
    [
        ("apg", "pgrad/DiffPendulum-v0", {}),
        # a resume here extends the budget, which re-plans an annealed learning rate: keep it constant
        ("shac", "pgrad/DiffPendulum-v0", {"critic_iterations": 2, "anneal_lr": False}),
        # a threshold that bounces cross, so the window length and the multiplier move before the resume
        ("ahac", "pgrad/ContactToy-v0",
         {"critic_iterations": 2, "contact_threshold": 5.0, "horizon_min": 4, "anneal_lr": False}),
        ("sapo", "pgrad/DiffPendulum-v0", {"critic_iterations": 2, "anneal_lr": False}),
    ],
)  # fmt: skip
def test_resume_is_bitwise(tmp_path, name, env_id, options):
    common = dict(seed=1, num_envs=4, horizon=8, eval_every=0, eval_episodes=0, checkpoint_every=0, **options)
    pgrad.train(name, env_id, total_steps=640, run_dir=str(tmp_path / "a"), **common, **QUIET)
    pgrad.train(name, env_id, total_steps=320, run_dir=str(tmp_path / "b"), **common, **QUIET)
    pgrad.resume(tmp_path / "b", total_steps=640, progress=False)
    a, _ = load_checkpoint(latest_checkpoint(Path(tmp_path / "a") / "checkpoints"))
    b, _ = load_checkpoint(latest_checkpoint(Path(tmp_path / "b") / "checkpoints"))
    assert b["envs"] is not None
    for key in a["algorithm"]:
        sa, sb = a["algorithm"][key], b["algorithm"][key]
        for k in sa:
            if isinstance(sa[k], torch.Tensor):
                assert torch.equal(sa[k], sb[k]), (key, k)


@pytest.mark.parametrize("name", ["shac", "ahac", "sapo"])
def test_learning_rates_decay_linearly_to_zero_over_the_budget_and_the_schedule_is_checkpointed(name):
    algo = build(name, "pgrad/DiffPendulum-v0", hidden_sizes=(8,), horizon=8, critic_iterations=1,
                 horizon_min=8, horizon_max=8) if name == "ahac" else build(
        name, "pgrad/DiffPendulum-v0", hidden_sizes=(8,), horizon=8, critic_iterations=1)  # fmt: skip
    for i in range(3):
        metrics = algo.iteration(i).metrics
    step = algo.envs.global_step - 8 * 4  # the third window's lr was set before it ran
    expected = algo.config.actor_lr * (1 - step / 10_000)
    torch.testing.assert_close(metrics["stats/lr"].item(), expected)
    critic_lr = algo.critic_optimizer.param_groups[0]["lr"]
    assert critic_lr == pytest.approx(algo.config.critic_lr * (1 - step / 10_000))
    fresh = build(name, "pgrad/DiffPendulum-v0", hidden_sizes=(8,), horizon=8, critic_iterations=1,
                  **({"horizon_min": 8, "horizon_max": 8} if name == "ahac" else {}))  # fmt: skip
    fresh.load_state_dict(algo.state_dict())
    assert fresh.schedule.fraction(1234) == algo.schedule.fraction(1234)


# -- AHAC --------------------------------------------------------------------------------------------------


def test_ahac_stops_the_gradient_at_a_stiff_contact_and_closes_the_return_there():
    algo = build("ahac", "pgrad/ContactToy-v0", hidden_sizes=(8,), horizon=20, contact_threshold=5.0)
    algo.envs.reset(seed=0)
    actions = []

    def act(obs):  # the policy's actions, kept to differentiate with respect to them
        actions.append(algo.act(obs))
        return actions[-1]

    torch.manual_seed(1)
    window = rollout(algo.envs, act, 20, seed=0, contact_threshold=5.0)
    assert window.cut.any() and not window.cut.all()  # the thrown mass hits the wall inside the window
    # the flags are the contact forces above the threshold, recomputed from the visited states
    torch.testing.assert_close(window.cut, window.contact > 5.0)
    assert window.segment_ends[window.cut & ~window.terminated].all()
    # the state after a stiff step is a constant of θ; the one before it is not (it was reached by actions)
    t, n = (window.cut[1:] & ~window.cut[:-1]).nonzero()[0].tolist()
    t += 1  # a stiff step t whose previous step was not stiff

    def grad_norm(x: torch.Tensor) -> float:
        grads = torch.autograd.grad(x.sum(), algo.actor_params, retain_graph=True, allow_unused=True)
        return sum(float(g.abs().sum()) for g in grads if g is not None)

    assert grad_norm(window.final_obs[t, n]) == 0.0
    assert grad_norm(window.final_obs[t - 1, n]) > 0.0
    # the rewards of that row after the cut get no gradient from its actions up to the stiff step, only from
    # the later ones (the earlier rewards do get it: the cut is what stops it)
    later = window.rewards[t + 1 :, n].sum()
    grads = torch.autograd.grad(later, actions, retain_graph=True, allow_unused=True)
    assert all(g is None or g[n].abs().sum() == 0 for g in grads[: t + 1])
    assert grads[t + 1] is not None and grads[t + 1][n].abs().sum() > 0
    (g,) = torch.autograd.grad(window.rewards[t, n], actions[t - 1], retain_graph=True)
    assert g[n].abs().sum() > 0


def test_ahac_actor_loss_is_the_cut_window_return_closed_by_the_minimum_of_its_critics():
    algo = build("ahac", "pgrad/ContactToy-v0", hidden_sizes=(8,), horizon=20, contact_threshold=5.0,
                 gamma=0.9)  # fmt: skip
    algo.envs.reset(seed=0)
    with torch.no_grad():
        for p in algo.critic.members[1].parameters():
            p.add_(0.2)  # members that differ, so min and mean differ
    torch.manual_seed(1)
    window = rollout(algo.envs, algo.act, 20, seed=0, contact_threshold=5.0)
    loss, _ = algo.window_loss(window)
    # plainly: per row, segments end at episode ends, stiff steps and the window end; each closed by
    # γ·min_j V_j(final obs) unless terminated
    v = algo.critic(window.final_obs.float()).min(dim=0).values.detach()
    v = torch.where(window.cut, v, algo.critic(window.final_obs.float()).min(dim=0).values)
    total = 0.0
    T, N = window.rewards.shape
    for n in range(N):
        discount = 1.0
        for t in range(T):
            total = total + discount * window.rewards[t, n]
            closes = bool(window.truncated[t, n] or window.cut[t, n] or t == T - 1)
            if window.terminated[t, n]:
                discount = 1.0
            elif closes:
                total = total + discount * 0.9 * v[t, n]
                discount = 1.0
            else:
                discount *= 0.9
    torch.testing.assert_close(loss, (-total / (T * N)).to(loss.dtype), rtol=1e-5, atol=1e-6)
    # the critics' weights get no gradient from the actor's loss
    loss.backward()
    assert all(p.grad is None for p in algo.critic.parameters())


def test_ahac_window_grows_without_contact_and_shrinks_when_contacts_cross_most_windows():
    smooth = build("ahac", "pgrad/DiffPendulum-v0", hidden_sizes=(8,), horizon=8, horizon_min=4,
                   horizon_max=10, critic_iterations=1)  # fmt: skip
    lengths = []
    for i in range(4):
        lengths.append(smooth.iteration(i).metrics["stats/horizon"].item())
    assert lengths == [8, 9, 10, 10] and smooth.dual.item() == 0.0  # ρ = 0: H grows by α_H to H_max
    stiff = build("ahac", "pgrad/ContactToy-v0", hidden_sizes=(8,), horizon=32, horizon_min=4, horizon_max=32,
                  contact_threshold=0.0, max_cut_fraction=0.1, dual_lr=0.5, critic_iterations=1)  # fmt: skip
    dual, length, crossed = 0.0, 32.0, []
    for i in range(8):
        metrics = stiff.iteration(i).metrics
        assert metrics["stats/horizon"].item() == round(length)  # the window ran with the current H
        rho = metrics["stats/cut_fraction"].item()
        crossed.append(rho)
        # φ ← max(0, φ + α_φ (ρ − ρ̄)),  H ← clip(H + α_H (1 − φ), H_min, H_max)
        dual = max(0.0, dual + 0.5 * (rho - 0.1))
        length = min(32.0, max(4.0, length + 1.0 * (1.0 - dual)))
    assert max(crossed) > 0.5  # contacts cross most windows…
    torch.testing.assert_close(stiff.dual.item(), dual)
    torch.testing.assert_close(stiff.window_length.item(), length)
    assert length < 30  # …and the window shrank


def test_ahac_refuses_a_start_window_outside_its_bounds():
    with pytest.raises(ConfigError, match="horizon_min <= horizon <= horizon_max"):
        build("ahac", "pgrad/ContactToy-v0", horizon=100)


# -- SAPO --------------------------------------------------------------------------------------------------


def test_sapo_actor_loss_is_the_soft_window_return_closed_by_the_mean_of_its_critics():
    algo = build("sapo", "pgrad/DiffPendulum-v0", hidden_sizes=(8,), horizon=6, gamma=0.95, init_alpha=0.3)
    algo.envs.reset(seed=2)
    with torch.no_grad():
        for p in algo.critic.members[0].parameters():
            p.add_(0.3)
    torch.manual_seed(5)
    window = rollout(algo.envs, algo.act, 6, seed=0)
    assert window.log_probs.shape == window.rewards.shape and window.log_probs.requires_grad
    loss, _ = algo.window_loss(window)
    # plainly: soft rewards r − α log π, discounted per segment, closed by γ·mean_j V_j
    soft = window.rewards.float() - 0.3 * window.log_probs
    v = algo.critic(window.final_obs.float()).mean(dim=0)
    total = 0.0
    T, N = soft.shape
    for n in range(N):
        discount = 1.0
        for t in range(T):
            total = total + discount * soft[t, n]
            if window.terminated[t, n]:
                discount = 1.0
            elif window.truncated[t, n] or t == T - 1:
                total, discount = total + discount * 0.95 * v[t, n], 1.0
            else:
                discount *= 0.95
    torch.testing.assert_close(loss, (-total / (T * N)).to(loss.dtype), rtol=1e-5, atol=1e-6)
    # the entropy term sends gradient into the policy's log-std (it would not if log π were detached)
    std_params = [p for name, p in algo.policy.named_parameters() if "head" in name]
    entropy_part = -(0.3 * window.log_probs).sum()
    grads = torch.autograd.grad(entropy_part, std_params, retain_graph=True, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    loss.backward()
    assert all(p.grad is None for p in algo.critic.parameters())


def test_sapo_critics_regress_on_soft_td_lambda_targets_with_their_minimum():
    algo = build("sapo", "pgrad/DiffLQR-v0", hidden_sizes=(8,), horizon=5, critic_iterations=1,
                 critic_minibatches=1, init_alpha=0.5)  # fmt: skip
    algo.envs.reset(seed=0)
    window = rollout(algo.envs, algo.act, 5, seed=0)
    with torch.no_grad():
        obs = window.obs.float()
        soft = window.rewards.float() - 0.5 * window.log_probs.detach()
        values = algo.critic(obs).min(dim=0).values
        next_values = algo.critic(window.final_obs.detach().float()).min(dim=0).values
        targets = td_lambda_return(soft, values, next_values, window.terminated, window.truncated,
                                   algo.config.gamma, algo.config.lam)  # fmt: skip
        both = algo.critic(obs)
        expected_loss = 0.5 * (both - targets).square().mean()
    metrics = algo.fit_critic(window)
    torch.testing.assert_close(metrics["loss/value"], expected_loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("entropy_gap", "direction"), [(+1.0, -1), (-1.0, +1)])
def test_sapo_temperature_moves_towards_the_entropy_target(entropy_gap, direction):
    algo = build("sapo", "pgrad/DiffPendulum-v0", hidden_sizes=(8,), horizon=4)
    algo.envs.reset(seed=0)
    window = rollout(algo.envs, algo.act, 4, seed=0)
    # entropy −E log π set above (below) the target H̄: α must fall (rise)
    window.log_probs = torch.full_like(window.log_probs.detach(), -(algo.target_entropy + entropy_gap))
    before = algo.log_alpha.item()
    algo.after_actor_step(window)
    assert (algo.log_alpha.item() - before) * direction > 0
