"""What every native twin shares: seeding, action checks, same-step autoreset, episode statistics, state.

A twin (`pgrad.envs.native.cartpole`, `.acrobot`, `.pendulum`, `.mountain_car`) subclasses `NativeVecEnv` and
gives only its task: spaces, start states, and one batched step of its dynamics with reward and termination.
This class turns that into a `pgrad.envs.base.VecEnv`:

* the physical state lives in float64 tensors [N, state_dim] on `device`; observations and rewards come
  back in `dtype`;
* `reset(seed)` seeds a `torch.Generator` on `device` (an int as is, a sequence through
  `numpy.random.SeedSequence`) that draws every start state, autoresets included;
* actions are checked before the step (a discrete action must be one of the space's indices, a continuous one
  finite; otherwise a one-line `EnvError` naming env, sub-env and global step); continuous actions are
  rounded to the action space's float32 first, as the Gymnasium backend hands them to Gymnasium;
* same-step autoreset: where an episode ends at step t, `StepResult.next_obs` is already the first
  observation of the next episode and `StepResult.final_obs` the true final one; `truncated` where an episode
  reaches `max_episode_steps` without terminating; `EpisodeStats` lists the episodes that ended;
* `state_dict` / `load_state_dict` (from `TensorEnvState`): state, step counters, returns and generator, so a
  checkpoint holds the envs mid-episode and a resume continues exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.base import EpisodeStats, StepResult, TensorEnvState
from pgrad.errors import EnvError

__all__ = ["NativeVecEnv"]


class NativeVecEnv(TensorEnvState):
    """Base of the native twins (see the module docstring). A subclass sets the class attributes and
    implements `_spaces`, `_start_states` and `_dynamics` (and `_observe` when the observation is not the
    state itself)."""

    label: ClassVar[str]  # e.g. "Acrobot-v1 (native)"
    spec_id: ClassVar[str]  # the Gymnasium id of the twin
    state_dim: ClassVar[int]
    obs_dim: ClassVar[int]
    time_limit: ClassVar[int]  # Gymnasium's max_episode_steps for the id

    def __init__(
        self,
        num_envs: int = 1,
        *,
        max_episode_steps: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **_: object,
    ):
        if num_envs < 1:
            raise EnvError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.max_episode_steps = int(max_episode_steps or self.time_limit)
        self.device = torch.device(device)
        self.dtype = dtype
        self.single_observation_space, self.single_action_space = self._spaces()
        self.global_step = 0
        self._generator = torch.Generator(device=self.device)
        self.state = torch.zeros(self.num_envs, self.state_dim, dtype=torch.float64, device=self.device)
        self._steps = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._returns = torch.zeros(self.num_envs, dtype=torch.float64, device=self.device)
        self._started = False

    # -- the task (subclasses) ------------------------------------------------------------------------------
    def _spaces(self) -> tuple[spaces.Box, spaces.Space]:
        """(single observation space, single action space), Gymnasium's."""
        raise NotImplementedError

    def _start_states(self, n: int) -> torch.Tensor:
        """[n, state_dim] float64 start states drawn with `self._generator` on `self.device`."""
        raise NotImplementedError

    def _dynamics(
        self, state: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step from `state` [N, state_dim] with checked `actions` ([N] int64 for a discrete space, [N, A]
        float64 for a box): (new state [N, state_dim] float64, reward [N] float64, terminated [N] bool)."""
        raise NotImplementedError

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        """Observations [N, obs_dim] of `state` (default: the state itself)."""
        return state

    # -- the VecEnv -----------------------------------------------------------------------------------------
    def _obs(self, state: torch.Tensor) -> torch.Tensor:
        # A copy even when dtype is float64, so no caller ever holds (and could write into) self.state.
        return self._observe(state).to(self.dtype, copy=True)

    def _checked_actions(self, actions: torch.Tensor) -> torch.Tensor:
        where = f"env '{self.label}', global step {self.global_step}"
        actions = torch.as_tensor(actions, device=self.device)
        space = self.single_action_space
        if isinstance(space, spaces.Discrete):
            if actions.numel() != self.num_envs:
                raise EnvError(f"{where}: actions must be [{self.num_envs}], got {tuple(actions.shape)}")
            actions = actions.reshape(self.num_envs)
            n = int(space.n)
            bad = (actions < 0) | (actions >= n)
            if actions.is_floating_point():
                bad |= actions != actions.round()  # NaN included
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise EnvError(
                    f"{where}, sub-env {i}: actions must be integers in 0..{n - 1}, got {actions[i].item()}"
                )
            return actions.long()
        dim = int(np.prod(space.shape))
        if actions.numel() != self.num_envs * dim:
            raise EnvError(f"{where}: actions must be [{self.num_envs}, {dim}], got {tuple(actions.shape)}")
        actions = actions.reshape(self.num_envs, dim)
        bad = ~torch.isfinite(actions).all(dim=1)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise EnvError(f"{where}, sub-env {i}: actions must be finite, got {actions[i].tolist()}")
        # Gymnasium sees float32 actions (the space's dtype), and so does the twin.
        return actions.to(torch.float32).to(torch.float64)

    def reset(self, seed: int | Sequence[int] | None = None) -> torch.Tensor:
        """Fresh start states for every sub-env; the observations [N, obs_dim]."""
        if seed is not None:
            self._generator.manual_seed(
                int(seed)
                if isinstance(seed, int)
                else int(np.random.SeedSequence(list(seed)).generate_state(1)[0])
            )
        self.state = self._start_states(self.num_envs)
        self._steps.zero_()
        self._returns.zero_()
        self._started = True
        return self._obs(self.state)

    def step(self, actions: torch.Tensor) -> tuple[StepResult, EpisodeStats]:
        """Step every sub-env: `actions` [N] indices (discrete) or [N, A] (continuous; [N] when A = 1)."""
        if not self._started:
            raise EnvError(f"env '{self.label}': step() called before reset()")
        state, reward, terminated = self._dynamics(self.state, self._checked_actions(actions))
        self._steps += 1
        truncated = (self._steps >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        self._returns += reward
        self.global_step += self.num_envs
        final_obs = next_obs = self._obs(state)
        stats = EpisodeStats(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        if bool(done.any()):
            rows = done.nonzero().squeeze(1)
            stats = EpisodeStats(
                self._returns[rows].cpu().numpy(), self._steps[rows].cpu().numpy(), rows.cpu().numpy()
            )
            state[rows] = self._start_states(len(rows))  # `state` is the step's own new tensor
            self._steps[rows] = 0
            self._returns[rows] = 0.0
            next_obs = final_obs.clone()
            next_obs[rows] = self._obs(state[rows])
        self.state = state
        return StepResult(next_obs, reward.to(self.dtype), terminated, truncated, final_obs), stats

    def close(self) -> None:
        pass
