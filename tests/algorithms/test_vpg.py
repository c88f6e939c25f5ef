"""VPG: one policy step is the plain GAE(λ) score-function estimate; V is fitted on the λ-returns."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.algorithms.score_function import vpg as vpg_module
from pgrad.algorithms.score_function.vpg import VPG, Config
from pgrad.envs.gym import GymVecEnv
from pgrad.errors import ConfigError
from pgrad.run.seeding import seed_everything

QUIET = {"progress": False, "tensorboard": False}


def make_algo(seed=0, **options):
    seed_everything(seed)
    # A short time limit so a 20-step rollout holds terminations, truncations and a cut last row.
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=12), num_envs=3)
    config = Config(**{"num_envs": 3, "steps_per_epoch": 60, "hidden_sizes": (8,), **options})
    algo = VPG(config, envs, seed=seed, device=torch.device("cpu"), total_steps=10_000)
    with torch.no_grad():  # a value function far from zero, so bootstrapping errors show
        for p in algo.value.parameters():
            p.add_(torch.randn_like(p))
    return algo


def fixed_rollout(algo, monkeypatch):
    rollout = algo.collector.collect(algo.policy, algo.num_steps)
    assert rollout.truncated.any() and rollout.terminated.any()
    assert not (rollout.terminated[-1] | rollout.truncated[-1]).all()  # some episode cut by the rollout end
    monkeypatch.setattr(algo.collector, "collect", lambda *a, **k: rollout)
    return rollout


def v(value, obs):
    with torch.no_grad():
        return value(obs[None])[0].item()


def plain_gae(rollout, value, gamma, lam):
    """GAE env by env, step by step; truncation and the rollout end bootstrap from V(final observation)."""
    T, N = rollout.rewards.shape
    adv = torch.zeros(T, N)
    for n in range(N):
        following = 0.0
        for t in reversed(range(T)):
            r = rollout.rewards[t, n].item()
            if rollout.terminated[t, n]:
                delta, following = r - v(value, rollout.obs[t, n]), 0.0
            else:
                delta = r + gamma * v(value, rollout.next_obs[t, n]) - v(value, rollout.obs[t, n])
                if rollout.truncated[t, n] or t == T - 1:
                    following = 0.0
            following = delta + gamma * lam * following
            adv[t, n] = following
    return adv


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def grad_of(loss, module):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(module.parameters()))])


@pytest.mark.parametrize("normalize_advantages", [True, False])
def test_update_equals_the_plain_estimator(monkeypatch, normalize_advantages):
    config = {"optimizer": "sgd", "lr": 1.0, "value_lr": 1.0, "value_iters": 1, "ent_coef": 0.0}
    algo = make_algo(normalize_advantages=normalize_advantages, **config)
    rollout = fixed_rollout(algo, monkeypatch)
    gamma, lam = algo.config.gamma, algo.config.gae_lambda
    adv = plain_gae(rollout, algo.value, gamma, lam)
    values = torch.tensor([[v(algo.value, o) for o in row] for row in rollout.obs])
    returns = (adv + values).flatten().tolist()  # value targets: the λ-returns, before normalising
    adv = adv.flatten().tolist()
    if normalize_advantages:
        mean, std = np.mean(adv), np.std(adv)  # population std, as pgrad's normalize
        adv = [(a - mean) / (std + 1e-8) for a in adv]
    obs, actions = rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1)
    B = len(obs)
    # ĝ = 1/B Σ_t ∇ log π(a_t|s_t) Â_t, summed step by step
    score_sum = sum(
        algo.policy.distribution(obs[i : i + 1]).log_prob(actions[i : i + 1])[0] * adv[i] for i in range(B)
    )
    expected_policy = grad_of(score_sum / B, algo.policy)
    value_loss = sum(0.5 * (algo.value(obs[i : i + 1])[0] - returns[i]) ** 2 for i in range(B)) / B
    expected_value = -grad_of(value_loss, algo.value)

    policy_before, value_before = flat(algo.policy), flat(algo.value)
    metrics = algo.iteration(0).metrics
    # SGD with lr 1: the parameters move by exactly ĝ (policy) and −∇ of the value loss (one value step).
    torch.testing.assert_close(flat(algo.policy) - policy_before, expected_policy, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(flat(algo.value) - value_before, expected_value, rtol=1e-4, atol=1e-6)
    assert metrics["stats/approx_kl"] > 0 and np.isfinite(metrics["loss/value"])


def test_truncation_bootstraps_from_the_final_observation(monkeypatch):
    """Moving the final observation of a truncated step changes Â by (γλ)^(t−t') γ ΔV over its episode."""
    algo = make_algo(normalize_advantages=False, value_iters=0)
    rollout = fixed_rollout(algo, monkeypatch)
    seen = []

    def spy(log_prob, advantages, *args, **kwargs):
        seen.append(advantages.detach().clone().view(rollout.rewards.shape))
        return real(log_prob, advantages, *args, **kwargs)

    real = vpg_module.score_function_loss
    monkeypatch.setattr(vpg_module, "score_function_loss", spy)
    state = copy.deepcopy(algo.state_dict())
    algo.iteration(0)

    t, n = (rollout.truncated & ~rollout.terminated).nonzero()[0].tolist()
    old_v = v(algo.value, rollout.next_obs[t, n])
    rollout.next_obs[t, n] += 3.0  # a very different final observation
    new_v = v(algo.value, rollout.next_obs[t, n])
    assert abs(new_v - old_v) > 0.1
    # A terminated step's final observation is never read.
    t_end, n_end = rollout.terminated.nonzero()[0].tolist()
    rollout.next_obs[t_end, n_end] += 100.0
    algo.load_state_dict(state)
    algo.iteration(1)

    gamma, lam = algo.config.gamma, algo.config.gae_lambda
    expected = torch.zeros_like(seen[0])
    start = t
    while start > 0 and not (rollout.terminated[start - 1, n] or rollout.truncated[start - 1, n]):
        start -= 1
    for k in range(start, t + 1):
        expected[k, n] = (gamma * lam) ** (t - k) * gamma * (new_v - old_v)
    torch.testing.assert_close(seen[1] - seen[0], expected, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip(monkeypatch):
    a = make_algo(seed=0)
    a.iteration(0)
    b = make_algo(seed=1)
    # Deep copy, as a checkpoint on disk would be: torch's Optimizer.load_state_dict keeps the "step"
    # tensors of a live state_dict shared with the source optimiser.
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    torch.testing.assert_close(flat(b.policy), flat(a.policy))
    torch.testing.assert_close(flat(b.value), flat(a.value))
    rollout = a.collector.collect(a.policy, a.num_steps)
    for algo in (a, b):
        monkeypatch.setattr(algo.collector, "collect", lambda *args, **kw: rollout)
        algo.iteration(1)  # same optimiser state (Adam moments, step count) → the same update
    torch.testing.assert_close(flat(b.policy), flat(a.policy))
    torch.testing.assert_close(flat(b.value), flat(a.value))


def test_invalid_options_raise_one_line_errors():
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        make_algo(steps_per_epoch=61)
    with pytest.raises(ConfigError, match="gae_lambda"):
        make_algo(gae_lambda=1.5)
    with pytest.raises(ConfigError, match="value_iters"):
        make_algo(value_iters=-1)


def test_box_actions_train_without_nan(tmp_path):
    summary = pgrad.train(
        "vpg",
        "Pendulum-v1",
        total_steps=2000,
        run_dir=str(tmp_path),
        num_envs=2,
        steps_per_epoch=400,
        eval_episodes=2,
        **QUIET,
    )
    assert np.isfinite(summary["eval"]["mean_return"])
    agent = pgrad.load(tmp_path)
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())
    resumed = pgrad.resume(tmp_path, total_steps=2800, progress=False)  # optimiser states load back
    assert resumed["global_step"] >= 2800


def test_learns_cartpole_quickly(tmp_path):
    """Defaults, seed 0: evaluation 314 at 20k steps when measured (a random policy scores ~22)."""
    summary = pgrad.train(
        "vpg",
        "CartPole-v1",
        total_steps=20_000,
        seed=0,
        eval_episodes=10,
        eval_every=0,
        run_dir=str(tmp_path),
        **QUIET,
    )
    assert summary["eval"]["mean_return"] > 150, summary["eval"]
