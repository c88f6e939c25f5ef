"""The one shallow contract between an algorithm and the run harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.gym import VecEnv
from pgrad.policies.networks import Policy


@dataclass
class IterationResult:
    """What one training iteration reports: scalar diagnostics and the episodes it finished."""

    metrics: dict[str, float]
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    episode_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class NetworkConfig:
    """Network fields every algorithm's Config shares (its own fields follow); read by `make_policy`."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy and value MLPs."""
    activation: Literal["tanh", "relu", "elu", "silu"] = "tanh"
    """Hidden activation."""
    policy: Literal["auto", "categorical", "diag_gaussian", "tanh_gaussian", "discretised"] = "auto"
    """Action distribution (auto: categorical for Discrete, diagonal Gaussian for Box)."""
    bins: int = 11
    """Bins per action dimension for the discretised policy."""


def make_policy(envs: VecEnv, config: Any) -> Policy:
    """The policy an algorithm's config asks for, from its shared fields: hidden_sizes, activation, policy
    (the head kind), bins (discretised heads), init_std (Gaussian heads) and normalize_obs, where present."""
    kind = getattr(config, "policy", "auto")
    gaussian = kind in ("diag_gaussian", "tanh_gaussian") or (
        kind == "auto" and isinstance(envs.single_action_space, spaces.Box)
    )
    head_options: dict[str, Any] = {}
    if kind == "discretised":
        head_options["bins"] = config.bins
    if gaussian and hasattr(config, "init_std"):
        head_options["init_std"] = config.init_std
    return Policy(
        envs.obs_dim,
        envs.single_action_space,
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        head=kind,
        normalize_obs=getattr(config, "normalize_obs", False),
        **head_options,
    )


class Algorithm:
    """Base of every algorithm: the harness builds it, calls `iteration` until the step budget is spent, and
    saves/restores it through `state_dict`/`load_state_dict` (nested dicts of tensors and plain values).

    Subclasses set the class attributes and own a `policy` the harness evaluates and saves.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    summary: ClassVar[str]
    Config: ClassVar[type]
    action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete, spaces.Box)

    policy: Policy

    def __init__(self, config: Any, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        self.config = config
        self.envs = envs
        self.seed = seed
        self.device = device
        self.total_steps = total_steps  # the run's budget, for schedules such as learning-rate annealing

    def on_resume(self, iteration: int) -> None:
        """Called after `load_state_dict` when a run resumes at `iteration` (e.g. to restart env episodes)."""

    def iteration(self, index: int) -> IterationResult:
        """Collect experience with `self.envs` and update the parameters once (one batch)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError
