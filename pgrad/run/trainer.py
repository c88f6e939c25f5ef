"""The training loop every algorithm shares: seeding, iterations, metrics, evaluation, checkpoints, resume.

A run lives in one folder (one writer at a time: see `pgrad.run.folder`):
    run.json            algorithm, run options and algorithm config (what `pgrad resume` rebuilds from)
    metrics.jsonl       one JSON record per log interval (plus evaluation fields when one ran; the fields:
                        docs/harness.md, "Metrics")
    tb/                 TensorBoard scalars (same names as metrics.jsonl)
    wandb/, wandb_id    with --wandb: the W&B run's files and its id (a resume logs into the same W&B run)
    checkpoints/        safetensors + JSON, written atomically (see pgrad.run.checkpoint): the newest few
                        (every --checkpoint-every steps, every --checkpoint-minutes, at the end and on
                        Ctrl-C/SIGTERM) and best/, the best-evaluated one
    learning_curve.png  train and eval return against env steps
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgrad.envs.base import EnvFactory, env_label
from pgrad.envs.make import make_env, resolve_backend
from pgrad.envs.spaces import space_to_dict
from pgrad.errors import ConfigError, Interrupted, PgradWarning
from pgrad.run.algorithm import Algorithm
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from pgrad.run.config import RunConfig, check_field_types, check_run_config, use_threads
from pgrad.run.evaluate import evaluate_policy
from pgrad.run.folder import RunLock, check_run_dir, read_run_file, write_run_file
from pgrad.run.interrupts import StopRequest
from pgrad.run.logger import MetricsLogger, truncate_metrics
from pgrad.run.plots import plot_learning_curve
from pgrad.run.progress import Progress, progress_display
from pgrad.run.seeding import derive_seed, rng_state, seed_everything, set_rng_state

__all__ = ["Trainer", "read_run_file"]

# May be missing from, or extra in, a checkpoint: CUDA RNG states (saved only where CUDA was available;
# set_rng_state ignores them elsewhere) and counters that checkpoints of earlier versions lack.
RESUME_OPTIONAL = (
    "/rng/tensors/rng/cuda*",
    "/trainer/best_return",
    "/trainer/total_steps",
    "/algorithm/schedule",
    "/algorithm/collector",
    "/envs",
)
# Parts whose shapes depend on where the run stood (envs mid-episode, a collector's last observations): not
# compared with a fresh model's; their own load_state_dict checks them.


def fresh_dir(base: str) -> Path:
    """`base`, or `base-2`, `base-3`, … where it is taken (two runs started in the same second)."""
    candidate, n = Path(base), 1
    while candidate.exists():
        n += 1
        candidate = Path(f"{base}-{n}")
    return candidate


class Trainer:
    """Builds the envs and the algorithm, runs iterations until the step budget is spent, logs, evaluates
    and checkpoints. `Trainer(...).run()` is what `pgrad.train` and `pgrad resume` call.

    The run folder is checked before anything is built, created only once the envs and the algorithm built
    without error, and locked for this process from then until `run()` (or `close()`) returns.
    """

    def __init__(
        self,
        algorithm: type[Algorithm],
        algo_config: Any,
        run: RunConfig,
        env: str | EnvFactory | None = None,
        env_kwargs: dict[str, Any] | None = None,
        resume: bool = False,
        preset: dict[str, Any] | None = None,
        on_evaluation: Callable[[dict[str, Any]], None] | None = None,
    ):
        """`preset`: the options of `algo_config` that came from pgrad's per-env preset (recorded in run.json
        and announced on stderr). `on_evaluation(result)` is called after each evaluation has been logged
        (`result` holds global_step, mean_return, std_return, ...); an exception it raises (a tuner's
        pruning signal, say) ends the run there, with the metrics written so far kept."""
        check_run_config(run)
        check_field_types(algo_config, algorithm.name)  # before num_envs & co. reach the env constructors
        self.cls = algorithm
        self.algo_config = algo_config
        self.run_config = run
        self.env = env if env is not None else run.env
        self.env_kwargs = dict(env_kwargs or {})
        self.preset = dict(preset or {})
        self.on_evaluation = on_evaluation
        self.label = env_label(self.env)
        use_threads(run.threads)
        self.device = torch.device(run.device)
        default_dir = f"runs/{self.cls.name}-{self.label.replace(':', '_').replace('/', '_')}-s{run.seed}"
        self.run_dir = (
            Path(run.run_dir) if run.run_dir else fresh_dir(f"{default_dir}-{time.strftime('%Y%m%d-%H%M%S')}")
        )
        self.checkpoints = self.run_dir / "checkpoints"
        check_run_dir(self.run_dir, resume)
        seed_everything(run.seed)
        if run.ray_address is not None and not (run.workers or self.cls.default_workers):
            raise ConfigError("--ray-address joins a Ray cluster for --workers K: give --workers too")
        # The differentiable-simulator family steps the batched torch twin of the env (its gradients); "auto"
        # is resolved once here and recorded, so a resumed run steps the same backend.
        backend = "native" if getattr(algorithm, "differentiable", False) else run.backend
        backend = resolve_backend(self.env, algo_config.num_envs, backend, self.env_kwargs)
        self.run_config = run = dataclasses.replace(run, backend=backend)
        workers = run.workers or self.cls.default_workers
        if workers:  # Ray actors sample (or, for A3C, learn) in other processes: docs/scale_out.md
            self.envs = self._worker_envs(workers, backend)
        else:
            self.envs = make_env(
                self.env,
                algo_config.num_envs,
                backend=backend,
                algorithm=self.cls.name,
                env_kwargs=self.env_kwargs,
                action_spaces=self.cls.action_spaces,
                device=self.device,
            )
        if self.envs.max_episode_steps is None:
            warnings.warn(
                f"env '{self.label}' has no time limit: an episode may never end; evaluation cuts its "
                f"episodes at --eval-max-steps {run.eval_max_steps:,} (give the env a TimeLimit / "
                "max_episode_steps)",
                PgradWarning,
                stacklevel=3,
            )
        self.algo = algorithm(algo_config, self.envs, run.seed, self.device, run.total_steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)  # only once envs and algorithm built without error
        self.lock = RunLock(self.run_dir)
        self.lock.acquire()
        try:
            if not resume:
                check_run_dir(self.run_dir, resume=False, locked_by_us=True)  # again, now that we hold it
            self.iteration = 0
            self.wall_time = 0.0
            self.eval_index = 0
            self.best_return = -math.inf
            self.next_eval = run.eval_every if run.eval_every > 0 else None
            self.next_checkpoint = run.checkpoint_every if run.checkpoint_every > 0 else None
            self.recent_returns: deque[float] = deque(maxlen=100)
            if resume:
                self._restore()
            else:
                write_run_file(self.run_dir, self._run_file())
                if self.preset:
                    options = ", ".join(f"{k}={v}" for k, v in self.preset.items())
                    print(
                        f"pgrad: {self.cls.name} on {self.label} starts from pgrad's preset: {options} "
                        "(options given override it; --no-preset for the algorithm's defaults)",
                        file=sys.stderr,
                    )
        except BaseException:
            self.close()
            raise

    def _worker_envs(self, workers: int, backend: str):
        """The run's envs as K Ray workers' shares (`pgrad.run.workers.WorkerEnvs`), for algorithms that
        sample or learn on Ray; a one-line error for the others."""
        if self.cls.workers == "none":
            raise ConfigError(
                f"{self.cls.name} does not run on Ray workers (--workers {workers}): --workers applies "
                "to the on-policy score-function algorithms and a3c"
            )
        from pgrad.run.ray_cluster import WorkerSetup
        from pgrad.run.workers import WorkerEnvs

        setup = WorkerSetup(
            workers=workers,
            address=self.run_config.ray_address,
            env=self.env,
            env_kwargs=self.env_kwargs,
            # an "own" algorithm's num_envs is per actor (A3C's actor-learners): K actors step K times it
            num_envs=self.algo_config.num_envs * (workers if self.cls.workers == "own" else 1),
            backend=backend,
            algorithm=self.cls.name,
            action_spaces=self.cls.action_spaces,
            seed=self.run_config.seed,
            threads=self.run_config.threads,
        )
        return WorkerEnvs(setup, device=self.device)

    def close(self) -> None:
        """Stop the algorithm's own actors, close the envs and release the run folder (idempotent; `run()`
        does it when it returns)."""
        self.algo.close()
        self.envs.close()
        self.lock.release()

    # -- persistence ----------------------------------------------------------------------------------------
    def _run_file(self) -> dict[str, Any]:
        return {
            "algorithm": self.cls.name,
            "env": self.label,
            "env_is_id": isinstance(self.env, str),
            "env_kwargs": self.env_kwargs,
            "run": dataclasses.asdict(self.run_config),
            "config": dataclasses.asdict(self.algo_config),
            "preset": self.preset,  # the config options that came from pgrad's per-env preset
        }

    def _state(self) -> dict[str, Any]:
        rng_meta, rng_tensors = rng_state()
        return {
            "algorithm": self.algo.state_dict(),
            "envs": self.envs.state_dict() if hasattr(self.envs, "state_dict") else None,
            "rng": {"meta": rng_meta, "tensors": rng_tensors},
            "trainer": {
                "global_step": self.envs.global_step,
                "total_steps": self.run_config.total_steps,
                "iteration": self.iteration,
                "wall_time": self.wall_time,
                "eval_index": self.eval_index,
                "best_return": self.best_return,
                "next_eval": self.next_eval,
                "next_checkpoint": self.next_checkpoint,
                "recent_returns": list(self.recent_returns),
            },
            "policy": {  # what `pgrad.load` needs, independent of how the algorithm stores its state
                "spec": self.algo.policy.spec(),
                "weights": self.algo.policy.state_dict(),
                "observation_space": space_to_dict(self.envs.single_observation_space),
                "action_space": space_to_dict(self.envs.single_action_space),
                "algorithm": self.cls.name,
                "env": self.label,
            },
        }

    def save(self, best: bool = False) -> Path:
        """Checkpoint the run (into checkpoints/best/ when `best`, keeping only that one)."""
        self._last_save = time.monotonic()
        if best:
            return save_checkpoint(self.checkpoints / "best", self.envs.global_step, self._state(), keep=1)
        return save_checkpoint(
            self.checkpoints, self.envs.global_step, self._state(), keep=self.run_config.keep_checkpoints
        )

    def _restore(self) -> None:
        # Validate every tensor's name, shape and dtype against what this freshly built trainer would save.
        state, step = load_checkpoint(
            latest_checkpoint(self.checkpoints),
            expected=self._state(),
            optional=RESUME_OPTIONAL,
            free=["/envs", "/algorithm/collector", *(f"/algorithm/{part}" for part in self.cls.free_state)],
        )
        self.algo.load_state_dict(state["algorithm"])
        set_rng_state(state["rng"]["meta"], state["rng"]["tensors"])
        t = state["trainer"]
        self.envs.global_step = int(t["global_step"])
        self.iteration = int(t["iteration"])
        self.wall_time = float(t["wall_time"])
        self.eval_index = int(t["eval_index"])
        self.best_return = float(t.get("best_return", -math.inf))
        self.next_eval = t["next_eval"]
        self.next_checkpoint = t["next_checkpoint"]
        self.recent_returns.extend(t["recent_returns"])
        total = self.run_config.total_steps
        if step >= total:
            raise ConfigError(
                f"{self.run_dir} is already at {step:,} env steps, and --total-steps {total:,} is not more: "
                f"nothing to train (ask for more than {step:,})"
            )
        planned = int(t.get("total_steps", total))
        if planned != total:
            note = self.algo.extend_budget(step, total)
            print(
                f"pgrad: {self.run_dir}: budget {planned:,} → {total:,} env steps at step {step:,}"
                + (f"; {note}" if note else ""),
                file=sys.stderr,
            )
        saved_envs = state.get("envs")
        if saved_envs is not None and hasattr(self.envs, "load_state_dict"):
            self.envs.load_state_dict(saved_envs, where=f"{self.checkpoints} (envs)")
        else:  # the envs could not be saved: the algorithm starts new episodes
            self.algo.on_resume(self.iteration)
        truncate_metrics(self.run_dir, step)

    # -- loop -----------------------------------------------------------------------------------------------
    def evaluate(self, on_episode=None) -> dict[str, Any]:
        run = self.run_config
        result = evaluate_policy(
            self.algo.policy,
            self.env,
            episodes=run.eval_episodes,
            deterministic=run.eval_deterministic,
            seed=derive_seed(run.seed, "eval", self.eval_index),
            env_kwargs=self.env_kwargs,
            max_episode_steps=run.eval_max_steps,
            on_episode=on_episode,
        )
        self.eval_index += 1
        return result

    def _iteration(self) -> dict[str, Any]:
        """One algorithm iteration: its episodes join the open log interval; returns its metrics."""
        start = time.perf_counter()
        result = self.algo.iteration(self.iteration)
        self.wall_time += time.perf_counter() - start
        self.iteration += 1
        self.recent_returns.extend(result.episode_returns.tolist())
        self._returns.extend(result.episode_returns.tolist())
        self._lengths.extend(result.episode_lengths.tolist())
        return result.metrics

    def _record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The metrics record closing the current log interval (episode statistics over the interval)."""
        step = self.envs.global_step
        seconds = self.wall_time - self._interval_time
        record: dict[str, Any] = {
            "global_step": step,
            "iteration": self.iteration,
            "time": round(self.wall_time, 4),
            "charts/sps": (step - self._interval_step) / max(seconds, 1e-9),
            "charts/episodes": len(self._returns),
        }
        if self._returns:
            record["charts/episode_return"] = float(np.mean(self._returns))
            record["charts/episode_return_std"] = float(np.std(self._returns))
            record["charts/episode_length"] = float(np.mean(self._lengths))
        if hasattr(self.envs, "metrics"):  # Ray workers' own (stats/worker_restarts); the algorithm's win
            record.update(self.envs.metrics())
        record.update({k: float(v) if isinstance(v, torch.Tensor) else v for k, v in metrics.items()})
        self._returns, self._lengths = [], []
        self._interval_step, self._interval_time = step, self.wall_time
        return record

    def _evaluate_into(self, record: dict[str, Any], progress: Progress) -> dict[str, Any]:
        """Evaluate (shown in the progress display), add the result to `record`, keep the best checkpoint."""
        total = self.run_config.eval_episodes

        def shown(done: int) -> None:
            progress.evaluating(done, total)

        shown(0)
        result = self.evaluate(on_episode=shown)
        progress.evaluated()
        result["global_step"] = record["global_step"]
        record["eval/mean_return"] = result["mean_return"]
        record["eval/std_return"] = result["std_return"]
        if result.get("cut_episodes"):
            record["eval/cut_episodes"] = result["cut_episodes"]
        if result["mean_return"] > self.best_return:
            self.best_return = result["mean_return"]
            self.save(best=True)
        return result

    def run(self) -> dict[str, Any]:
        """Train until `total_steps` (or `target_return`); returns a summary with the final evaluation.

        SIGINT/SIGTERM: the current iteration finishes, a checkpoint is written, and `Interrupted` is raised
        with how to continue; a second signal stops at once.
        """
        run = self.run_config
        last_eval: dict[str, Any] | None = None
        saved_at = -1
        reached = False
        finished = False
        logger: MetricsLogger | None = None
        self._last_save = time.monotonic()
        try:
            wandb = None
            if run.wandb:  # W&B's config: the run's options as this process runs them (a resume's included)
                wandb = {"config": self._run_file(), "project": run.wandb_project, "mode": run.wandb_mode}
                wandb["tag"] = run.tag
            logger = MetricsLogger(self.run_dir, tensorboard=run.tensorboard, wandb=wandb)
            label = f"{self.cls.name} {self.label}"
            progress = progress_display(run.progress, run.total_steps, label, start=self.envs.global_step)
            with progress, StopRequest() as stop:
                self._returns, self._lengths = [], []
                self._interval_step, self._interval_time = self.envs.global_step, self.wall_time
                while self.envs.global_step < run.total_steps and not reached and stop.signal is None:
                    metrics = self._iteration()
                    step = self.envs.global_step
                    evaluate = self.next_eval is not None and step >= self.next_eval and run.eval_episodes > 0
                    checkpoint = (self.next_checkpoint is not None and step >= self.next_checkpoint) or (
                        run.checkpoint_minutes > 0
                        and time.monotonic() - self._last_save >= 60 * run.checkpoint_minutes
                    )
                    if (
                        evaluate
                        or checkpoint
                        or stop.signal is not None
                        or step >= run.total_steps
                        or step - self._interval_step >= run.log_every
                    ):
                        record = self._record(metrics)
                        if evaluate:
                            last_eval = self._evaluate_into(record, progress)
                            while self.next_eval <= step:
                                self.next_eval += run.eval_every
                            reached = (
                                run.target_return is not None
                                and last_eval["mean_return"] >= run.target_return
                            )
                        logger.log(record)
                        if evaluate and self.on_evaluation is not None:
                            self.on_evaluation(last_eval)
                        progress.update(
                            step,
                            train_return=float(np.mean(self.recent_returns)) if self.recent_returns else None,
                            sps=record["charts/sps"],
                            eval_return=record.get("eval/mean_return"),
                        )
                    if checkpoint:
                        self.save()
                        saved_at = step
                        while self.next_checkpoint is not None and self.next_checkpoint <= step:
                            self.next_checkpoint += run.checkpoint_every
                step = self.envs.global_step
                if stop.signal is not None:
                    if saved_at != step:
                        self.save()
                    raise Interrupted(
                        f"{stop.signal.name}: stopped at step {step:,} with a checkpoint in "
                        f"{self.checkpoints}; continue with `pgrad resume {self.run_dir}`",
                        stop.exit_code,
                    )
                if run.eval_episodes > 0 and (last_eval is None or last_eval["global_step"] != step):
                    record = {"global_step": step}
                    last_eval = self._evaluate_into(record, progress)
                    logger.log(record)
                    progress.update(eval_return=last_eval["mean_return"])
                    if self.on_evaluation is not None:
                        self.on_evaluation(last_eval)
                if saved_at != step:
                    self.save()
            finished = True
        finally:
            if logger is not None:
                logger.close(failed=not finished)
            self.close()
        plot_learning_curve(self.run_dir)
        return {
            "run_dir": str(self.run_dir),
            "global_step": self.envs.global_step,
            "iterations": self.iteration,
            "wall_time": self.wall_time,
            "target_reached": reached,
            # the two returns a user sees, labelled: training episodes (exploring) and the evaluation
            "train_return": float(np.mean(self.recent_returns)) if self.recent_returns else None,
            "eval": last_eval,
            "eval_deterministic": run.eval_deterministic,
            "best_return": self.best_return if math.isfinite(self.best_return) else None,
        }
