"""Gymnasium vector environments behind one interface that yields torch tensors.

Autoreset mode: **same-step** (`gymnasium.vector.AutoresetMode.SAME_STEP`). When a sub-env's episode ends at
step t, the observation returned for t is already the first observation of the next episode, and the true
final observation s_{t+1} comes back separately. `GymVecEnv.step` returns both: `next_obs` (what the policy
acts on next) and `final_obs` (the true s_{t+1} of every transition, equal to `next_obs` where the episode
did not end). A transition therefore never pairs a terminal observation with a reset observation, and
V(final observation) is at hand to bootstrap a truncated episode.

Every reset and step is checked, sub-env by sub-env before Gymnasium batches the values (`pgrad.envs.checks`
says what is accepted): an exception raised by the env, the (obs, info) / 5-tuple contract, observations of
the space's shape (Box) or in its range (Discrete) with a numeric dtype, real scalar rewards, bool flags, and
then, on the batch, finite observations and rewards. Any failure raises a one-line `EnvError`

    env '<label>', sub-env <i>, global step <g>: <what was wrong>

before anything downstream (and so before any parameter update) sees the values. `<g>` is the global step
the failing step would have reached (the steps taken so far for a failure in `reset`); an exception the env
raised is the `EnvError`'s `__cause__`, and only the first line of its message is quoted.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from pgrad.envs.base import EnvFactory, EpisodeStats, StepResult, env_label
from pgrad.envs.checks import (
    FLAGS,
    NUMERIC_KINDS,
    REAL_SCALARS,
    SubEnvFault,
    checked_flag,
    checked_reward,
    describe,
    observation_checker,
    raised,
)
from pgrad.envs.snapshot import env_state, set_env_state
from pgrad.envs.spaces import ACTION_SPACES, check_spaces, obs_dim, obs_to_tensor
from pgrad.errors import CheckpointError, EnvError

FIVE_TUPLE = "5-tuple (obs, reward, terminated, truncated, info) of Gymnasium >= 0.26"


def _is_seed(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 0


def _import_env_module(module: str) -> None:
    """Import the module of a `module:EnvName-vN` id; one in the working directory is found as `python -m`
    finds it (the `pgrad` command's own path is its install folder), after everything installed."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != module.split(".")[0] or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)  # last: a file here never shadows an installed package
        importlib.import_module(module)


def make_single_env(env: str | EnvFactory, env_kwargs: dict[str, Any]) -> gym.Env:
    """One Gymnasium env from an id (`module:EnvName-vN` imports the module first) or a callable, with
    one-line errors naming the env; what every sub-env of `GymVecEnv` and `pgrad record` are made with."""
    if isinstance(env, str):
        if ":" in env:
            # Gymnasium's `module:EnvName-vN` form imports the module (which registers the env) first.
            module = env.split(":", 1)[0]
            try:
                _import_env_module(module)
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


class _Contract(gym.Wrapper):
    """Sub-env `index` of a `GymVecEnv`, its every reset and step checked against Gymnasium's contract.

    Runs on the sub-env's raw return values, before `SyncVectorEnv` batches them (see `pgrad.envs.checks`):
    an exception from the env, a result that is not (obs, info) / (obs, reward, terminated, truncated, info),
    or a malformed value raises `SubEnvFault`, which `GymVecEnv` turns into a one-line `EnvError`.
    """

    def __init__(self, env: gym.Env, index: int):
        super().__init__(env)
        self.index = index
        self._check_obs = observation_checker(env.observation_space)
        self._shape = env.observation_space.shape if isinstance(env.observation_space, spaces.Box) else None

    def step(self, action):
        index = self.index
        try:
            result = self.env.step(action)
        except EnvError:
            raise
        except Exception as exc:
            # Gymnasium's own wrappers unpack the inner env's result first; a 4-tuple surfaces here.
            unpack = re.search(r"values to unpack \(expected 5, got (\d+)", str(exc))
            if isinstance(exc, ValueError) and unpack:
                got = f"a {unpack.group(1)}-tuple"
                raise SubEnvFault(index, f"step() must return the {FIVE_TUPLE}, got {got}") from exc
            raise SubEnvFault(index, raised("step()", exc)) from exc
        if type(result) is not tuple or len(result) != 5:
            got = f"a {len(result)}-tuple" if isinstance(result, tuple) else describe(result)
            raise SubEnvFault(index, f"step() must return the {FIVE_TUPLE}, got {got}")
        obs, reward, terminated, truncated, info = result
        # Fast paths inline (this runs for every sub-env at every step); the slow paths check in full.
        if not (type(obs) is np.ndarray and obs.shape == self._shape and obs.dtype.kind in NUMERIC_KINDS):
            obs = self._check_obs(obs, index, "observation")
        if type(reward) not in REAL_SCALARS:
            reward = checked_reward(reward, index)
        if type(terminated) not in FLAGS:
            terminated = checked_flag("terminated", terminated, index)
        if type(truncated) not in FLAGS:
            truncated = checked_flag("truncated", truncated, index)
        if type(info) is not dict and not isinstance(info, dict):
            raise SubEnvFault(index, f"info from step() must be a dict, got {describe(info)}")
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        index = self.index
        try:
            result = self.env.reset(**kwargs)
        except EnvError:
            raise
        except Exception as exc:
            raise SubEnvFault(index, raised("reset()", exc)) from exc
        if type(result) is not tuple or len(result) != 2:
            raise SubEnvFault(index, f"reset() must return the 2-tuple (obs, info), got {describe(result)}")
        obs, info = result
        if not isinstance(info, dict):
            raise SubEnvFault(index, f"info from reset() must be a dict, got {describe(info)}")
        return self._check_obs(obs, index, "observation after reset"), info


def derive_sub_env_seeds(seed: int, num_envs: int) -> list[int]:
    """The seeds an int reset seed gives `num_envs` sub-envs (SeedSequence(seed).generate_state): also what
    Ray workers (`pgrad.run.workers`) slice so that their sub-envs start where a local run's do."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(num_envs)]


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
        check_finite: raise on NaN/inf observations or rewards (cheap: one vectorised test a step). The
            contract checks of every reset and step (`pgrad.envs.checks`) always run.
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
        probe = make_single_env(env, kwargs)
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.spec_id = probe.spec.id if probe.spec is not None else None
        # The time limit as built (env_kwargs included), or the length every episode has by construction
        # (`metadata["episode_length"]`, e.g. a one-step bandit); None when episodes may never end.
        self.max_episode_steps: int | None = getattr(
            probe.spec, "max_episode_steps", None
        ) or probe.metadata.get("episode_length")
        probe.close()
        check_spaces(
            self.single_observation_space, self.single_action_space, algorithm, self.label, action_spaces
        )
        self.obs_dim = obs_dim(self.single_observation_space)

        def factory(index: int) -> EnvFactory:
            return lambda: _Contract(make_single_env(env, kwargs), index)

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
    def _where(self, index: int | None, global_step: int) -> str:
        sub_env = "" if index is None else f", sub-env {index}"
        return f"env '{self.label}'{sub_env}, global step {global_step}"

    def _check(self, field: str, values: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Every row of the batch `values` finite (rows[k] names the sub-env of row k when given)."""
        values = np.asarray(values)
        if values.dtype.kind not in NUMERIC_KINDS:  # cannot happen after the per-sub-env checks
            raise EnvError(f"{self._where(None, self.global_step)}: {field} has dtype {values.dtype}")
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            index = int(np.flatnonzero(bad)[0]) if rows is None else int(rows[np.flatnonzero(bad)[0]])
            raise EnvError(
                f"{self._where(index, self.global_step)}: {field} is not finite "
                f"({np.asarray(values[bad][0]).ravel()[:8].tolist()})"
            )

    def _run(self, call: Callable[[], Any], global_step: int) -> Any:
        """`call()` (a reset or step of the vector env), any failure raised as one line naming the place."""
        try:
            return call()
        except SubEnvFault as fault:
            # The sub-env's own exception (if it raised one) stays the __cause__, for a full traceback.
            raise EnvError(f"{self._where(fault.index, global_step)}: {fault.what}") from fault.__cause__
        except EnvError:
            raise
        except Exception as exc:  # in Gymnasium's batching, which the per-sub-env checks should forestall
            raise EnvError(f"{self._where(None, global_step)}: {raised('the vector env', exc)}") from exc

    def _seeds(self, seed: int | Sequence[int] | None) -> list[int] | None:
        """One seed per sub-env: derived from an int seed, or given; None lets every sub-env draw its own."""
        if seed is None:
            return None
        if _is_seed(seed):
            return derive_sub_env_seeds(int(seed), self.num_envs)
        if (
            isinstance(seed, Sequence | np.ndarray)
            and not isinstance(seed, str)
            and len(seed) == self.num_envs
            and all(_is_seed(s) for s in seed)
        ):
            return [int(s) for s in seed]
        raise EnvError(
            f"env '{self.label}': reset seed must be a non-negative integer or a sequence of {self.num_envs} "
            f"of them (one per sub-env), got {describe(seed)}"
        )

    # -- API ------------------------------------------------------------------------------------------------
    def reset(self, seed: int | Sequence[int] | None = None) -> torch.Tensor:
        """Reset every sub-env; an int seeds sub-env i with a seed derived from (seed, i).

        A seed is None, a non-negative int, or a sequence of `num_envs` of them (anything else: `EnvError`;
        a negative seed is refused rather than mapped, since Gymnasium refuses it too)."""
        seeds = self._seeds(seed)
        obs, _ = self._run(lambda: self._envs.reset(seed=seeds), self.global_step)
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
        array = self._action_array(actions)
        # Errors name the global step this step reaches (as the finiteness checks below do).
        obs, reward, terminated, truncated, info = self._run(
            lambda: self._envs.step(array), self.global_step + self.num_envs
        )
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

    # -- state ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any] | None:
        """Every sub-env's state and the episode bookkeeping, or None when a sub-env's state cannot be saved
        without pickle (see `pgrad.envs.snapshot`): then a resumed run starts new episodes."""
        if not self._started:
            return None
        envs = [env_state(env) for env in self._envs.envs]
        if any(state is None for state in envs):
            return None
        return {
            "envs": envs,
            "episode_return": torch.from_numpy(self._episode_return.copy()),
            "episode_length": torch.from_numpy(self._episode_length.copy()),
        }

    def load_state_dict(self, state: dict[str, Any], where: str = "checkpoint") -> None:
        """Put every sub-env back where `state_dict` found it (the envs continue their episodes exactly)."""
        if not isinstance(state, dict) or len(state.get("envs", ())) != self.num_envs:
            raise CheckpointError(f"{where}: the saved env state is not one of {self.num_envs} sub-envs")
        self.reset(seed=0)  # builds every wrapper's state; then overwritten below
        for i, (env, saved) in enumerate(zip(self._envs.envs, state["envs"], strict=True)):
            set_env_state(env, saved, f"{where}, sub-env {i}")
        self._episode_return[:] = state["episode_return"].numpy()
        self._episode_length[:] = state["episode_length"].numpy()

    def close(self) -> None:
        self._envs.close()

    def __enter__(self) -> GymVecEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
