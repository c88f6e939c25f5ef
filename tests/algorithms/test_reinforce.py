"""REINFORCE: the update equals the textbook estimator computed plainly, episode by episode."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.algorithms.score_function import reinforce as reinforce_module
from pgrad.algorithms.score_function.reinforce import Config, Reinforce
from pgrad.envs.gym import GymVecEnv
from pgrad.run.rollout import collect_episodes
from pgrad.run.seeding import seed_everything

QUIET = {"progress": False, "tensorboard": False}


def split_episodes(rollout):
    """Plain list of episodes (obs, actions, rewards, terminated, truncated, next_obs), env by env."""
    episodes = []
    for n in range(rollout.num_envs):
        start = 0
        for t in range(rollout.num_steps):
            if not rollout.mask[t, n]:
                break
            if rollout.terminated[t, n] or rollout.truncated[t, n]:
                rows = slice(start, t + 1)
                episodes.append(
                    {
                        "obs": rollout.obs[rows, n],
                        "actions": rollout.actions[rows, n],
                        "rewards": rollout.rewards[rows, n].tolist(),
                        "truncated": bool(rollout.truncated[t, n]),
                        "terminated": bool(rollout.terminated[t, n]),
                        "final_obs": rollout.next_obs[t, n],
                    }
                )
                start = t + 1
    return episodes


def reference_gradient(policy, value, episodes, config):
    """ĝ = 1/M Σ_i Σ_t ∇ log π(a_t|s_t) (Ψ_t − b_t), with loops and one autograd call per step."""
    params = list(policy.parameters())
    gamma = config.gamma
    psis = []
    for ep in episodes:
        r = ep["rewards"]
        tail = 0.0
        if (
            config.baseline == "value"
            and config.bootstrap_truncated
            and ep["truncated"]
            and not ep["terminated"]
        ):
            tail = value(ep["final_obs"][None])[0].item()
        if config.returns == "total":
            total = sum(gamma**k * r[k] for k in range(len(r)))
            psis.append([total] * len(r))
        else:
            rtg = [
                sum(gamma ** (k - t) * r[k] for k in range(t, len(r))) + gamma ** (len(r) - t) * tail
                for t in range(len(r))
            ]
            psis.append(rtg)
    all_psi = [p for ps in psis for p in ps]

    def step_grads(ep):
        out = []
        for t in range(len(ep["rewards"])):
            logp = policy.distribution(ep["obs"][t : t + 1]).log_prob(ep["actions"][t : t + 1])[0]
            out.append(torch.cat([g.flatten() for g in torch.autograd.grad(logp, params)]))
        return out

    grads = [step_grads(ep) for ep in episodes]
    M = len(episodes)
    if config.baseline == "optimal":
        S = torch.stack([sum(g) for g in grads])
        W = torch.stack(
            [sum(g * p for g, p in zip(gs, ps, strict=True)) for gs, ps in zip(grads, psis, strict=True)]
        )
        denom = (S * S).sum(0)
        b = torch.where(denom > 0, (W * S).sum(0) / denom, torch.zeros_like(denom))
        return (W - b * S).mean(0)
    total = torch.zeros_like(grads[0][0])
    for i, ep in enumerate(episodes):
        for t in range(len(ep["rewards"])):
            if config.baseline == "none":
                b = 0.0
            elif config.baseline == "mean":
                b = float(np.mean(all_psi))
            elif config.baseline == "per_step":
                b = float(np.mean([ps[t] for ps in psis if len(ps) > t]))
            else:
                b = value(ep["obs"][t : t + 1])[0].item()
            total += grads[i][t] * (psis[i][t] - b)
    return total / M


@pytest.mark.parametrize(
    "returns, baseline, gamma",
    [
        ("total", "none", 0.99),
        ("reward_to_go", "none", 1.0),
        ("reward_to_go", "mean", 0.9),
        ("total", "mean", 0.99),
        ("reward_to_go", "per_step", 0.99),
        ("total", "optimal", 0.99),
        ("reward_to_go", "optimal", 0.95),
        ("reward_to_go", "value", 0.99),
    ],
)
def test_update_equals_the_plain_estimator(monkeypatch, returns, baseline, gamma):
    seed_everything(0)
    # Short time limit so both terminations and truncations (with a value bootstrap) occur.
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=15), num_envs=3)
    config = Config(
        num_envs=3,
        episodes_per_update=6,
        returns=returns,
        baseline=baseline,
        gamma=gamma,
        optimizer="sgd",
        lr=1.0,
        value_iters=0,
        hidden_sizes=(8,),
    )
    algo = Reinforce(config, envs, seed=0, device=torch.device("cpu"), total_steps=10_000)
    if algo.value is not None:  # a non-trivial value function
        with torch.no_grad():
            for p in algo.value.parameters():
                p.add_(0.3 * torch.randn_like(p))
    rollout = collect_episodes(envs, algo.policy, 2, seed=123)
    assert rollout.truncated.any() and rollout.terminated.any()
    monkeypatch.setattr(reinforce_module, "collect_episodes", lambda *args, **kw: rollout)
    expected = reference_gradient(algo.policy, algo.value, split_episodes(rollout), config)
    before = torch.cat([p.detach().flatten() for p in algo.policy.parameters()])
    algo.iteration(0)
    after = torch.cat([p.detach().flatten() for p in algo.policy.parameters()])
    # SGD with lr 1 on the loss −ĝ·θ moves θ by exactly ĝ.
    torch.testing.assert_close(after - before, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy", ["diag_gaussian", "tanh_gaussian", "discretised"])
def test_continuous_actions_train_without_nan(tmp_path, policy):
    summary = pgrad.train(
        "reinforce",
        "Pendulum-v1",
        total_steps=1600,
        run_dir=str(tmp_path),
        policy=policy,
        num_envs=2,
        episodes_per_update=2,
        eval_episodes=2,
        **QUIET,
    )
    assert np.isfinite(summary["eval"]["mean_return"])
    agent = pgrad.load(tmp_path)
    for p in agent.policy.parameters():
        assert torch.isfinite(p).all()


def test_learns_cartpole_quickly(tmp_path):
    """A sign or scaling error in the estimator shows here within seconds (random policy: ~22)."""
    summary = pgrad.train(
        "reinforce",
        "CartPole-v1",
        total_steps=30_000,
        seed=0,
        eval_episodes=10,
        eval_every=0,
        run_dir=str(tmp_path),
        **QUIET,
    )
    assert summary["eval"]["mean_return"] > 150, summary["eval"]


def test_optimal_baseline_with_entropy_bonus_updates():
    """The optimal baseline's per-episode Jacobian used to free the graph the entropy bonus needs."""
    envs = GymVecEnv("CartPole-v1", 2)
    config = Config(num_envs=2, episodes_per_update=2, baseline="optimal", ent_coef=0.1)
    algo = Reinforce(config, envs, 0, torch.device("cpu"), 1000)
    before = [p.detach().clone() for p in algo.policy.parameters()]
    metrics = algo.iteration(0).metrics
    assert float(metrics["stats/entropy"]) > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, algo.policy.parameters(), strict=True))
