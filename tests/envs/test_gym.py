import itertools
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.envs.gym import GymVecEnv
from pgrad.envs.spaces import space_from_dict, space_to_dict
from pgrad.envs.toy import CountingEnv, FaultyEnv
from pgrad.errors import EnvError


def counting(terminate_at=4, terminate_prob=0.5, limit=6):
    return lambda: gym.wrappers.TimeLimit(CountingEnv(terminate_at, terminate_prob), limit)


def run(envs, steps, seed=0):
    obs = envs.reset(seed=seed)
    rows = []
    for _ in range(steps):
        step, _ = envs.step(torch.zeros(envs.num_envs, dtype=torch.long))
        rows.append((obs, step))
        obs = step.next_obs
    return rows


def test_no_transition_pairs_a_final_observation_with_a_reset_observation():
    envs = GymVecEnv(counting(), num_envs=3)
    rows = run(envs, 60)
    saw_term = saw_trunc = False
    for (obs, step), (next_row_obs, _) in itertools.pairwise(rows):
        # Every transition stays inside one episode and advances its step counter by one.
        torch.testing.assert_close(step.final_obs[:, 0], obs[:, 0])
        torch.testing.assert_close(step.final_obs[:, 1], obs[:, 1] + 1)
        done = step.terminated | step.truncated
        # Where an episode ended, the obs acted on next is a reset observation of the next episode.
        assert torch.all(next_row_obs[done, 0] == obs[done, 0] + 1)
        assert torch.all(next_row_obs[done, 1] == 0)
        assert torch.equal(next_row_obs[~done], step.final_obs[~done])
        saw_term |= bool(step.terminated.any())
        saw_trunc |= bool(step.truncated.any())
    assert saw_term and saw_trunc


def test_terminated_and_truncated_stay_apart():
    envs = GymVecEnv(counting(terminate_at=4, terminate_prob=0.5, limit=6), num_envs=4)
    for _obs, step in run(envs, 80):
        assert not torch.any(step.terminated & step.truncated)
        assert torch.all(step.final_obs[step.terminated, 1] == 4)
        assert torch.all(step.final_obs[step.truncated, 1] == 6)


def test_episode_stats_match_the_rewards():
    envs = GymVecEnv(counting(terminate_at=3, terminate_prob=1.0), num_envs=2)
    envs.reset(seed=1)
    returns = []
    for _ in range(9):
        _, stats = envs.step(torch.zeros(2, dtype=torch.long))
        returns.extend(stats.returns.tolist())
        assert np.all(stats.lengths == 3)
    assert returns == [6.0] * 6
    assert envs.global_step == 18


def test_seeded_reset_is_reproducible_and_seed_dependent():
    def first_obs(seed):
        envs = GymVecEnv("CartPole-v1", num_envs=3)
        return envs.reset(seed=seed)

    assert torch.equal(first_obs(3), first_obs(3))
    assert not torch.equal(first_obs(3), first_obs(4))
    obs = first_obs(3)
    assert not torch.equal(obs[0], obs[1])  # sub-envs get different derived seeds


@pytest.mark.parametrize("sub_env", [0, 2])
def test_nan_reward_names_env_sub_env_step_and_field(sub_env):
    made = []

    def factory():
        made.append(1)
        # construction 0 is the probe VecEnv makes to read the spaces
        return (
            FaultyEnv("nan_reward", at_step=3)
            if len(made) - 2 == sub_env
            else FaultyEnv("nan_reward", at_step=99)
        )

    envs = GymVecEnv(factory, num_envs=3)
    envs.reset(seed=0)
    envs.step(torch.zeros(3, dtype=torch.long))
    envs.step(torch.zeros(3, dtype=torch.long))
    with pytest.raises(EnvError) as info:
        envs.step(torch.zeros(3, dtype=torch.long))
    message = str(info.value)
    assert "\n" not in message
    assert f"sub-env {sub_env}" in message and "global step 9" in message and "reward" in message
    assert "factory" in message  # the env's name


def test_inf_observation_is_refused():
    envs = GymVecEnv(lambda: FaultyEnv("inf_obs", at_step=2), num_envs=2)
    envs.reset(seed=0)
    envs.step(torch.zeros(2, dtype=torch.long))
    with pytest.raises(EnvError, match="sub-env 0, global step 4: observation is not finite"):
        envs.step(torch.zeros(2, dtype=torch.long))


def test_four_tuple_step_is_refused_clearly():
    gym.register("pgrad-test/FourTuple-v0", entry_point=lambda: FaultyEnv("four_tuple", at_step=1))
    for env in ("pgrad-test/FourTuple-v0", lambda: FaultyEnv("four_tuple", at_step=1)):
        envs = GymVecEnv(env, num_envs=2)
        envs.reset(seed=0)
        with pytest.raises(
            EnvError, match=r"sub-env 0, global step 2: step\(\) must return the 5-tuple.*4-tuple"
        ):
            envs.step(torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize(
    "obs_space, action_space, bad",
    [
        (gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), gym.spaces.Discrete(2), "observation space Dict"),
        (gym.spaces.Box(-1, 1, (2,)), gym.spaces.MultiBinary(3), "action space MultiBinary"),
        (gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (2, 2)), "Box actions must be 1-D"),
    ],
)
def test_unsupported_spaces_are_refused_before_the_first_step(obs_space, action_space, bad):
    class Env(gym.Env):
        stepped = False

        def __init__(self):
            self.observation_space, self.action_space = obs_space, action_space

        def reset(self, *, seed=None, options=None):
            raise AssertionError("reset must not be reached")

        def step(self, action):
            raise AssertionError("step must not be reached")

    with pytest.raises(EnvError, match=f"{bad}.*reinforce|{bad}") as info:
        GymVecEnv(Env, num_envs=2, algorithm="reinforce")
    assert "reinforce" in str(info.value)


def test_unknown_env_id_is_one_line():
    with pytest.raises(EnvError) as info:
        GymVecEnv("NoSuchEnv-v7")
    assert "NoSuchEnv-v7" in str(info.value) and "\n" not in str(info.value)


def test_module_colon_env_id_imports_the_module(tmp_path, monkeypatch):
    (tmp_path / "my_pgrad_envs.py").write_text(
        textwrap.dedent(
            """
            import gymnasium as gym
            from pgrad.envs.toy import CountingEnv
            gym.register("MyCounting-v0", entry_point=CountingEnv, max_episode_steps=7)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    envs = GymVecEnv("my_pgrad_envs:MyCounting-v0", num_envs=2)
    assert envs.reset(seed=0).shape == (2, 2)
    sys.modules.pop("my_pgrad_envs", None)
    with pytest.raises(EnvError, match="cannot import module 'no_such_module'"):
        GymVecEnv("no_such_module:Foo-v0")


def test_discrete_observations_become_one_hot():
    envs = GymVecEnv("FrozenLake-v1", num_envs=2)
    obs = envs.reset(seed=0)
    assert obs.shape == (2, 16)
    assert torch.equal(obs.sum(1), torch.ones(2))


def test_space_description_round_trip():
    for space in (gym.spaces.Discrete(5, start=-2), gym.spaces.Box(np.array([-1, 0]), np.array([1, np.inf]))):
        assert space_from_dict(space_to_dict(space)) == space
