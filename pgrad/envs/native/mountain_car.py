"""MountainCar-v0 and MountainCarContinuous-v0 as batched torch tensors: Gymnasium's dynamics, N envs per
tensor op, same-step autoreset.

State s = (x, v) [N, 2]: the car's position on the hill y = 0.45 sin(3x) + 0.55 and its velocity; the
observation is the state. Both step exactly as ``gymnasium.envs.classic_control.MountainCarEnv`` and
``Continuous_MountainCarEnv`` do:

    v'  = clip(v + push − 0.0025 cos(3x), −0.07, 0.07)
    x'  = clip(x + v', −1.2, 0.6);   v' = 0 where x' = −1.2 and v' < 0    (the car stops at the left wall)
    terminated = x' ≥ goal and v' ≥ 0

* MountainCar-v0: action a ∈ {0, 1, 2}, push = 0.001 (a − 1), goal 0.5, reward −1 per step, 200 steps.
* MountainCarContinuous-v0: action a [N, 1], push = 0.0015 clip(a, −1, 1), goal 0.45, reward
  100·terminated − 0.1 a² (on the *unclipped* action, as Gymnasium computes it), 999 steps. Gymnasium stores
  this env's state as float32 after every step, and so does the twin (the step itself runs in float64).

Start: x ~ U[−0.6, −0.4], v = 0 (by a torch generator seeded from the reset seed, so not the same states as
Gymnasium's for a seed). Episodes are cut at the time limit (a truncation).
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.native.base import NativeVecEnv

__all__ = ["MountainCarContinuousVecEnv", "MountainCarVecEnv", "mountain_car_step"]

MIN_POSITION, MAX_POSITION, MAX_SPEED, GRAVITY = -1.2, 0.6, 0.07, 0.0025
FORCE, GOAL = 0.001, 0.5  # MountainCar-v0
POWER, GOAL_CONTINUOUS, MAX_ACTION = 0.0015, 0.45, 1.0  # MountainCarContinuous-v0
START_LOW, START_HIGH = -0.6, -0.4


def mountain_car_step(state: torch.Tensor, push: torch.Tensor) -> torch.Tensor:
    """One step of a batch: state [N, 2] (x, v), push [N] the action's velocity change → next state [N, 2]."""
    position, velocity = state.unbind(-1)
    # Gymnasium's grouping, v + (push − 0.0025 cos 3x), so the roundings agree too
    velocity = (velocity + (push - GRAVITY * torch.cos(3 * position))).clamp(-MAX_SPEED, MAX_SPEED)
    position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION)
    velocity = torch.where((position == MIN_POSITION) & (velocity < 0), 0.0, velocity)
    return torch.stack((position, velocity), dim=-1)


def observation_space() -> spaces.Box:
    low = np.array([MIN_POSITION, -MAX_SPEED], dtype=np.float32)
    high = np.array([MAX_POSITION, MAX_SPEED], dtype=np.float32)
    return spaces.Box(low, high, dtype=np.float32)


def start_states(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """[n, 2]: Gymnasium's uniform(low, high) = low + (high − low) u for x, and v = 0."""
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
    return torch.stack((START_LOW + (START_HIGH - START_LOW) * u, torch.zeros_like(u)), dim=-1)


class MountainCarVecEnv(NativeVecEnv):
    """N MountainCar-v0 envs in tensors, a `pgrad.envs.base.VecEnv` (same-step autoreset)."""

    label = "MountainCar-v0 (native)"
    spec_id = "MountainCar-v0"
    state_dim = obs_dim = 2
    time_limit = 200

    def _spaces(self) -> tuple[spaces.Box, spaces.Discrete]:
        return observation_space(), spaces.Discrete(3)

    def _start_states(self, n: int) -> torch.Tensor:
        return start_states(n, self._generator, self.device)

    def _dynamics(
        self, state: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = mountain_car_step(state, (actions - 1).to(torch.float64) * FORCE)
        terminated = (state[:, 0] >= GOAL) & (state[:, 1] >= 0)
        return state, torch.full((self.num_envs,), -1.0, dtype=torch.float64, device=self.device), terminated


class MountainCarContinuousVecEnv(NativeVecEnv):
    """N MountainCarContinuous-v0 envs in tensors, a `pgrad.envs.base.VecEnv` (same-step autoreset)."""

    label = "MountainCarContinuous-v0 (native)"
    spec_id = "MountainCarContinuous-v0"
    state_dim = obs_dim = 2
    time_limit = 999

    def _spaces(self) -> tuple[spaces.Box, spaces.Box]:
        return observation_space(), spaces.Box(-MAX_ACTION, MAX_ACTION, shape=(1,), dtype=np.float32)

    def _start_states(self, n: int) -> torch.Tensor:
        return start_states(n, self._generator, self.device)

    def _dynamics(
        self, state: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        action = actions[:, 0]
        state = mountain_car_step(state, action.clamp(-MAX_ACTION, MAX_ACTION) * POWER)
        terminated = (state[:, 0] >= GOAL_CONTINUOUS) & (state[:, 1] >= 0)
        # Gymnasium charges the action cost on the action as given, not on the clipped force.
        reward = terminated.to(torch.float64) * 100.0 - action.square() * 0.1
        return state.float().double(), reward, terminated  # Gymnasium keeps a float32 state
