"""Command line: `pgrad train|eval|resume|list`. Flags come from the dataclass configs through tyro.

    pgrad train ALGO --env ENV_ID --total-steps N --seed S --run-dir DIR [algorithm flags]
    pgrad eval DIR --episodes K [--deterministic]
    pgrad resume DIR [--total-steps N]
    pgrad list
    pgrad lab list | STUDY [--out DIR] [--estimates M] ... | claims

Bad input (unknown algorithm, env id or flag, invalid value) prints one line `pgrad: error: ...` on stderr
and exits with status 2, without a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Generic, TypeVar

import torch
import tyro

from pgrad.errors import ConfigError, PgradError
from pgrad.run.config import RunConfig

C = TypeVar("C")
USAGE = """usage: pgrad {train,eval,resume,list} ...

  pgrad train ALGO --env ENV_ID --total-steps N --seed S --run-dir DIR [algorithm flags]
  pgrad eval DIR --episodes K [--deterministic]
  pgrad resume DIR [--total-steps N]
  pgrad list                      algorithms and how each estimates the policy gradient
  pgrad lab list | STUDY | claims  the gradient lab: estimators against the exact gradient

`pgrad train ALGO --help` lists an algorithm's flags."""


@dataclasses.dataclass
class TrainArgs(Generic[C]):
    """Train an algorithm: run options, then the algorithm's own."""

    run: Annotated[RunConfig, tyro.conf.OmitArgPrefixes]
    algo: Annotated[C, tyro.conf.OmitArgPrefixes]


@dataclasses.dataclass
class EvalArgs:
    """Evaluate a run's latest checkpoint; prints one JSON line."""

    episodes: int = 10
    """Number of episodes."""
    deterministic: bool = False
    """Act with the distribution's mode instead of sampling."""
    seed: int = 0
    """Seed of the evaluation envs."""
    env: str | None = None
    """Env id to evaluate on (default: the run's)."""


@dataclasses.dataclass
class ResumeArgs:
    """Continue a run from its latest checkpoint."""

    total_steps: int | None = None
    """New step budget (default: the run's)."""
    progress: bool = True
    """Show a progress bar."""


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
        raise ConfigError(f"unknown option(s) {' '.join(unknown)} for `{prog}` (see `{prog} --help`)")
    return parsed


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


def cmd_train(argv: Sequence[str]) -> int:
    from pgrad.algorithms import get_algorithm
    from pgrad.run.trainer import Trainer

    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            print(USAGE)
            return 0
        raise ConfigError("`pgrad train` needs an algorithm name first (see `pgrad list`)")
    cls = get_algorithm(argv[0])

    args = _parse(
        TrainArgs[cls.Config],
        argv[1:],
        f"pgrad train {cls.name}",
        default=TrainArgs(RunConfig(), cls.Config()),
    )
    summary = Trainer(cls, args.algo, args.run).run()
    print(json.dumps(_summary_line(summary)))
    return 0


def _summary_line(summary: dict) -> dict:
    ev = summary.get("eval") or {}
    return {
        "run_dir": summary["run_dir"],
        "global_step": summary["global_step"],
        "wall_time": round(summary["wall_time"], 2),
        "mean_return": ev.get("mean_return"),
        "std_return": ev.get("std_return"),
        "episodes": ev.get("episodes"),
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
        run_dir, env=args.env, episodes=args.episodes, deterministic=args.deterministic, seed=args.seed
    )
    print(json.dumps({k: result[k] for k in ("mean_return", "std_return", "episodes")}))
    return 0


def cmd_resume(argv: Sequence[str]) -> int:
    from pgrad.api import resume

    run_dir, rest = _run_dir_and_rest(argv, "resume")
    args = _parse(ResumeArgs, rest, "pgrad resume DIR")
    summary = resume(run_dir, total_steps=args.total_steps, progress=args.progress)
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


def cmd_lab(argv: Sequence[str]) -> int:
    from pgrad.lab.claims import claims_table, run_claims
    from pgrad.lab.studies import STUDIES, StudyOptions, run_study

    torch.set_num_threads(1)  # small problems: one thread is fastest, and timings are comparable

    if not argv or argv[0] in ("-h", "--help", "list"):
        print("studies: " + ", ".join([*STUDIES, "claims"]))
        for name, fn in STUDIES.items():
            print(f"  {name:12s} {(fn.__doc__ or '').strip()}")
        print("  claims       every claim of the references, measured, with a verdict")
        return 0
    name, rest = argv[0], argv[1:]
    if name == "claims":
        args = _parse(ClaimsArgs, rest, "pgrad lab claims")
        table = claims_table(run_claims())
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "claims.md").write_text("# Claims of the references, measured\n\n" + table + "\n")
        print(table)
        return 0
    if name not in STUDIES:
        raise ConfigError(f"unknown lab study '{name}' (studies: {', '.join([*STUDIES, 'claims'])})")

    @dataclasses.dataclass
    class LabArgs(StudyOptions):
        out: str = "lab"
        """Folder for the study's markdown table and plot."""

    args = _parse(LabArgs, rest, f"pgrad lab {name}")
    options = StudyOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(StudyOptions)})
    text, plot = run_study(name, options, args.out)
    print(text)
    print(f"plot: {plot}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "resume": cmd_resume, "list": cmd_list, "lab": cmd_lab}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command not in COMMANDS:
            raise ConfigError(f"unknown command '{command}' (commands: {', '.join(COMMANDS)})")
        return COMMANDS[command](rest)
    except PgradError as exc:
        print(f"pgrad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pgrad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
