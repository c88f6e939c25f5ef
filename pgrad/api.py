"""The Python API: train, resume, load, evaluate."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pgrad.algorithms import get_algorithm
from pgrad.algorithms.presets import preset
from pgrad.envs.base import EnvFactory
from pgrad.errors import ConfigError, did_you_mean
from pgrad.run.config import RESUMABLE_OPTIONS, RunConfig, use_threads
from pgrad.run.evaluate import Agent, evaluate_policy, load_policy, resolve_checkpoint
from pgrad.run.trainer import Trainer, read_run_file

RUN_OPTIONS = {f.name for f in dataclasses.fields(RunConfig)}


def _unknown(options: dict[str, Any], known: set[str], what: str) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        hints = "; ".join(f"'{name}'{did_you_mean(name, known)}" for name in unknown)
        raise ConfigError(f"unknown {what} option(s): {hints}; see help({what}) or `pgrad train ... --help`")


def train(
    algorithm: str,
    env: str | EnvFactory = "CartPole-v1",
    *,
    env_kwargs: dict[str, Any] | None = None,
    on_evaluation: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train `algorithm` on `env` (a Gymnasium id or a callable returning an env).

    `options` mixes run options (total_steps, seed, run_dir, eval_every, … see `RunConfig`) and the
    algorithm's own (see its `Config`), which start from pgrad's preset for the algorithm and env where there
    is one (`pgrad.algorithms.presets`; `preset=False` for the algorithm's defaults). Returns a summary:
    run_dir, global_step, wall_time, final eval, best_return. Ctrl-C writes a checkpoint and raises
    `pgrad.errors.Interrupted` (continue with `resume`). `on_evaluation(result)` is called after every
    evaluation (result: global_step, mean_return, std_return, ...); an exception it raises ends the run.

    Example: `pgrad.train("reinforce", "CartPole-v1", total_steps=200_000, seed=1, baseline="value")`.
    """
    cls = get_algorithm(algorithm)
    algo_names = {f.name for f in dataclasses.fields(cls.Config)}
    _unknown(options, RUN_OPTIONS | algo_names, cls.name)
    run_options = {k: v for k, v in options.items() if k in RUN_OPTIONS}
    algo_options = {k: v for k, v in options.items() if k not in RUN_OPTIONS}
    run = dataclasses.replace(RunConfig(env=env if isinstance(env, str) else "callable"), **run_options)
    applied = {k: v for k, v in preset(cls.name, env).items() if k not in algo_options} if run.preset else {}
    config = dataclasses.replace(cls.Config(), **applied, **algo_options)
    trainer = Trainer(
        cls, config, run, env=env, env_kwargs=env_kwargs, preset=applied, on_evaluation=on_evaluation
    )
    return trainer.run()


def resume(
    run_dir: str | Path, total_steps: int | None = None, env: EnvFactory | None = None, **run_options: Any
) -> dict[str, Any]:
    """Continue a run from its latest checkpoint, optionally to a new `total_steps`.

    `run_options` may change how the run is watched, never what it learns: the options in
    `pgrad.run.config.RESUMABLE_OPTIONS` (evaluation, logging and checkpoint cadence, threads, progress).
    Resumed with its original budget, a run continues its schedules; given a new budget, annealed schedules
    continue from their current value (a note says so). A run trained on a callable env needs the same
    callable again as `env`.
    """
    saved = read_run_file(run_dir)
    cls = get_algorithm(saved["algorithm"])
    if not saved.get("env_is_id", True) and env is None:
        raise ConfigError(
            f"{run_dir} was trained on a Python callable env; pass it again: resume(..., env=...)"
        )
    fixed = sorted(set(run_options) & (RUN_OPTIONS - set(RESUMABLE_OPTIONS)))
    if fixed:
        why = "they decide what it learns"
        if fixed == ["tag"]:
            why = "it labels the run for good: edit run.json to relabel it"
        raise ConfigError(
            f"{', '.join(fixed)} cannot change when a run resumes ({why}); options that can: "
            f"{', '.join(RESUMABLE_OPTIONS)}"
        )
    _unknown(run_options, set(RESUMABLE_OPTIONS), "resume")
    config = dataclasses.replace(cls.Config(), **_tuples(saved["config"], cls.Config))
    run = dataclasses.replace(RunConfig(), **saved["run"])
    run = dataclasses.replace(run, run_dir=str(run_dir), **run_options)
    if total_steps is not None:
        run = dataclasses.replace(run, total_steps=total_steps)
    return Trainer(cls, config, run, env=env, env_kwargs=saved.get("env_kwargs"), resume=True).run()


def _tuples(values: dict[str, Any], config_cls: type) -> dict[str, Any]:
    """JSON turns tuples into lists: give tuple-typed fields their tuples back."""
    defaults = config_cls()
    return {k: tuple(v) if isinstance(getattr(defaults, k, None), tuple) else v for k, v in values.items()}


def load(run_dir: str | Path, checkpoint: str | int = "latest", threads: int | None = 1) -> Agent:
    """A run's policy as an `Agent` with `act(obs, deterministic=...)`: its latest checkpoint, its best-
    evaluated one (`checkpoint="best"`), the one at a step (`checkpoint=40960`), or a checkpoint folder
    given as `run_dir` (`runs/x/checkpoints/step_000000040960`).

    `threads` sets torch's CPU thread count for the process, as every pgrad entry point does (None: leave
    it)."""
    use_threads(threads)
    return load_policy(run_dir, checkpoint)


def evaluate(
    agent: Agent | str | Path,
    env: str | EnvFactory | None = None,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    checkpoint: str | int = "latest",
    threads: int | None = 1,
) -> dict[str, Any]:
    """Mean and std of the return over `episodes` episodes (env defaults to the one the run trained on).

    `agent` is an `Agent` or a run folder / checkpoint folder (with `checkpoint` as in `load`); `threads`
    as in `load`. Episodes run batched, up to 32 sub-envs stepped together."""
    use_threads(threads)
    if not isinstance(agent, Agent):
        run_dir, _ = resolve_checkpoint(agent, checkpoint)
        agent = load(agent, checkpoint, threads=None)
        saved = read_run_file(run_dir)
        if env is None and not saved.get("env_is_id", True):
            raise ConfigError(
                f"{run_dir} was trained on a Python callable env; pass it again: evaluate(..., env=...)"
            )
        if env_kwargs is None:
            env_kwargs = saved.get("env_kwargs")
    env = env if env is not None else agent.info["env"]
    return evaluate_policy(agent.policy, env, episodes, deterministic, seed, env_kwargs=env_kwargs)
