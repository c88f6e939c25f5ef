"""The harness end to end: resume, determinism across processes, crashes, env faults."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.algorithms import get_algorithm
from pgrad.algorithms.score_function.reinforce import Config
from pgrad.envs.toy import FaultyEnv
from pgrad.errors import ConfigError, EnvError
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint
from pgrad.run.config import RunConfig
from pgrad.run.logger import read_metrics
from pgrad.run.trainer import Trainer

QUIET = {"progress": False, "tensorboard": False}


def final_state(run_dir):
    return load_checkpoint(latest_checkpoint(Path(run_dir) / "checkpoints"))


def tensors_of(tree, prefix=""):
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from tensors_of(v, f"{prefix}/{k}")
    elif isinstance(tree, list | tuple):
        for i, v in enumerate(tree):
            yield from tensors_of(v, f"{prefix}/{i}")


@pytest.mark.parametrize(
    "options",
    [
        {"baseline": "value", "normalize_obs": True},
        {"baseline": "optimal", "returns": "total"},
        {"baseline": "per_step", "normalize_advantages": True, "optimizer": "rmsprop"},
    ],
)
def test_resume_is_bitwise_identical_to_a_straight_run(tmp_path, options):
    common = dict(
        seed=5, eval_every=1500, eval_episodes=2, checkpoint_every=1000, num_envs=2, episodes_per_update=4
    )
    common.update(options, **QUIET)
    pgrad.train("reinforce", "CartPole-v1", total_steps=3000, run_dir=str(tmp_path / "straight"), **common)
    first = pgrad.train(
        "reinforce", "CartPole-v1", total_steps=1500, run_dir=str(tmp_path / "split"), **common
    )
    assert 1500 <= first["global_step"] < 3000
    pgrad.resume(tmp_path / "split", total_steps=3000, progress=False)
    (straight, step_a), (split, step_b) = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    assert step_a == step_b
    a, b = dict(tensors_of(straight["algorithm"])), dict(tensors_of(split["algorithm"]))
    assert a.keys() == b.keys() and any("optimizer" in k for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The resumed run's log continues the first one without duplicated steps.
    steps = [r["global_step"] for r in read_metrics(tmp_path / "split") if "iteration" in r]
    assert steps == sorted(set(steps))
    assert steps == [r["global_step"] for r in read_metrics(tmp_path / "straight") if "iteration" in r]


@pytest.mark.parametrize(
    ("algorithm", "env", "options"),
    [
        ("ppo", "CartPole-v1", {"num_envs": 2, "num_steps": 64, "anneal_lr": False}),
        ("a2c", "Pendulum-v1", {"normalize_obs": True}),
        ("vpg", "Acrobot-v1", {"steps_per_epoch": 200}),
        ("ppo", "CartPole-v1", {"num_envs": 4, "num_steps": 32, "backend": "native", "anneal_lr": False}),
        ("a2c", "Pendulum-v1", {"num_envs": 4, "backend": "native", "normalize_obs": True}),
        # γᵗ needs each episode's step, which runs on across rollouts and must come back on resume
        ("a2c", "Pendulum-v1", {"num_envs": 4, "backend": "native", "discount_weighting": True}),
        ("vpg", "Acrobot-v1", {"steps_per_epoch": 200, "discount_weighting": True}),
        ("vpg", "Acrobot-v1", {"num_envs": 2, "steps_per_epoch": 200, "backend": "native"}),
        ("npg", "MountainCar-v0", {"num_envs": 2, "num_steps": 100, "backend": "native"}),
        ("trpo", "MountainCarContinuous-v0", {"num_envs": 2, "num_steps": 100, "backend": "native"}),
    ],
)
def test_resume_continues_episodes_exactly(tmp_path, algorithm, env, options):
    """Episodes run across iterations: the envs' own state is in the checkpoint (classic control and the
    native twins), so N steps + resume equals the same budget straight, tensor for tensor."""
    common = dict(seed=2, eval_every=0, eval_episodes=0, checkpoint_every=0, preset=False, **options, **QUIET)
    pgrad.train(algorithm, env, total_steps=1200, run_dir=str(tmp_path / "straight"), **common)
    pgrad.train(algorithm, env, total_steps=600, run_dir=str(tmp_path / "split"), **common)
    pgrad.resume(tmp_path / "split", total_steps=1200, progress=False)
    (straight, _), (split, _) = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    assert split["envs"] is not None
    a, b = dict(tensors_of(straight["algorithm"])), dict(tensors_of(split["algorithm"]))
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


class Drift(gym.Env):
    """A random walk whose state pgrad does not know how to save (no get_state/set_state)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += float(action) - 0.5 + self.np_random.normal()
        return np.array([self.x], np.float32), -abs(self.x), False, False, {}


def drift():
    return gym.wrappers.TimeLimit(Drift(), max_episode_steps=20)


def test_an_env_whose_state_is_unknown_resumes_with_new_episodes(tmp_path):
    options = dict(num_envs=2, num_steps=64, eval_episodes=0, **QUIET)
    summary = pgrad.train("ppo", env=drift, total_steps=512, run_dir=str(tmp_path), **options)
    state, _ = final_state(tmp_path)
    assert state["envs"] is None and summary["global_step"] == 512
    assert pgrad.resume(tmp_path, total_steps=768, env=drift, progress=False)["global_step"] == 768


TRAIN_SCRIPT = """
import json, sys, torch
import pgrad
from pgrad.run.logger import read_metrics
seed, run_dir = int(sys.argv[1]), sys.argv[2]
pgrad.train("reinforce", "CartPole-v1", total_steps=2000, seed=seed, run_dir=run_dir, num_envs=2,
            episodes_per_update=4, eval_every=0, eval_episodes=0, progress=False, tensorboard=False)
returns = [r["charts/episode_return"] for r in read_metrics(run_dir) if "charts/episode_return" in r]
params = torch.cat([p.flatten() for p in pgrad.load(run_dir).policy.parameters()])
print(json.dumps({"returns": returns, "params": params.tolist()}))
"""


def train_in_fresh_process(seed, run_dir):
    out = subprocess.run(
        [sys.executable, "-c", TRAIN_SCRIPT, str(seed), str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_same_seed_same_results_in_fresh_processes_and_other_seed_differs(tmp_path):
    a = train_in_fresh_process(11, tmp_path / "a")
    b = train_in_fresh_process(11, tmp_path / "b")
    c = train_in_fresh_process(12, tmp_path / "c")
    assert a == b
    assert a["params"] != c["params"] and a["returns"] != c["returns"]


def test_sigkill_leaves_a_loadable_checkpoint_and_resume_continues(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "pgrad.cli",
        "train",
        "reinforce",
        "--env",
        "CartPole-v1",
        "--total-steps",
        "10000000",
        "--seed",
        "1",
        "--run-dir",
        str(run_dir),
        "--checkpoint-every",
        "300",
        "--eval-every",
        "0",
        "--no-progress",
        "--no-tensorboard",
        "--num-envs",
        "2",
        "--episodes-per-update",
        "2",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pointer = run_dir / "checkpoints" / "latest.json"
    deadline = time.time() + 60
    while time.time() < deadline and (not pointer.exists() or json.loads(pointer.read_text())["step"] < 1500):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    _state, step = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    assert step >= 1500
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgrad.cli",
            "resume",
            str(run_dir),
            "--total-steps",
            str(step + 400),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["global_step"] >= step + 400
    _, new_step = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    assert new_step == summary["global_step"]


@pytest.mark.parametrize("fault", ["nan_reward", "four_tuple"])
def test_env_fault_raises_before_any_update_uses_it(tmp_path, fault):
    # One sub-env, two 50-step episodes per update: the first update is clean, the fault comes at step 130.
    config = Config(num_envs=1, episodes_per_update=2)
    run = RunConfig(env="faulty", run_dir=str(tmp_path), eval_episodes=0, **QUIET)
    trainer = Trainer(get_algorithm("reinforce"), config, run, env=lambda: FaultyEnv(fault, at_step=130))
    trainer.algo.iteration(0)
    before = [p.detach().clone() for p in trainer.algo.policy.parameters()]
    with pytest.raises(EnvError) as info:
        trainer.algo.iteration(1)
    message = str(info.value)
    assert "sub-env 0" in message and "\n" not in message
    assert "global step 130" in message or "global step 129" in message
    assert ("reward is not finite" in message) if fault == "nan_reward" else ("5-tuple" in message)
    for p, q in zip(before, trainer.algo.policy.parameters(), strict=True):
        assert torch.equal(p, q)


def test_training_into_an_existing_run_is_refused(tmp_path):
    pgrad.train("reinforce", "CartPole-v1", total_steps=200, run_dir=str(tmp_path), eval_episodes=0, **QUIET)
    with pytest.raises(ConfigError, match="already holds a run"):
        pgrad.train("reinforce", "CartPole-v1", total_steps=200, run_dir=str(tmp_path), **QUIET)


def test_unknown_options_are_named():
    with pytest.raises(ConfigError, match="learning_rate"):
        pgrad.train("reinforce", "CartPole-v1", learning_rate=1e-3)
    with pytest.raises(ConfigError, match="multiple of num_envs"):
        pgrad.train("reinforce", "CartPole-v1", num_envs=3, episodes_per_update=4, **QUIET)


def test_load_and_evaluate_a_run(tmp_path):
    summary = pgrad.train(
        "reinforce",
        "Pendulum-v1",
        total_steps=1000,
        run_dir=str(tmp_path),
        policy="tanh_gaussian",
        num_envs=2,
        episodes_per_update=2,
        eval_episodes=3,
        **QUIET,
    )
    assert summary["eval"]["episodes"] == 3
    agent = pgrad.load(tmp_path)
    action = agent.act(torch.zeros(3).numpy(), deterministic=True)
    assert action.shape == (1,) and -2 <= action[0] <= 2
    assert agent.act(torch.zeros(5, 3).numpy()).shape == (5, 1)
    result = pgrad.evaluate(tmp_path, episodes=4, deterministic=True, seed=3)
    assert result["episodes"] == 4 and result == pgrad.evaluate(
        tmp_path, episodes=4, deterministic=True, seed=3
    )
    assert (tmp_path / "learning_curve.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"lr": "3e-4"}, "reinforce option lr must be a number, got '3e-4' (str)"),
        ({"num_envs": 2.0}, "reinforce option num_envs must be an int, got 2.0 (float)"),
        ({"baseline": "values"}, "reinforce option baseline must be one of 'none', 'mean'"),
        ({"hidden_sizes": (64, "64")}, "reinforce option hidden_sizes must be a tuple of an int"),
        ({"seed": "1"}, "run option seed must be an int, got '1' (str)"),
        ({"target_return": "high"}, "run option target_return must be a number or None"),
    ],
)
def test_option_types_are_checked_in_one_line(tmp_path, options, expected):
    with pytest.raises(ConfigError) as info:
        pgrad.train(
            "reinforce", "CartPole-v1", total_steps=100, run_dir=str(tmp_path / "r"), **options, **QUIET
        )
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "r").exists()


def test_on_evaluation_sees_every_logged_evaluation_and_its_exception_ends_the_run(tmp_path):
    seen: list[dict] = []
    summary = pgrad.train(  # evaluations every 1,300 steps, then the final one at the end of the budget
        "reinforce", "CartPole-v1", total_steps=3_000, seed=0, run_dir=str(tmp_path / "a"), num_envs=2,
        eval_every=1_300, eval_episodes=2, progress=False, tensorboard=False, on_evaluation=seen.append,
    )  # fmt: skip
    logged = [r for r in read_metrics(summary["run_dir"]) if "eval/mean_return" in r]
    assert [r["global_step"] for r in seen] == [r["global_step"] for r in logged]
    assert [r["mean_return"] for r in seen] == [r["eval/mean_return"] for r in logged]
    assert len(seen) == 3 and seen[-1]["global_step"] == summary["global_step"]

    class Stop(Exception):
        pass

    def stop(result: dict) -> None:
        raise Stop(result["global_step"])

    with pytest.raises(Stop):
        pgrad.train(
            "reinforce", "CartPole-v1", total_steps=3_000, seed=0, run_dir=str(tmp_path / "b"), num_envs=2,
            eval_every=1_000, eval_episodes=2, progress=False, tensorboard=False, on_evaluation=stop,
        )  # fmt: skip
    records = read_metrics(tmp_path / "b")
    assert records[-1]["global_step"] < 3_000 and "eval/mean_return" in records[-1]
