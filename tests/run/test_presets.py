"""Per-env presets: the options a run names its env with start from them; given options override them."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import pytest

import pgrad
from pgrad.algorithms import REGISTRY, get_algorithm
from pgrad.algorithms.presets import PRESETS, preset
from pgrad.cli import main

QUIET = dict(
    total_steps=256, eval_every=0, eval_episodes=1, checkpoint_every=0, progress=False, tensorboard=False
)


def run_file(path) -> dict:
    return json.loads((path / "run.json").read_text())


@pytest.mark.parametrize(("algorithm", "env"), [(a, e) for a, envs in PRESETS.items() for e in envs])
def test_every_preset_names_real_options_of_a_registered_algorithm_and_env(algorithm, env):
    assert algorithm in REGISTRY
    gym.spec(env)  # raises for an unknown id
    fields = {f.name: f for f in dataclasses.fields(get_algorithm(algorithm).Config)}
    config = dataclasses.replace(get_algorithm(algorithm).Config(), **PRESETS[algorithm][env])
    assert set(PRESETS[algorithm][env]) <= set(fields)
    assert any(getattr(config, k) != f.default for k, f in fields.items() if k in PRESETS[algorithm][env])


def test_train_starts_from_the_preset_and_given_options_override_it(tmp_path):
    pgrad.train("ppo", "CartPole-v1", run_dir=str(tmp_path / "a"), lr=5e-4, **QUIET)
    saved = run_file(tmp_path / "a")
    expected = {k: v for k, v in PRESETS["ppo"]["CartPole-v1"].items() if k != "lr"}
    assert saved["preset"] == expected and saved["config"]["lr"] == 5e-4
    assert all(saved["config"][k] == v for k, v in expected.items())


def test_no_preset_keeps_the_algorithms_defaults(tmp_path):
    pgrad.train("ppo", "CartPole-v1", run_dir=str(tmp_path / "b"), preset=False, **QUIET)
    saved = run_file(tmp_path / "b")
    defaults = dataclasses.asdict(get_algorithm("ppo").Config())
    assert saved["preset"] == {} and saved["config"]["num_steps"] == defaults["num_steps"] != 32


def test_an_env_without_a_preset_and_a_callable_env_get_none(tmp_path):
    assert preset("ppo", "MountainCar-v0") == {} and preset("ppo", lambda: gym.make("CartPole-v1")) == {}
    pgrad.train("ppo", lambda: gym.make("CartPole-v1"), run_dir=str(tmp_path / "c"), **QUIET)
    assert run_file(tmp_path / "c")["preset"] == {}


def test_cli_uses_the_env_flag_announces_the_preset_and_flags_override_it(tmp_path, capsys):
    common = ["--total-steps", "256", "--eval-every", "0", "--eval-episodes", "1", "--no-progress"]
    args = ["train", "ppo", "--env=Acrobot-v1", "--num-envs", "4", "--run-dir", str(tmp_path / "d")]
    assert main([*args, *common, "--no-tensorboard"]) == 0
    saved = run_file(tmp_path / "d")
    assert saved["config"]["num_envs"] == 4 and "num_envs" not in saved["preset"]
    assert saved["preset"] == {k: v for k, v in PRESETS["ppo"]["Acrobot-v1"].items() if k != "num_envs"}
    assert "starts from pgrad's preset" in capsys.readouterr().err
    args = ["train", "ppo", "--env", "Acrobot-v1", "--no-preset", "--run-dir", str(tmp_path / "e")]
    assert main([*args, *common, "--no-tensorboard"]) == 0
    assert run_file(tmp_path / "e")["preset"] == {}
    assert "preset" not in capsys.readouterr().err


def test_resume_keeps_the_saved_config(tmp_path):
    pgrad.train("sac", "Pendulum-v1", run_dir=str(tmp_path / "f"), learning_starts=100, **QUIET)
    saved = run_file(tmp_path / "f")
    assert saved["config"]["hidden_sizes"] == [64, 64] and saved["config"]["learning_starts"] == 100
    pgrad.resume(tmp_path / "f", total_steps=400, progress=False)
    assert run_file(tmp_path / "f") == saved
