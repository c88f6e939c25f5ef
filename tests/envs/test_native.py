import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.envs.make import make_env, resolve_backend
from pgrad.envs.native.cartpole import CartPoleVecEnv, cartpole_step
from pgrad.errors import EnvError
from pgrad.run.trainer import read_run_file


def test_dynamics_equal_gymnasiums_bit_for_bit():
    env = gym.make("CartPole-v1").unwrapped
    rng = np.random.default_rng(0)
    for _ in range(300):
        state, action = rng.uniform(-0.3, 0.3, 4), int(rng.integers(2))
        env.reset()
        env.state = state.copy()
        env.step(action)
        mine = cartpole_step(torch.tensor(state)[None], torch.tensor([action]))[0].numpy()
        np.testing.assert_array_equal(mine, env.state)


def test_same_step_autoreset_termination_and_truncation():
    envs = CartPoleVecEnv(3, max_episode_steps=20)
    obs = envs.reset(seed=0)
    saw_term = saw_trunc = False
    for _ in range(200):
        actions = torch.ones(3, dtype=torch.long)  # always push right: the pole falls within the time limit
        actions[2] = 0 if envs._steps[2] % 2 else 1  # alternate: sub-env 2 survives to the 20-step limit
        step, stats = envs.step(actions)
        done = step.terminated | step.truncated
        # The final observation continues the trajectory; the next observation is a fresh start state.
        expected = cartpole_step(obs.double(), actions).float()
        torch.testing.assert_close(step.final_obs, expected)
        assert torch.all(step.next_obs[done].abs() <= 0.05)
        assert torch.equal(step.next_obs[~done], step.final_obs[~done])
        assert not torch.any(step.terminated & step.truncated)
        assert np.all(stats.lengths[stats.returns > 0] == stats.returns[stats.returns > 0])
        saw_term |= bool(step.terminated.any())
        saw_trunc |= bool(step.truncated.any())
        obs = step.next_obs
    assert saw_term and saw_trunc
    assert envs.global_step == 600


def test_reset_seed_reproducible():
    a, b = CartPoleVecEnv(4), CartPoleVecEnv(4)
    assert torch.equal(a.reset(seed=3), b.reset(seed=3))
    assert not torch.equal(a.reset(seed=3), b.reset(seed=4))


def test_backend_selection_errors():
    with pytest.raises(EnvError, match="no native twin of env 'FrozenLake-v1'"):
        make_env("FrozenLake-v1", 2, backend="native")
    with pytest.raises(EnvError, match="unknown env backend"):
        make_env("CartPole-v1", 2, backend="jax")


def test_training_on_the_twin_evaluates_on_gymnasium(tmp_path):
    summary = pgrad.train(
        "ppo",
        "CartPole-v1",
        backend="native",
        total_steps=30_000,
        seed=0,
        num_envs=16,
        num_steps=64,
        run_dir=str(tmp_path),
        eval_episodes=10,
        progress=False,
        tensorboard=False,
    )
    assert summary["eval"]["mean_return"] > 150  # measured on gymnasium's CartPole-v1


@pytest.mark.parametrize(
    ("env", "num_envs", "env_kwargs", "expected"),
    [
        ("CartPole-v1", 1, None, "gymnasium"),
        ("CartPole-v1", 15, None, "gymnasium"),
        ("CartPole-v1", 16, None, "native"),
        ("Pendulum-v1", 64, None, "native"),
        ("Pendulum-v1", 64, {"g": 9.81}, "gymnasium"),  # env kwargs: only Gymnasium's env takes them
        ("FrozenLake-v1", 64, None, "gymnasium"),  # no twin
        (lambda: None, 64, None, "gymnasium"),  # a callable
    ],
)
def test_auto_backend_takes_the_twin_from_16_sub_envs(env, num_envs, env_kwargs, expected):
    assert resolve_backend(env, num_envs, "auto", env_kwargs) == expected
    assert resolve_backend(env, num_envs, "gymnasium", env_kwargs) == "gymnasium"


def test_the_chosen_backend_is_recorded_and_resumed(tmp_path):
    options = dict(total_steps=256, num_steps=16, eval_every=0, eval_episodes=1, progress=False)
    pgrad.train("ppo", "CartPole-v1", num_envs=16, run_dir=str(tmp_path / "a"), preset=False, **options)
    pgrad.train("ppo", "CartPole-v1", num_envs=4, run_dir=str(tmp_path / "b"), preset=False, **options)
    assert read_run_file(tmp_path / "a")["run"]["backend"] == "native"
    assert read_run_file(tmp_path / "b")["run"]["backend"] == "gymnasium"
    assert pgrad.resume(tmp_path / "a", total_steps=512, progress=False)["global_step"] >= 512
