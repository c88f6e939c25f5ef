"""Hostile envs: an env that raises, or returns a malformed observation, reward, flag or info, gives one line
naming the env, the sub-env, the global step and what was wrong; never a traceback nor a silent wrong number,
no update applied, the last checkpoint intact."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from hostile_module import RESET_FAULTS, STEP_FAULTS, Hostile  # tests/envs is on sys.path under pytest

import pgrad
import pgrad.api
from pgrad.envs.gym import GymVecEnv
from pgrad.errors import EnvError
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint
from pgrad.run.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
BOX = "observation must be a numeric array of shape (4,), got"
# What each fault is reported as, after "env 'Hostile', sub-env <i>, global step <g>: ".
STEP_EXPECTED = {
    "step_raises": "step() raised RuntimeError: step exploded",
    "step_raises_keyerror": "step() raised KeyError: 'missing'",
    "obs_shape": f"{BOX} ndarray of shape (3,) and dtype float32",
    "obs_shape_2d": f"{BOX} ndarray of shape (1, 4) and dtype float32",
    "obs_str": f"{BOX} ndarray of shape (4,) and dtype <U1",
    "obs_object": f"{BOX} ndarray of shape (4,) and dtype object",
    "obs_none": f"{BOX} None",
    "obs_discrete_range": "observation 7 is outside Discrete(5)",
    "obs_discrete_float": "observation must be an integer in Discrete(5), got float 1.5",
    "reward_none": "reward must be a real number, got None",
    "reward_str": "reward must be a real number, got str '1'",
    "reward_array": "reward must be a real number, got ndarray of shape (2,) and dtype float64",
    "reward_complex": "reward must be a real number, got complex (1+2j)",
    "terminated_str": "terminated must be a bool, got str 'False'",
    "terminated_two": "terminated must be a bool, got int 2",
    "truncated_none": "truncated must be a bool, got None",
    "info_list": "info from step() must be a dict, got list []",
    "four_tuple": "step() must return the 5-tuple (obs, reward, terminated, truncated, info) "
    "of Gymnasium >= 0.26, got a 4-tuple",
}
RESET_EXPECTED = {
    "reset_raises": "reset() raised ValueError: reset exploded",
    "reset_obs_shape": "observation after reset must be a numeric array of shape (4,), "
    "got ndarray of shape (5,) and dtype float32",
    "reset_not_tuple": "reset() must return the 2-tuple (obs, info), "
    "got ndarray of shape (4,) and dtype float32",
}
CAUSES = {"step_raises": RuntimeError, "step_raises_keyerror": KeyError, "reset_raises": ValueError}
assert set(STEP_EXPECTED) == set(STEP_FAULTS) and set(RESET_EXPECTED) == set(RESET_FAULTS)


def hostile(fault: str, at: int, sub_env: int, **kwargs: Any) -> Callable[[], Hostile]:
    """A factory of `Hostile` envs where only sub-env `sub_env` has the fault (labelled 'Hostile')."""
    made: list[None] = []

    def factory() -> Hostile:
        made.append(None)
        # Construction 0 is the probe GymVecEnv makes to read the spaces; then sub-envs 0, 1, ... in order.
        return Hostile(fault if len(made) - 2 == sub_env else None, at, **kwargs)

    factory.__qualname__ = "Hostile"
    return factory


def check_message(exc: EnvError, sub_env: int, step: int, expected: str, fault: str) -> None:
    message = str(exc)
    assert message == f"env 'Hostile', sub-env {sub_env}, global step {step}: {expected}"
    assert "\n" not in message
    if fault in CAUSES:  # the env's own exception stays reachable for a full traceback
        assert isinstance(exc.__cause__, CAUSES[fault])


def step(envs: GymVecEnv) -> None:
    envs.step(torch.zeros(envs.num_envs, dtype=torch.long))


# -- GymVecEnv directly -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", list(STEP_FAULTS))
def test_step_fault_is_one_line_naming_sub_env_step_and_field(fault):
    discrete = fault.startswith("obs_discrete")
    with GymVecEnv(hostile(fault, at=3, sub_env=1, discrete=discrete), num_envs=3) as envs:
        envs.reset(seed=0)
        step(envs)
        step(envs)
        with pytest.raises(EnvError) as info:
            step(envs)
    check_message(info.value, 1, 9, STEP_EXPECTED[fault], fault)


@pytest.mark.parametrize("at, global_step", [(1, 0), (2, 6)])  # the first reset; an autoreset in step 2
@pytest.mark.parametrize("fault", list(RESET_FAULTS))
def test_reset_fault_is_one_line_naming_sub_env_step_and_field(fault, at, global_step):
    envs = GymVecEnv(hostile(fault, at=at, sub_env=2, episode_length=2), num_envs=3)
    with envs, pytest.raises(EnvError) as info:
        envs.reset(seed=0)
        step(envs)
        step(envs)
    check_message(info.value, 2, global_step, RESET_EXPECTED[fault], fault)


class Lenient(gym.Env):
    """Returns values that are not the canonical types but are unambiguous: accepted and normalised."""

    observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return [0.5, 1], {}

    def step(self, action):
        # A list observation, a size-1 reward array, numpy / 0-1 int flags.
        return [0.25, 2], np.array([2.5]), 1, np.bool_(False), {}


def test_unambiguous_values_are_accepted_exactly():
    with GymVecEnv(Lenient, num_envs=2) as envs:
        assert torch.equal(envs.reset(seed=0), torch.tensor([[0.5, 1.0]] * 2))
        result, stats = envs.step(torch.zeros(2, dtype=torch.long))
    assert torch.equal(result.final_obs, torch.tensor([[0.25, 2.0]] * 2))
    assert torch.equal(result.reward, torch.tensor([2.5, 2.5]))
    assert result.terminated.tolist() == [True, True] and result.truncated.tolist() == [False, False]
    assert stats.returns.tolist() == [2.5, 2.5]


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, [0, -2], [0, 1, 2], [0, 1.0]])
def test_bad_reset_seeds_are_refused_in_one_line(seed):
    with GymVecEnv("CartPole-v1", num_envs=2) as envs, pytest.raises(EnvError) as info:
        envs.reset(seed=seed)
    message = str(info.value)
    assert message.startswith("env 'CartPole-v1': reset seed must be a non-negative integer")
    assert "\n" not in message


def test_good_reset_seeds_are_accepted():
    with GymVecEnv("CartPole-v1", num_envs=2) as envs:
        assert torch.equal(envs.reset(seed=np.int64(3)), envs.reset(seed=3))
        assert torch.equal(envs.reset(seed=[4, 4])[0], envs.reset(seed=(4, 5))[0])


# -- through a training run -------------------------------------------------------------------------------
# Two sub-envs, one 5-step episode each per update: 10 env steps an iteration, a checkpoint every 10 steps.
# Sub-env 1 breaks in iteration 2, after the checkpoint at step 20: at its 13th step (global step 26) or
# at its 5th reset (the reset that starts iteration 2, global step 20).
TRAIN_CASES = [(fault, 13, 26) for fault in STEP_FAULTS] + [(fault, 5, 20) for fault in RESET_FAULTS]


@pytest.mark.filterwarnings("ignore:env 'Hostile' has no time limit")
@pytest.mark.parametrize("fault, at, global_step", TRAIN_CASES)
def test_fault_in_training_applies_no_update_and_keeps_the_checkpoint(
    tmp_path, monkeypatch, fault, at, global_step
):
    trainers: list[Trainer] = []

    class Recording(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.initial = {k: v.clone() for k, v in self.algo.policy.state_dict().items()}
            trainers.append(self)

    monkeypatch.setattr(pgrad.api, "Trainer", Recording)
    run_dir = tmp_path / "run"
    with pytest.raises(EnvError) as info:
        pgrad.train(
            "reinforce",
            env=hostile(fault, at=at, sub_env=1, discrete=fault.startswith("obs_discrete")),
            total_steps=100,
            run_dir=str(run_dir),
            checkpoint_every=10,
            eval_episodes=0,
            num_envs=2,
            episodes_per_update=2,
            hidden_sizes=[8],
            progress=False,
            tensorboard=False,
        )
    expected = {**STEP_EXPECTED, **RESET_EXPECTED}[fault]
    check_message(info.value, 1, global_step, expected, fault)
    # The last checkpoint is the one before the failing iteration, it loads, and it holds the parameters
    # the run ended with: the two clean iterations updated them, the failing one did not.
    _, checkpoint_step = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    assert checkpoint_step == 20
    saved = pgrad.load(run_dir).policy.state_dict()
    live = trainers[0].algo.policy.state_dict()
    assert saved.keys() == live.keys()
    assert all(torch.equal(saved[name], live[name]) for name in saved)
    assert not all(torch.equal(trainers[0].initial[name], live[name]) for name in saved)


# -- through the command line -----------------------------------------------------------------------------
def test_cli_prints_one_error_line_and_exits_2(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgrad.cli",
            "train",
            "reinforce",
            "--env",
            "tests.envs.hostile_module:HostileStep-v0",
            "--total-steps",
            "200",
            "--run-dir",
            str(tmp_path / "run"),
            "--checkpoint-every",
            "10",
            "--eval-episodes",
            "0",
            "--num-envs",
            "2",
            "--episodes-per-update",
            "2",
            "--no-progress",
            "--no-tensorboard",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        "pgrad: error: env 'tests.envs.hostile_module:HostileStep-v0', sub-env 0, global step 26: "
        "step() raised RuntimeError: step exploded\n"
    )
    assert pgrad.load(tmp_path / "run").policy is not None  # the checkpoint at step 20 loads
