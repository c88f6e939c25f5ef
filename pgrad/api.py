"""The Python API: train, resume, load, evaluate."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pgrad.algorithms import get_algorithm
from pgrad.envs.base import EnvFactory
from pgrad.errors import ConfigError
from pgrad.run.config import RunConfig
from pgrad.run.evaluate import Agent, evaluate_policy, load_policy
from pgrad.run.trainer import Trainer, read_run_file

RUN_OPTIONS = {f.name for f in dataclasses.fields(RunConfig)}


def _replace(config: Any, options: dict[str, Any], what: str) -> Any:
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(
            f"unknown {what} option(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )
    return dataclasses.replace(config, **options)


def train(
    algorithm: str,
    env: str | EnvFactory = "CartPole-v1",
    *,
    env_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train `algorithm` on `env` (a Gymnasium id or a callable returning an env).

    `options` mixes run options (total_steps, seed, run_dir, eval_every, … see `RunConfig`) and the
    algorithm's own (see its `Config`). Returns a summary: run_dir, global_step, wall_time, final eval.

    Example: `pgrad.train("reinforce", "CartPole-v1", total_steps=200_000, seed=1, baseline="value")`.
    """
    cls = get_algorithm(algorithm)
    run_options = {k: v for k, v in options.items() if k in RUN_OPTIONS}
    algo_options = {k: v for k, v in options.items() if k not in RUN_OPTIONS}
    run = _replace(RunConfig(env=env if isinstance(env, str) else "callable"), run_options, "run")
    config = _replace(cls.Config(), algo_options, f"{cls.name}")
    return Trainer(cls, config, run, env=env, env_kwargs=env_kwargs).run()


def resume(
    run_dir: str | Path, total_steps: int | None = None, env: EnvFactory | None = None, **run_options: Any
) -> dict[str, Any]:
    """Continue a run from its latest checkpoint, optionally to a new `total_steps`.

    A run trained on a callable env needs the same callable again as `env`.
    """
    saved = read_run_file(run_dir)
    cls = get_algorithm(saved["algorithm"])
    if not saved.get("env_is_id", True) and env is None:
        raise ConfigError(
            f"{run_dir} was trained on a Python callable env; pass it again: resume(..., env=...)"
        )
    config = _replace(cls.Config(), _tuples(saved["config"], cls.Config), cls.name)
    run = _replace(RunConfig(), saved["run"], "run")
    run = dataclasses.replace(run, run_dir=str(run_dir), **run_options)
    if total_steps is not None:
        run = dataclasses.replace(run, total_steps=total_steps)
    return Trainer(cls, config, run, env=env, env_kwargs=saved.get("env_kwargs"), resume=True).run()


def _tuples(values: dict[str, Any], config_cls: type) -> dict[str, Any]:
    """JSON turns tuples into lists: give tuple-typed fields their tuples back."""
    defaults = config_cls()
    return {k: tuple(v) if isinstance(getattr(defaults, k, None), tuple) else v for k, v in values.items()}


def load(run_dir: str | Path) -> Agent:
    """The policy of a run's latest checkpoint, as an `Agent` with `act(obs, deterministic=...)`."""
    return load_policy(run_dir)


def evaluate(
    agent: Agent | str | Path,
    env: str | EnvFactory | None = None,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Mean and std of the return over `episodes` episodes (env defaults to the one the run trained on)."""
    if not isinstance(agent, Agent):
        run_dir = agent
        agent = load(run_dir)
        saved = read_run_file(run_dir)
        if env is None and not saved.get("env_is_id", True):
            raise ConfigError(
                f"{run_dir} was trained on a Python callable env; pass it again: evaluate(..., env=...)"
            )
        if env_kwargs is None:
            env_kwargs = saved.get("env_kwargs")
    env = env if env is not None else agent.info["env"]
    return evaluate_policy(agent.policy, env, episodes, deterministic, seed, env_kwargs=env_kwargs)
