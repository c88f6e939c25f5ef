"""Run options (`RunConfig`) and the type check every config dataclass gets before it is used.

Config values arrive from the command line (typed by tyro), from JSON (`run.json`) and from Python keyword
arguments, where nothing stops `lr="3e-4"`; `check_field_types` refuses such values in one line that names the
option and the type it expects.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pgrad.errors import ConfigError, optional_import


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a tuple of {_describe(typing.get_args(hint)[0])}"
    if hint is type(None):
        return "None"
    return {bool: "a bool", int: "an int", float: "a number", str: "a string"}.get(hint, str(hint))


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple | list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this check does not understand: leave it to the option's own checks


def check_field_types(config: Any, what: str) -> None:
    """Refuse a dataclass field whose value does not have its annotated type, in one line naming it."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in hints and not _matches(value, hints[f.name]):
            raise ConfigError(
                f"{what} option {f.name} must be {_describe(hints[f.name])}, got {value!r} "
                f"({type(value).__name__})"
            )


@dataclass
class RunConfig:
    """Options of a training run that do not depend on the algorithm."""

    env: str = "CartPole-v1"
    """Gymnasium env id; `module:EnvName-vN` imports `module` first (where a custom env registers itself)."""
    total_steps: int = 100_000
    """Env steps (transitions summed over sub-envs); the run stops at the first iteration past it."""
    seed: int = 0
    """Run seed (>= 0): derives python, numpy, torch and every env seed."""
    backend: Literal["auto", "gymnasium", "native"] = "auto"
    """Training envs: Gymnasium's or pgrad's batched torch twin (classic control); auto: the twin where one
    exists and num_envs >= 16 (where it is faster; pgrad.envs.make.resolve_backend). Evaluation uses
    Gymnasium's. run.json records the backend chosen."""
    preset: bool = True
    """Start from pgrad's preset for this algorithm and env where there is one (pgrad.algorithms.presets);
    the options given override it. --no-preset: the algorithm's defaults."""
    run_dir: str | None = None
    """Folder for metrics, checkpoints and plots (default: runs/<algo>-<env>-s<seed>-<time>)."""
    tag: str = ""
    """A label for the run (one line, at most 64 characters), recorded in run.json: `pgrad compare
    --label-by tag` groups runs by it and W&B gets it as the run's group and tag. Fixed once the run starts
    (`pgrad resume` keeps it); edit run.json's "tag" to relabel a run."""
    eval_every: int = 25_000
    """Evaluate every this many env steps on separate envs (0: only at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation (0: never evaluate)."""
    target_return: float | None = None
    """Stop early once an evaluation's mean return reaches this (None: train for total_steps)."""
    eval_deterministic: bool = True
    """Evaluate the distribution's mode rather than sampled actions."""
    eval_max_steps: int = 10_000
    """Cut an evaluation episode after this many steps when the env has no time limit of its own."""
    checkpoint_every: int = 50_000
    """Write a checkpoint every this many env steps (one is always written at the end and on Ctrl-C)."""
    checkpoint_minutes: float = 5.0
    """Also write a checkpoint once this many minutes of wall time have passed since the last (0: never)."""
    keep_checkpoints: int = 3
    """How many recent checkpoints to keep."""
    log_every: int = 1000
    """Write a metrics record at least every this many env steps (0: every iteration); evaluations,
    checkpoints and the end of the run always write one. Episode statistics cover the whole interval."""
    threads: int = 1
    """torch CPU threads (1 is fastest for small networks and makes runs bitwise reproducible)."""
    device: str = "cpu"
    """torch device for networks and rollouts."""
    workers: int = 0
    """Ray workers (needs pip install 'pgrad[ray]'): for the on-policy score-function algorithms, K actors
    each stepping num_envs / K of the sub-envs with the current weights; for a3c, K asynchronous
    actor-learners with num_envs sub-envs each (default 2). 0: sample in this process. docs/scale_out.md."""
    ray_address: str | None = None
    """Ray cluster to join with --workers ("auto": the one this machine belongs to, or HOST:PORT of its
    head); None: start a local Ray with this machine's cores."""
    progress: bool = True
    """Show progress on stderr: a live bar on a terminal; in a file, pipe or CI log a plain line every 10% of
    total_steps or every 60 s, whichever comes first (step, train and eval return, steps/s, elapsed, ETA)."""
    tensorboard: bool = True
    """Also write TensorBoard scalars to run_dir/tb."""
    wandb: bool = False
    """Also log the scalars to Weights & Biases (needs pip install 'pgrad[wandb]'). The W&B run is named
    after the run folder, keeps its files in run_dir/wandb, gets run.json as its config and --tag as its
    group; a resume continues it."""
    wandb_project: str = "pgrad"
    """W&B project of the run."""
    wandb_mode: Literal["online", "offline"] | None = None
    """W&B mode: online, or offline (files only, upload later with `wandb sync`); None: W&B decides (the
    WANDB_MODE environment variable, `wandb offline`, else online)."""


def use_threads(threads: int | None) -> None:
    """Set torch's CPU thread count for this process; every entry point (train, resume, eval, lab, and
    `pgrad.train/resume/evaluate/load`) goes through here. One thread is fastest for pgrad's small networks:
    two OpenMP threads on a busy 2-core machine make every small op milliseconds long, and one thread makes
    runs bitwise reproducible. None leaves the count as it is."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads!r}")
    import torch  # here, not at the top: the CLI imports this module before it needs torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def check_run_config(run: RunConfig) -> None:
    """One-line errors for invalid run options (types first, then ranges)."""
    check_field_types(run, "run")
    for name in ("total_steps", "seed", "eval_every", "eval_episodes", "checkpoint_every", "log_every"):
        if getattr(run, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(run, name)}")
    if run.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {run.threads}")
    if run.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {run.workers}")
    if not run.checkpoint_minutes >= 0:
        raise ConfigError(f"--checkpoint-minutes must be >= 0, got {run.checkpoint_minutes}")
    if run.eval_max_steps < 1:
        raise ConfigError(f"--eval-max-steps must be >= 1, got {run.eval_max_steps}")
    if run.keep_checkpoints < 1:
        raise ConfigError(f"--keep-checkpoints must be >= 1, got {run.keep_checkpoints}")
    if len(run.tag) > 64 or not run.tag.isprintable():
        raise ConfigError(f"--tag must be one line of at most 64 printable characters, got {run.tag!r}")
    forbidden = any(c in _WANDB_PROJECT_FORBIDDEN for c in run.wandb_project)
    if not run.wandb_project or len(run.wandb_project) > 128 or forbidden:
        raise ConfigError(
            f"--wandb-project must be 1 to 128 characters without {' '.join(_WANDB_PROJECT_FORBIDDEN)}, "
            f"got {run.wandb_project!r}"
        )
    if run.wandb and importlib.util.find_spec("wandb") is None:  # say so before the run folder is made
        optional_import("wandb", "wandb", "--wandb")


_WANDB_PROJECT_FORBIDDEN = "/\\#?%:"  # characters W&B refuses in a project name


# Run options `pgrad resume` may change: they decide when to evaluate, log and checkpoint, where the metrics
# go and how fast the loop runs, never what is learned. Everything else comes from the run's run.json (the
# tag too: it labels the run for good, and run.json, written once, is where `pgrad compare` reads it).
RESUMABLE_OPTIONS = (
    "total_steps",
    "eval_every",
    "eval_episodes",
    "eval_deterministic",
    "eval_max_steps",
    "target_return",
    "checkpoint_every",
    "checkpoint_minutes",
    "keep_checkpoints",
    "log_every",
    "threads",
    "workers",
    "ray_address",
    "progress",
    "tensorboard",
    "wandb",
    "wandb_project",
    "wandb_mode",
)
