"""The one shallow contract between an algorithm and the run harness.

The trainer knows only this: it builds an `Algorithm` subclass from its class (handed down by `pgrad.api` or
the CLI, which resolve names), calls `iteration` until the step budget is spent, and saves/restores it through
`state_dict`/`load_state_dict`. It never names an algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.base import VecEnv
from pgrad.policies.networks import Policy
from pgrad.run.config import check_field_types


@dataclass
class IterationResult:
    """What one training iteration reports: diagnostics and the episodes it finished.

    Metric values may be Python numbers or 0-d tensors; the harness converts them once, when it writes a
    metrics record, so an algorithm never has to force a device sync per minibatch.
    """

    metrics: dict[str, Any]
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    episode_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class Algorithm:
    """Base of every algorithm: the harness builds it, calls `iteration` until the step budget is spent, and
    saves/restores it through `state_dict`/`load_state_dict` (nested dicts of tensors and plain values).

    Subclasses set the class attributes and own a `policy` the harness evaluates and saves. `family` is one of
    `pgrad.algorithms.FAMILIES`: how the algorithm estimates ∇θJ.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type]
    action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete, spaces.Box)
    # Parts of `state_dict()` whose shapes depend on the run (e.g. a replay buffer's filled part): a
    # resume does not compare them with a fresh model's; `load_state_dict` must check them itself.
    free_state: ClassVar[tuple[str, ...]] = ()
    # What `pgrad tune` searches, declared beside each Config without importing optuna: Config field ->
    # ("log", low, high) (log-uniform float), ("float", low, high), ("int", low, high) or ("categorical",
    # (choice, ...)). Empty here: `pgrad tune` refuses an algorithm that declares none.
    search_space: ClassVar[dict[str, tuple]] = {}
    # What `--workers K` does (docs/scale_out.md): "none" refuses it; "rollouts": the harness hands the
    # algorithm a `pgrad.run.workers.WorkerEnvs` whose K Ray actors sample for it (the algorithm is unchanged:
    # its collectors dispatch to them); "own": the algorithm runs its own Ray actors from the WorkerEnvs'
    # `setup` (A3C's actor-learners), with K = `default_workers` when --workers is not given.
    workers: ClassVar[str] = "none"
    default_workers: ClassVar[int] = 0

    policy: Policy

    def __init__(self, config: Any, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        check_field_types(config, self.name)
        self.config = config
        self.envs = envs
        self.seed = seed
        self.device = device
        self.total_steps = total_steps  # the run's budget, for schedules such as learning-rate annealing

    def extend_budget(self, step: int, total_steps: int) -> str | None:
        """The run's step budget changes at `step` (a resume with another --total-steps). Algorithms with
        schedules over the budget adapt them here and return a one-line note of what happens to them."""
        self.total_steps = total_steps
        return None

    def close(self) -> None:
        """Release what the algorithm holds outside this process (A3C's Ray actors); the harness calls it
        when the run ends, before closing the envs. Idempotent."""

    def on_resume(self, iteration: int) -> None:
        """Called after `load_state_dict` when a run resumes at `iteration` and its envs could not be restored
        (their state is not saveable without pickle): the algorithm starts new episodes here."""

    def iteration(self, index: int) -> IterationResult:
        """Collect experience with `self.envs` and update the parameters once (one batch)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError
