"""Gymnasium vector environments behind one interface that yields torch tensors.

Autoreset mode: **same-step** (`gymnasium.vector.AutoresetMode.SAME_STEP`). When a sub-env's episode ends at
step t, the observation returned for t is already the first observation of the next episode, and the true
final observation s_{t+1} comes back separately. `VecEnv.step` returns both: `next_obs` (what the policy
acts on next) and `final_obs` (the true s_{t+1} of every transition, equal to `next_obs` where the episode
did not end). A transition therefore never pairs a terminal observation with a reset observation, and
V(final observation) is at hand to bootstrap a truncated episode.

Every step is checked: the 5-tuple contract of `Env.step` and finite observations and rewards. A broken
step raises `EnvError` naming the env id, the sub-env index, the global step and the field, before anything
downstream (and so before any parameter update) sees the values.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from pgrad.errors import EnvError

EnvFactory = Callable[[], gym.Env]

OBSERVATION_SPACES = (spaces.Box, spaces.Discrete)
ACTION_SPACES = (spaces.Box, spaces.Discrete)


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


def env_label(env: str | EnvFactory) -> str:
    """A readable name for an env id or factory, used in error messages."""
    if isinstance(env, str):
        return env
    return getattr(env, "__qualname__", None) or type(env).__name__


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


def check_spaces(
    observation_space: spaces.Space,
    action_space: spaces.Space,
    algorithm: str,
    env: str,
    action_spaces: tuple[type[spaces.Space], ...] = ACTION_SPACES,
) -> None:
    """Reject spaces the algorithm cannot handle before the first step, naming the space and algorithm."""
    if not isinstance(observation_space, OBSERVATION_SPACES):
        raise EnvError(
            f"env '{env}': observation space {observation_space} is not supported by {algorithm} "
            f"(supported: {', '.join(s.__name__ for s in OBSERVATION_SPACES)}); flatten it with a wrapper"
        )
    if isinstance(observation_space, spaces.Box) and not np.issubdtype(observation_space.dtype, np.number):
        raise EnvError(f"env '{env}': observation space {observation_space} has a non-numeric dtype")
    if not isinstance(action_space, action_spaces):
        raise EnvError(
            f"env '{env}': action space {action_space} is not supported by {algorithm} "
            f"(supported: {', '.join(s.__name__ for s in action_spaces)})"
        )
    if isinstance(action_space, spaces.Box) and len(action_space.shape) != 1:
        raise EnvError(
            f"env '{env}': action space {action_space} is not supported by {algorithm} "
            "(Box actions must be 1-D vectors)"
        )


def obs_dim(observation_space: spaces.Space) -> int:
    """Length of the flat float vector an observation becomes (one-hot for Discrete)."""
    if isinstance(observation_space, spaces.Discrete):
        return int(observation_space.n)
    return int(np.prod(observation_space.shape))


def obs_to_tensor(
    space: spaces.Space,
    obs: np.ndarray,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A batch of raw observations [B, *shape] as flat float vectors [B, D] (one-hot for Discrete)."""
    if isinstance(space, spaces.Discrete):
        index = torch.as_tensor(np.asarray(obs) - space.start, dtype=torch.long)
        return torch.nn.functional.one_hot(index, int(space.n)).to(device, dtype)
    flat = np.asarray(obs).reshape(len(obs), -1)
    return torch.as_tensor(flat, device=device, dtype=dtype)


def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """JSON description of a Box or Discrete space (for checkpoints)."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "shape": list(space.shape),
            "dtype": str(space.dtype),
        }
    raise EnvError(f"cannot describe space {space} (only Box and Discrete)")


def space_from_dict(data: dict[str, Any]) -> spaces.Space:
    """Inverse of `space_to_dict`."""
    if data["type"] == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    low = np.asarray(data["low"], dtype=data["dtype"]).reshape(data["shape"])
    high = np.asarray(data["high"], dtype=data["dtype"]).reshape(data["shape"])
    return spaces.Box(low, high, dtype=data["dtype"])


class VecEnv:
    """N copies of an env stepped in lock-step, returning torch tensors; see the module docstring.

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

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_env(env: str | EnvFactory, num_envs: int = 1, backend: str = "gymnasium", **kwargs: Any) -> VecEnv:
    """Build a `VecEnv` (see its docstring) from a Gymnasium env id or a callable.

    `backend="native"` returns pgrad's batched torch twin of the env id instead (pgrad.envs.native), which
    has the same interface and dynamics and steps every sub-env in one tensor operation.
    """
    if backend == "native":
        from pgrad.envs.native import make_native

        if not isinstance(env, str):
            raise EnvError("the native backend needs an env id, not a callable")
        if kwargs.get("env_kwargs"):
            raise EnvError(f"the native twin of '{env}' takes no env keyword arguments")
        return make_native(
            env, num_envs, device=kwargs.get("device", "cpu"), dtype=kwargs.get("dtype", torch.float32)
        )
    if backend != "gymnasium":
        raise EnvError(f"unknown env backend '{backend}' (gymnasium or native)")
    return VecEnv(env, num_envs, **kwargs)
