"""`pgrad bc`: behaviour cloning into a score-function algorithm's run folder.

    pgrad bc --from-run runs/ppo-expert --episodes 10 --algo ppo --run-dir runs/bc
    pgrad bc --demos demos.safetensors --env CartPole-v1 --epochs 100
    pgrad train ppo --env CartPole-v1 --init-from runs/bc [--prior-kl 0.1]

The algorithm is built exactly as `pgrad train ALGO` builds it (its Config, pgrad's preset for the env, the
same seed), its policy is fitted by maximum likelihood to the demonstrations
(`pgrad.algorithms.imitation.bc.fit_policy`), and the run is saved through `Trainer.save`: the result is a
normal run folder of that algorithm at step 0 that `pgrad.load`, `pgrad eval` and `--init-from` read.
Beside run.json and checkpoints/ it holds bc.json (the summary below) and, with --from-run, demos.safetensors
(the demonstrations, with their JSON sidecar). docs/imitation.md.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgrad.errors import ConfigError


@dataclasses.dataclass
class BCArgs:
    """Fit a score-function algorithm's policy to demonstrations (a file, or episodes of a trained run)."""

    env: str | None = None
    """Gymnasium env id (default: the demonstrations' env)."""
    demos: str | None = None
    """Demonstrations file (.safetensors + .json sidecar; format in docs/imitation.md)."""
    from_run: str | None = None
    """Collect the demonstrations from this trained pgrad run (its greedy policy)."""
    episodes: int = 10
    """Episodes to collect with --from-run."""
    algo: str = "ppo"
    """Score-function algorithm whose policy (and run folder) BC produces."""
    epochs: int = 100
    """Passes over the training demonstrations."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 256
    """Minibatch size."""
    val_fraction: float = 0.2
    """Share of the episodes held out for the validation loss and accuracy."""
    run_dir: str | None = None
    """Run folder to create (default: runs/bc-ALGO-ENV-sSEED-DATE)."""
    seed: int = 0
    """Seed of the network's initialisation, the split, the minibatches and the collected episodes."""
    eval_episodes: int = 10
    """Episodes of the fitted policy's greedy evaluation (0: none)."""
    preset: bool = True
    """Build the algorithm with pgrad's preset for the env, as `pgrad train` does (--no-preset: defaults)."""
    threads: int = 1
    """torch CPU threads."""


def bc(
    env: str | None = None,
    demos: str | Path | None = None,
    from_run: str | Path | None = None,
    episodes: int = 10,
    algo: str = "ppo",
    epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 256,
    val_fraction: float = 0.2,
    run_dir: str | Path | None = None,
    seed: int = 0,
    eval_episodes: int = 10,
    preset: bool = True,
    threads: int | None = 1,
    **algo_options: Any,
) -> dict[str, Any]:
    """Behaviour cloning: fit `algo`'s policy to `demos` (a file) or to `episodes` greedy episodes of the
    trained run `from_run`, and save it as a run folder of `algo` at step 0. `algo_options` are fields of the
    algorithm's Config (network options, ...). Returns the summary written to RUN_DIR/bc.json: run_dir,
    algorithm, env, the data (episodes, train/val steps), train_loss, val_loss, val_accuracy (discrete
    actions) or val_mse (continuous), and the greedy evaluation's mean/std return."""
    from pgrad.algorithms import get_algorithm
    from pgrad.algorithms.imitation.bc import (
        collect_demonstrations,
        fit_policy,
        load_demonstrations,
        save_demonstrations,
    )
    from pgrad.algorithms.presets import preset as preset_for
    from pgrad.envs.spaces import space_to_dict
    from pgrad.run.config import RunConfig, use_threads
    from pgrad.run.trainer import Trainer, fresh_dir

    use_threads(threads)
    if (demos is None) == (from_run is None):
        raise ConfigError("pgrad bc needs exactly one source: --demos FILE or --from-run RUN_DIR")
    data = (
        load_demonstrations(demos)
        if demos is not None
        else collect_demonstrations(from_run, episodes, seed=seed)
    )
    env = env or data.env
    cls = get_algorithm(algo)
    if cls.family != "score function":
        raise ConfigError(f"--algo {cls.name} is a {cls.family} algorithm; bc fits score-function policies")
    names = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(algo_options) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.name} option(s) {', '.join(unknown)} for bc")
    applied = {k: v for k, v in preset_for(cls.name, env).items() if k not in algo_options} if preset else {}
    config = dataclasses.replace(cls.Config(), **applied, **algo_options)
    label = env.replace(":", "_").replace("/", "_")
    folder = run_dir or fresh_dir(f"runs/bc-{cls.name}-{label}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    run = RunConfig(
        env=env,
        seed=seed,
        run_dir=str(folder),
        eval_episodes=max(eval_episodes, 1),
        progress=False,
        tensorboard=False,
        threads=threads or 1,
    )
    trainer = Trainer(cls, config, run, env=env, preset=applied)
    done = False
    try:
        spaces = (trainer.envs.single_observation_space, trainer.envs.single_action_space)
        if space_to_dict(data.action_space) != space_to_dict(spaces[1]):
            raise ConfigError(
                f"demonstrations of env '{data.env}' act in {data.action_space}, env '{env}' in {spaces[1]}"
            )
        fit = fit_policy(
            trainer.algo.policy,
            data,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            val_fraction=val_fraction,
            seed=seed,
        )
        evaluation = trainer.evaluate() if eval_episodes > 0 else None
        trainer.save()
        summary: dict[str, Any] = {
            "run_dir": str(trainer.run_dir),
            "algorithm": cls.name,
            "env": trainer.label,
            "demos": str(demos) if demos is not None else str(trainer.run_dir / "demos.safetensors"),
            "source": data.source,
            "episodes": data.episodes,
            "epochs": epochs,
            **{k: v for k, v in fit.items() if k != "epoch"},
        }
        if data.episode_returns is not None:
            summary["demo_mean_return"] = float(data.episode_returns.mean())
        if evaluation is not None:
            summary["eval_mean_return"] = evaluation["mean_return"]
            summary["eval_std_return"] = evaluation["std_return"]
        if demos is None:
            save_demonstrations(data, trainer.run_dir / "demos.safetensors")
        (trainer.run_dir / "bc.json").write_text(json.dumps(summary, indent=1))
        done = True
    finally:
        trainer.close()
        if not done:  # no half-made run folder that --init-from could pick up
            shutil.rmtree(trainer.run_dir, ignore_errors=True)
    return summary


def main(argv: Sequence[str]) -> int:
    """`pgrad bc ...`: prints the summary as one JSON line."""
    from pgrad.cli import _parse

    args = _parse(BCArgs, argv, "pgrad bc")
    summary = bc(**dataclasses.asdict(args))
    shown = {k: v for k, v in summary.items() if k != "source"}
    print(json.dumps(shown), file=sys.stdout)
    return 0
