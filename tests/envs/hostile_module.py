"""An env that breaks Gymnasium's contract on purpose, for tests/envs/test_hostile_envs.py and the CLI.

`Hostile(fault, at)` is well behaved (Box(4) observations, or Discrete(5) with `discrete=True`; Discrete(2)
actions; reward 1; episodes truncated after `episode_length` steps) until its `at`-th step or `at`-th reset,
counted over all its episodes, where it does `fault` (a key of `STEP_FAULTS` or `RESET_FAULTS`).

Importing this module registers `HostileStep-v0` (raises in its 13th step), for
`pgrad train reinforce --env tests.envs.hostile_module:HostileStep-v0`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def _raise(exc: Exception) -> Any:
    raise exc


# fault -> (field of the 5-tuple it spoils, bad value maker). Raising faults raise from the maker.
STEP_FAULTS: dict[str, tuple[str, Any]] = {
    "step_raises": ("obs", lambda: _raise(RuntimeError("step exploded\nsecond line of the message"))),
    "step_raises_keyerror": ("obs", lambda: _raise(KeyError("missing"))),
    "obs_shape": ("obs", lambda: np.zeros(3, dtype=np.float32)),
    "obs_shape_2d": ("obs", lambda: np.zeros((1, 4), dtype=np.float32)),
    "obs_str": ("obs", lambda: np.array(["a", "b", "c", "d"])),
    "obs_object": ("obs", lambda: np.array([0.0, None, 0.0, 0.0], dtype=object)),
    "obs_none": ("obs", lambda: None),
    "obs_discrete_range": ("obs", lambda: 7),  # with discrete=True: outside Discrete(5)
    "obs_discrete_float": ("obs", lambda: 1.5),  # with discrete=True
    "reward_none": ("reward", lambda: None),
    "reward_str": ("reward", lambda: "1"),
    "reward_array": ("reward", lambda: np.array([1.0, 2.0])),
    "reward_complex": ("reward", lambda: 1 + 2j),
    "terminated_str": ("terminated", lambda: "False"),
    "terminated_two": ("terminated", lambda: 2),
    "truncated_none": ("truncated", lambda: None),
    "info_list": ("info", lambda: []),
    "four_tuple": ("tuple", lambda: None),
}
RESET_FAULTS: dict[str, Any] = {
    "reset_raises": lambda obs: _raise(ValueError("reset exploded\nsecond line of the message")),
    "reset_obs_shape": lambda obs: (np.zeros(5, dtype=np.float32), {}),
    "reset_not_tuple": lambda obs: obs,
}


class Hostile(gym.Env):
    """Well behaved until step (or reset) number `at`, where it does `fault` (see the module docstring)."""

    def __init__(
        self, fault: str | None = None, at: int = 3, episode_length: int = 5, discrete: bool = False
    ):
        if fault is not None and fault not in STEP_FAULTS and fault not in RESET_FAULTS:
            raise ValueError(f"unknown fault {fault}")
        self.observation_space = spaces.Discrete(5) if discrete else spaces.Box(-10, 10, (4,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.fault, self.at, self.episode_length, self.discrete = fault, at, episode_length, discrete
        self.steps = self.resets = self.t = 0

    def _obs(self) -> Any:
        return self.t % 5 if self.discrete else np.full(4, 0.1 * self.t, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.resets += 1
        self.t = 0
        result = (self._obs(), {})
        if self.resets == self.at and self.fault in RESET_FAULTS:
            return RESET_FAULTS[self.fault](result[0])
        return result

    def step(self, action):
        self.steps += 1
        self.t += 1
        values = {
            "obs": self._obs(),
            "reward": 1.0,
            "terminated": False,
            "truncated": self.t >= self.episode_length,
            "info": {},
        }
        if self.steps == self.at and self.fault in STEP_FAULTS:
            field, bad = STEP_FAULTS[self.fault]
            if field == "tuple":
                return values["obs"], 1.0, False, {}
            values[field] = bad()
        return tuple(values.values())


if "HostileStep-v0" not in gym.registry:
    gym.register("HostileStep-v0", entry_point=lambda: Hostile("step_raises", at=13), max_episode_steps=5)
