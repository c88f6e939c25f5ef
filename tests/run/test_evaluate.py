"""Evaluation is really deterministic: the same seed gives the same returns, deterministic=True plays the
mode, each sub-env plays its share, training randomness is untouched; `Agent.act` keeps the batch-ness of its
input."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from pgrad.envs.toy import CountingEnv
from pgrad.errors import EnvError
from pgrad.policies.networks import Policy
from pgrad.run.evaluate import Agent, evaluate_policy


class ActionReward(gym.Env):
    """Reward = the action (0 or 1); observation always 0; episodes of `length` steps (by its time limit)."""

    observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(1, dtype=np.float32), float(action), False, False, {}


def action_reward(length=5):
    return lambda: gym.wrappers.TimeLimit(ActionReward(), length)


def biased_policy(p_one, obs_dim=1):
    """π(1) = p_one whatever the observation."""
    policy = Policy(obs_dim, spaces.Discrete(2), hidden_sizes=())
    with torch.no_grad():
        policy.head.logits.weight.zero_()
        policy.head.logits.bias.copy_(torch.tensor([0.0, math.log(p_one / (1 - p_one))]))
    return policy


@pytest.mark.parametrize(("p_one", "expected"), [(0.6, 5.0), (0.4, 0.0)])
def test_deterministic_evaluation_plays_the_mode(p_one, expected):
    result = evaluate_policy(biased_policy(p_one), action_reward(5), episodes=6, deterministic=True, seed=0)
    assert result["returns"] == [expected] * 6
    assert result["mean_return"] == expected and result["std_return"] == 0.0
    stochastic = evaluate_policy(biased_policy(p_one), action_reward(5), episodes=6, deterministic=False)
    assert len(set(stochastic["returns"])) > 1  # samples: 6 episodes of 5 draws are not all alike


def test_same_seed_same_returns_and_training_randomness_is_untouched():
    policy = biased_policy(0.5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = evaluate_policy(policy, action_reward(7), episodes=5, deterministic=False, seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # a forked RNG: training draws the same numbers
    torch.manual_seed(999)  # whatever the global RNG holds, the seed decides the evaluation
    b = evaluate_policy(policy, action_reward(7), episodes=5, deterministic=False, seed=4)
    c = evaluate_policy(policy, action_reward(7), episodes=5, deterministic=False, seed=5)
    assert a == b
    assert a["returns"] != c["returns"]


def test_summary_statistics_and_episode_callback():
    seen = []
    result = evaluate_policy(
        biased_policy(0.5),
        action_reward(9),
        episodes=7,
        num_envs=3,
        deterministic=False,
        on_episode=seen.append,
    )
    returns = np.array(result["returns"])
    assert result["episodes"] == 7 and len(returns) == 7
    assert result["mean_return"] == pytest.approx(returns.mean())
    assert result["std_return"] == pytest.approx(returns.std())  # population std
    assert result["mean_length"] == 9.0 and result["cut_episodes"] == 0
    assert seen == list(range(1, 8))


def test_each_sub_env_plays_its_share_of_the_episodes():
    # Sub-env episodes are 1 step (terminated, prob 0.5) or 6 (cut by the time limit) long: counting the
    # first episodes to finish would favour the short ones.
    def make():
        return gym.wrappers.TimeLimit(CountingEnv(terminate_at=1, terminate_prob=0.5), 6)

    lengths = []
    for seed in range(4):
        result = evaluate_policy(biased_policy(0.5, 2), make, episodes=4, num_envs=4, seed=seed)
        assert result["episodes"] == 4
        lengths.append(result["mean_length"])
    # each sub-env's first episode: a fair coin between 1 and 6 steps, so long ones do show up
    assert max(lengths) > 1.0


def test_episodes_are_split_over_sub_envs_as_evenly_as_possible():
    ends = []

    def make():
        env = CountingEnv(terminate_at=None)
        ends.append(env)
        return gym.wrappers.TimeLimit(env, 3)

    result = evaluate_policy(biased_policy(0.5, 2), make, episodes=5, num_envs=2, seed=0)
    assert result["episodes"] == 5
    episodes_started = sorted(env.episode for env in ends if env.episode >= 0)  # the sub-envs that ran
    # quotas 3 and 2: sub-env 0 plays 3 episodes and sub-env 1 plays 3 too (it runs on in lock-step while
    # sub-env 0 finishes its third): both resets come after 3 episodes of 3 steps
    assert episodes_started == [3, 3]
    assert evaluate_policy(biased_policy(0.5, 2), make, episodes=3)["episodes"] == 3  # num_envs = episodes


@pytest.mark.parametrize(("episodes", "sub_envs", "resets"), [(20, 20, 1), (40, 32, 2)])
def test_default_evaluation_runs_one_sub_env_per_episode_up_to_the_cap(episodes, sub_envs, resets):
    # 20 episodes on fewer sub-envs would step some sub-envs through two episodes while the others wait.
    made = []

    def make():
        env = CountingEnv(terminate_at=None)
        made.append(env)
        return gym.wrappers.TimeLimit(env, 3)

    assert evaluate_policy(biased_policy(0.5, 2), make, episodes=episodes, seed=0)["episodes"] == episodes
    ran = [env for env in made if env.episode >= 0]
    assert len(ran) == sub_envs and max(env.episode for env in ran) == resets


def test_an_env_without_a_time_limit_is_cut_and_says_so():
    result = evaluate_policy(
        biased_policy(0.5, 2), lambda: CountingEnv(terminate_at=None), 3, max_episode_steps=6
    )
    assert result["cut_episodes"] == 3 and result["mean_length"] == 6.0
    assert result["returns"] == [21.0, 21.0, 21.0]  # 1 + 2 + … + 6
    # an episode that ends before the cap is not a cut one
    result = evaluate_policy(
        biased_policy(0.5, 2), lambda: CountingEnv(terminate_at=4), 2, max_episode_steps=6
    )
    assert result["cut_episodes"] == 0 and result["returns"] == [10.0, 10.0]
    result = evaluate_policy(
        biased_policy(0.5, 2), lambda: CountingEnv(terminate_at=6), 2, max_episode_steps=6
    )
    assert result["cut_episodes"] == 2  # length == cap counts as cut (the cap ended it, as far as we know)


def test_an_env_id_without_a_time_limit_gets_one():
    gym.register("pgrad-test/Counting-NoLimit-v0", entry_point=lambda: CountingEnv(terminate_at=None))
    try:
        result = evaluate_policy(
            biased_policy(0.5, 2), "pgrad-test/Counting-NoLimit-v0", 2, max_episode_steps=4
        )
    finally:
        del gym.registry["pgrad-test/Counting-NoLimit-v0"]
    assert result["cut_episodes"] == 2 and result["mean_length"] == 4.0


def test_evaluation_needs_an_episode_and_restores_the_training_mode():
    policy = biased_policy(0.5)
    with pytest.raises(EnvError, match="at least one episode, got 0"):
        evaluate_policy(policy, action_reward(), episodes=0)
    policy.train()
    evaluate_policy(policy, action_reward(), episodes=1)
    assert policy.training
    policy.eval()
    evaluate_policy(policy, action_reward(), episodes=1)
    assert not policy.training


def test_agent_act_keeps_batch_ness_and_type():
    policy = biased_policy(0.6)
    agent = Agent(policy, ActionReward.observation_space, ActionReward.action_space, {"algorithm": "x"})
    assert not agent.policy.training  # an agent acts in eval mode
    single = agent.act(np.zeros(1, dtype=np.float32))
    assert isinstance(single, np.ndarray) and single.shape == () and int(single) == 1  # the mode
    batch = agent.act(np.zeros((4, 1), dtype=np.float32))
    assert batch.shape == (4,) and batch.tolist() == [1, 1, 1, 1]
    as_tensor = agent.act(torch.zeros(3, 1))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.tolist() == [1, 1, 1]
    torch.manual_seed(0)
    samples = agent.act(np.zeros((200, 1), dtype=np.float32), deterministic=False)
    assert 0 < samples.sum() < 200  # sampled, not the mode
