"""Any differentiable env as a plain ``gymnasium.Env`` (batch 1, numpy in and out), for model-free agents.

``DiffGymEnv(env)`` keeps one state row of ``env`` and steps it under ``torch.no_grad()``:

* observation: ``env.observe(state)`` as float32, Box(−∞, ∞, (obs_dim,));
* action: a float32 Box [−b, b]^action_dim with b = ``env.action_bound`` (∞ if the env has none); the action
  is passed to ``env.step`` unclipped (the env clips where its dynamics do);
* reward: float; ``terminated`` from the env; ``truncated`` always False here: the time limit is the
  registered ``max_episode_steps`` (= the task's horizon), applied by Gymnasium's ``TimeLimit`` wrapper;
* seeding: ``reset(seed=s)`` seeds a ``torch.Generator`` with s and draws the start state from it, so the
  same seed gives the same start state as ``env.reset(1, torch.Generator().manual_seed(s))`` and as a
  one-env ``DiffVecEnv`` reset with s; later resets continue that generator's stream (the first reset without
  a seed seeds it from Gymnasium's ``np_random``).

``DiffGymEnv("pgrad/DiffPendulum-v0", **kwargs)`` builds the registered task in float64 (that is how
``gymnasium.make`` builds it); ``.diff_env`` is the wrapped env, ``.state`` its current state [1, state_dim].
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from pgrad.envs.diff.registration import make_diff_env
from pgrad.errors import EnvError

if TYPE_CHECKING:
    from pgrad.envs.base import DiffEnv

__all__ = ["DiffGymEnv", "diff_env_spaces"]


def diff_env_spaces(env: DiffEnv) -> tuple[spaces.Box, spaces.Box]:
    """(observation space, action space) of a differentiable env: the adapter's and ``DiffVecEnv``'s."""
    bound = float(getattr(env, "action_bound", math.inf))
    observation_space = spaces.Box(-np.inf, np.inf, shape=(env.obs_dim,), dtype=np.float32)
    action_space = spaces.Box(-bound, bound, shape=(env.action_dim,), dtype=np.float32)
    return observation_space, action_space


class DiffGymEnv(gym.Env):
    """A differentiable env as a single Gymnasium env (see the module docstring).

    Args:
        env: a differentiable env, or a registered id (``pgrad.envs.diff.registration``) built in float64.
        **env_kwargs: constructor arguments of the registered task (only with an id).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, env: DiffEnv | str, **env_kwargs: Any):
        if isinstance(env, str):
            env = make_diff_env(env, **{"dtype": torch.float64, **env_kwargs})
        elif env_kwargs:
            raise EnvError(f"DiffGymEnv: keyword arguments {sorted(env_kwargs)} need an env id, not an env")
        self.diff_env = env
        self.observation_space, self.action_space = diff_env_spaces(env)
        self._generator = torch.Generator(device=getattr(env, "device", "cpu"))
        self._seeded = False
        self.state: torch.Tensor | None = None

    def _obs(self) -> np.ndarray:
        return self.diff_env.observe(self.state)[0].cpu().numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._generator.manual_seed(int(seed))
        elif not self._seeded:
            self._generator.manual_seed(int(self.np_random.integers(2**62)))
        self._seeded = True
        with torch.no_grad():
            self.state = self.diff_env.reset(1, self._generator)
        return self._obs(), {}

    def step(self, action):
        if self.state is None:
            raise EnvError("DiffGymEnv: step() called before reset()")
        array = np.asarray(action, dtype=np.float64).reshape(1, -1)
        a = torch.as_tensor(array, dtype=self.state.dtype, device=self.state.device)
        with torch.no_grad():
            self.state, reward, terminated = self.diff_env.step(self.state, a)
        return self._obs(), float(reward[0]), bool(terminated[0]), False, {}
