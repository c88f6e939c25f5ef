"""`pgrad sweep`: a grid × seeds of tiny runs as Ray tasks (tags, sweep.json against each run's metrics,
reuse, the compare line), a failing grid point, a killed worker whose task resumes, and the one-line errors
a user meets before Ray starts."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest

import pgrad.run.ray_cluster
from pgrad.algorithms import REGISTRY, get_algorithm
from pgrad.cli import main
from pgrad.errors import ConfigError
from pgrad.run.folder import read_run_file
from pgrad.run.logger import read_metrics
from pgrad.workflow.compare import sweep_run_dirs
from pgrad.workflow.sweep import parse_grid, sweep, typed_value

TINY = [
    "--total-steps",
    "600",
    "--eval-episodes",
    "2",
    "--num-envs",
    "2",
    "--no-tensorboard",
    "--no-progress",
]


def last_eval(run_dir: Path) -> tuple[int, float]:
    record = [r for r in read_metrics(run_dir) if "eval/mean_return" in r][-1]
    return record["global_step"], record["eval/mean_return"]


def checkpoints(out: Path) -> dict[str, float]:
    """Each checkpoint file under `out` with its modification time: a rerun that trains nothing keeps them."""
    return {str(p): p.stat().st_mtime for p in out.rglob("checkpoints/**/*") if p.is_file()}


@pytest.fixture(scope="module")
def swept(tmp_path_factory, local_ray):
    out = tmp_path_factory.mktemp("sweep") / "grid"
    argv = ["sweep", "reinforce", "--env", "CartPole-v1", "--grid", "lr=1e-3,3e-3", "--seeds", "2", *TINY]
    start = time.monotonic()
    assert main([*argv, "--out", str(out)]) == 0
    return out, argv, time.monotonic() - start


def test_grid_by_seeds_trains_tagged_runs_whose_returns_sweep_json_holds(swept):
    out, _, _ = swept
    result = json.loads((out / "sweep.json").read_text())
    labels = ["lr=0.001", "lr=0.003"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == labels
    assert [(r["label"], r["seed"], r["status"]) for r in result["runs"]] == [
        (label, seed, "trained") for label in labels for seed in (0, 1)
    ]
    for run in result["runs"]:
        run_dir = out / run["label"] / f"s{run['seed']}"
        assert Path(run["run_dir"]) == run_dir
        saved = read_run_file(run_dir)
        assert saved["run"]["tag"] == run["label"] and saved["run"]["seed"] == run["seed"]
        assert saved["config"]["lr"] == {"lr=0.001": 0.001, "lr=0.003": 0.003}[run["label"]]  # typed: a float
        assert saved["config"]["num_envs"] == 2  # a fixed flag reaches every run
        assert saved["run"]["total_steps"] == 600  # the sweep's budget, which a rerun finds reached
        assert (run["final_step"], run["final_return"]) == last_eval(run_dir)
        assert run["final_step"] >= 600
    for point, label in zip(result["points"], labels, strict=True):
        returns = [r["final_return"] for r in result["runs"] if r["label"] == label]
        assert point["label"] == label and point["done"] == 2 and point["returns"] == returns
        assert point["mean_return"] == pytest.approx(statistics.mean(returns))
        assert point["std_return"] == pytest.approx(statistics.stdev(returns))  # sample std, n − 1
    table = (out / "sweep.md").read_text()
    assert "| lr=0.001 | 2/2 |" in table and f"{result['points'][0]['mean_return']:.1f} ±" in table


def test_a_rerun_trains_nothing_and_compare_reads_the_sweep(swept, capsys):
    out, argv, first = swept
    before = checkpoints(out)
    start = time.monotonic()
    assert main([*argv, "--out", str(out)]) == 0
    assert time.monotonic() - start < first
    result = json.loads((out / "sweep.json").read_text())
    assert result["counts"] == {"trained": 0, "resumed": 0, "reused": 4, "failed": 0}
    assert checkpoints(out) == before
    printed = capsys.readouterr().out
    line = result["compare_command"]
    assert line in printed and line.startswith("pgrad compare ")
    assert main([*shlex.split(line)[1:], "--reps", "200"]) == 0  # the printed command, run
    compared = json.loads((out / "compare" / "compare.json").read_text())
    assert [g["label"] for g in compared["groups"]] == ["lr=0.001", "lr=0.003"]
    finals = {g["label"]: [r["final_score"] for r in g["runs"]] for g in compared["groups"]}
    assert finals == {p["label"]: p["returns"] for p in result["points"]}
    assert shlex.split(line)[2] == str(out)  # the sweep's folder stands for its finished runs
    compared_dirs = sorted(r["run_dir"] for g in compared["groups"] for r in g["runs"])
    assert compared_dirs == sorted(str(d) for d in sweep_run_dirs(out))


def test_a_changed_setting_for_an_existing_run_is_refused_before_ray(swept, monkeypatch, capsys):
    out, argv, _ = swept
    monkeypatch.setattr(pgrad.run.ray_cluster, "connect", no_ray)
    changed = [("3" if a == "2" and argv[i - 1] == "--num-envs" else a) for i, a in enumerate(argv)]
    assert main([*changed, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was trained with num_envs=2, not 3" in err[0]


def test_a_failing_grid_point_is_reported_and_the_others_finish(local_ray, tmp_path):
    # num_minibatches 5000 exceeds PPO's batch of 2 × 32: only PPO's build-time check knows
    result = sweep("ppo", "CartPole-v1", grid={"num_minibatches": [2, 5000]}, seeds=1, out=tmp_path / "s",
                   total_steps=256, num_envs=2, num_steps=32, eval_episodes=1, tensorboard=False,
                   progress=False)  # fmt: skip
    ok, failed = result["runs"]
    assert (ok["label"], ok["status"]) == ("num_minibatches=2", "trained")
    assert ok["final_return"] == last_eval(tmp_path / "s" / ok["label"] / "s0")[1]
    assert (failed["label"], failed["status"]) == ("num_minibatches=5000", "failed")
    assert "num_minibatches (5000) exceeds the batch size (64)" in failed["reason"]
    assert "Traceback" in Path(failed["log"]).read_text()  # the whole story is in the run's log
    assert result["points"][1]["done"] == 0 and result["points"][1]["failed"] == [0]
    assert "## Failed runs" in (tmp_path / "s" / "sweep.md").read_text()
    assert [str(d) for d in sweep_run_dirs(result["out"])] == [ok["run_dir"]]  # only finished runs

    # a run that stopped before its first checkpoint (its worker died) is trained again, not refused
    shutil.rmtree(tmp_path / "s" / ok["label"] / "s0" / "checkpoints")
    again = sweep("ppo", "CartPole-v1", grid={"num_minibatches": [2, 5000]}, seeds=1, out=tmp_path / "s",
                  total_steps=256, num_envs=2, num_steps=32, eval_episodes=1, tensorboard=False,
                  progress=False)  # fmt: skip
    assert [r["status"] for r in again["runs"]] == ["trained", "failed"]
    assert again["runs"][0]["final_return"] == ok["final_return"]  # the same seed, the same run


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(local_ray, tmp_path):
    run_dir = tmp_path / "s" / "reinforce" / "s0"
    killed = []

    def kill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "latest.json").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = int((run_dir / ".pgrad.pid").read_text())  # the Ray worker process training the run
        step = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"]
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, step))

    threading.Thread(target=kill_after_first_checkpoint, daemon=True).start()
    result = sweep("reinforce", "CartPole-v1", seeds=1, out=tmp_path / "s", total_steps=3000,
                   checkpoint_every=300, num_envs=2, eval_episodes=1, tensorboard=False)  # fmt: skip
    ((pid, step),), (run,) = killed, result["runs"]
    assert 300 <= step < 3000
    assert run["status"] == "resumed" and run["pid"] != pid  # Ray ran the task again, in a new worker
    assert run["final_step"] >= 3000
    steps = [r["global_step"] for r in read_metrics(run_dir)]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # nothing counted twice
    log = Path(run["log"]).read_text()
    assert log.count("--- ") == 2 and f"resuming {run_dir} from step {step:,}" in log


def no_ray(*args, **kwargs):
    raise AssertionError("Ray was started")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--grid", "lrr=1e-3"], "--grid lrr: not an option of reinforce (did you mean lr?)"),
        (["--grid", "lr=1e-3,fast"], "--grid lr: value 'fast' does not fit"),
        (["--grid", "lr=1e-3,0.001"], "--grid lr: the value 0.001 is given twice"),
        (["--grid", "total_steps=1,2"], "--grid total_steps: a run option"),
        (["--grid", "lr=1e-3", "--grid", "lr=2e-3"], "--grid lr is given twice"),
        (["--grid", "lr=1e-3", "--lr", "0.1"], "--grid lr is also given as a fixed option"),
        (["--grid", "lr"], "--grid must be KEY=V1,V2"),
        (["--seed", "3"], "--seed is set by pgrad sweep for each run: use --seeds N or --seed-list"),
        (["--seeds", "2", "--seed-list", "0,3"], "give --seeds N or --seed-list, not both"),
        (["--seed-list", "0,0"], "--seed-list names a seed twice"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--max-parallel", "0"], "--max-parallel must be an int >= 1"),
        (["--eval-episodes", "0"], "--eval-episodes must be >= 1"),
        (["--workers", "2"], "--workers is set by pgrad sweep"),
    ],
)
def test_bad_input_is_one_line_before_ray_starts(tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setattr(pgrad.run.ray_cluster, "connect", no_ray)
    argv = ["sweep", "reinforce", "--env", "CartPole-v1", "--out", str(tmp_path / "s"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pgrad: error: ") and message in err[0]
    assert not (tmp_path / "s").exists()


def test_unknown_algorithm_own_actors_and_long_labels_are_refused_before_ray(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pgrad.run.ray_cluster, "connect", no_ray)
    assert main(["sweep", "ppoo", "--env", "CartPole-v1"]) == 2
    assert "unknown algorithm 'ppoo'" in capsys.readouterr().err
    if "a3c" in REGISTRY:
        with pytest.raises(ConfigError, match="a3c runs its own Ray actors"):
            sweep("a3c", "CartPole-v1", out=tmp_path / "s")
    grid = {"lr": [1e-3], "clip_coef": [0.2], "ent_coef": [0.01], "vf_coef": [0.5], "max_grad_norm": [0.5]}
    with pytest.raises(ConfigError, match="at most 64 characters"):
        sweep("ppo", "CartPole-v1", grid=grid, out=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_grid_values_are_read_by_the_options_type():
    ppo = get_algorithm("ppo")
    assert typed_value(ppo, "lr", "1e-3") == 0.001 and isinstance(typed_value(ppo, "lr", "1"), float)
    assert typed_value(ppo, "num_steps", "1e2") == 100 and isinstance(
        typed_value(ppo, "num_steps", "64"), int
    )
    assert typed_value(ppo, "normalize_advantages", "false") is False
    assert typed_value(ppo, "target_kl", "none") is None and typed_value(ppo, "target_kl", "0.02") == 0.02
    assert typed_value(ppo, "activation", "relu") == "relu"
    with pytest.raises(ConfigError, match="--grid activation: value 'gelu' does not fit"):
        typed_value(ppo, "activation", "gelu")
    assert (
        typed_value(ppo, "hidden_sizes", "[32,32]") == (32, 32) == typed_value(ppo, "hidden_sizes", "32x32")
    )
    with pytest.raises(ConfigError, match=r"--grid num_steps: value '0\.5' does not fit"):
        typed_value(ppo, "num_steps", "0.5")
    grid = parse_grid(ppo, ["hidden_sizes=[64,64],[32,32]", "lr=3e-4"])
    assert grid == {"hidden_sizes": [(64, 64), (32, 32)], "lr": [0.0003]}
    assert parse_grid(ppo, {"lr": [1e-3, 3e-4]}) == {"lr": [0.001, 0.0003]}


def test_help_lists_the_own_flags(capsys):
    assert main(["sweep", "--help"]) == 0
    text = capsys.readouterr().out
    assert all(
        flag in text for flag in ("--grid", "--seeds", "--seed-list", "--max-parallel", "--ray-address")
    )
