"""Run folders, interrupts and what a user runs into: one writer per folder, no writing into another run,
Ctrl-C/SIGTERM checkpoints, wall-time checkpoints, the best checkpoint, resume budgets and options, envs
without a time limit, misspelt options."""

from __future__ import annotations

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
from pgrad.errors import CheckpointError, ConfigError, Interrupted, PgradWarning
from pgrad.run import trainer as trainer_module
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint
from pgrad.run.config import RunConfig
from pgrad.run.folder import PID_FILE
from pgrad.run.interrupts import StopRequest
from pgrad.run.logger import read_metrics
from pgrad.run.trainer import Trainer

QUIET = {"progress": False, "tensorboard": False}
SMALL = {"num_envs": 2, "episodes_per_update": 2, "eval_episodes": 0, **QUIET}
ROOT = Path(__file__).resolve().parents[2]


def reinforce_trainer(run_dir: Path, resume: bool = False, **run_options) -> Trainer:
    cls = get_algorithm("reinforce")
    run = RunConfig(total_steps=400, run_dir=str(run_dir), eval_episodes=0, **QUIET, **run_options)
    return Trainer(cls, cls.Config(num_envs=2, episodes_per_update=2), run, resume=resume)


# -- one writer, no foreign content -------------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_folder_and_pid(tmp_path):
    first = reinforce_trainer(tmp_path / "r")
    try:
        with pytest.raises(ConfigError) as info:
            reinforce_trainer(tmp_path / "r")
        message = str(info.value)
        assert f"{tmp_path / 'r'}" in message and f"PID {os.getpid()}" in message and "\n" not in message
    finally:
        first.close()
    assert not (tmp_path / "r" / PID_FILE).exists()


def test_a_second_process_is_refused_while_a_run_trains(tmp_path):
    run_dir = tmp_path / "r"
    cmd = [sys.executable, "-m", "pgrad.cli", "train", "reinforce", "--env", "CartPole-v1"]
    cmd += ["--total-steps", "100000000", "--run-dir", str(run_dir), "--no-progress", "--eval-episodes", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (run_dir / PID_FILE).exists() and time.time() < deadline:
            time.sleep(0.2)
        second_cmd = [sys.executable, "-m", "pgrad.cli", "train", "reinforce", "--run-dir", str(run_dir)]
        second = subprocess.run(second_cmd, capture_output=True, text=True)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and f"PID {proc.pid}" in second.stderr
        resumed = subprocess.run(
            [sys.executable, "-m", "pgrad.cli", "resume", str(run_dir)], capture_output=True, text=True
        )
        assert resumed.returncode == 2 and resumed.stderr.startswith("pgrad: error:")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"metrics.jsonl": '{"global_step": 8}\n'}, "not empty (metrics.jsonl)"),
        ({"notes.txt": "mine"}, "not empty (notes.txt)"),
    ],
)
def test_train_refuses_a_folder_with_content(tmp_path, content, expected):
    for name, text in content.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        pgrad.train("reinforce", "CartPole-v1", total_steps=100, run_dir=str(tmp_path), **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(content)  # nothing written
    for name, text in content.items():
        assert (tmp_path / name).read_text() == text


def test_a_crashed_run_without_checkpoint_is_neither_appended_to_nor_resumed(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"algorithm": "reinforce", "run": {}, "config": {}}))
    (tmp_path / "metrics.jsonl").write_text('{"global_step": 8}\n')
    with pytest.raises(ConfigError, match="not empty"):
        pgrad.train("reinforce", "CartPole-v1", total_steps=100, run_dir=str(tmp_path), **SMALL)
    with pytest.raises(ConfigError, match="crashed before its first checkpoint"):
        pgrad.resume(tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"global_step": 8}\n'


def test_run_dir_that_is_a_file_or_not_writable(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        pgrad.train("reinforce", "CartPole-v1", total_steps=100, run_dir=str(tmp_path / "file"), **SMALL)
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(ConfigError, match="not a writable folder"):
            pgrad.train("reinforce", "CartPole-v1", total_steps=100, run_dir=str(locked / "r"), **SMALL)
    finally:
        locked.chmod(0o700)


def test_runs_started_in_the_same_second_get_their_own_default_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt: "20261201-120000")  # both start "in the same second"
    options = dict(total_steps=64, seed=3, eval_every=0, eval_episodes=0, **QUIET)
    first = pgrad.train("reinforce", "CartPole-v1", **options)["run_dir"]
    second = pgrad.train("reinforce", "CartPole-v1", **options)["run_dir"]
    assert first == "runs/reinforce-CartPole-v1-s3-20261201-120000"
    assert second == first + "-2"


# -- interrupts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_writes_a_checkpoint_and_says_how_to_continue(tmp_path, sig, code):
    run_dir = tmp_path / "r"
    cmd = [sys.executable, "-m", "pgrad.cli", "train", "ppo", "--env", "CartPole-v1", "--total-steps"]
    cmd += [
        "100000000",
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "--eval-episodes",
        "0",
        "--no-tensorboard",
    ]
    cmd += ["--checkpoint-every", "0", "--checkpoint-minutes", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run_dir / "metrics.jsonl").exists() or not read_metrics(run_dir):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert f"pgrad resume {run_dir}" in stderr and "Traceback" not in stderr
    _, step = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    assert step == read_metrics(run_dir)[-1]["global_step"] > 0  # saved at the iteration boundary
    assert not (run_dir / PID_FILE).exists()


def test_the_second_signal_stops_at_once():
    # Python's own Ctrl-C handler beforehand, as in a terminal: the test must not depend on what an earlier
    # test or plugin left installed (in one full-suite run something had, and the second SIGINT did nothing)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with StopRequest() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert stop.signal == signal.SIGINT and stop.exit_code == 130
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


def test_interrupt_from_python_raises_after_the_checkpoint(tmp_path, monkeypatch):
    cls = get_algorithm("reinforce")
    run = RunConfig(
        total_steps=10_000, run_dir=str(tmp_path / "r"), eval_episodes=0, checkpoint_every=0, **QUIET
    )
    trainer = Trainer(cls, cls.Config(num_envs=2, episodes_per_update=2), run)
    original = trainer.algo.iteration

    def iteration(index):
        if index == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        return original(index)

    monkeypatch.setattr(trainer.algo, "iteration", iteration)
    with pytest.raises(Interrupted) as info:
        trainer.run()
    assert info.value.exit_code == 143 and "pgrad resume" in str(info.value)
    state, step = load_checkpoint(latest_checkpoint(tmp_path / "r" / "checkpoints"))
    assert state["trainer"]["iteration"] == 4 and step > 0
    summary = pgrad.resume(tmp_path / "r", total_steps=step + 200, progress=False)
    assert summary["global_step"] >= step + 200


def test_checkpoints_by_wall_time(tmp_path, monkeypatch):
    clock = iter(range(0, 10_000, 61))  # every call: one more minute and a second
    monkeypatch.setattr("pgrad.run.trainer.time.monotonic", lambda: float(next(clock)))
    pgrad.train(
        "reinforce",
        "CartPole-v1",
        total_steps=600,
        run_dir=str(tmp_path),
        checkpoint_every=0,
        checkpoint_minutes=1.0,
        keep_checkpoints=100,
        **SMALL,
    )
    assert len(list((tmp_path / "checkpoints").glob("step_*"))) > 3


class FakeClock:
    """The trainer module's `time`: a monotonic clock the test moves by hand, everything else real."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


class FakeStop:
    """StopRequest without signal handlers: the test sets `signal` as the handler of a real SIGTERM would."""

    def __init__(self):
        self.signal = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    @property
    def exit_code(self):
        return 128 + int(self.signal or 0)


def watched_trainer(run_dir, monkeypatch, stop_after=None, minutes_per_iteration=0.0, **run_options):
    """A REINFORCE trainer whose iterations move a fake clock, whose saves are recorded, and which is asked to
    stop (as by SIGTERM during it) after iteration `stop_after`. Returns (trainer, saved steps)."""
    clock, stops = FakeClock(), []
    monkeypatch.setattr(trainer_module, "time", clock)
    monkeypatch.setattr(trainer_module, "StopRequest", lambda: stops.append(FakeStop()) or stops[-1])
    trainer = reinforce_trainer(run_dir, **{"checkpoint_every": 0, "checkpoint_minutes": 0.0, **run_options})
    iterate, save, saved = trainer.algo.iteration, trainer.save, []

    def iteration(index):
        result = iterate(index)
        clock.now += 60.0 * minutes_per_iteration
        if index == stop_after:
            stops[-1].signal = signal.SIGTERM
        return result

    def record_save(best=False):
        saved.append(trainer.envs.global_step)
        return save(best)

    monkeypatch.setattr(trainer.algo, "iteration", iteration)
    monkeypatch.setattr(trainer, "save", record_save)
    return trainer, saved


def record_steps(run_dir):
    return [r["global_step"] for r in read_metrics(run_dir) if "iteration" in r]


def test_a_wall_time_checkpoint_due_exactly_now_is_written_now(tmp_path, monkeypatch):
    """checkpoint_minutes = 1 and exactly one minute per iteration: a checkpoint at the end of every one."""
    trainer, saved = watched_trainer(tmp_path, monkeypatch, minutes_per_iteration=1.0, checkpoint_minutes=1.0)
    trainer.run()
    steps = record_steps(tmp_path)
    assert len(steps) >= 3 and saved == steps  # a record and a checkpoint at every iteration, once each
    trainer, saved = watched_trainer(
        tmp_path / "later", monkeypatch, minutes_per_iteration=0.5, checkpoint_minutes=1.0, log_every=0
    )
    trainer.run()
    steps = record_steps(tmp_path / "later")
    assert saved[:-1] == steps[1:-1:2] and saved[-1] == steps[-1]  # every second iteration, and the last


def test_a_due_checkpoint_or_an_interrupt_alone_closes_a_metrics_record(tmp_path, monkeypatch):
    """Neither needs the other: log_every never comes due here, yet each checkpoint and the interrupt get a
    record at their step; where they coincide, one record and one checkpoint."""
    trainer, saved = watched_trainer(tmp_path / "ckpt", monkeypatch, checkpoint_every=100, log_every=10**9)
    trainer.run()
    steps = record_steps(tmp_path / "ckpt")
    assert len(steps) >= 4 and saved == steps  # at 100, 200, 300 (crossed) and the end
    assert [s // 100 for s in steps[:3]] == [1, 2, 3]

    trainer, saved = watched_trainer(tmp_path / "stop", monkeypatch, stop_after=2, log_every=10**9)
    with pytest.raises(Interrupted) as info:
        trainer.run()
    assert info.value.exit_code == 143
    assert saved == record_steps(tmp_path / "stop") == [trainer.envs.global_step]

    trainer, saved = watched_trainer(tmp_path / "both", monkeypatch, stop_after=2, checkpoint_every=1)
    with pytest.raises(Interrupted):
        trainer.run()
    steps = record_steps(tmp_path / "both")
    assert len(steps) == 3 and saved == steps  # the last step once, though both asked for it


def test_resume_with_no_more_steps_says_so(tmp_path):
    summary = pgrad.train("reinforce", "CartPole-v1", total_steps=300, run_dir=str(tmp_path), **SMALL)
    with pytest.raises(ConfigError, match=f"already at {summary['global_step']:,} env steps"):
        pgrad.resume(tmp_path, total_steps=200)
    with pytest.raises(ConfigError, match="nothing to train"):
        pgrad.resume(tmp_path)


# -- what a new user ran into -------------------------------------------------------------------------------


class Endless(gym.Env):
    """An env whose episodes never end (no time limit)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 1.0, False, False, {}


def test_no_time_limit_warns_and_evaluation_is_cut(tmp_path):
    with pytest.warns(PgradWarning, match="no time limit"):
        summary = pgrad.train(
            "a2c",
            env=Endless,
            total_steps=400,
            run_dir=str(tmp_path),
            num_envs=2,
            eval_episodes=2,
            eval_max_steps=50,
            **QUIET,
        )
    assert summary["eval"]["mean_return"] == 50.0 and summary["eval"]["cut_episodes"] == 2
    assert read_metrics(tmp_path)[-1]["eval/cut_episodes"] == 2


def test_best_checkpoint_is_kept_and_loadable_by_name_step_or_folder(tmp_path):
    summary = pgrad.train(
        "ppo",
        "CartPole-v1",
        total_steps=6144,
        run_dir=str(tmp_path),
        eval_every=1024,
        eval_episodes=3,
        checkpoint_every=2048,
        keep_checkpoints=10,
        num_envs=4,
        num_steps=128,
        **QUIET,
    )
    evals = [r["eval/mean_return"] for r in read_metrics(tmp_path) if "eval/mean_return" in r]
    best = pgrad.load(tmp_path, checkpoint="best")
    assert summary["best_return"] == max(evals)
    best_step = next(
        r["global_step"] for r in read_metrics(tmp_path) if r.get("eval/mean_return") == max(evals)
    )
    assert best.info["global_step"] == best_step
    by_step = pgrad.load(tmp_path, checkpoint=2048)
    by_folder = pgrad.load(tmp_path / "checkpoints" / "step_000000002048")
    assert by_step.info["global_step"] == by_folder.info["global_step"] == 2048
    for p, q in zip(by_step.policy.parameters(), by_folder.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    assert pgrad.evaluate(tmp_path / "checkpoints" / "step_000000002048", episodes=2)["episodes"] == 2
    with pytest.raises(CheckpointError, match="no checkpoint at step 999"):
        pgrad.load(tmp_path, checkpoint=999)
    out = subprocess.run(
        [sys.executable, "-m", "pgrad.cli", "eval", str(tmp_path), "--checkpoint", "best", "--episodes", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0 and json.loads(out.stdout)["episodes"] == 2


def lr_trajectory(run_dir: Path) -> dict[int, float]:
    return {r["global_step"]: r["stats/lr"] for r in read_metrics(run_dir) if "stats/lr" in r}


def test_an_interrupted_run_resumed_with_its_budget_keeps_its_schedule(tmp_path, monkeypatch):
    common = dict(seed=3, num_envs=2, num_steps=64, eval_episodes=0, log_every=0, preset=False, **QUIET)
    pgrad.train("ppo", "CartPole-v1", total_steps=4096, run_dir=str(tmp_path / "straight"), **common)
    interrupted_ppo(tmp_path / "split", monkeypatch, total=4096, stop_at=2048)
    pgrad.resume(tmp_path / "split", progress=False)  # its own budget, 4096
    straight, split = lr_trajectory(tmp_path / "straight"), lr_trajectory(tmp_path / "split")
    assert max(split) == 4096 and split.keys() == straight.keys()
    assert split == straight  # the same learning rate at every step, across the interruption


def interrupted_ppo(run_dir: Path, monkeypatch, total: int, stop_at: int) -> None:
    """A PPO run planned for `total` steps (128 steps per iteration) stopped by SIGINT at `stop_at`."""
    cls = get_algorithm("ppo")
    run = RunConfig(total_steps=total, run_dir=str(run_dir), seed=3, eval_episodes=0, log_every=0, **QUIET)
    trainer = Trainer(cls, cls.Config(num_envs=2, num_steps=64), run)
    original = trainer.algo.iteration

    def iteration(index):
        if index == stop_at // 128 - 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        return original(index)

    monkeypatch.setattr(trainer.algo, "iteration", iteration)
    with pytest.raises(Interrupted):
        trainer.run()


def test_extending_a_run_continues_its_schedule_without_a_jump(tmp_path, monkeypatch, capsys):
    interrupted_ppo(tmp_path / "r", monkeypatch, total=4096, stop_at=2048)
    before = lr_trajectory(tmp_path / "r")
    capsys.readouterr()
    pgrad.resume(tmp_path / "r", total_steps=8192, progress=False)
    assert "learning rate and clip range continue from 0.5× their initial value" in capsys.readouterr().err
    after = {k: v for k, v in lr_trajectory(tmp_path / "r").items() if k > 2048}
    # lr(step) = lr₀ · 0.5 · (1 − (step − 128 − 2048) / (8192 − 2048)), read before each update
    assert before[2048] == pytest.approx(3e-4 * (1 - 1920 / 4096))
    for step, lr in after.items():
        assert lr == pytest.approx(3e-4 * 0.5 * (1 - (step - 128 - 2048) / (8192 - 2048)))


def test_extending_a_finished_annealed_run_says_nothing_will_change(tmp_path, capsys):
    pgrad.train(
        "ppo",
        "CartPole-v1",
        total_steps=512,
        run_dir=str(tmp_path),
        num_envs=2,
        num_steps=64,
        eval_episodes=0,
        **QUIET,
    )
    capsys.readouterr()
    pgrad.resume(tmp_path, total_steps=1024, progress=False)
    assert "had annealed to 0 and stays there" in capsys.readouterr().err


def test_resume_accepts_watching_options_and_refuses_the_others(tmp_path):
    pgrad.train("reinforce", "CartPole-v1", total_steps=300, run_dir=str(tmp_path), **SMALL)
    with pytest.raises(ConfigError, match="seed cannot change"):
        pgrad.resume(tmp_path, total_steps=600, seed=4)
    summary = pgrad.resume(tmp_path, total_steps=600, eval_episodes=2, log_every=0, progress=False)
    assert summary["eval"]["episodes"] == 2
    out = subprocess.run(
        [sys.executable, "-m", "pgrad.cli", "resume", str(tmp_path), "--total-steps", "900", "--seed", "2"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "--seed" in out.stderr and out.stderr.count("\n") == 1


def test_misspelt_options_get_a_suggestion():
    with pytest.raises(ConfigError, match=r"'total_step' \(did you mean total_steps\?\)"):
        pgrad.train("reinforce", "CartPole-v1", total_step=100)
    with pytest.raises(ConfigError, match=r"'baselin' \(did you mean baseline\?\)"):
        pgrad.train("reinforce", "CartPole-v1", baselin="mean")
    out = subprocess.run(
        [sys.executable, "-m", "pgrad.cli", "train", "reinforce", "--total-step", "100"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "did you mean --total-steps?" in out.stderr


def test_debug_shows_the_traceback(tmp_path):
    cmd = [sys.executable, "-m", "pgrad.cli", "eval", str(tmp_path / "missing")]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    debug = subprocess.run([*cmd, "--debug"], capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_negative_seed_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="seed must be >= 0, got -1"):
        pgrad.train("reinforce", "CartPole-v1", seed=-1, total_steps=100)
