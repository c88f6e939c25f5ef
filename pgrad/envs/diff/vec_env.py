"""A differentiable env as a batched torch ``VecEnv`` (``pgrad.envs.base``), for model-free training.

``DiffVecEnv(env, num_envs)`` steps ``num_envs`` rows of ``env`` in one tensor op under ``torch.no_grad()``
with the same contract as ``pgrad.envs.native.cartpole.CartPoleVecEnv``:

* same-step autoreset: where an episode ends at step t, ``StepResult.next_obs`` is already the first
  observation of the next episode and ``StepResult.final_obs`` the true final observation;
* ``terminated`` comes from the env; ``truncated`` where an episode reaches ``max_episode_steps`` (default the
  env's ``horizon``) without terminating;
* ``global_step`` grows by ``num_envs`` per step; ``EpisodeStats`` lists the returns and lengths of the
  episodes that ended;
* ``reset(seed)`` seeds a ``torch.Generator`` (an int as is, a sequence through ``numpy.random.SeedSequence``)
  that draws every start state, autoresets included.

Observations and rewards come back in ``dtype`` (default: the env's); the state stays in the env's dtype.
``.diff_env`` is the wrapped env and ``.state`` the current batched state [num_envs, state_dim] (after an
autoreset: the new start states), for differentiable algorithms that want the same task and bookkeeping.

``NATIVE_DIFF_ENVS`` maps each registered id to a twin class taking ``(num_envs, device=, dtype=)``: the
registered task built in float64 (as ``gymnasium.make`` builds it) with observations and rewards in ``dtype``;
``pgrad.envs.native.NATIVE_ENVS`` includes them, so ``make_env(id, n, backend="native")`` gives the twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from pgrad.envs.base import EpisodeStats, StepResult, TensorEnvState
from pgrad.envs.diff.gym_adapter import diff_env_spaces
from pgrad.envs.diff.registration import DIFF_ENV_FACTORIES, make_diff_env
from pgrad.errors import EnvError

if TYPE_CHECKING:
    from pgrad.envs.base import DiffEnv

__all__ = ["NATIVE_DIFF_ENVS", "DiffVecEnv"]


class DiffVecEnv(TensorEnvState):
    """N rows of a differentiable env as a ``pgrad.envs.base.VecEnv`` (see the module docstring).

    Args:
        env: the differentiable env.
        num_envs: number of sub-envs N.
        device: where states, observations and rewards live.
        dtype: dtype of observations and rewards (None: the env's dtype).
        max_episode_steps: time limit (None: the env's ``horizon``).
        spec_id: the Gymnasium id of the same task, where there is one.
    """

    def __init__(
        self,
        env: DiffEnv,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        max_episode_steps: int | None = None,
        spec_id: str | None = None,
    ):
        if num_envs < 1:
            raise EnvError(f"num_envs must be >= 1, got {num_envs}")
        self.diff_env = env
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.dtype = env.dtype if dtype is None else dtype
        self.max_episode_steps = int(max_episode_steps or env.horizon)
        self.spec_id = spec_id
        self.label = f"{spec_id} (native)" if spec_id else type(env).__name__
        self.single_observation_space, self.single_action_space = diff_env_spaces(env)
        self.obs_dim = int(env.obs_dim)
        self.global_step = 0
        self._generator = torch.Generator(device=getattr(env, "device", "cpu"))
        self.state = torch.zeros(self.num_envs, env.state_dim, dtype=env.dtype, device=self.device)
        self._steps = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._returns = torch.zeros(self.num_envs, dtype=torch.float64, device=self.device)
        self._started = False

    def _start_states(self, n: int) -> torch.Tensor:
        return self.diff_env.reset(n, self._generator).to(self.device)

    def _obs(self, state: torch.Tensor) -> torch.Tensor:
        return self.diff_env.observe(state).to(self.dtype)

    def reset(self, seed: int | Sequence[int] | None = None) -> torch.Tensor:
        """Fresh start states for every sub-env; the observations [N, obs_dim]."""
        if seed is not None:
            self._generator.manual_seed(
                int(seed)
                if isinstance(seed, int)
                else int(np.random.SeedSequence(list(seed)).generate_state(1)[0])
            )
        with torch.no_grad():
            self.state = self._start_states(self.num_envs)
            obs = self._obs(self.state)
        self._steps.zero_()
        self._returns.zero_()
        self._started = True
        return obs

    def step(self, actions: torch.Tensor) -> tuple[StepResult, EpisodeStats]:
        """Step every sub-env with ``actions`` [N, action_dim] (or [N] for one action dimension)."""
        if not self._started:
            raise EnvError(f"env '{self.label}': step() called before reset()")
        env = self.diff_env
        actions = torch.as_tensor(actions, device=self.device)
        if actions.numel() != self.num_envs * env.action_dim:
            raise EnvError(
                f"env '{self.label}', global step {self.global_step}: actions must be "
                f"[{self.num_envs}, {env.action_dim}], got {tuple(actions.shape)}"
            )
        actions = actions.reshape(self.num_envs, env.action_dim).to(self.state.dtype)
        with torch.no_grad():
            state, reward, terminated, truncated, final_state, stats = self.advance(self.state, actions)
            self.state = state
            result = StepResult(
                self._obs(state), reward.to(self.dtype), terminated.clone(), truncated, self._obs(final_state)
            )
        return result, stats

    def advance(
        self, state: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, EpisodeStats]:
        """One differentiable step of every sub-env from `state` (the differentiable algorithms' step).

        Returns (next state to act on — fresh start states, without gradient, where an episode ended —,
        reward, terminated, truncated, the true next state, episode stats). Gradients flow from the rewards
        and the next states back through `state` and `actions`; the bookkeeping (steps, returns, autoreset,
        `global_step`) is the same as `step`'s. The caller keeps the returned state (and stores it, detached,
        in `self.state` when its window ends)."""
        true_next, reward, terminated = self.diff_env.step(state, actions)
        with torch.no_grad():
            self._steps += 1
            self._returns += reward.detach().to(torch.float64)
            truncated = (self._steps >= self.max_episode_steps) & ~terminated
            done = terminated | truncated
            self.global_step += self.num_envs
            stats = EpisodeStats(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
            fresh = None
            if bool(done.any()):
                rows = done.nonzero().squeeze(1)
                stats = EpisodeStats(
                    self._returns[rows].cpu().numpy(), self._steps[rows].cpu().numpy(), rows.cpu().numpy()
                )
                fresh = true_next.detach().clone()
                fresh[rows] = self._start_states(len(rows)).to(fresh.dtype)
                self._steps[rows] = 0
                self._returns[rows] = 0.0
        next_state = true_next if fresh is None else torch.where(done[:, None], fresh, true_next)
        return next_state, reward, terminated, truncated, true_next, stats

    def close(self) -> None:
        pass


class _RegisteredTwin(DiffVecEnv):
    """A registered task as a ``DiffVecEnv`` (float64 simulation), built from (num_envs, device=, dtype=)."""

    env_id: ClassVar[str]

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        max_episode_steps: int | None = None,
        **_: object,
    ):
        env = make_diff_env(self.env_id, dtype=torch.float64, device=device)
        super().__init__(
            env,
            num_envs,
            device=device,
            dtype=dtype,
            max_episode_steps=max_episode_steps,
            spec_id=self.env_id,
        )


NATIVE_DIFF_ENVS: dict[str, type] = {
    env_id: type(f"{env_id.split('/')[-1].split('-')[0]}VecEnv", (_RegisteredTwin,), {"env_id": env_id})
    for env_id in DIFF_ENV_FACTORIES
}
