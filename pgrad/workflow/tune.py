"""`pgrad tune ALGO --env X --trials N`: hyper-parameter search with Optuna over an algorithm's search space.

Each trial samples the options of the algorithm's `search_space` (declared beside its Config, e.g.
`PPO.search_space`), trains with them in `DIR/trials/NNNN` and reports every evaluation's mean return to a
median pruner, which stops a trial whose return is below the median of earlier trials at the same point.

    objective  = mean of the last K evaluations' mean returns          (K = --last-evals, default 3)
    sampler    = TPE (Bergstra et al. 2011), seeded; the first 5 trials sample at random
    pruner     = median: at evaluation step s ≥ total_steps/3, prune a trial whose best mean return so far is
                 below the median of the completed trials' mean returns at s (once 5 trials have completed)

The study lives in SQLite at `DIR/study.db` (open it with `optuna-dashboard sqlite:///DIR/study.db`): the same
command again resumes it and runs `--trials` more. The best trial's options go to `DIR/best.toml`, which
`pgrad train --config DIR/best.toml` trains again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgrad.algorithms import get_algorithm
from pgrad.algorithms.presets import preset
from pgrad.api import train
from pgrad.errors import ConfigError, Interrupted, PgradWarning, did_you_mean, optional_import
from pgrad.run.config import RESUMABLE_OPTIONS, RunConfig, check_field_types, use_threads
from pgrad.run.folder import read_run_file
from pgrad.run.seeding import derive_seed

STUDY_FILE = "study.db"
BEST_FILE = "best.toml"
TRIALS_DIR = "trials"
# Median pruner and TPE settings (rl-baselines3-zoo's: 5 random start-up trials, no pruning in the first
# third of the budget).
STARTUP_TRIALS = 5
WARMUP_FRACTION = 1 / 3
# Default number of evaluations per trial when --eval-every is not given: eval_every = total_steps // 5.
EVALUATIONS = 5
# tune's own arguments: not accepted among the fixed `options` (they would be ambiguous)
OWN_OPTIONS = ("env", "total_steps", "eval_every", "eval_episodes", "seed", "run_dir", "threads", "progress")
SPACE_KINDS = ("log", "float", "int", "categorical")


class TrialFailed(Exception):
    """A trial that could not train (invalid sampled combination, divergence, NaN return): recorded as failed
    with its reason; the study goes on."""


# -- search spaces -----------------------------------------------------------------------------------------
def check_search_space(cls: Any) -> dict[str, tuple]:
    """The algorithm class's `search_space`, checked: each key a field of its Config, each range valid for
    that field's type. A one-line ConfigError names the algorithm and the key otherwise."""
    space = getattr(cls, "search_space", None) or {}
    where = f"{cls.name}.search_space"
    if not space:
        raise ConfigError(
            f"{cls.name} declares no search space: `pgrad tune` needs a `search_space` class attribute "
            f"beside its Config (see PPO's in pgrad/algorithms/score_function/ppo.py)"
        )
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    for key, spec in space.items():
        if key not in fields:
            raise ConfigError(f"{where}: '{key}' is not an option of {cls.name}{did_you_mean(key, fields)}")
        if not isinstance(spec, tuple) or not spec or spec[0] not in SPACE_KINDS:
            raise ConfigError(
                f"{where}['{key}']: expected (kind, ...), kind one of {', '.join(SPACE_KINDS)}; got {spec!r}"
            )
        kind = spec[0]
        if kind == "categorical":
            if len(spec) != 2 or not isinstance(spec[1], tuple | list) or not spec[1]:
                raise ConfigError(f"{where}['{key}']: expected ('categorical', (choice, ...)), got {spec!r}")
            samples = list(spec[1])
        else:
            if len(spec) != 3 or not all(_is_number(v) for v in spec[1:]) or not spec[1] < spec[2]:
                raise ConfigError(
                    f"{where}['{key}']: expected ('{kind}', low, high) with low < high, got {spec!r}"
                )
            if kind == "log" and spec[1] <= 0:
                raise ConfigError(f"{where}['{key}']: a log range needs low > 0, got {spec!r}")
            if kind == "int" and not all(isinstance(v, int) for v in spec[1:]):
                raise ConfigError(f"{where}['{key}']: an int range needs int bounds, got {spec!r}")
            cast = int if kind == "int" else float
            samples = [cast(spec[1]), cast(spec[2])]
        for value in samples:
            try:
                check_field_types(dataclasses.replace(cls.Config(), **{key: value}), cls.name)
            except ConfigError as exc:
                raise ConfigError(f"{where}['{key}']: {kind} values do not fit the option ({exc})") from None
    return dict(space)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _label(choice: Any) -> Any:
    """What Optuna stores for a categorical choice: the choice itself, or its repr for a tuple (Optuna keeps
    only None, bool, int, float and str)."""
    return choice if choice is None or isinstance(choice, bool | int | float | str) else repr(choice)


def sample_params(trial: Any, space: dict[str, tuple]) -> dict[str, Any]:
    """One value per key of `space` from the Optuna `trial` ("log": log-uniform float, "float": uniform,
    "int": uniform integer, "categorical": one of the choices)."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        kind = spec[0]
        if kind == "categorical":
            choices = list(spec[1])
            label = trial.suggest_categorical(key, [_label(c) for c in choices])
            params[key] = choices[[_label(c) for c in choices].index(label)]
        elif kind == "int":
            params[key] = trial.suggest_int(key, spec[1], spec[2])
        else:
            params[key] = trial.suggest_float(key, float(spec[1]), float(spec[2]), log=kind == "log")
    return params


# -- the study ---------------------------------------------------------------------------------------------
def nominal_step(global_step: int, eval_every: int, total_steps: int) -> int:
    """The step an evaluation is reported at: its scheduled step k·eval_every, or total_steps for the one
    at the end. An evaluation runs at the first iteration boundary past k·eval_every, which depends on the
    batch size a trial sampled; the pruner compares trials at equal steps, so they report the schedule's."""
    if global_step >= total_steps or eval_every <= 0:
        return total_steps
    return (global_step // eval_every) * eval_every


def default_pruner(total_steps: int) -> Any:
    """Optuna's median pruner: no pruning before 5 trials have completed nor before a third of the budget."""
    optuna = optional_import("optuna", "tune", "pgrad tune")
    return optuna.pruners.MedianPruner(
        n_startup_trials=STARTUP_TRIALS, n_warmup_steps=int(total_steps * WARMUP_FRACTION), interval_steps=1
    )


def study_name(algorithm: str, env: str) -> str:
    """The study's name in study.db: the algorithm and the env id."""
    return f"{algorithm}-{env}"


def tune(
    algorithm: str,
    env: str,
    trials: int,
    out: str | Path,
    *,
    total_steps: int = 100_000,
    eval_every: int | None = None,
    eval_episodes: int = 10,
    seed: int = 0,
    timeout_minutes: float | None = None,
    last_evals: int = 3,
    options: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    threads: int = 1,
    pruner: Any = None,
) -> dict[str, Any]:
    """Search `algorithm`'s `search_space` on `env` with Optuna for `trials` more trials; returns the best.

    Each trial trains `total_steps` env steps with seed `seed` (the same for every trial, so trials differ by
    their options only) into `out/trials/NNNN`, evaluating `eval_episodes` episodes every `eval_every` steps
    (default total_steps // 5) and at the end. Its value is the mean of the last `last_evals` evaluations'
    mean returns. `options` are fixed options (run or algorithm) for every trial, on top of pgrad's preset
    for the algorithm and env; sampled options override both. The study is `out/study.db`: calling again
    with the same settings resumes it. `pruner` replaces the median pruner (any Optuna pruner).
    `timeout_minutes` stops starting new trials after that long (a running trial finishes).

    Prints one line per finished trial, then every trial of the study as a table. Returns best_value,
    best_params, best_trial, best_config (the path of best.toml; None without a completed trial), and the
    study's counts: trials, complete, pruned, failed. A ConfigError when every trial of this call failed.
    """
    optuna = optional_import("optuna", "tune", "pgrad tune")
    use_threads(threads)
    cls = get_algorithm(algorithm)
    space = check_search_space(cls)
    eval_every = total_steps // EVALUATIONS if eval_every is None else eval_every
    options = dict(options or {})
    _check_arguments(cls, trials, total_steps, eval_every, eval_episodes, seed, last_evals, timeout_minutes)
    _check_options(cls, options)
    out = Path(out)
    settings = {
        "algorithm": cls.name,
        "env": env,
        "total_steps": total_steps,
        "eval_every": eval_every,
        "eval_episodes": eval_episodes,
        "seed": seed,
        "last_evals": last_evals,
        "env_kwargs": dict(env_kwargs or {}),
        # options that change what is learned (not threads, checkpoints or logging)
        "options": {k: v for k, v in sorted(options.items()) if k not in RESUMABLE_OPTIONS},
    }
    applied = preset(cls.name, env) if options.pop("preset", True) else {}
    base = {**{k: v for k, v in applied.items() if k not in options}, **options}

    study = _open_study(optuna, out, study_name(cls.name, env), settings)
    kept = {k: v for k, v in applied.items() if k not in options and k not in space}
    if kept:
        shown = ", ".join(f"{k}={v}" for k, v in kept.items())
        print(f"pgrad tune: trials keep pgrad's preset for {cls.name} on {env}: {shown}", file=sys.stderr)
    known = len(study.trials)
    study.sampler = optuna.samplers.TPESampler(
        n_startup_trials=STARTUP_TRIALS,
        seed=derive_seed(seed, "tune", known),  # a resumed study samples anew
    )
    study.pruner = pruner if pruner is not None else default_pruner(total_steps)
    (out / TRIALS_DIR).mkdir(parents=True, exist_ok=True)

    def objective(trial: Any) -> float:
        params = sample_params(trial, space)
        run_dir = out / TRIALS_DIR / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        returns: list[float] = []

        def on_evaluation(result: dict[str, Any]) -> None:
            value = float(result["mean_return"])
            step = nominal_step(int(result["global_step"]), eval_every, total_steps)
            if not math.isfinite(value):
                raise TrialFailed(f"the evaluation at step {result['global_step']:,} returned {value}")
            returns.append(value)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step:,} with mean return {value:.2f}")

        try:
            train(
                cls.name,
                env,
                env_kwargs=env_kwargs,
                on_evaluation=on_evaluation,
                **{**base, **params},
                preset=False,  # applied above, announced once
                total_steps=total_steps,
                eval_every=eval_every,
                eval_episodes=eval_episodes,
                seed=seed,
                run_dir=str(run_dir),
                progress=progress,
                threads=threads,
            )
        except (optuna.TrialPruned, Interrupted, TrialFailed) as exc:
            if isinstance(exc, TrialFailed):
                trial.set_user_attr("fail_reason", str(exc))
            raise
        # an invalid sampled combination, a divergence: this trial fails, not the study
        except Exception as exc:
            reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(reason) from exc
        if not returns:
            trial.set_user_attr("fail_reason", "no evaluation ran")
            raise TrialFailed("no evaluation ran")
        return float(sum(returns[-last_evals:]) / len(returns[-last_evals:]))

    def announce(study: Any, frozen: Any) -> None:
        print(f"trial {frozen.number}: " + _trial_line(frozen, space, table=False), flush=True)

    # one line per trial is ours (Optuna's own would print each failure's traceback)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study.optimize(
            objective,
            n_trials=trials,
            timeout=None if timeout_minutes is None else 60 * timeout_minutes,
            catch=(TrialFailed,),
            callbacks=[announce],
        )
    except Interrupted as exc:
        raise Interrupted(
            f"stopped during trial {len(study.trials) - 1} (recorded as failed); run the same command again "
            f"to continue the study in {out / STUDY_FILE}",
            exc.exit_code,
        ) from None
    finally:
        optuna.logging.set_verbosity(verbosity)

    return _finish(optuna, study, out, space, known)


def _check_arguments(
    cls: Any,
    trials: int,
    total_steps: int,
    eval_every: int,
    eval_episodes: int,
    seed: int,
    last_evals: int,
    timeout_minutes: float | None,
) -> None:
    for name, value, least in (
        ("trials", trials, 1),
        ("total_steps", total_steps, 1),
        ("eval_every", eval_every, 0),
        ("eval_episodes", eval_episodes, 1),
        ("seed", seed, 0),
        ("last_evals", last_evals, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(
                f"pgrad tune {cls.name}: --{name.replace('_', '-')} must be >= {least}, got {value!r}"
            )
    if timeout_minutes is not None and not (_is_number(timeout_minutes) and timeout_minutes > 0):
        raise ConfigError(f"pgrad tune {cls.name}: --timeout-minutes must be > 0, got {timeout_minutes!r}")


def _check_options(cls: Any, options: dict[str, Any]) -> None:
    """Fixed options: run or algorithm options by name, and none of tune's own arguments."""
    own = sorted(set(options) & set(OWN_OPTIONS))
    if own:
        raise ConfigError(f"pgrad tune: {', '.join(own)} are tune's own arguments, not fixed options")
    known = {f.name for f in dataclasses.fields(RunConfig)} | {f.name for f in dataclasses.fields(cls.Config)}
    for name in options:
        if name not in known:
            raise ConfigError(
                f"pgrad tune: unknown option '{name}' for {cls.name}{did_you_mean(name, known)}"
            )


def _open_study(optuna: Any, out: Path, name: str, settings: dict[str, Any]) -> Any:
    """The study in out/study.db: created, or loaded when it exists with the same settings."""
    db = out / STUDY_FILE
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    trials_dir = out / TRIALS_DIR
    if not db.exists() and trials_dir.exists() and any(trials_dir.iterdir()):
        raise ConfigError(
            f"--out {out} holds trial runs but no {STUDY_FILE}: choose another --out (or remove {trials_dir})"
        )
    out.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Heartbeats let a later run mark a killed process's trials as failed instead of running forever.
            storage = optuna.storages.RDBStorage(
                f"sqlite:///{db.resolve()}",
                engine_kwargs={"connect_args": {"timeout": 30}},
                heartbeat_interval=60,
                grace_period=180,
            )
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    except Exception as exc:  # sqlalchemy's errors: a file that is not an Optuna SQLite database
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"{db}: not an Optuna study database ({type(exc).__name__}: {first})") from None
    others = [n for n in names if n != name]
    if others:
        raise ConfigError(f"{db} holds the study '{others[0]}', not '{name}': choose another --out")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", load_if_exists=True
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    saved = study.user_attrs.get("settings")
    if saved is None:
        study.set_user_attr("settings", settings)
    elif saved != json.loads(json.dumps(settings)):
        changed = [k for k in settings if json.loads(json.dumps(settings[k])) != saved.get(k)]
        was = ", ".join(f"{k}={saved.get(k)!r}" for k in changed)
        now = ", ".join(f"{k}={settings[k]!r}" for k in changed)
        raise ConfigError(
            f"{db} was started with {was}; this call has {now}: use the same settings to continue the study, "
            "or choose another --out"
        )
    return study


# -- results -----------------------------------------------------------------------------------------------
def _params(frozen: Any, space: dict[str, tuple]) -> dict[str, Any]:
    """A trial's sampled options as the Config takes them (tuple choices back from their labels)."""
    params = {}
    for key, value in frozen.params.items():
        spec = space.get(key)
        if spec is not None and spec[0] == "categorical":
            labels = [_label(c) for c in spec[1]]
            value = spec[1][labels.index(value)] if value in labels else value
        params[key] = value
    return params


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def _state(frozen: Any) -> str:
    return frozen.state.name.lower()


def _value(frozen: Any) -> float | None:
    """A completed trial's objective; a pruned trial's last reported mean return; else None."""
    if frozen.state.name == "COMPLETE":
        return frozen.value
    if frozen.state.name == "PRUNED" and frozen.intermediate_values:
        return frozen.intermediate_values[max(frozen.intermediate_values)]
    return None


def _trial_line(frozen: Any, space: dict[str, tuple], table: bool = True) -> str:
    """A trial's state, value, options, and where it was pruned or why it failed."""
    value = _value(frozen)
    shown = "-" if value is None else f"{value:.2f}"
    params = " ".join(f"{k}={_format(v)}" for k, v in _params(frozen, space).items())
    head = f"{_state(frozen):8s}  {shown:>9s} " if table else f"{_state(frozen)}, value {shown}:"
    line = f"{head} {params}"
    if frozen.state.name == "PRUNED" and frozen.intermediate_values:
        line += f"  (at step {max(frozen.intermediate_values):,})"
    if frozen.user_attrs.get("fail_reason"):
        line += f"  ({frozen.user_attrs['fail_reason']})"
    return line


def summary_table(study: Any, space: dict[str, tuple]) -> str:
    """Every trial of the study: number, state, value (pruned: last reported return), options."""
    header = f"{'trial':>5s}  {'state':8s}  {'value':>9s}  options"
    return "\n".join([header, *(f"{t.number:5d}  {_trial_line(t, space)}" for t in study.trials)])


def _finish(optuna: Any, study: Any, out: Path, space: dict[str, tuple], known: int) -> dict[str, Any]:
    states = optuna.trial.TrialState
    counts = {
        name: sum(t.state == state for t in study.trials)
        for name, state in (("complete", states.COMPLETE), ("pruned", states.PRUNED), ("failed", states.FAIL))
    }
    print(summary_table(study, space))
    result: dict[str, Any] = {
        "study": str(out / STUDY_FILE),
        "study_name": study.study_name,
        "trials": len(study.trials),
        **counts,
        "best_trial": None,
        "best_value": None,
        "best_params": None,
        "best_config": None,
    }
    new = study.trials[known:]
    if new and all(t.state == states.FAIL for t in new):
        first = new[0].user_attrs.get("fail_reason", "unknown")
        raise ConfigError(f"all {len(new)} trials of this call failed; trial {new[0].number}: {first}")
    if counts["complete"] == 0:
        print("no completed trial yet: no best.toml")
        return result
    best = study.best_trial
    path = write_best_config(out / BEST_FILE, Path(best.user_attrs["run_dir"]), best, len(study.trials))
    result.update(
        best_trial=best.number,
        best_value=best.value,
        best_params=_params(best, space),
        best_config=str(path),
    )
    params = " ".join(f"{k}={_format(v)}" for k, v in result["best_params"].items())
    print(f"best: trial {best.number}, value {best.value:.2f}: {params}")
    print(f"config: {path}  (train it: pgrad train --config {path})")
    return result


# -- best.toml ---------------------------------------------------------------------------------------------
# run options that decide what is learned; the rest (evaluation, checkpoints, progress) keep train's defaults
BEST_RUN_OPTIONS = ("env", "total_steps", "seed", "backend")


def write_best_config(path: Path, run_dir: Path, trial: Any, trials: int) -> Path:
    """The best trial's options as a TOML file `pgrad train --config` takes: its algorithm, the run options
    that decide what is learned, and every option of its Config, read from the trial's run.json."""
    saved = read_run_file(run_dir)
    cls = get_algorithm(saved["algorithm"])
    run = {k: saved["run"][k] for k in BEST_RUN_OPTIONS if k in saved["run"]}
    config = saved["config"]
    # TOML has no null: a None option is left out, which is exact only where `pgrad train` would give None
    fallback = {**dataclasses.asdict(cls.Config()), **preset(cls.name, run.get("env"))}
    lost = [k for k, v in config.items() if v is None and fallback.get(k) is not None]
    lines = [
        f"# pgrad tune: the best of {trials} trials of {saved['algorithm']} on {saved['env']}: trial "
        f"{trial.number}, value {trial.value:.4g}",
        f"# run folder: {run_dir}",
        f"# train it: pgrad train --config {path} [--total-steps N --seed S ...]",
        *(f"# {k} = None cannot be written in TOML: pass it again" for k in lost),
        f"algorithm = {toml_value(saved['algorithm'])}",
    ]
    if saved.get("env_kwargs"):
        lines.append(f"env_kwargs = {toml_value(saved['env_kwargs'])}")
    lines += ["", "[run]", *_toml_pairs(run), "", "[config]", *_toml_pairs(config)]
    if lost:
        warnings.warn(
            f"{path}: {', '.join(lost)} = None cannot be written in TOML", PgradWarning, stacklevel=2
        )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def _toml_pairs(table: dict[str, Any]) -> list[str]:
    return [f"{_toml_key(k)} = {toml_value(v)}" for k, v in table.items() if v is not None]


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's; TOML also wants DEL escaped and no surrogate pairs (so ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    """`value` (bool, int, float, str, list/tuple, dict of these) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + pairs + " }" if pairs else "{}"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


# -- command line ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TuneArgs:
    """Search the algorithm's hyper-parameters with Optuna (TPE sampler, median pruner, SQLite study)."""

    env: str | None = None
    """Gymnasium env id (default: the --config file's)."""
    trials: int = 20
    """Trials to run now (a resumed study runs this many more)."""
    total_steps: int | None = None
    """Env steps per trial (default: the --config file's, else 100,000)."""
    eval_every: int | None = None
    """Evaluate every this many env steps (default: the file's, else total_steps / 5); each goes to the
    pruner."""
    eval_episodes: int | None = None
    """Episodes per evaluation (default: the file's, else 10)."""
    last_evals: int = 3
    """Objective: the mean return averaged over a trial's last this many evaluations (1: the last one)."""
    out: str | None = None
    """Folder of the study: study.db, trials/NNNN, best.toml (default: tune/ALGO-ENV)."""
    seed: int | None = None
    """Seed of every trial's training and of the sampler (default: the file's, else 0)."""
    timeout_minutes: float | None = None
    """Start no new trial after this many minutes (a running trial finishes)."""
    progress: bool = True
    """Show each trial's progress bar."""
    threads: int = 1
    """torch CPU threads."""


USAGE = """usage: pgrad tune ALGO --env ENV_ID --trials N [--total-steps N] [--eval-every N]
                  [--eval-episodes K] [--last-evals K] [--out DIR] [--seed S] [--timeout-minutes M]
                  [--config FILE] [--env-kwargs JSON] [--env-arg KEY=VALUE ...]

Search ALGO's search_space with Optuna; the study is DIR/study.db (the same command again runs --trials more),
each trial's run DIR/trials/NNNN, the best trial's options DIR/best.toml (pgrad train --config DIR/best.toml).
--config FILE (TOML or JSON; a run.json works) gives fixed options for every trial; sampled ones override it.
`pgrad tune ALGO --help` lists every flag."""


def main(argv: Sequence[str]) -> int:
    """`pgrad tune ALGO ...`: parse the command line, tune, print the summary."""
    from pgrad.cli import _algorithm_line, _parse

    line = _algorithm_line(argv, "tune")
    if line is None:
        print(USAGE)
        return 0
    cls, run_values, algo_values, env_kwargs, rest = line
    args = _parse(TuneArgs, rest, f"pgrad tune {cls.name}")
    use_threads(args.threads)

    def given(flag: Any, name: str, default: Any) -> Any:
        return flag if flag is not None else run_values.get(name, default)

    env = given(args.env, "env", None)
    if env is None:
        raise ConfigError(f"pgrad tune {cls.name}: --env ENV_ID is needed (or an env in the --config file)")
    total_steps = given(args.total_steps, "total_steps", 100_000)
    fixed = {k: v for k, v in run_values.items() if k not in OWN_OPTIONS}  # a run.json's run_dir & co. go
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", env)
    start = time.monotonic()
    result = tune(
        cls.name,
        env,
        args.trials,
        args.out or f"tune/{cls.name}-{label}",
        total_steps=total_steps,
        eval_every=given(args.eval_every, "eval_every", None),
        eval_episodes=given(args.eval_episodes, "eval_episodes", 10),
        seed=given(args.seed, "seed", 0),
        timeout_minutes=args.timeout_minutes,
        last_evals=args.last_evals,
        options={**fixed, **algo_values},
        env_kwargs=env_kwargs,
        progress=args.progress,
        threads=args.threads,
    )
    trials = f"{result['trials']} trial{'s' * (result['trials'] != 1)}"
    print(
        f"{trials} in {result['study']} ({result['complete']} complete, "
        f"{result['pruned']} pruned, {result['failed']} failed); this call took "
        f"{(time.monotonic() - start) / 60:.1f} min"
    )
    return 0
