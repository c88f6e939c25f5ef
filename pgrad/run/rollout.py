"""Collecting on-policy experience from a `VecEnv` into preallocated time-major tensors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pgrad.envs.base import VecEnv
from pgrad.errors import CheckpointError, EnvError
from pgrad.estimators import episode_time
from pgrad.policies.networks import Policy
from pgrad.types import Rollout


def act(policy: Policy, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample from π(·|obs): (sample for log_prob, its log-probability, the env action)."""
    with torch.inference_mode():
        dist = policy.distribution(obs)
        sample = dist.sample()
        return sample, dist.log_prob(sample), policy.head.to_env_action(sample)


class _Buffer:
    """Time-major tensors that double their capacity when full (episode lengths are not known ahead)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.data: dict[str, torch.Tensor] = {}

    def write(self, t: int, **values: torch.Tensor) -> None:
        if not self.data:
            for k, v in values.items():
                self.data[k] = torch.empty((self.capacity, *v.shape), dtype=v.dtype, device=v.device)
        if t >= self.capacity:
            for k, v in self.data.items():
                self.data[k] = torch.cat([v, torch.empty_like(v)])
            self.capacity *= 2
        for k, v in values.items():
            self.data[k][t] = v

    def view(self, length: int) -> dict[str, torch.Tensor]:
        return {k: v[:length] for k, v in self.data.items()}


def collect_episodes(
    envs: VecEnv,
    policy: Policy,
    episodes_per_env: int,
    seed: int | Sequence[int],
    max_steps: int = 100_000,
) -> Rollout:
    """Reset every sub-env with `seed` and run until each has finished `episodes_per_env` whole episodes.

    `seed` is a run seed (sub-env i gets a seed derived from it) or one seed per sub-env: equal seeds give
    equal start states, which is how GRPO/RLOO draw a group of rollouts from the same start.

    Each sub-env contributes exactly its first `episodes_per_env` episodes, so the batch is N·k complete
    episodes drawn from the current policy (stopping at "the first M episodes to finish" would favour short
    ones). Steps a sub-env takes after its quota are left out through `mask`, but they are env steps all the
    same and count in `envs.global_step`.

    Envs on Ray workers (`pgrad.run.workers.WorkerEnvs`, which has `collect_episodes`) collect there: each
    worker its sub-envs' share of the seeds, the batches side by side (`stack_rollouts`).
    """
    remote = getattr(envs, "collect_episodes", None)
    if remote is not None:
        return remote(policy, episodes_per_env, seed, max_steps)
    obs = envs.reset(seed=seed)
    n = envs.num_envs
    finished = torch.zeros(n, dtype=torch.long, device=obs.device)
    buffer = _Buffer(capacity=256)
    returns: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    t = 0
    while True:
        sample, log_prob, env_action = act(policy, obs)
        step, episodes = envs.step(env_action)
        counts = finished < episodes_per_env
        buffer.write(
            t,
            obs=obs,
            actions=sample,
            log_probs=log_prob,
            rewards=step.reward,
            terminated=step.terminated,
            truncated=step.truncated,
            next_obs=step.final_obs,
            mask=counts,
        )
        if len(episodes.env_index):
            keep = counts[torch.as_tensor(episodes.env_index, device=counts.device)].cpu().numpy()
            returns.append(episodes.returns[keep])
            lengths.append(episodes.lengths[keep])
        finished += step.terminated | step.truncated
        t += 1
        if bool((finished >= episodes_per_env).all()):
            break
        if t >= max_steps:
            raise EnvError(
                f"env '{envs.label}': an episode has not ended after {max_steps} steps; "
                "give the env a time limit (max_episode_steps)"
            )
        obs = step.next_obs
    data = buffer.view(t)
    return Rollout(
        **data,
        episode_returns=np.concatenate(returns) if returns else np.zeros(0),
        episode_lengths=np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64),
    )


def _checked_obs(obs: Any, envs: VecEnv) -> torch.Tensor | None:
    """A collector's saved observations, refused in one line unless they are [num_envs, obs_dim]."""
    if obs is None:
        return None
    if not isinstance(obs, torch.Tensor) or tuple(obs.shape) != (envs.num_envs, envs.obs_dim):
        got = tuple(obs.shape) if isinstance(obs, torch.Tensor) else type(obs).__name__
        raise CheckpointError(
            f"collector state: observations {got} do not fit env '{envs.label}' "
            f"({envs.num_envs} sub-envs × {envs.obs_dim})"
        )
    return obs.to(envs.device)


class StepCollector:
    """Fixed-length rollouts over continuing episodes (A2C, PPO, VPG …): episodes run on across updates.

    The first `collect` resets the envs with `seed`; after that each call continues from the observations the
    previous one ended on. With `count_steps` it also carries the time index each sub-env's episode has
    reached (`episode_step`, handed to each rollout as its `start_step`): the γᵗ of a discounted gradient
    needs an episode's true step (off by default: it costs a few ops per rollout). A resumed run cannot
    restore a Gymnasium env's internal state (it is not serialisable without pickle), so it starts fresh
    episodes: `restart(seed)` resets with a new seed.
    """

    def __init__(self, envs: VecEnv, seed: int, count_steps: bool = False):
        self.envs = envs
        self.seed = seed
        self.count_steps = count_steps
        self.obs: torch.Tensor | None = None
        self.episode_step: torch.Tensor | None = None  # [N] int64, step of each sub-env's next row (counting)

    def restart(self, seed: int) -> None:
        self.seed = seed
        self.obs = None
        self.episode_step = None

    def state_dict(self) -> dict[str, Any]:
        """The observations the next rollout starts from and how far their episodes are (with the envs' own
        state, an exact resume)."""
        return {
            "obs": None if self.obs is None else self.obs.clone(),
            "seed": self.seed,
            "episode_step": None if self.episode_step is None else self.episode_step.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.obs = _checked_obs(state["obs"], self.envs)
        step = state.get("episode_step") if self.count_steps else None
        if step is None and self.count_steps and self.obs is not None:
            # A checkpoint from before step counting: its open episodes are numbered from here.
            step = torch.zeros(self.envs.num_envs, dtype=torch.long)
        if step is not None and (
            not isinstance(step, torch.Tensor)
            or tuple(step.shape) != (self.envs.num_envs,)
            or step.dtype != torch.long
        ):
            got = (
                f"{tuple(step.shape)} {step.dtype}" if isinstance(step, torch.Tensor) else type(step).__name__
            )
            raise CheckpointError(
                f"collector state: episode_step {got} does not fit env '{self.envs.label}' "
                f"(int64 [{self.envs.num_envs}])"
            )
        self.episode_step = None if step is None else step.to(self.envs.device)

    def collect(self, policy: Policy, num_steps: int) -> Rollout:
        """Run `num_steps` vector steps with `policy`; every step is in the batch (mask all True).

        Envs on Ray workers (`pgrad.run.workers.WorkerEnvs`, which has `collect_steps`) collect there: each
        worker runs its own collector on its sub-envs; this one keeps the concatenated last observations and
        episode steps (so its state has the same shapes as a local run's)."""
        remote = getattr(self.envs, "collect_steps", None)
        if remote is not None:
            seed = self.seed if self.obs is None else None
            rollout, self.obs, self.episode_step = remote(policy, num_steps, seed, self.count_steps)
            return rollout
        if self.obs is None:
            self.obs = self.envs.reset(seed=self.seed)
            self.episode_step = None
        if self.count_steps and self.episode_step is None:
            self.episode_step = torch.zeros(self.envs.num_envs, dtype=torch.long, device=self.obs.device)
        obs = self.obs
        buffer = _Buffer(capacity=num_steps)
        returns: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        for t in range(num_steps):
            sample, log_prob, env_action = act(policy, obs)
            step, episodes = self.envs.step(env_action)
            buffer.write(
                t,
                obs=obs,
                actions=sample,
                log_probs=log_prob,
                rewards=step.reward,
                terminated=step.terminated,
                truncated=step.truncated,
                next_obs=step.final_obs,
            )
            if len(episodes.env_index):
                returns.append(episodes.returns)
                lengths.append(episodes.lengths)
            obs = step.next_obs
        self.obs = obs
        data = buffer.view(num_steps)
        start = self.episode_step
        if self.count_steps:
            _, self.episode_step = episode_time(data["terminated"], data["truncated"], start)
        return Rollout(
            **data,
            mask=torch.ones_like(data["terminated"]),
            episode_returns=np.concatenate(returns) if returns else np.zeros(0),
            episode_lengths=np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64),
            start_step=start,
        )


def stack_rollouts(batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Time-major batches of different lengths side by side: [T_max, ΣN, ...] for every field they hold.

    Each is padded at the end with masked-out, terminated one-step episodes (zeros everywhere, `terminated`
    True), so nothing leaks from one batch's episodes into another's and padding never enters a mean (its
    `mask` is False). Used by replays of whole-episode batches (IS-PG).
    """
    T = max(int(b["rewards"].shape[0]) for b in batches)
    out: dict[str, torch.Tensor] = {}
    for key in batches[0]:
        parts = []
        for b in batches:
            x = b[key]
            pad = T - x.shape[0]
            if pad:
                fill = (torch.ones if key == "terminated" else torch.zeros)(
                    (pad, *x.shape[1:]), dtype=x.dtype, device=x.device
                )
                x = torch.cat([x, fill])
            parts.append(x)
        out[key] = torch.cat(parts, dim=1)
    return out
