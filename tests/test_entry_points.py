"""Every entry point sets torch's thread count through one function, and the commands that only print
(`pgrad --help`, `pgrad list`) start without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import pgrad
from pgrad.algorithms import REGISTRY, get_algorithm, list_algorithms
from pgrad.cli import main
from pgrad.errors import ConfigError
from pgrad.run.config import use_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_help_and_list_do_not_import_torch():
    code = (
        "import sys\n"
        "import pgrad\n"
        "assert 'torch' not in sys.modules, 'import pgrad'\n"
        "from pgrad.cli import main\n"
        "main(['--help']); main(['list'])\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
    assert "sac_discrete" in out.stdout and "learned critic" in out.stdout


def test_listing_read_from_the_sources_equals_the_classes():
    rows = list_algorithms()
    assert [r["name"] for r in rows] == sorted(REGISTRY, key=[r["name"] for r in rows].index)
    assert {r["name"] for r in rows} == set(REGISTRY)
    for row in rows:
        cls = get_algorithm(row["name"])
        assert (row["family"], row["summary"]) == (cls.family, cls.summary)
    families = [r["family"] for r in rows]
    assert families == sorted(
        families, key=["score function", "learned critic", "differentiable simulator"].index
    )


def test_public_names_load_on_first_use():
    assert pgrad.train is pgrad.api.train and pgrad.ConfigError is ConfigError
    assert set(pgrad.__all__) == set(pgrad._PUBLIC) and set(pgrad.__all__) <= set(dir(pgrad))
    for name in ("compare", "compare_algorithms", "tune", "record", "export", "report", "bc"):  # workflow
        assert getattr(pgrad, name).__module__.startswith("pgrad.workflow."), name
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        pgrad.nosuch  # noqa: B018


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_use_threads_refuses_bad_counts(bad):
    with pytest.raises(ConfigError, match="--threads must be >= 1"):
        use_threads(bad)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("entry") / "run"
    pgrad.train(
        "reinforce", "CartPole-v1", total_steps=300, seed=0, run_dir=str(path), eval_every=0, eval_episodes=1,
        progress=False, tensorboard=False, hidden_sizes=(8,),
    )  # fmt: skip
    return str(path)


def test_eval_honours_threads(run_dir, restore_threads, capsys):
    torch.set_num_threads(1)
    assert main(["eval", run_dir, "--episodes", "1", "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2
    assert main(["eval", run_dir, "--episodes", "1"]) == 0  # the default is one thread
    assert torch.get_num_threads() == 1


def test_api_load_and_evaluate_set_threads(run_dir, restore_threads):
    torch.set_num_threads(2)
    pgrad.load(run_dir)
    assert torch.get_num_threads() == 1
    pgrad.evaluate(run_dir, episodes=1, threads=2)
    assert torch.get_num_threads() == 2
    pgrad.evaluate(run_dir, episodes=1, threads=None)  # None leaves it
    assert torch.get_num_threads() == 2


def test_resume_honours_threads(run_dir, restore_threads):
    torch.set_num_threads(1)
    pgrad.resume(run_dir, total_steps=1_000, threads=2, progress=False)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("study", ["baselines", "claims"])
def test_lab_honours_threads(study, tmp_path, restore_threads, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(
        "pgrad.lab.claims.run_claims", lambda seeds: seen.append(torch.get_num_threads()) or []
    )
    monkeypatch.setattr("pgrad.lab.claims.claims_table", lambda results: "")
    torch.set_num_threads(1)
    args = ["--estimates", "4", "--budgets", "3"] if study != "claims" else []
    assert main(["lab", study, "--out", str(tmp_path), "--threads", "2", *args]) == 0
    assert torch.get_num_threads() == 2
    assert seen == ([2] if study == "claims" else [])


def test_the_console_script_exits_fast_with_everything_written(tmp_path):
    # `python -m pgrad` runs the console script's entry (main, then os._exit without interpreter teardown):
    # its printed summary, metrics, TensorBoard events and checkpoint must all be complete on a pipe.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe is block-buffered
    run_dir = tmp_path / "run"
    argv = ["train", "reinforce", "--env", "CartPole-v1", "--total-steps", "600", "--eval-episodes", "2"]
    out = subprocess.run(
        [sys.executable, "-m", "pgrad", *argv, "--run-dir", str(run_dir), "--no-progress", "--threads", "1"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["global_step"] >= 600 and summary["eval_episodes"] == 2
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["global_step"] == summary["global_step"] and "eval/mean_return" in records[-1]
    (events,) = (run_dir / "tb").iterdir()
    assert events.stat().st_size > 100
    assert pgrad.load(run_dir).info["global_step"] == summary["global_step"]
    failing = subprocess.run(
        [sys.executable, "-m", "pgrad", "train", "nope"], capture_output=True, text=True, env=env
    )
    assert failing.returncode == 2 and "unknown algorithm" in failing.stderr


def test_a_reader_that_leaves_early_ends_the_command_quietly(monkeypatch, capfd):
    # `pgrad compare ... | head -1`: once the reader has gone, a print fails with BrokenPipeError, which must
    # end the command with 128 + SIGPIPE and no "internal error" line.
    read_end, write_end = os.pipe()
    os.close(read_end)
    stdout = os.fdopen(write_end, "w", buffering=1)

    def chatty(argv):
        print("a line nobody reads")
        return 0

    monkeypatch.setitem(pgrad.cli.COMMANDS, "chatty", chatty)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["chatty"]) == 141
    print("written to /dev/null now")  # the pipe's descriptor was pointed at /dev/null: no error at exit
    assert capfd.readouterr().err == ""
