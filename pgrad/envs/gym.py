"""Gymnasium vector environments behind one interface that yields torch tensors.

Autoreset mode: **same-step** (`gymnasium.vector.AutoresetMode.SAME_STEP`). When a sub-env's episode ends at
step t, the observation returned for t is already the first observation of the next episode, and the true
final observation s_{t+1} comes back separately. `GymVecEnv.step` returns both: `next_obs` (what the policy
acts on next) and `final_obs` (the true s_{t+1} of every transition, equal to `next_obs` where the episode
did not end). A transition therefore never pairs a terminal observation with a reset observation, and
V(final observation) is at hand to bootstrap a truncated episode.

Every step is checked: the 5-tuple contract of `Env.step` and finite observations and rewards. A broken
step raises `EnvError` naming the env id, the sub-env index, the global step and the field, before anything
downstream (and so before any parameter update) sees the values.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from pgrad.envs.base import EnvFactory, EpisodeStats, StepResult, env_label
from pgrad.envs.spaces import ACTION_SPACES, check_spaces, obs_dim, obs_to_tensor
from pgrad.errors import EnvError


def _make_one(env: str | EnvFactory, env_kwargs: dict[str, Any]) -> gym.Env:
    if isinstance(env, str):
        if ":" in env:
            # Gymnasium's `module:EnvName-vN` form imports the module (which registers the env) first.
            module = env.split(":", 1)[0]
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise EnvError(f"env '{env}': cannot import module '{module}' ({exc})") from None
        try:
            return gym.make(env, **env_kwargs)
        except gym.error.Error as exc:
            raise EnvError(f"env '{env}': {exc}".splitlines()[0]) from None
        except TypeError as exc:
            raise EnvError(f"env '{env}': bad env keyword arguments {env_kwargs}: {exc}") from None
    if not callable(env):
        raise EnvError(f"env must be a Gymnasium env id or a callable returning an env, got {env!r}")
    made = env(**env_kwargs)
    if not isinstance(made, gym.Env):
        raise EnvError(f"env factory {env_label(env)} returned {type(made).__name__}, not a gymnasium.Env")
    return made


class _StepContract(gym.Wrapper):
    """Checks that `step` returns Gymnasium's (obs, reward, terminated, truncated, info) 5-tuple."""

    def __init__(self, env: gym.Env, label: str, index: int):
        super().__init__(env)
        self._where = f"env '{label}', sub-env {index}"
        self.local_step = 0

    def step(self, action):
        self.local_step += 1
        try:
            result = self.env.step(action)
        except ValueError as exc:
            # Gymnasium's own wrappers unpack the inner env's result first; a 4-tuple surfaces here.
            if "values to unpack (expected 5" in str(exc):
                raise EnvError(
                    f"{self._where}, episode step {self.local_step}: step() must return the 5-tuple "
                    f"(obs, reward, terminated, truncated, info) of Gymnasium >= 0.26 ({exc})"
                ) from None
            raise
        if not isinstance(result, tuple) or len(result) != 5:
            got = f"a {len(result)}-tuple" if isinstance(result, tuple) else type(result).__name__
            raise EnvError(
                f"{self._where}, episode step {self.local_step}: step() returned {got}; expected the 5-tuple "
                "(obs, reward, terminated, truncated, info) of Gymnasium >= 0.26"
            )
        return result

    def reset(self, **kwargs):
        self.local_step = 0
        return super().reset(**kwargs)


class GymVecEnv:
    """N Gymnasium envs stepped in lock-step, returning torch tensors: a `pgrad.envs.base.VecEnv`.

    Args:
        env: a Gymnasium env id (also `module:EnvName-vN`) or a callable returning a `gymnasium.Env`.
        num_envs: number of sub-envs N.
        algorithm: name used in error messages about unsupported spaces.
        env_kwargs: keyword arguments for `gymnasium.make` (or for the callable).
        action_spaces: space types the algorithm supports.
        device: where returned tensors live.
        dtype: floating dtype of observations and rewards.
        check_finite: raise on NaN/inf observations or rewards (cheap: one vectorised test a step).
    """

    def __init__(
        self,
        env: str | EnvFactory,
        num_envs: int = 1,
        *,
        algorithm: str = "pgrad",
        env_kwargs: dict[str, Any] | None = None,
        action_spaces: tuple[type[spaces.Space], ...] = ACTION_SPACES,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        check_finite: bool = True,
    ):
        if num_envs < 1:
            raise EnvError(f"num_envs must be >= 1, got {num_envs}")
        self.label = env_label(env)
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.dtype = dtype
        self.check_finite = check_finite
        kwargs = dict(env_kwargs or {})
        probe = _make_one(env, kwargs)
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.spec_id = probe.spec.id if probe.spec is not None else None
        # The time limit as built (env_kwargs included); None when the env has none.
        self.max_episode_steps: int | None = getattr(probe.spec, "max_episode_steps", None)
        probe.close()
        check_spaces(
            self.single_observation_space, self.single_action_space, algorithm, self.label, action_spaces
        )
        self.obs_dim = obs_dim(self.single_observation_space)

        def factory(index: int) -> EnvFactory:
            return lambda: _StepContract(_make_one(env, kwargs), self.label, index)

        self._envs = SyncVectorEnv(
            [factory(i) for i in range(num_envs)], autoreset_mode=AutoresetMode.SAME_STEP
        )
        self.global_step = 0  # env transitions taken so far, summed over sub-envs
        self._episode_return = np.zeros(num_envs, dtype=np.float64)
        self._episode_length = np.zeros(num_envs, dtype=np.int64)
        self._started = False

    # -- conversion -----------------------------------------------------------------------------------------
    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return obs_to_tensor(self.single_observation_space, obs, self.device, self.dtype)

    def _action_array(self, actions: torch.Tensor) -> np.ndarray:
        array = actions.detach().cpu().numpy()
        space = self.single_action_space
        if isinstance(space, spaces.Discrete):
            return array.astype(np.int64).reshape(self.num_envs)
        return array.astype(space.dtype).reshape(self.num_envs, *space.shape)

    # -- checks ---------------------------------------------------------------------------------------------
    def _check(self, field: str, values: np.ndarray, rows: np.ndarray | None = None) -> None:
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.number):
            raise EnvError(
                f"env '{self.label}', global step {self.global_step}: {field} has dtype {values.dtype}"
            )
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            index = int(np.flatnonzero(bad)[0]) if rows is None else int(rows[np.flatnonzero(bad)[0]])
            raise EnvError(
                f"env '{self.label}', sub-env {index}, global step {self.global_step}: {field} is not finite "
                f"({np.asarray(values[bad][0]).ravel()[:8].tolist()})"
            )

    # -- API ------------------------------------------------------------------------------------------------
    def reset(self, seed: int | Sequence[int] | None = None) -> torch.Tensor:
        """Reset every sub-env; an int seeds sub-env i with a seed derived from (seed, i)."""
        if isinstance(seed, int):
            seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(self.num_envs)]
        else:
            seeds = None if seed is None else [int(s) for s in seed]
        obs, _ = self._envs.reset(seed=seeds)
        if self.check_finite:
            self._check("observation after reset", obs)
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0
        self._started = True
        return self._obs_tensor(obs)

    def step(self, actions: torch.Tensor) -> tuple[StepResult, EpisodeStats]:
        """Step every sub-env with `actions` ([N] indices or [N, A] vectors, already in the action space)."""
        if not self._started:
            raise EnvError(f"env '{self.label}': step() called before reset()")
        try:
            obs, reward, terminated, truncated, info = self._envs.step(self._action_array(actions))
        except EnvError as exc:
            raise EnvError(f"{exc} [global step {self.global_step}]") from None
        self.global_step += self.num_envs
        if self.check_finite:
            self._check("reward", reward)
            self._check("observation", obs)
        done = np.logical_or(terminated, truncated)
        final = obs
        if done.any():
            rows = np.flatnonzero(done)
            final_obs = np.stack([np.asarray(info["final_obs"][i]) for i in rows])
            if self.check_finite:
                self._check("final observation", final_obs, rows)
            final = np.array(obs, copy=True)
            final[rows] = final_obs
        self._episode_return += reward
        self._episode_length += 1
        rows = np.flatnonzero(done)
        stats = EpisodeStats(self._episode_return[rows].copy(), self._episode_length[rows].copy(), rows)
        self._episode_return[rows] = 0.0
        self._episode_length[rows] = 0
        next_obs = self._obs_tensor(obs)
        result = StepResult(
            next_obs=next_obs,
            reward=torch.as_tensor(reward, device=self.device, dtype=self.dtype),
            terminated=torch.as_tensor(terminated, device=self.device),
            truncated=torch.as_tensor(truncated, device=self.device),
            final_obs=next_obs if final is obs else self._obs_tensor(final),
        )
        return result, stats

    def close(self) -> None:
        self._envs.close()

    def __enter__(self) -> GymVecEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
