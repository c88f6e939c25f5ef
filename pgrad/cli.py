"""Command line: `pgrad train|eval|resume|list|lab` and the workflow commands (compare, tune, record, ...).

    pgrad train ALGO --env ENV_ID --total-steps N --seed S --run-dir DIR [algorithm flags]
                [--env-kwargs JSON] [--env-arg KEY=VALUE ...]     (the env constructor's keyword arguments)
                [--config FILE.toml|FILE.json]                    (options from a file; a run.json works)
    pgrad eval DIR --episodes K [--no-deterministic] [--checkpoint latest|best|N]
    pgrad resume DIR [--total-steps N] [--eval-every N ...]
    pgrad list
    pgrad lab list | STUDY [--out DIR] [--estimates M] ... | claims | algorithms
    pgrad compare|tune|sweep|record|export|report ...   the researcher's workflow (pgrad/workflow/)

Bad input (unknown algorithm, env id or flag, invalid value) prints one line `pgrad: error: ...` on stderr
and exits with status 2, without a traceback (`--debug` anywhere on the line shows it). Ctrl-C or SIGTERM
during training writes a checkpoint, says how to continue and exits with 130 / 143.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, NamedTuple, TypeVar

import tyro

from pgrad.errors import ConfigError, Interrupted, PgradError, PgradWarning, did_you_mean
from pgrad.run.config import RunConfig, use_threads

C = TypeVar("C")
USAGE = """usage: pgrad {train,eval,resume,list,lab,compare,tune,sweep,record,export,report,bc,seq} ...

  pgrad train ALGO --env ENV_ID --total-steps N --seed S --run-dir DIR [algorithm flags]
              [--env-kwargs '{"key": value}'] [--env-arg KEY=VALUE ...]   the env constructor's arguments
              [--config FILE.toml|run.json]     options from a file (flags given override it)
  pgrad eval DIR --episodes K [--no-deterministic] [--checkpoint latest|best|N]
  pgrad resume DIR [--total-steps N]        continue a run (Ctrl-C during training writes a checkpoint)
  pgrad list                      algorithms and how each estimates the policy gradient
  pgrad lab list | STUDY | claims | algorithms   the gradient lab: estimators, algorithms vs the exact ∇J
  pgrad compare RUN_DIR... | --algos A,B --env ENV --seeds N   IQM and bootstrap CIs across seeds (rliable)
  pgrad tune ALGO --env ENV --trials N      hyper-parameter search (Optuna TPE, median pruning, SQLite)
  pgrad sweep ALGO --env ENV --grid K=V1,V2 --seeds N   a grid × seeds, each run a Ray task
  pgrad record DIR [--out FILE.mp4|.gif]    a video of the policy
  pgrad export DIR --format onnx|torchscript   the deterministic policy as a standalone file
  pgrad report DIR...                       curves and plain-language warnings (HTML and markdown)
  pgrad bc --env ENV --from-run DIR --episodes K   behaviour cloning into a run folder (--init-from it)
  pgrad seq train|bc --task add1 ...        GRPO / Dr. GRPO / RLOO and BC on token sequences

`pgrad train ALGO --help` lists an algorithm's flags; --debug shows the full traceback of any error."""


@dataclasses.dataclass
class TrainArgs(Generic[C]):
    """Train an algorithm: run options, then the algorithm's own."""

    run: Annotated[RunConfig, tyro.conf.OmitArgPrefixes]
    algo: Annotated[C, tyro.conf.OmitArgPrefixes]


@dataclasses.dataclass
class EvalArgs:
    """Evaluate a run's policy; prints one JSON line."""

    episodes: int = 10
    """Number of episodes."""
    deterministic: bool = True
    """Act with the distribution's mode, as training's evaluations do (--no-deterministic: sample)."""
    seed: int = 0
    """Seed of the evaluation envs."""
    env: str | None = None
    """Env id to evaluate on (default: the run's)."""
    checkpoint: str = "latest"
    """Which checkpoint: latest, best (the best-evaluated) or a step number; DIR may also be a checkpoint
    folder (DIR/checkpoints/step_N)."""
    threads: int = 1
    """torch CPU threads."""


@dataclasses.dataclass
class ResumeArgs:
    """Continue a run from its latest checkpoint. Only options that do not change what is learned can be
    given (unset: the run's own)."""

    total_steps: int | None = None
    """New step budget (default: the run's). Annealed schedules continue from their current value."""
    eval_every: int | None = None
    """Evaluate every this many env steps."""
    eval_episodes: int | None = None
    """Episodes per evaluation."""
    eval_deterministic: bool | None = None
    """Evaluate the distribution's mode (True) or sample actions (False)."""
    eval_max_steps: int | None = None
    """Cut evaluation episodes of an env without a time limit after this many steps."""
    target_return: float | None = None
    """Stop early once an evaluation reaches this."""
    checkpoint_every: int | None = None
    """Checkpoint every this many env steps."""
    checkpoint_minutes: float | None = None
    """Checkpoint every this many minutes of wall time."""
    keep_checkpoints: int | None = None
    """How many recent checkpoints to keep."""
    log_every: int | None = None
    """Write a metrics record at least every this many env steps."""
    threads: int | None = None
    """torch CPU threads."""
    workers: int | None = None
    """Ray workers to continue on (0: sample in this process; None: as the run was started)."""
    ray_address: str | None = None
    """Ray cluster to join with --workers (None: as the run was started, else a local Ray)."""
    progress: bool = True
    """Show progress on stderr (a live bar on a terminal, plain lines in a file or CI log)."""
    tensorboard: bool | None = None
    """Also write TensorBoard scalars (True / False)."""
    wandb: bool | None = None
    """Also log to Weights & Biases (True / False); the W&B run of an earlier session continues."""
    wandb_project: str | None = None
    """W&B project (a project other than the run's earlier one starts a W&B run there, with the same id)."""
    wandb_mode: Literal["online", "offline"] | None = None
    """W&B mode: online or offline (default: the run's; unset there: WANDB_MODE, else online)."""


def _parse(cls, args: Sequence[str], prog: str, default=None):
    """tyro parsing whose errors become one line; unknown flags are refused by name."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            parsed, unknown = tyro.cli(
                cls,
                args=list(args),
                prog=prog,
                return_unknown_args=True,
                default=default,
                use_underscores=False,
            )
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        raise ConfigError(f"{_one_line(captured.getvalue())} (see `{prog} --help`)") from None
    if unknown:
        known = [f"--{f.name.replace('_', '-')}" for f in _flag_fields(cls, default)]
        flags = [u for u in unknown if u.startswith("-")] or unknown  # `--trails 3`: name the flag, not its 3
        hints = "; ".join(f"{u}{did_you_mean(u.split('=')[0], known)}" for u in flags)
        raise ConfigError(f"unknown option(s) {hints} for `{prog}` (see `{prog} --help`)")
    return parsed


def _flag_fields(cls, default) -> list[dataclasses.Field]:
    """The dataclass fields behind a command's flags (TrainArgs nests the run and algorithm configs)."""
    if default is not None and isinstance(default, TrainArgs):
        return [*dataclasses.fields(default.run), *dataclasses.fields(default.algo)]
    return list(dataclasses.fields(cls))


def _one_line(text: str) -> str:
    """The first message lines of tyro's boxed error, joined."""
    lines = []
    for raw in text.splitlines():
        line = re.sub(r"[\u2500-\u257f]", "", raw).strip()
        if not line or line.startswith(
            ("Value error", "Invalid choice", "Parsing error", "Required options")
        ):
            continue
        if line.startswith(("For full helptext", "Argument helptext", "usage:")):
            break
        lines.append(line)
    return " ".join(lines) or "invalid arguments"


class AlgorithmLine(NamedTuple):
    """An algorithm command's line (`pgrad train`, `pgrad tune`) in parts: the algorithm (named first, or by
    the --config file), the file's run and algorithm options, the env's keyword arguments, the other flags."""

    cls: Any
    run_values: dict[str, Any]
    algo_values: dict[str, Any]
    env_kwargs: dict[str, Any]
    rest: list[str]


def _algorithm_line(argv: Sequence[str], command: str) -> AlgorithmLine | None:
    """Split `pgrad COMMAND [ALGO] [--config FILE] [--env-kwargs ...] FLAGS`; None when help is asked for."""
    from pgrad.algorithms import get_algorithm

    path, argv = _without_flag(argv, "--config")
    if "--config" in argv:
        raise ConfigError("--config needs a file (TOML or JSON; a run's run.json works)")
    data = _read_config(path) if path is not None else {}
    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            return None
        if "algorithm" not in data:
            raise ConfigError(f"`pgrad {command}` needs an algorithm name first (see `pgrad list`)")
        argv = [str(data["algorithm"]), *argv]  # a run.json names its algorithm
    cls = get_algorithm(argv[0])
    if "algorithm" in data and get_algorithm(str(data["algorithm"])) is not cls:
        raise ConfigError(f"--config {path}: a config for '{data['algorithm']}', not for '{cls.name}'")
    run_values, algo_values = _split_config(data, cls, path) if data else ({}, {})
    env_kwargs, rest = _env_kwargs(argv[1:])
    env_kwargs = {**(data.get("env_kwargs") or {}), **env_kwargs}
    return AlgorithmLine(cls, run_values, algo_values, env_kwargs, rest)


def cmd_train(argv: Sequence[str]) -> int:
    from pgrad.run.trainer import Trainer

    line = _algorithm_line(argv, "train")
    if line is None:
        print(USAGE)
        return 0
    cls, run_values, algo_values, env_kwargs, rest = line
    # The preset depends on --env, so it is looked up before parsing; the file, then the flags override it.
    env = _flag_value(rest, "--env") or run_values.get("env") or RunConfig().env
    args, options, _ = _parse_train(line, env, f"pgrad train {cls.name}")
    # the preset's options that neither the file nor a flag overrode
    applied = {k: v for k, v in options.items() if k not in algo_values and getattr(args.algo, k) == v}
    summary = Trainer(cls, args.algo, args.run, env_kwargs=env_kwargs, preset=applied).run()
    print(json.dumps(_summary_line(summary)))
    return 0


def _parse_train(line: AlgorithmLine, env: str, prog: str) -> tuple[Any, dict[str, Any], bool]:
    """`pgrad train`'s flags of an algorithm line parsed over pgrad's preset for `env` (looked up before
    parsing, as it depends on --env), the config file's values and the defaults: (TrainArgs, the preset's
    options, whether the preset applies). `pgrad sweep` parses its runs' flags the same way."""
    from pgrad.algorithms.presets import preset

    cls, run_values, algo_values, _, rest = line
    use_preset = "--preset" in rest or ("--no-preset" not in rest and run_values.get("preset", True))
    options = preset(cls.name, env) if use_preset else {}
    args = _parse(
        TrainArgs[cls.Config],
        rest,
        prog,
        default=TrainArgs(
            dataclasses.replace(RunConfig(), **run_values),
            dataclasses.replace(cls.Config(), **{**options, **algo_values}),
        ),
    )
    return args, options, use_preset


def _without_flag(argv: Sequence[str], flag: str) -> tuple[str | None, list[str]]:
    """The value of `flag` (`FLAG VALUE` or `FLAG=VALUE`, the last one wins) and the other arguments; a FLAG
    with nothing after it stays among them (for the caller's error)."""
    value, rest, items = None, [], iter(argv)
    for arg in items:
        if arg == flag:
            value = next(items, None)
            if value is None:
                rest.append(arg)
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return value, rest


def _read_config(path: str) -> dict[str, Any]:
    """A config file: TOML (`.toml`) or JSON (`.json`, e.g. a run's run.json), as a dict."""
    import tomllib

    file = Path(path)
    if file.suffix not in (".toml", ".json"):
        raise ConfigError(f"--config {path}: a .toml or .json file expected")
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"--config {path}: not valid {file.suffix[1:].upper()} ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"--config {path}: the file must hold a table of options, got {type(data).__name__}"
        )
    return data


# run.json's own records, not options: what was trained (checked against ALGO) and how the preset applied.
_RUN_RECORDS = ("algorithm", "env_kwargs", "env_is_id", "preset")


def _split_config(data: dict[str, Any], cls: Any, path: str | None) -> tuple[dict, dict]:
    """A config file's options for RunConfig and for the algorithm's Config, checked by name and type.

    Options may sit at the top level or in a run.json's `run` and `config` tables."""
    fields = {
        "run": {f.name: f for f in dataclasses.fields(RunConfig)},
        "config": {f.name: f for f in dataclasses.fields(cls.Config)},
    }
    values: dict[str, dict[str, Any]] = {"run": {}, "config": {}}

    def place(key: str, value: Any, section: str | None) -> None:
        for name in (section,) if section else ("run", "config"):
            if key in fields[name]:
                values[name][key] = _checked_value(fields[name][key], value, path)
                return
        known = [*fields["run"], *fields["config"]]
        raise ConfigError(f"--config {path}: unknown option '{key}' for {cls.name}{did_you_mean(key, known)}")

    for key, value in data.items():
        if key in _RUN_RECORDS:
            continue
        if key in ("run", "config") and isinstance(value, dict):
            for inner, v in value.items():
                place(inner, v, key)
        else:
            place(key, value, None)
    return values["run"], values["config"]


def _checked_value(field: dataclasses.Field, value: Any, path: str | None) -> Any:
    """`value` for `field` by the type of its default (lists become tuples); wrong types are refused."""
    default = field.default
    if isinstance(value, list):
        value = tuple(value)
    wrong = (
        (isinstance(default, bool) and not isinstance(value, bool))
        or (type(default) is int and (isinstance(value, bool) or not isinstance(value, int)))
        or (type(default) is float and (isinstance(value, bool) or not isinstance(value, int | float)))
        or (isinstance(default, str) and not isinstance(value, str))
        or (isinstance(default, tuple) and not isinstance(value, tuple))
    )
    if wrong:
        raise ConfigError(
            f"--config {path}: option '{field.name}' must be like {default!r} "
            f"({type(default).__name__}), got {value!r}"
        )
    return float(value) if type(default) is float else value


def _env_kwargs(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """The env constructor's keyword arguments from `--env-kwargs JSON` and repeated `--env-arg KEY=VALUE`
    (VALUE read as JSON when it parses, else as a string; an `--env-arg` overrides the same key of
    `--env-kwargs`), and the other arguments."""
    kwargs: dict[str, Any] = {}
    args: dict[str, Any] = {}
    rest: list[str] = []
    items = iter(argv)
    for arg in items:
        flag, eq, value = arg.partition("=")
        if flag not in ("--env-kwargs", "--env-arg"):
            rest.append(arg)
            continue
        if not eq:
            value = next(items, None)
            if value is None:
                raise ConfigError(f"{flag} needs a value (e.g. {flag} " + _ENV_EXAMPLES[flag] + ")")
        if flag == "--env-kwargs":
            try:
                parsed = json.loads(value)
            except ValueError as exc:
                raise ConfigError(f"--env-kwargs: not a JSON object: {value!r} ({exc})") from None
            if not isinstance(parsed, dict):
                raise ConfigError(
                    f"--env-kwargs must be a JSON object like {_ENV_EXAMPLES[flag]}, got {value!r}"
                )
            kwargs.update(parsed)
        else:
            key, eq, raw = value.partition("=")
            if not eq or not key.isidentifier():
                raise ConfigError(f"--env-arg must be KEY=VALUE with KEY a Python name, got {value!r}")
            try:
                args[key] = json.loads(raw)
            except ValueError:
                args[key] = raw  # a bare word: a string
    return {**kwargs, **args}, rest


_ENV_EXAMPLES = {"--env-kwargs": """'{"max_episode_steps": 200}'""", "--env-arg": "max_episode_steps=200"}


def _flag_value(argv: Sequence[str], flag: str) -> str | None:
    """The value of `flag` given as `FLAG VALUE` or `FLAG=VALUE` (the last one wins), else None."""
    return _without_flag(argv, flag)[0]


def _summary_line(summary: dict) -> dict:
    """The run's last line: each return labelled with where it comes from."""
    ev = summary.get("eval") or {}
    train = summary.get("train_return")
    return {
        "run_dir": summary["run_dir"],
        "global_step": summary["global_step"],
        "wall_time": round(summary["wall_time"], 2),
        "train_return": None if train is None else round(train, 2),  # last 100 training episodes
        "eval_mean_return": ev.get("mean_return"),
        "eval_std_return": ev.get("std_return"),
        "eval_episodes": ev.get("episodes"),
        "eval_deterministic": summary.get("eval_deterministic"),
    }


def _run_dir_and_rest(argv: Sequence[str], command: str) -> tuple[str, list[str]]:
    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            return "", list(argv)
        raise ConfigError(f"`pgrad {command}` needs a run folder first")
    return argv[0], list(argv[1:])


def cmd_eval(argv: Sequence[str]) -> int:
    from pgrad.api import evaluate

    run_dir, rest = _run_dir_and_rest(argv, "eval")
    args = _parse(EvalArgs, rest, "pgrad eval DIR")
    result = evaluate(
        run_dir,
        env=args.env,
        episodes=args.episodes,
        deterministic=args.deterministic,
        seed=args.seed,
        checkpoint=args.checkpoint,
        threads=args.threads,
    )
    summary = {k: result[k] for k in ("mean_return", "std_return", "episodes")}
    print(json.dumps({**summary, "deterministic": args.deterministic}))
    return 0


def cmd_resume(argv: Sequence[str]) -> int:
    from pgrad.api import resume

    run_dir, rest = _run_dir_and_rest(argv, "resume")
    args = _parse(ResumeArgs, rest, "pgrad resume DIR")
    options = {k: v for k, v in dataclasses.asdict(args).items() if v is not None and k != "total_steps"}
    summary = resume(run_dir, total_steps=args.total_steps, **options)
    print(json.dumps(_summary_line(summary)))
    return 0


def cmd_list(argv: Sequence[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    from pgrad.algorithms import list_algorithms

    if argv:
        raise ConfigError(f"`pgrad list` takes no arguments, got {' '.join(argv)}")
    table = Table("estimator family", "algorithm", "estimate of ∇θJ")
    rows = list_algorithms()  # grouped by family
    for i, row in enumerate(rows):
        first = i == 0 or rows[i - 1]["family"] != row["family"]
        last = i == len(rows) - 1 or rows[i + 1]["family"] != row["family"]
        table.add_row(row["family"] if first else "", row["name"], row["summary"], end_section=last)
    Console().print(table)
    return 0


@dataclasses.dataclass
class ClaimsArgs:
    """Measure every claim of the references and print claim, figure, verdict."""

    out: str = "lab"
    """Folder for claims.md."""
    seeds: int = 5
    """Run every claim on seeds 0 … SEEDS−1 and report on how many it holds ("holds on k/SEEDS")."""
    threads: int = 1
    """torch CPU threads (1: small problems run fastest on one, and timings stay comparable)."""


@dataclasses.dataclass
class AlgorithmsArgs:
    """Run every algorithm's own first update (a tabular MDP for the score-function family and discrete SAC,
    an LQR for the others) and compare the direction it moves the policy in with the exact gradient of the
    objective it estimates."""

    out: str = "lab"
    """Folder for algorithms.md."""
    seeds: int = 10
    """First-update directions per algorithm, one run seed each (the M of the bias test)."""
    updates: int = 5
    """k: the cosines of the first k updates of one run, the exact gradient recomputed at each θ."""
    problem_seed: int = 0
    """Seed of the random episodic MDP, of the starting policy θ₀ and of the LQR system."""
    only: tuple[str, ...] = ()
    """Only these algorithms (registry names, e.g. ppo npg); all when empty."""
    threads: int = 1
    """torch CPU threads (1: small problems run fastest on one, and timings stay comparable)."""


def _lab_algorithms(rest: Sequence[str]) -> int:
    from pgrad.lab.algorithms import CASES, algorithms_report, run_algorithms

    args = _parse(AlgorithmsArgs, rest, "pgrad lab algorithms")
    use_threads(args.threads)
    if args.seeds < 2:
        raise ConfigError(f"--seeds must be >= 2 (the bias test needs two directions), got {args.seeds}")
    if args.updates < 0:
        raise ConfigError(f"--updates must be >= 0, got {args.updates}")
    known = sorted({case.algorithm for case in CASES})
    unknown = [name for name in args.only if name not in known]
    if unknown:
        raise ConfigError(f"--only: unknown algorithm(s) {', '.join(unknown)} (covered: {', '.join(known)})")
    cases = [case for case in CASES if not args.only or case.algorithm in args.only]

    def progress(result) -> None:
        first = result.first
        print(
            f"{result.case.label:22s} cos {first.cosine:.3f}  cos(mean) {first.mean_cosine:.3f}  "
            f"bias {first.bias:.3f} [{first.bias_low:.3f}, {first.bias_high:.3f}]  "
            f"k updates {' '.join(f'{c:.2f}' for c in result.update_cosines)}  {result.verdict}  "
            f"({result.seconds:.0f} s)",
            flush=True,
        )

    start = time.perf_counter()
    results = run_algorithms(args.seeds, args.updates, cases, args.problem_seed, progress)
    seconds = time.perf_counter() - start
    command = "pgrad lab algorithms " + " ".join(rest)
    report = algorithms_report(results, seconds, command.strip(), args.problem_seed)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "algorithms.md").write_text(report)
    print(report)
    return 0


def cmd_lab(argv: Sequence[str]) -> int:
    from pgrad.lab.claims import claims_table, run_claims
    from pgrad.lab.studies import STUDIES, StudyOptions, run_study

    if not argv or argv[0] in ("-h", "--help", "list"):
        print("studies: " + ", ".join([*STUDIES, "claims", "algorithms"]))
        for name, fn in STUDIES.items():
            print(f"  {name:12s} {(fn.__doc__ or '').strip()}")
        print("  claims       every claim of the references, measured, with a verdict")
        print("  algorithms   every algorithm's own update against the exact gradient")
        return 0
    name, rest = argv[0], argv[1:]
    if name == "algorithms":
        return _lab_algorithms(rest)
    if name == "claims":
        args = _parse(ClaimsArgs, rest, "pgrad lab claims")
        use_threads(args.threads)
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
        table = claims_table(run_claims(seeds=range(args.seeds)))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "claims.md").write_text("# Claims of the references, measured\n\n" + table + "\n")
        print(table)
        return 0
    if name not in STUDIES:
        known = ", ".join([*STUDIES, "claims", "algorithms"])
        raise ConfigError(f"unknown lab study '{name}' (studies: {known})")

    @dataclasses.dataclass
    class LabArgs(StudyOptions):
        out: str = "lab"
        """Folder for the study's markdown table and plot."""
        threads: int = 1
        """torch CPU threads."""

    args = _parse(LabArgs, rest, f"pgrad lab {name}")
    use_threads(args.threads)
    options = StudyOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(StudyOptions)})
    text, plot = run_study(name, options, args.out)
    print(text)
    print(f"plot: {plot}")
    return 0


def _workflow(name: str):
    """`pgrad NAME ...` for a workflow command: pgrad.workflow.NAME.main, imported when it is run."""

    def command(argv: Sequence[str]) -> int:
        import importlib

        return importlib.import_module(f"pgrad.workflow.{name}").main(argv)

    return command


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "resume": cmd_resume,
    "list": cmd_list,
    "lab": cmd_lab,
    **{name: _workflow(name) for name in ("compare", "tune", "sweep", "record", "export", "report", "bc")},
    "seq": _workflow("sequences"),
}


def entry() -> None:
    """The `pgrad` console script: `main()`, then a fast exit.

    Tearing down an interpreter that has imported torch (and torch._dynamo, which the first torch.optim
    optimizer imports) takes 0.8-1.7 s on a 2-core machine, all of it garbage collection of module state. When
    `main` returns, everything pgrad wrote is closed (checkpoints, metrics, TensorBoard events), so the
    process flushes its standard streams and leaves with `os._exit`. `main` itself returns normally: tests,
    the Python API and programs that call it keep their own clean-up; an exception propagates as usual.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`pgrad list | head -1`) or stream
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # anywhere on the line: show the full traceback of any error
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    warnings.showwarning = _show_warning
    command, rest = argv[0], argv[1:]
    try:
        if command not in COMMANDS:
            hint = did_you_mean(command, COMMANDS)
            raise ConfigError(f"unknown command '{command}'{hint} (commands: {', '.join(COMMANDS)})")
        return COMMANDS[command](rest)
    except Interrupted as exc:
        print(f"pgrad: {exc}", file=sys.stderr)
        return exc.exit_code
    except PgradError as exc:
        if debug:
            raise
        print(f"pgrad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("pgrad: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`pgrad compare ... | head`): stop quietly, as `cat` does
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141  # 128 + SIGPIPE
    except Exception as exc:  # a bug or an unexpected failure: one line, the traceback with --debug
        if debug:
            raise
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(
            f"pgrad: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            f"(at {Path(where.filename).name}:{where.lineno}; rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """pgrad's own warnings as one `pgrad: warning:` line; others as Python prints them."""
    if issubclass(category, PgradWarning):
        print(f"pgrad: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


if __name__ == "__main__":
    sys.exit(main())
