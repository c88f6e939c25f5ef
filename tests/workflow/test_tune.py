"""`pgrad tune`: search spaces beside each Config, pruning, failed trials, resuming the study, best.toml."""

from __future__ import annotations

import dataclasses
import json
import math
import time
import types
from pathlib import Path

import optuna
import pytest
import tomllib

import pgrad.workflow.tune as tune_module
from pgrad.algorithms import REGISTRY, get_algorithm
from pgrad.cli import main
from pgrad.errors import ConfigError, Interrupted, PgradWarning
from pgrad.run.config import RunConfig, check_field_types
from pgrad.run.folder import read_run_file, write_run_file
from pgrad.run.logger import read_metrics
from pgrad.workflow.tune import (
    check_search_space,
    default_pruner,
    nominal_step,
    sample_params,
    toml_value,
    tune,
    write_best_config,
)

FLAGS = ["--total-steps", "1200", "--eval-every", "400", "--eval-episodes", "2", "--last-evals", "2"]
BUDGET = dict(total_steps=1_200, eval_every=400, eval_episodes=2, last_evals=2)


def load(out: Path, name: str = "reinforce-CartPole-v1") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


class PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 at its first evaluation, whatever its return: a deterministic prune."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number == 1


def test_tune_prunes_resumes_and_its_best_config_trains(tmp_path, capsys):
    out = tmp_path / "study"
    fixed = tmp_path / "fixed.toml"
    fixed.write_text("num_envs = 2\ntensorboard = false\n")
    options = {"num_envs": 2, "tensorboard": False}
    result = tune(
        "reinforce", "CartPole-v1", trials=3, out=out, **BUDGET, options=options, progress=False,
        pruner=PruneTrialOne(),
    )  # fmt: skip
    assert (result["trials"], result["complete"], result["pruned"], result["failed"]) == (3, 2, 1, 0)
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000", "0001", "0002"]
    study = load(out)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE"]
    # the pruned trial stopped at its first evaluation; the others trained the whole budget
    assert max(r["global_step"] for r in read_metrics(out / "trials" / "0001")) < 800
    for trial in (study.trials[0], study.trials[2]):
        evals = [
            r["eval/mean_return"]
            for r in read_metrics(trial.user_attrs["run_dir"])
            if "eval/mean_return" in r
        ]
        assert len(evals) == 3
        assert trial.value == pytest.approx(sum(evals[-2:]) / 2)  # the objective: mean of the last 2
        # reported at the schedule's steps, whatever the batch boundaries were
        assert sorted(trial.intermediate_values) == [400, 800, 1_200]
        assert list(trial.intermediate_values.values()) == pytest.approx(evals)
    best = max((study.trials[0], study.trials[2]), key=lambda t: t.value)
    assert result["best_trial"] == best.number and result["best_value"] == pytest.approx(best.value)
    printed = capsys.readouterr().out
    assert "pruned" in printed and f"best: trial {best.number}" in printed

    # the same command again resumes the study: one more trial, sampled anew (not a replay of trial 0)
    args = ["tune", "reinforce", "--env", "CartPole-v1", "--trials", "1", *FLAGS, "--out", str(out)]
    assert main([*args, "--config", str(fixed), "--no-progress"]) == 0
    study = load(out)
    assert len(study.trials) == 4 and study.trials[3].state.name == "COMPLETE"
    assert study.trials[3].params not in [t.params for t in study.trials[:3]]
    # ... and with other settings it refuses, naming them
    other = [("3000" if a == "1200" else a) for a in args]
    assert main([*other, "--config", str(fixed)]) == 2
    assert "total_steps=1200" in capsys.readouterr().err

    # best.toml holds the best trial's every option; `pgrad train --config` rebuilds exactly that config
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    best_toml = out / "best.toml"
    data = tomllib.loads(best_toml.read_text())
    saved = read_run_file(best.user_attrs["run_dir"])
    assert data["algorithm"] == "reinforce" and data["run"]["env"] == "CartPole-v1"
    again = tmp_path / "again"
    assert main(["train", "--config", str(best_toml), "--run-dir", str(again), "--total-steps", "500",
                 "--eval-episodes", "1", "--no-progress", "--no-tensorboard"]) == 0  # fmt: skip
    retrained = read_run_file(again)
    assert retrained["config"] == saved["config"]
    assert {k: retrained["run"][k] for k in ("env", "seed", "backend")} == {
        k: saved["run"][k] for k in ("env", "seed", "backend")
    }


def fake_train(behaviour: dict[int, object], calls: list[dict]):
    """A stand-in for pgrad.train: trial N's run does what behaviour[N] says (raise it, or report these
    evaluation returns) and writes the run.json a real run would."""

    def train(algorithm, env, *, on_evaluation, run_dir, **options):
        calls.append(options)
        number = int(Path(run_dir).name)
        action = behaviour[number]
        if isinstance(action, BaseException):
            raise action
        for i, value in enumerate(action, start=1):
            on_evaluation({"global_step": 400 * i + 20, "mean_return": value})
        Path(run_dir).mkdir(parents=True)
        cls = get_algorithm(algorithm)
        config = {k: options[k] for k in (f.name for f in dataclasses.fields(cls.Config)) if k in options}
        run = dataclasses.asdict(RunConfig(env=env, seed=options["seed"], total_steps=options["total_steps"]))
        write_run_file(
            Path(run_dir),
            {"algorithm": cls.name, "env": env, "run": run,
             "config": dataclasses.asdict(dataclasses.replace(cls.Config(), **config))},
        )  # fmt: skip
        return {}

    return train


def test_a_trial_that_cannot_train_or_returns_nan_fails_with_its_reason_and_the_study_goes_on(
    tmp_path, monkeypatch, capsys
):
    calls: list[dict] = []
    behaviour = {
        0: ConfigError("episodes_per_update (3) is not a multiple of num_envs (2)"),
        1: [10.0, float("nan")],
        2: ValueError("Expected parameter logits to satisfy the constraint"),
        3: [10.0, 20.0, 60.0],
    }
    monkeypatch.setattr(tune_module, "train", fake_train(behaviour, calls))
    result = tune("reinforce", "CartPole-v1", trials=4, out=tmp_path / "s", **BUDGET, progress=False)
    assert (result["complete"], result["failed"], result["best_trial"]) == (1, 3, 3)
    assert result["best_value"] == pytest.approx(40.0)  # mean of the last 2 evaluations
    study = load(tmp_path / "s")
    reasons = [t.user_attrs.get("fail_reason", "") for t in study.trials]
    assert "ConfigError: episodes_per_update (3)" in reasons[0]
    assert "nan" in reasons[1] and "ValueError: Expected parameter" in reasons[2]
    assert study.trials[1].intermediate_values == {400: 10.0}  # the NaN never reached the study
    printed = capsys.readouterr().out
    assert all(reason in printed for reason in reasons[:3])
    # every trial got the same seed and budget, the sampled options and no preset of its own
    assert {c["seed"] for c in calls} == {0} and all(c["preset"] is False for c in calls)
    assert all(set(tune_module.get_algorithm("reinforce").search_space) <= set(c) for c in calls)


def test_a_call_whose_trials_all_fail_is_an_error_naming_the_reason(tmp_path, monkeypatch, capsys):
    # a real training run, refused at construction: 3 episodes per update cannot split over 2 sub-envs
    monkeypatch.setattr(
        get_algorithm("reinforce"), "search_space", {"episodes_per_update": ("categorical", (3,))}
    )
    args = ["tune", "reinforce", "--env", "CartPole-v1", "--trials", "2", "--out", str(tmp_path / "s")]
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"num_envs": 2}))
    assert main([*args, "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "all 2 trials of this call failed" in err and "episodes_per_update" in err
    assert [t.state.name for t in load(tmp_path / "s").trials] == ["FAIL", "FAIL"]
    assert not (tmp_path / "s" / "best.toml").exists()


def test_ctrl_c_in_a_trial_fails_it_and_says_how_to_continue(tmp_path, monkeypatch):
    monkeypatch.setattr(tune_module, "train", fake_train({0: Interrupted("SIGINT: stopped", 130)}, []))
    with pytest.raises(Interrupted, match="run the same command again") as caught:
        tune("reinforce", "CartPole-v1", trials=3, out=tmp_path / "s", **BUDGET, progress=False)
    assert caught.value.exit_code == 130
    assert [t.state.name for t in load(tmp_path / "s").trials] == ["FAIL"]


def test_timeout_starts_no_new_trial(tmp_path, monkeypatch):
    slow = fake_train({n: [1.0, 2.0] for n in range(5)}, [])

    def train(*args, **kwargs):
        time.sleep(0.2)
        return slow(*args, **kwargs)

    monkeypatch.setattr(tune_module, "train", train)
    result = tune("reinforce", "CartPole-v1", trials=5, out=tmp_path / "s", **BUDGET, timeout_minutes=0.001)
    assert result["trials"] == 1


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_algorithm_declares_a_search_space_of_its_config_fields_that_samples_valid_values(name):
    cls = get_algorithm(name)
    space = check_search_space(cls)
    assert 3 <= len(space) <= 10  # small: the options that matter
    assert set(space) <= {f.name for f in dataclasses.fields(cls.Config)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(25):
        trial = study.ask()
        params = sample_params(trial, space)
        # Optuna stores only None, bool, int, float and str: tuple choices go in as labels
        assert all(v is None or isinstance(v, bool | int | float | str) for v in trial.params.values())
        check_field_types(dataclasses.replace(cls.Config(), **params), name)
        for key, value in params.items():
            kind, *rest = space[key]
            if kind == "categorical":
                assert value in rest[0] and type(value) is type(rest[0][list(rest[0]).index(value)])
            else:
                assert rest[0] <= value <= rest[1] and isinstance(value, int if kind == "int" else float)
        study.tell(trial, 0.0)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "declares no search space"),
        (
            {"gama": ("log", 0.9, 0.99)},
            "'gama' is not an option of reinforce (did you mean gamma?)",
        ),
        ({"lr": ("loguniform", 1e-4, 1e-2)}, "kind one of log, float, int, categorical"),
        ({"lr": ("log", 1e-2, 1e-4)}, "low < high"),
        ({"lr": ("log", 0.0, 1e-2)}, "low > 0"),
        ({"num_envs": ("float", 1.0, 8.0)}, "do not fit the option"),
        ({"num_envs": ("int", 1, 8.5)}, "int bounds"),
        ({"baseline": ("categorical", ("mean", "bogus"))}, "do not fit the option"),
        ({"gamma": ("categorical", ())}, "('categorical', (choice, ...))"),
    ],
)
def test_an_invalid_search_space_is_refused_naming_the_key(monkeypatch, tmp_path, space, message):
    monkeypatch.setattr(get_algorithm("reinforce"), "search_space", space)
    with pytest.raises(ConfigError, match="reinforce") as caught:
        tune("reinforce", "CartPole-v1", trials=1, out=tmp_path / "s", total_steps=100)
    assert message in str(caught.value)
    assert not (tmp_path / "s").exists()  # refused before anything was written


def test_evaluations_report_at_the_schedules_steps():
    # batch boundaries differ between trials; the pruner compares returns at equal steps
    assert [nominal_step(s, 500, 2_000) for s in (520, 1_000, 1_499, 1_980, 2_000, 2_048)] == [
        500, 1_000, 1_000, 1_500, 2_000, 2_000,
    ]  # fmt: skip
    assert nominal_step(1_040, 400, 1_000) == 1_000  # the final one, not a second report at 800
    assert nominal_step(1_000, 400, 1_000) == 1_000
    assert nominal_step(100, 0, 2_000) == 2_000  # eval_every 0: only the final evaluation


def test_the_default_pruner_waits_for_five_trials_and_a_third_of_the_budget():
    def should_prune(finished: int, step: int) -> bool:
        study = optuna.create_study(direction="maximize", pruner=default_pruner(3_000))
        for _ in range(finished):
            trial = study.ask()
            for s in (500, 1_000, 2_000, 3_000):
                trial.report(100.0, s)
            study.tell(trial, 100.0)
        trial = study.ask()
        trial.report(1.0, step)  # far below the median
        return trial.should_prune()

    assert should_prune(5, 1_000) and should_prune(5, 2_000)
    assert not should_prune(4, 2_000)  # too few finished trials
    assert not should_prune(5, 500)  # before a third of the budget


def test_toml_values_read_back_as_written():
    values = {
        "s": 'quote " backslash \\ newline \n tab \t del \x7f émoji 😀',
        "f": 1e-05,
        "g": 3.0,
        "big": 1e300,
        "neg": -0.5,
        "i": -7,
        "b": False,
        "t": [64, 64],
        "d": {"max episode steps": 200, "x": "y"},
    }
    text = "\n".join(f"{k} = {toml_value(v)}" for k, v in values.items())
    parsed = tomllib.loads(text)
    assert parsed == values
    assert [type(v) for v in parsed.values()] == [type(v) for v in values.values()]  # False is not 0
    assert math.isinf(tomllib.loads(f"x = {toml_value(float('inf'))}")["x"])
    assert tomllib.loads(f"x = {toml_value((0.7, 0.95))}")["x"] == [0.7, 0.95]  # tuples as arrays


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "taken" / "trials" / "0000").mkdir(parents=True)
    other = tmp_path / "other"
    other.mkdir()
    optuna.create_study(study_name="ppo-CartPole-v1", storage=f"sqlite:///{other / 'study.db'}")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "study.db").write_text("not a database")
    env = ["reinforce", "--env", "CartPole-v1"]
    tiny = [
        "--trials",
        "1",
        "--total-steps",
        "100",
        "--eval-every",
        "0",
        "--eval-episodes",
        "1",
        "--no-progress",
    ]
    cases = [
        ([], "needs an algorithm name"),
        (["nope", "--env", "CartPole-v1"], "unknown algorithm 'nope'"),
        (["reinforce"], "--env ENV_ID is needed"),
        ([*env, "--trials", "0"], "--trials must be >= 1"),
        ([*env, "--eval-episodes", "0"], "--eval-episodes must be >= 1"),
        ([*env, "--trails", "3"], "did you mean --trials?"),
        # tiny budgets: should a check miss, the test fails fast instead of tuning for minutes
        ([*env, *tiny, "--out", str(tmp_path / "taken")], "holds trial runs"),
        ([*env, *tiny, "--out", str(other)], "holds the study 'ppo-CartPole-v1'"),
        ([*env, *tiny, "--out", str(tmp_path / "junk")], "study.db: not an Optuna study database"),
    ]
    for argv, message in cases:
        assert main(["tune", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("pgrad: error: ") and message in err and err.count("\n") == 1, (argv, err)
    assert main(["tune", "--help"]) == 0 and "pgrad tune ALGO" in capsys.readouterr().out


def test_best_toml_says_which_none_options_toml_cannot_hold(tmp_path):
    # discrete SAC's alpha defaults to 0.05; None (auto-tuned) cannot be written, so the file says so
    cls = get_algorithm("sac_discrete")
    config = dataclasses.asdict(dataclasses.replace(cls.Config(), alpha=None, batch_size=32))
    run = dataclasses.asdict(RunConfig(env="CartPole-v1", total_steps=5_000))
    write_run_file(
        tmp_path, {"algorithm": "sac_discrete", "env": "CartPole-v1", "run": run, "config": config}
    )
    trial = types.SimpleNamespace(number=7, value=12.5)
    with pytest.warns(PgradWarning, match="alpha = None"):
        path = write_best_config(tmp_path / "best.toml", tmp_path, trial, 9)
    text = path.read_text()
    assert (
        "# alpha = None cannot be written in TOML" in text and "alpha_lr" not in text
    )  # its default is None
    data = tomllib.loads(text)
    assert data["config"]["batch_size"] == 32 and "alpha" not in data["config"]
    assert data["run"] == {"env": "CartPole-v1", "total_steps": 5_000, "seed": 0, "backend": "auto"}
