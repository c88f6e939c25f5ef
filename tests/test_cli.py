"""The command line: one-line errors with a non-zero exit, and the happy paths."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgrad.cli import main


def pgrad(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pgrad.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "nosuch"], "unknown algorithm 'nosuch'"),
        (["train", "reinforce", "--env", "NoSuchEnv-v3", "--total-steps", "10"], "env 'NoSuchEnv-v3'"),
        (["train", "reinforce", "--no-such-flag", "1"], "unknown option(s) --no-such-flag for"),  # not "; 1"
        (["train", "reinforce", "--seed", "abc"], "--seed"),
        (["train", "reinforce", "--baseline", "magic"], "invalid choice 'magic'"),
        (["train", "reinforce", "--gamma", "1.5", "--total-steps", "10"], "gamma must be in [0, 1]"),
        (["train", "reinforce", "--total-steps", "-1"], "--total-steps must be >= 0"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["eval", "does/not/exist"], "no checkpoint has been written"),
        (["resume", "does/not/exist"], "run.json: file not found"),
        (["list", "extra"], "takes no arguments"),
        (["train", "reinforce", "--env-kwargs", "{bad"], "--env-kwargs: not a JSON object"),
        (["train", "reinforce", "--env-kwargs=[1]"], "--env-kwargs must be a JSON object"),
        (["train", "reinforce", "--env-arg", "no_value"], "--env-arg must be KEY=VALUE"),
        (["train", "reinforce", "--env-arg"], "--env-arg needs a value"),
        (["train", "reinforce", "--env-arg", "nope=1", "--total-steps", "10"], "bad env keyword arguments"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, monkeypatch, capsys, args, expected):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2  # any uncaught exception would fail the test with its traceback
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pgrad: error: ") and expected in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing half-created


def test_errors_in_a_real_process_have_no_traceback(tmp_path):
    out = pgrad("train", "reinforce", "--env", "NoSuchEnv-v3", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]


def test_list_names_each_algorithm_with_its_family():
    out = pgrad("list")
    assert out.returncode == 0
    assert "reinforce" in out.stdout and "score function" in out.stdout


def test_train_eval_resume_round_trip(tmp_path):
    run_dir = str(tmp_path / "run")
    common = ["--no-progress", "--no-tensorboard", "--num-envs", "2", "--episodes-per-update", "2"]
    out = pgrad(
        "train",
        "reinforce",
        "--env",
        "CartPole-v1",
        "--total-steps",
        "600",
        "--seed",
        "3",
        "--run-dir",
        run_dir,
        "--eval-episodes",
        "2",
        "--hidden-sizes",
        "16",
        "16",
        *common,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["global_step"] >= 600 and summary["eval_episodes"] == 2 and summary["eval_deterministic"]
    assert summary["train_return"] > 0  # labelled apart from the evaluation's return
    out = pgrad("eval", run_dir, "--episodes", "3")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip())
    assert set(result) == {"mean_return", "std_return", "episodes", "deterministic"}
    assert result["episodes"] == 3
    assert result["deterministic"] is True  # the default, as in training's evaluations
    sampled = json.loads(pgrad("eval", run_dir, "--episodes", "3", "--no-deterministic").stdout.strip())
    assert sampled["deterministic"] is False
    out = pgrad("resume", run_dir, "--total-steps", "1200", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["global_step"] >= 1200
    with open(tmp_path / "run" / "run.json") as f:
        assert json.load(f)["config"]["hidden_sizes"] == [16, 16]


def test_help_lists_run_and_algorithm_flags():
    out = pgrad("train", "reinforce", "--help")
    assert out.returncode == 0
    for flag in ("--total-steps", "--run-dir", "--baseline", "--episodes-per-update", "--policy"):
        assert flag in out.stdout


def test_env_constructor_arguments_reach_the_env_and_run_json(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "reinforce", "--env", "CartPole-v1", "--total-steps", "300", "--eval-episodes", "2"]
    extra = [
        "--env-kwargs",
        '{"max_episode_steps": 50, "render_mode": null}',
        "--env-arg=max_episode_steps=9",
    ]
    assert main([*argv, *extra, "--run-dir", str(run_dir), "--no-progress"]) == 0
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["env_kwargs"] == {"max_episode_steps": 9, "render_mode": None}  # --env-arg wins
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    lengths = [r["charts/episode_length"] for r in records if r.get("charts/episode_length") is not None]
    assert lengths and max(lengths) <= 9
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["global_step"] >= 300


def test_the_pgrad_command_finds_an_env_module_in_the_working_directory(tmp_path):
    # `python -m pgrad` puts the working directory on the import path, the installed `pgrad` script does not.
    script = Path(sys.executable).with_name("pgrad")
    if not script.exists():
        pytest.skip("no installed pgrad script next to this interpreter")
    (tmp_path / "cwd_env_module.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('CwdCartPole-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv',"
        " max_episode_steps=20)\n"
    )
    out = subprocess.run(
        [str(script), "train", "reinforce", "--env", "cwd_env_module:CwdCartPole-v0", "--total-steps", "100",
         "--eval-episodes", "1", "--run-dir", "run", "--no-progress"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["global_step"] >= 100


def test_a_runs_run_json_is_a_config_and_flags_override_it(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    options = [
        "--baseline",
        "mean",
        "--hidden-sizes",
        "16",
        "16",
        "--episodes-per-update",
        "8",
        "--seed",
        "5",
    ]
    quiet = ["--total-steps", "300", "--eval-episodes", "1", "--no-progress"]
    assert (
        main(["train", "reinforce", "--env", "CartPole-v1", *options, *quiet, "--run-dir", str(first)]) == 0
    )
    # no algorithm on the line: run.json names it
    assert main(["train", "--config", str(first / "run.json"), "--lr", "0.02", "--run-dir", str(second)]) == 0
    a, b = (json.loads((d / "run.json").read_text()) for d in (first, second))
    assert {k for k in a["config"] if a["config"][k] != b["config"][k]} == {"lr"} and b["config"][
        "lr"
    ] == 0.02
    assert {k for k in a["run"] if a["run"][k] != b["run"][k]} == {"run_dir"}
    assert b["config"]["hidden_sizes"] == [16, 16] and b["run"]["seed"] == 5


def test_a_toml_config_sits_between_the_preset_and_the_flags(tmp_path):
    config = tmp_path / "ppo.toml"
    config.write_text(
        "lr = 0.01\nupdate_epochs = 3\nhidden_sizes = [32, 32]\n[run]\nseed = 7\ntotal_steps = 512\n"
    )
    run_dir = tmp_path / "run"
    argv = ["train", "ppo", "--config", str(config), "--update-epochs", "2", "--eval-episodes", "1"]
    assert main([*argv, "--run-dir", str(run_dir), "--no-progress"]) == 0
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["config"]["lr"] == 0.01 and saved["config"]["update_epochs"] == 2  # file, then the flag
    assert saved["config"]["hidden_sizes"] == [32, 32] and saved["run"]["seed"] == 7
    assert (
        saved["config"]["num_envs"] == 8 and "lr" not in saved["preset"]
    )  # the preset, where not overridden


def test_a_config_file_can_turn_the_preset_off_and_a_flag_turns_it_back_on(tmp_path):
    config = tmp_path / "ppo.toml"
    config.write_text("[run]\npreset = false\ntotal_steps = 256\n")
    for flags, num_steps in (([], 128), (["--preset"], 32)):  # PPO's default rollout; the CartPole preset's
        run_dir = tmp_path / f"run{len(flags)}"
        argv = ["train", "ppo", "--config", str(config), *flags, "--eval-episodes", "1", "--no-progress"]
        assert main([*argv, "--run-dir", str(run_dir)]) == 0
        saved = json.loads((run_dir / "run.json").read_text())
        assert saved["config"]["num_steps"] == num_steps and saved["run"]["preset"] == bool(flags)


@pytest.mark.parametrize(
    "text, suffix, expected",
    [
        ("lr = 0.01", ".yaml", "a .toml or .json file expected"),
        ("lr = ", ".toml", "not valid TOML"),
        ("[1, 2]", ".json", "must hold a table of options"),
        ("learning_rate = 0.01", ".toml", "unknown option 'learning_rate' for reinforce"),
        ('lr = "fast"', ".toml", "option 'lr' must be like 0.001"),
        ("seed = 1.5", ".toml", "option 'seed' must be like 0"),
        ('{"algorithm": "ppo"}', ".json", "a config for 'ppo', not for 'reinforce'"),
    ],
)
def test_bad_config_files_are_one_line(tmp_path, monkeypatch, capsys, text, suffix, expected):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"config{suffix}"
    path.write_text(text)
    assert main(["train", "reinforce", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pgrad: error: --config") and expected in err, err
    assert main(["train", "reinforce", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_a_missing_optional_dependency_names_the_extra_that_installs_it():
    from pgrad.errors import ConfigError, optional_import

    assert optional_import("json", "x", "feature").dumps(1) == "1"
    with pytest.raises(ConfigError, match=r"pgrad tune needs no_such_pkg: pip install 'pgrad\[tune\]'"):
        optional_import("no_such_pkg.sub", "tune", "pgrad tune")
