"""CartPole-v1 as batched torch tensors: Gymnasium's dynamics, N envs per tensor op, same-step autoreset.

Step for step the same equations, constants, thresholds, Euler integrator, reward (1 per step) and 500-step
time limit as `gymnasium.envs.classic_control.CartPoleEnv` (tested against it state by state); start states
are drawn uniformly from [−0.05, 0.05]⁴ by a torch generator seeded from the reset seed, so episodes start
from different (equally distributed) states than Gymnasium's for the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.base import EpisodeStats, StepResult, TensorEnvState
from pgrad.errors import EnvError

GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = MASS_CART + MASS_POLE
POLE_MASS_LENGTH = MASS_POLE * HALF_LENGTH
THETA_LIMIT, X_LIMIT = 12 * 2 * math.pi / 360, 2.4


def cartpole_step(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """One Euler step of the cart-pole for a batch: state [N, 4] (x, ẋ, θ, θ̇), action [N] in {0, 1}."""
    x, x_dot, theta, theta_dot = state.unbind(-1)
    force = torch.where(action == 1, FORCE, -FORCE).to(state.dtype)
    cos, sin = torch.cos(theta), torch.sin(theta)
    temp = (force + POLE_MASS_LENGTH * theta_dot.square() * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (
        HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos.square() / TOTAL_MASS)
    )
    x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos / TOTAL_MASS
    return torch.stack(
        (x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot, theta_dot + TAU * theta_acc), dim=-1
    )


class CartPoleVecEnv(TensorEnvState):
    """N CartPole-v1 envs in tensors, a `pgrad.envs.base.VecEnv` (same-step autoreset)."""

    label = "CartPole-v1 (native)"
    spec_id = "CartPole-v1"

    def __init__(
        self,
        num_envs: int = 1,
        *,
        max_episode_steps: int = 500,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **_: object,
    ):
        if num_envs < 1:
            raise EnvError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.device = torch.device(device)
        self.dtype = dtype
        high = np.array([X_LIMIT * 2, np.inf, THETA_LIMIT * 2, np.inf], dtype=np.float32)
        self.single_observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.obs_dim = 4
        self.global_step = 0
        self._generator = torch.Generator(device=self.device)
        self.state = torch.zeros(num_envs, 4, dtype=torch.float64, device=self.device)
        self._steps = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._returns = torch.zeros(num_envs, dtype=torch.float64, device=self.device)
        self._started = False

    def _start_states(self, n: int) -> torch.Tensor:
        u = torch.rand(n, 4, generator=self._generator, dtype=torch.float64, device=self.device)
        return u * 0.1 - 0.05

    def reset(self, seed: int | Sequence[int] | None = None) -> torch.Tensor:
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
        return self.state.to(self.dtype)

    def step(self, actions: torch.Tensor) -> tuple[StepResult, EpisodeStats]:
        if not self._started:
            raise EnvError(f"env '{self.label}': step() called before reset()")
        actions = actions.to(self.device).reshape(self.num_envs)
        if bool(((actions != 0) & (actions != 1)).any()):
            raise EnvError(f"env '{self.label}', global step {self.global_step}: actions must be 0 or 1")
        state = cartpole_step(self.state, actions)
        x, theta = state[:, 0], state[:, 2]
        terminated = (x < -X_LIMIT) | (x > X_LIMIT) | (theta < -THETA_LIMIT) | (theta > THETA_LIMIT)
        self._steps += 1
        truncated = (self._steps >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        final_obs = state.to(self.dtype)
        self._returns += 1.0
        self.global_step += self.num_envs
        stats = EpisodeStats(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        if bool(done.any()):
            rows = done.nonzero().squeeze(1)
            stats = EpisodeStats(
                self._returns[rows].cpu().numpy(), self._steps[rows].cpu().numpy(), rows.cpu().numpy()
            )
            state = state.clone()
            state[rows] = self._start_states(len(rows))
            self._steps[rows] = 0
            self._returns[rows] = 0.0
        self.state = state
        reward = torch.ones(self.num_envs, dtype=self.dtype, device=self.device)
        next_obs = state.to(self.dtype)
        return StepResult(next_obs, reward, terminated, truncated, final_obs), stats

    def close(self) -> None:
        pass
