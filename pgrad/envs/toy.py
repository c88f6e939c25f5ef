"""Small envs with known behaviour, for tests and for checking a setup (like identity envs elsewhere)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CountingEnv(gym.Env):
    """Observation [episode number, step in episode]; reward = step + 1.

    An episode terminates at step `terminate_at` when given (with probability `terminate_prob` for each
    episode, drawn from the env's RNG) and otherwise runs on; wrap with a time limit to truncate it. Any
    mix-up of final and reset observations shows in the numbers.
    """

    def __init__(
        self,
        terminate_at: int | None = 5,
        terminate_prob: float = 1.0,
        action_space: spaces.Space | None = None,
    ):
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = action_space if action_space is not None else spaces.Discrete(2)
        self.terminate_at = terminate_at
        self.terminate_prob = terminate_prob
        self.episode = -1
        self.t = 0
        self._terminates = True

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        self._terminates = bool(self.np_random.random() < self.terminate_prob)
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        terminated = self._terminates and self.terminate_at is not None and self.t >= self.terminate_at
        return self._obs(), float(self.t), terminated, False, {}


class FaultyEnv(gym.Env):
    """Breaks Gymnasium's contract on its `at_step`-th step (counted over all its episodes): a NaN reward,
    an inf observation, or an old 4-tuple from step(). Episodes are truncated after `episode_length` steps."""

    def __init__(self, fault: str = "nan_reward", at_step: int = 3, episode_length: int = 50):
        if fault not in ("nan_reward", "inf_obs", "four_tuple"):
            raise ValueError(f"unknown fault {fault}")
        self.observation_space = spaces.Box(-10, 10, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.fault = fault
        self.at_step = at_step
        self.episode_length = episode_length
        self.t = 0
        self.total = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        self.total += 1
        obs, reward = np.full(3, 0.1 * self.t, dtype=np.float32), 1.0
        if self.total == self.at_step:
            if self.fault == "nan_reward":
                reward = float("nan")
            elif self.fault == "inf_obs":
                obs[1] = np.inf
            else:
                return obs, reward, False, {}
        return obs, reward, False, self.t >= self.episode_length, {}
