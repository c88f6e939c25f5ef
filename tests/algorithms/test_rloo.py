"""RLOO: leave-one-out advantages and the update held against the plain REINFORCE-over-episodes estimate."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.algorithms import REGISTRY
from pgrad.algorithms.score_function.rloo import RLOO, Config
from pgrad.envs.gym import GymVecEnv
from pgrad.errors import ConfigError
from pgrad.run.seeding import seed_everything

QUIET = {"progress": False, "tensorboard": False}
BANDIT = "pgrad/ContextualBandit-v0"


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """Make `rloo` trainable by name whatever state the shared registry is in."""
    monkeypatch.setitem(REGISTRY, "rloo", "pgrad.algorithms.score_function.rloo:RLOO")


def make_algo(config, env="CartPole-v1", **env_kwargs):
    seed_everything(0)
    envs = GymVecEnv(lambda: gym.make(env, **env_kwargs), num_envs=config.num_envs)
    return RLOO(config, envs, seed=0, device=torch.device("cpu"), total_steps=10_000)


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_advantages_are_the_leave_one_out_formula():
    algo = make_algo(Config(num_groups=2, group_size=4, hidden_sizes=(4,)), BANDIT)
    outcomes = torch.tensor([[1.0, 0.0, 3.0, 2.5], [4.0, 4.0, 4.0, 4.0]])
    got = algo.advantages(outcomes)
    for g, row in enumerate(outcomes.tolist()):
        k = len(row)
        for i, r in enumerate(row):
            others = [row[j] for j in range(k) if j != i]
            assert got[g, i].item() == pytest.approx(r - sum(others) / (k - 1), abs=1e-6)
            assert got[g, i].item() == pytest.approx(k / (k - 1) * (r - sum(row) / k), abs=1e-6)


@pytest.mark.parametrize("num_groups, length_constant", [(1, 1), (2, None)])
def test_update_is_the_rloo_estimate(num_groups, length_constant):
    """β = 0, one epoch, one minibatch, SGD lr 1: θ moves by 1/(M·L) Σ_i A_i Σ_t ∇ log π(a_t|s_t) exactly."""
    config = Config(
        num_groups=num_groups,
        group_size=4,
        update_epochs=1,
        num_minibatches=1,
        beta=0.0,
        optimizer="sgd",
        lr=1.0,
        max_grad_norm=0.0,
        length_constant=length_constant,
        hidden_sizes=(8,),
    )
    algo = make_algo(config, max_episode_steps=25)
    L = 25 if length_constant is None else length_constant
    assert algo.length_constant == L
    for index in range(50):
        rollout = algo.collect(index)
        lengths = rollout.mask.sum(0)
        if len(set(lengths.tolist())) > 2 and (lengths == 25).any():
            break
    else:
        pytest.fail("no batch with episodes of several lengths")
    algo.collect = lambda index: rollout
    params = list(algo.policy.parameters())
    returns = [float(rollout.rewards[: int(lengths[n]), n].sum()) for n in range(config.num_envs)]
    expected = torch.zeros(sum(p.numel() for p in params))
    for g in range(num_groups):
        members = range(g * 4, (g + 1) * 4)
        for n in members:
            baseline = np.mean([returns[m] for m in members if m != n])
            for t in range(int(lengths[n])):
                obs, action = rollout.obs[t : t + 1, n], rollout.actions[t : t + 1, n]
                logp = algo.policy.distribution(obs).log_prob(action)[0]
                grad = torch.cat([x.flatten() for x in torch.autograd.grad(logp, params)])
                expected += (returns[n] - baseline) * grad / L
    expected /= config.num_envs
    before = flat(algo.policy)
    algo.iteration(0)
    torch.testing.assert_close(flat(algo.policy) - before, expected, rtol=1e-4, atol=1e-6)


def test_rloo_learns_the_bandit(tmp_path):
    pgrad.train("rloo", BANDIT, total_steps=4000, seed=0, run_dir=str(tmp_path), eval_every=0, **QUIET)
    env = gym.make(BANDIT).unwrapped
    with torch.no_grad():
        probs = pgrad.load(tmp_path).policy.distribution(torch.as_tensor(env.contexts)).probs
    learned = env.expected_reward(probs)
    uniform = float(env.reward_table.mean())
    assert learned > uniform + 0.5 * (env.optimal_reward - uniform), (learned, uniform, env.optimal_reward)


def test_rloo_has_no_grpo_only_options(tmp_path):
    assert Config(num_groups=3, group_size=5).num_envs == 15
    with pytest.raises(ConfigError, match="unknown rloo option"):
        pgrad.train("rloo", BANDIT, total_steps=16, run_dir=str(tmp_path), dr_grpo=True, **QUIET)
    with pytest.raises(ConfigError, match="group_size must be >= 2"):
        pgrad.train("rloo", BANDIT, total_steps=16, run_dir=str(tmp_path), group_size=1, **QUIET)
