"""The contextual bandit: registration, seeded prompts, the reward table and the exact expected reward."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from pgrad.envs.bandit import ENV_ID, ContextualBandit
from pgrad.envs.gym import GymVecEnv
from pgrad.errors import ConfigError


@pytest.mark.filterwarnings("ignore:.*Box observation space (min|max)imum value is:UserWarning")
@pytest.mark.parametrize("features", ["one_hot", "random"])
def test_passes_gymnasium_env_checker(features):
    check_env(ContextualBandit(features=features), skip_render_check=True)


def test_registered_and_one_step_episodes():
    env = gym.make(ENV_ID, num_contexts=5, num_actions=3)
    obs, info = env.reset(seed=1)
    assert obs.shape == (5,) and obs.sum() == 1.0 and obs[info["context"]] == 1.0
    final, reward, terminated, truncated, _ = env.step(2)
    assert terminated and not truncated and reward in (0.0, 1.0)
    np.testing.assert_array_equal(final, obs)


def test_the_seed_picks_the_context():
    env = ContextualBandit(num_contexts=6)
    contexts = [env.reset(seed=s)[1]["context"] for s in range(200)]
    assert [env.reset(seed=s)[1]["context"] for s in range(200)] == contexts
    assert set(contexts) == set(range(6))  # every prompt occurs
    # the vector env hands a group of sub-envs with equal seeds the same prompt
    envs = GymVecEnv(ENV_ID, num_envs=6)
    obs = envs.reset(seed=[11, 11, 11, 12, 12, 12]).numpy()
    assert (obs[:3] == obs[0]).all() and (obs[3:] == obs[3]).all()


def test_rewards_follow_the_table():
    deterministic = ContextualBandit(num_contexts=3, num_actions=4, reward="deterministic", table_seed=5)
    bernoulli = ContextualBandit(num_contexts=3, num_actions=4, reward="bernoulli", table_seed=5)
    table = deterministic.reward_table
    np.testing.assert_array_equal(table, bernoulli.reward_table)  # the table depends on table_seed only
    assert not np.array_equal(
        table, ContextualBandit(num_contexts=3, num_actions=4, table_seed=6).reward_table
    )
    assert table.shape == (3, 4) and (table >= 0).all() and (table <= 1).all()
    for seed in range(12):
        _, info = deterministic.reset(seed=seed)
        action = seed % 4
        assert deterministic.step(action)[1] == table[info["context"], action]
    draws = {}
    for seed in range(4000):
        _, info = bernoulli.reset(seed=seed)
        draws.setdefault(info["context"], []).append(bernoulli.step(1)[1])
    for c, rewards in draws.items():
        assert np.mean(rewards) == pytest.approx(table[c, 1], abs=4 / np.sqrt(len(rewards)))


def test_random_features_are_fixed_vectors():
    env = ContextualBandit(num_contexts=4, features="random", feature_dim=3, table_seed=2)
    assert env.contexts.shape == (4, 3) and env.observation_space.shape == (3,)
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, env.contexts[info["context"]])
    np.testing.assert_array_equal(
        env.contexts, ContextualBandit(4, features="random", feature_dim=3, table_seed=2).contexts
    )


def test_expected_reward_is_exact():
    env = ContextualBandit(num_contexts=3, num_actions=2, reward="deterministic", table_seed=0)
    p = env.reward_table
    uniform = np.full((3, 2), 0.5)
    assert env.expected_reward(uniform) == pytest.approx(p.mean())
    best = np.eye(2)[p.argmax(1)]
    assert env.expected_reward(best) == pytest.approx(env.optimal_reward)
    assert env.optimal_reward == pytest.approx(np.mean([max(row) for row in p]))
    probs = np.array([[0.2, 0.8], [1.0, 0.0], [0.6, 0.4]])
    plain = sum(sum(probs[c, a] * p[c, a] for a in range(2)) for c in range(3)) / 3
    assert env.expected_reward(probs) == pytest.approx(plain)
    # equals the average reward of many episodes under that policy (contexts uniform from the seeds)
    rng = np.random.default_rng(0)
    total = 0.0
    for seed in range(3000):
        _, info = env.reset(seed=seed)
        total += env.step(int(rng.random() < probs[info["context"], 1]))[1]
    assert total / 3000 == pytest.approx(plain, abs=0.03)
    with pytest.raises(ConfigError, match="shape"):
        env.expected_reward(np.full((2, 2), 0.5))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_actions": 1}, "num_actions"),
        ({"features": "pixels"}, "features"),
        ({"reward": "gaussian"}, "reward"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ContextualBandit(**kwargs)
