"""Collecting single transitions into a replay buffer (the learned-critic family).

`TransitionCollector.collect(act, steps)` steps the vector env `steps` times with `act(obs)` and adds every
transition to the buffer with the TRUE next observation (the final observation where an episode ended, never
the reset observation) and terminated / truncated kept apart. Episodes run on across calls. Before the
buffer holds `learning_starts` transitions, actions are drawn uniformly from the action space instead (with
the collector's own generator, so they are reproducible and saved with the run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.base import VecEnv
from pgrad.run.replay import ReplayBuffer
from pgrad.run.rollout import _checked_obs

ActFn = Callable[[torch.Tensor], torch.Tensor]


def uniform_actions(
    space: spaces.Space, n: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """n actions drawn uniformly from a Discrete or bounded Box space (env actions, [n] or [n, A])."""
    if isinstance(space, spaces.Discrete):
        return torch.randint(int(space.n), (n,), generator=generator).add_(int(space.start)).to(device)
    low = torch.as_tensor(space.low, dtype=torch.float32)
    high = torch.as_tensor(space.high, dtype=torch.float32)
    u = torch.rand((n, *low.shape), generator=generator)
    return (low + u * (high - low)).to(device)


class TransitionCollector:
    """Steps `envs` with a policy and writes transitions into `buffer` (see the module docstring).

    `seed` seeds the first reset and the generator of the warm-up actions. A resumed run whose env state
    was not restored calls `restart(seed)`: new episodes, and the buffer's open episodes are closed as
    truncated so no n-step sum runs from the old episodes into the new ones.
    """

    def __init__(self, envs: VecEnv, buffer: ReplayBuffer, seed: int, learning_starts: int = 0):
        self.envs, self.buffer, self.learning_starts = envs, buffer, learning_starts
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.obs: torch.Tensor | None = None
        self.last_done = torch.ones(envs.num_envs, dtype=torch.bool)  # per sub-env: did the last step end it?
        discrete = isinstance(envs.single_action_space, spaces.Discrete)
        self._action_dtype = torch.long if discrete else torch.float32

    def restart(self, seed: int) -> None:
        self.seed, self.obs = seed, None
        self.last_done = torch.ones_like(self.last_done)
        if len(self.buffer):
            self.buffer.end_episodes()

    def collect(self, act: ActFn, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Take `steps` vector steps; returns the (returns, lengths) of the episodes that finished."""
        envs = self.envs
        if self.obs is None:
            self.obs = envs.reset(seed=self.seed)
        returns, lengths = [], []
        for _ in range(steps):
            if envs.global_step < self.learning_starts:
                actions = uniform_actions(
                    envs.single_action_space, envs.num_envs, self.generator, self.obs.device
                )
            else:
                actions = act(self.obs)
            step, episodes = envs.step(actions)
            self.buffer.add(
                self.obs,
                actions.to(self._action_dtype),
                step.reward,
                step.terminated,
                step.truncated,
                step.final_obs,
            )
            if len(episodes.env_index):
                returns.append(episodes.returns)
                lengths.append(episodes.lengths)
            self.obs = step.next_obs
            self.last_done = step.terminated | step.truncated
        if not returns:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        return np.concatenate(returns), np.concatenate(lengths)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "seed": self.seed,
            "last_done": self.last_done.clone(),
            "obs": None if self.obs is None else self.obs.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.seed = int(state["seed"])
        self.last_done = state["last_done"].to(self.last_done.device)
        self.obs = _checked_obs(state["obs"], self.envs)
