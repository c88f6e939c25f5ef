"""Tabular MDP models and the env sampling them: FrozenLake's table, random MDPs, validation, and sampling
statistics against the real Gymnasium FrozenLake (counts with a loose statistical margin, fixed seeds)."""

from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from pgrad.envs.tabular import TabularEnv, TabularMDP, from_toy_text, frozen_lake, random_mdp, tabular_vec_env
from pgrad.errors import ConfigError, EnvError
from pgrad.lab.exact import tabular_finite_horizon

F64 = torch.float64


@pytest.mark.parametrize("map_name", ["4x4", "8x8"])
@pytest.mark.parametrize("is_slippery", [True, False])
def test_frozen_lake_model_is_gymnasiums_table(map_name, is_slippery):
    mdp = frozen_lake(map_name, is_slippery=is_slippery, gamma=0.97)
    env = gym.make("FrozenLake-v1", map_name=map_name, is_slippery=is_slippery).unwrapped
    desc = env.desc.ravel()
    S = len(desc)
    assert (mdp.num_states, mdp.num_actions) == (S, 4) and mdp.gamma == 0.97 and mdp.P.dtype == F64
    holes_and_goal = np.isin(desc, [b"H", b"G"])
    np.testing.assert_array_equal(mdp.terminal.numpy(), holes_and_goal)
    np.testing.assert_array_equal(mdp.rho.numpy(), (desc == b"S").astype(float))
    for s in np.flatnonzero(~holes_and_goal):
        for a in range(4):
            probs, rewards = np.zeros(S), np.zeros(S)
            for p, nxt, r, _ in env.P[s][a]:
                probs[nxt] += p
                rewards[nxt] += p * r
            np.testing.assert_allclose(mdp.P[s, a].numpy(), probs, rtol=0, atol=1e-15)
            assert mdp.R[s, a].item() == pytest.approx(rewards.sum(), abs=1e-15)
    goal = int(np.flatnonzero(desc == b"G")[0])
    # reward only on entering the goal; holes and goal absorb with zero reward
    possible = mdp.P > 0
    into_goal = torch.zeros_like(possible)
    into_goal[~mdp.terminal, :, goal] = True
    assert (mdp.transition_rewards[possible & into_goal] == 1).all()
    assert (mdp.transition_rewards[possible & ~into_goal] == 0).all()
    for s in np.flatnonzero(holes_and_goal):
        assert (mdp.P[s, :, s] == 1).all() and (mdp.R[s] == 0).all()


def test_random_mdp_is_seeded_and_valid():
    a = random_mdp(6, 3, gamma=0.8, seed=4, branching=2)
    b = random_mdp(6, 3, gamma=0.8, seed=4, branching=2)
    c = random_mdp(6, 3, gamma=0.8, seed=5, branching=2)
    torch.testing.assert_close(a.P, b.P, rtol=0, atol=0)
    torch.testing.assert_close(a.R, b.R, rtol=0, atol=0)
    assert not torch.equal(a.P, c.P)
    assert ((a.P > 0).sum(-1) <= 2).all() and torch.allclose(a.P.sum(-1), torch.ones(6, 3, dtype=F64))
    assert a.terminal is None and a.rho.sum().item() == pytest.approx(1.0)
    assert (a.R >= 0).all() and (a.R < 1).all()


def test_other_toy_text_envs():
    cliff = from_toy_text("CliffWalking-v1", gamma=0.9)
    assert cliff.terminal.nonzero().squeeze(-1).tolist() == [47] and cliff.R.min().item() == -100
    with pytest.raises(ConfigError, match="both with and without termination"):
        from_toy_text("Taxi-v4", gamma=0.9)


def test_model_validation():
    P = torch.full((2, 1, 2), 0.5, dtype=F64)
    R, rho = torch.zeros(2, 1, dtype=F64), torch.tensor([1.0, 0.0], dtype=F64)
    TabularMDP(P, R, rho, 0.9)  # valid
    with pytest.raises(ConfigError, match="sum to 1"):
        TabularMDP(P * 0.9, R, rho, 0.9)
    with pytest.raises(ConfigError, match="rho"):
        TabularMDP(P, R, torch.tensor([0.5, 0.6], dtype=F64), 0.9)
    with pytest.raises(ConfigError, match="R must have shape"):
        TabularMDP(P, torch.zeros(2, 2, dtype=F64), rho, 0.9)
    with pytest.raises(ConfigError, match="gamma"):
        TabularMDP(P, R, rho, 1.5)
    with pytest.raises(ConfigError, match="absorbing"):
        TabularMDP(P, R, rho, 0.9, terminal=torch.tensor([False, True]))
    with pytest.raises(ConfigError, match="transition_rewards"):
        TabularMDP(P, R, rho, 0.9, transition_rewards=torch.ones(2, 1, 2, dtype=F64))
    with pytest.raises(ConfigError, match="terminal"):
        absorbing = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]], dtype=F64)
        TabularEnv(
            TabularMDP(absorbing, R, torch.tensor([0.5, 0.5]), 0.9, terminal=torch.tensor([False, True]))
        )


@pytest.mark.parametrize("max_steps", [None, 7])
def test_passes_gymnasium_env_checker(max_steps):
    check_env(TabularEnv(frozen_lake(), max_episode_steps=max_steps), skip_render_check=True)
    check_env(TabularEnv(random_mdp(5, 2, seed=0), max_episode_steps=max_steps), skip_render_check=True)


def outcome_counts(env, s, a, n, real):
    counts = Counter()
    for _ in range(n):
        if real:
            env.s = s  # FrozenLakeEnv's state is a public attribute
        else:
            env.reset(options={"state": s})
        nxt, reward, terminated, truncated, _ = env.step(a)
        assert not truncated
        counts[(int(nxt), float(reward), bool(terminated))] += 1
    return counts


@pytest.mark.parametrize("is_slippery", [True, False])
def test_transition_statistics_match_the_real_frozen_lake(is_slippery):
    mdp = frozen_lake(is_slippery=is_slippery)
    real = gym.make("FrozenLake-v1", is_slippery=is_slippery).unwrapped
    real.reset(seed=0)
    model = TabularEnv(mdp)
    model.reset(seed=1)
    n = 300
    for s in np.flatnonzero(~mdp.terminal.numpy()):
        for a in range(4):
            got = {
                kind: outcome_counts(env, int(s), a, n, kind == "real")
                for kind, env in (("real", real), ("model", model))
            }
            for key in set(got["real"]) | set(got["model"]):
                nxt, reward, terminated = key
                p = mdp.P[s, a, nxt].item()
                assert p > 0, f"({s}, {a}) → {nxt} sampled but impossible in the model"
                assert (
                    reward == mdp.transition_rewards[s, a, nxt].item()
                    and terminated == mdp.terminal[nxt].item()
                )
                margin = 5 * np.sqrt(p * (1 - p) / n) + 1e-12
                f_real, f_model = got["real"][key] / n, got["model"][key] / n
                assert abs(f_real - p) <= margin and abs(f_model - p) <= margin, (
                    s,
                    a,
                    key,
                    f_real,
                    f_model,
                    p,
                )
                assert abs(f_real - f_model) <= np.sqrt(2) * margin


def rollout_returns(env, pi, gamma, episodes, seed):
    """Discounted returns of `episodes` episodes of the tabular policy pi [S, A] (numpy)."""
    rng = np.random.default_rng(seed)
    returns, lengths = [], []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        total, discount, steps, done = 0.0, 1.0, 0, False
        while not done:
            action = int(rng.choice(pi.shape[1], p=pi[obs]))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += discount * reward
            discount *= gamma
            steps += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(steps)
        obs, _ = env.reset()
    return np.array(returns), np.array(lengths)


def test_episodic_returns_equal_the_exact_finite_horizon_value():
    # The discounting convention: with terminal states absorbing at zero reward, the horizon-100 model value
    # is the expected discounted return of FrozenLake-v1 with its own 100-step time limit.
    gamma, H = 0.95, 100
    mdp = frozen_lake(gamma=gamma)
    V = torch.zeros(16, dtype=F64)  # a good policy (greedy for the H-step problem, softened)
    for _ in range(H):
        Q = mdp.R + gamma * torch.einsum("sat,t->sa", mdp.P, V)
        V = Q.max(1).values
    theta = 4.0 * torch.nn.functional.one_hot(Q.argmax(1), 4).to(F64)
    exact_J = tabular_finite_horizon(mdp, theta, H).J.item()
    pi = torch.softmax(theta, -1).numpy()
    for env, seed in ((gym.make("FrozenLake-v1"), 3), (TabularEnv(mdp, max_episode_steps=H), 4)):
        returns, lengths = rollout_returns(env, pi, gamma, episodes=1200, seed=seed)
        se = returns.std() / np.sqrt(len(returns))
        assert abs(returns.mean() - exact_J) < 4 * se, (env, returns.mean(), exact_J, se)
        assert lengths.max() <= H
    assert exact_J > 0.1 and se < 0.01  # a policy that often succeeds: the check has power


def test_truncation_and_continuing_episodes():
    env = TabularEnv(random_mdp(4, 2, seed=1), max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]
    with pytest.raises(EnvError, match="after the episode ended"):
        env.step(0)
    endless = TabularEnv(random_mdp(4, 2, seed=1))
    endless.reset(seed=0)
    assert not any(any(endless.step(1)[2:4]) for _ in range(300))
    with pytest.raises(EnvError, match="outside"):
        endless.reset(options={"state": 9})


def test_vec_env_over_the_model():
    mdp = frozen_lake(is_slippery=True, gamma=0.99)
    envs = tabular_vec_env(mdp, num_envs=4, max_episode_steps=20, dtype=F64)
    assert envs.label == mdp.name and envs.obs_dim == 16
    obs = envs.reset(seed=0)
    torch.testing.assert_close(obs, torch.nn.functional.one_hot(torch.zeros(4, dtype=torch.long), 16).to(F64))
    ended = 0
    for _ in range(60):
        result, stats = envs.step(torch.randint(0, 4, (4,)))
        assert result.final_obs.sum(1).eq(1).all() and result.reward.dtype == F64
        ended += len(stats.returns)
        done = result.terminated | result.truncated
        final_states = result.final_obs.argmax(1)
        assert mdp.terminal[final_states[result.terminated]].all()  # terminated ⇔ entered a hole or the goal
        assert not mdp.terminal[final_states[~done]].any()
    assert ended > 0
    envs.close()
