"""What every batched env gives the rest of pgrad: the step types and the `VecEnv` protocol.

Also the `DiffEnv` protocol of the differentiable envs (`pgrad.envs.diff`): functional, batched,
differentiable steps with no hidden episode state.

Backends (Gymnasium vector envs in `pgrad.envs.gym`, batched torch twins in `pgrad.envs.native`) implement
`VecEnv` structurally; `pgrad.envs.make.make_env` picks one. Nothing here imports a backend, so every backend,
collector and algorithm can import this module without an import cycle.

Autoreset is **same-step**: when a sub-env's episode ends at step t, the observation returned for t is
already the first observation of the next episode (`StepResult.next_obs`), and the true final observation
s_{t+1} comes back separately (`StepResult.final_obs`). A transition therefore never pairs a terminal
observation with a reset observation, and V(final observation) is at hand to bootstrap a truncated episode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from pgrad.errors import CheckpointError

EnvFactory = Callable[..., gym.Env]


class StepResult(NamedTuple):
    """One vector step, all tensors with leading dimension N (number of sub-envs)."""

    next_obs: torch.Tensor  # [N, D] observation to act on next (a reset observation where an episode ended)
    reward: torch.Tensor  # [N]
    terminated: torch.Tensor  # [N] bool: s_{t+1} is terminal, do not bootstrap
    truncated: torch.Tensor  # [N] bool: episode cut by a time limit, bootstrap from V(final_obs)
    final_obs: torch.Tensor  # [N, D] the true s_{t+1} (the final observation where the episode ended)


@dataclass
class EpisodeStats:
    """Episodes completed during one step: returns and lengths, and which sub-env finished them."""

    returns: np.ndarray
    lengths: np.ndarray
    env_index: np.ndarray


@runtime_checkable
class VecEnv(Protocol):
    """N sub-envs stepped in lock-step, returning torch tensors (structural: nothing needs to subclass it).

    `global_step` counts env transitions summed over sub-envs; the harness reads it for the step budget and
    restores it on resume. A backend may also define `state_dict() -> dict | None` and
    `load_state_dict(state, where)`: the harness then saves the envs in checkpoints and a resumed run
    continues its episodes exactly (None: this env's state cannot be saved; the run starts new episodes).
    """

    label: str  # readable env name for error messages
    spec_id: str | None  # Gymnasium id of the env, where there is one
    num_envs: int
    device: torch.device
    single_observation_space: spaces.Space
    single_action_space: spaces.Space
    obs_dim: int  # length of the flat float observation vector
    max_episode_steps: int | None  # the time limit, None when the env has none
    global_step: int

    def reset(self, seed: int | Sequence[int] | None = None) -> torch.Tensor: ...

    def step(self, actions: torch.Tensor) -> tuple[StepResult, EpisodeStats]: ...

    def close(self) -> None: ...


def env_label(env: str | EnvFactory | Any) -> str:
    """A readable name for an env id or factory, used in error messages."""
    if isinstance(env, str):
        return env
    return getattr(env, "__qualname__", None) or type(env).__name__


@runtime_checkable
class DiffEnv(Protocol):
    """What a differentiable env provides (structural: nothing needs to subclass it)."""

    state_dim: int
    obs_dim: int
    action_dim: int
    action_bound: float
    horizon: int
    dtype: torch.dtype

    def reset(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor: ...

    def step(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...

    def observe(self, state: Tensor) -> Tensor: ...


class TensorEnvState:
    """`state_dict` / `load_state_dict` of a batched torch env whose whole state is tensors: `state`, the
    step counters `_steps`, the episode returns `_returns` and the start-state generator `_generator`
    (the native twins). A checkpoint then holds the envs mid-episode and a resume continues exactly."""

    state: Tensor
    _steps: Tensor
    _returns: Tensor
    _generator: torch.Generator
    _started: bool
    device: torch.device

    def state_dict(self) -> dict[str, Any] | None:
        if not self._started:
            return None
        return {
            "state": self.state.clone(),
            "steps": self._steps.clone(),
            "returns": self._returns.clone(),
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], where: str = "checkpoint") -> None:
        if tuple(state["state"].shape) != tuple(self.state.shape):
            raise CheckpointError(
                f"{where}: saved env state has shape {tuple(state['state'].shape)}, this env "
                f"{tuple(self.state.shape)}"
            )
        self.state = state["state"].to(self.device)
        self._steps = state["steps"].to(self.device)
        self._returns = state["returns"].to(self.device)
        self._generator.set_state(state["generator"])
        self._started = True
