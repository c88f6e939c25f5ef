"""Replay buffer for the learned-critic family (DDPG, TD3, SAC, discrete SAC, CrossQ). Shapes: R rows, N envs.

**Layout.** `rows = capacity // num_envs` vector steps live in preallocated time-major ring tensors:
obs [R, N, D], actions [R, N, *A], rewards [R, N], terminated [R, N], truncated [R, N]. Step t goes to row
t % R, so once the ring is full each step overwrites the oldest one.

**next_obs is not stored per transition.** With same-step autoreset, s_{t+1} of a sub-env is the obs added at
step t+1 unless its episode ended at t (that obs is then a reset observation). So the buffer keeps only the
true final observations of the steps that ended an episode, in a FIFO `finals` (grown by doubling, evicted
with their rows), plus `pending`, the next_obs of the newest step. That halves the observation memory against
a next_obs tensor beside obs, for one extra observation per episode (1/L of the obs memory for episodes of
length L). SB3's `optimize_memory_usage` makes the same saving but loses the final observation, so it refuses
time-limit handling; here both hold. The price is a contract: where an episode goes on, the obs added at step
t+1 must equal the next_obs added at step t. `add` checks it exactly, so a broken chain is an error, never a
wrong transition: after restarting the envs (e.g. on resume) call `end_episodes()` first, and store raw
observations (normalise them when sampling, not before storing).

**Targets.** A sample from step t of sub-env e sums k ≤ n rewards of its own episode, stopping at the first
step that terminated or was truncated: R = Σ_{i<k} γ^i r_{t+i}, discount = γ^k, next_obs = s_{t+k} (the true
final observation where the episode ended), terminated = whether that end was a true terminal. The critic
target is R + discount·(1 − terminated)·V(next_obs): a truncation bootstraps, a termination does not. Only
steps t ≤ newest − (n − 1) are sampled, so a sum never reads a step not yet written nor crosses the write
head.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from pgrad.errors import CheckpointError, ConfigError, EnvError


class ReplayBatch(NamedTuple):
    """B sampled transitions; the critic target is rewards + discount·(1 − terminated)·V(next_obs)."""

    obs: torch.Tensor  # [B, D] float32
    actions: torch.Tensor  # [B, *A] in action_dtype
    rewards: torch.Tensor  # [B] n-step discounted reward sum
    next_obs: torch.Tensor  # [B, D] float32: s_{t+k}
    terminated: torch.Tensor  # [B] bool: a true terminal within the k steps, do not bootstrap
    discount: torch.Tensor  # [B] γ^k, k the number of rewards summed


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class ReplayBuffer:
    """Uniform replay over (step, sub-env) pairs in preallocated ring tensors; see the module docstring.

    `capacity` counts transitions (rounded down to whole vector steps of `num_envs`). `obs_dtype` may be
    float16/bfloat16 (or uint8 for one-hot observations) to save memory; samples come back as float32.
    `n_step` and `gamma` only act when sampling, so they are not part of the saved layout.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        action_shape: tuple[int, ...],
        num_envs: int,
        *,
        device: str | torch.device = "cpu",
        obs_dtype: torch.dtype = torch.float32,
        action_dtype: torch.dtype = torch.float32,
        n_step: int = 1,
        gamma: float = 0.99,
    ):
        for name, value in (("capacity", capacity), ("obs_dim", obs_dim), ("num_envs", num_envs)):
            if value < 1:
                raise ConfigError(f"replay buffer: {name} must be at least 1, got {value}")
        if n_step < 1:
            raise ConfigError(f"replay buffer: n_step must be at least 1, got {n_step}")
        if not 0.0 <= gamma <= 1.0:
            raise ConfigError(f"replay buffer: gamma must be in [0, 1], got {gamma}")
        self.rows = capacity // num_envs
        if self.rows < n_step:
            raise ConfigError(
                f"replay buffer: capacity {capacity} holds {self.rows} steps of {num_envs} sub-envs but "
                f"n_step {n_step} needs {n_step}; use capacity >= {n_step * num_envs}"
            )
        self.capacity, self.obs_dim, self.num_envs = capacity, obs_dim, num_envs
        self.action_shape = tuple(action_shape)
        self.device, self.n_step, self.gamma = torch.device(device), n_step, gamma
        self.obs_dtype, self.action_dtype = obs_dtype, action_dtype
        r, n, dev = self.rows, num_envs, self.device
        self.obs = torch.zeros(r, n, obs_dim, dtype=obs_dtype, device=dev)
        self.actions = torch.zeros(r, n, *self.action_shape, dtype=action_dtype, device=dev)
        self.rewards = torch.zeros(r, n, device=dev)
        self.terminated = torch.zeros(r, n, dtype=torch.bool, device=dev)
        self.truncated = torch.zeros(r, n, dtype=torch.bool, device=dev)
        self.final_start = torch.zeros(r, dtype=torch.long, device=dev)  # finals written before each row
        self.finals = torch.zeros(64, obs_dim, dtype=obs_dtype, device=dev)  # ring by global final index
        self.pending = torch.zeros(n, obs_dim, dtype=obs_dtype, device=dev)  # next_obs of the newest step
        self.steps = 0  # vector steps added so far
        self.finals_total = 0  # final observations written so far

    # -- sizes -----------------------------------------------------------------------------------------------

    @property
    def bytes_per_transition(self) -> float:
        """Bytes per stored transition, without the final observations (one per episode: D·obs bytes / L)."""
        obs = self.obs_dim * self.obs.element_size()
        act = math.prod(self.action_shape) * self.actions.element_size()
        return obs + act + 4 + 1 + 1 + 8 / self.num_envs

    def nbytes(self) -> int:
        """Bytes actually allocated by the buffer's tensors."""
        tensors = (self.obs, self.actions, self.rewards, self.terminated, self.truncated, self.final_start)
        return sum(t.numel() * t.element_size() for t in (*tensors, self.finals, self.pending))

    def __len__(self) -> int:
        """Transitions held (written and not yet overwritten)."""
        return min(self.steps, self.rows) * self.num_envs

    def _first_final(self) -> int:
        """Global index of the oldest final observation still needed (that of the oldest live row)."""
        return int(self.final_start[max(0, self.steps - self.rows) % self.rows]) if self.steps else 0

    def _push_finals(self, values: torch.Tensor) -> None:
        live = self.finals_total + len(values) - self._first_final()
        if live > len(self.finals):  # grow by doubling; copy the live ones to their new slots
            size = len(self.finals)
            while size < live:
                size *= 2
            index = torch.arange(self._first_final(), self.finals_total, device=self.device)
            grown = self.finals.new_zeros(size, self.obs_dim)
            grown[index % size] = self.finals[index % len(self.finals)]
            self.finals = grown
        index = torch.arange(self.finals_total, self.finals_total + len(values), device=self.device)
        self.finals[index % len(self.finals)] = values
        self.finals_total += len(values)

    # -- writing ---------------------------------------------------------------------------------------------

    def _check(self, name: str, x: torch.Tensor, shape: tuple, dtype: torch.dtype | None = None) -> None:
        if tuple(x.shape) != shape:
            raise ConfigError(f"replay buffer add: {name} has shape {tuple(x.shape)}, expected {shape}")
        if dtype is not None and x.dtype != dtype:
            raise ConfigError(f"replay buffer add: {name} has dtype {x.dtype}, expected {dtype}")

    def _check_finite(self, fields: dict[str, torch.Tensor]) -> None:
        """One sum per field and one sync in the common case; only a non-finite sum looks closer."""
        rows = [x.reshape(self.num_envs, -1) for x in fields.values() if x.is_floating_point()]
        if bool(torch.isfinite(sum(x.sum(dim=1, dtype=torch.float32) for x in rows)).all()):
            return
        for name, x in fields.items():
            bad = ~torch.isfinite(x.reshape(self.num_envs, -1)).all(dim=1) if x.is_floating_point() else None
            if bad is not None and bool(bad.any()):
                env = int(bad.nonzero()[0, 0])
                raise EnvError(f"replay buffer add, step {self.steps}, sub-env {env}: {name} is not finite")

    def add(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        next_obs: torch.Tensor,
    ) -> None:
        """Store one vector step; `next_obs` is the TRUE s_{t+1} (`StepResult.final_obs`), not the reset."""
        n, d = self.num_envs, self.obs_dim
        self._check("obs", obs, (n, d))
        self._check("actions", actions, (n, *self.action_shape))
        self._check("rewards", rewards, (n,))
        self._check("terminated", terminated, (n,), torch.bool)
        self._check("truncated", truncated, (n,), torch.bool)
        self._check("next_obs", next_obs, (n, d))
        fields = {"obs": obs, "next_obs": next_obs, "rewards": rewards, "actions": actions}
        obs, next_obs = obs.to(self.device, self.obs_dtype), next_obs.to(self.device, self.obs_dtype)
        if obs.dtype != fields["obs"].dtype and obs.is_floating_point():  # e.g. out of float16's range
            as_ = f"as {_dtype_name(obs.dtype)}"
            fields |= {f"obs {as_}": obs, f"next_obs {as_}": next_obs}
        self._check_finite(fields)
        if self.steps:  # the contract that lets next_obs go unstored: obs_{t+1} = next_obs_t unless it ended
            prev = (self.steps - 1) % self.rows
            broken = ~(self.terminated[prev] | self.truncated[prev]) & (obs != self.pending).any(dim=1)
            if bool(broken.any()):
                raise ConfigError(
                    f"replay buffer add, step {self.steps}: obs of sub-env {int(broken.nonzero()[0, 0])} is "
                    "not the previous next_obs although its episode went on; after restarting the envs call "
                    "end_episodes() first, and store raw (unnormalised) observations"
                )
        p = self.steps % self.rows
        self.obs[p] = obs
        self.actions[p] = actions.to(self.device, self.action_dtype)
        self.rewards[p] = rewards.to(self.device, torch.float32)
        self.terminated[p] = terminated.to(self.device)
        self.truncated[p] = truncated.to(self.device)
        self.final_start[p] = self.finals_total
        self.pending.copy_(next_obs)  # a copy: the caller may reuse its tensor
        self.steps += 1
        done = terminated | truncated
        if bool(done.any()):
            self._push_finals(next_obs[done])

    def end_episodes(self) -> None:
        """Mark every episode still running at the newest step as truncated (envs restarted, e.g. on resume).

        Their transitions then bootstrap from the next_obs already stored, and no n-step sum runs on into
        the fresh episodes.
        """
        if not self.steps:
            return
        p = (self.steps - 1) % self.rows
        self.truncated[p] |= ~self.terminated[p]
        self.finals_total = int(self.final_start[p])  # rewrite this row's finals: every sub-env ended now
        self._push_finals(self.pending)

    # -- sampling --------------------------------------------------------------------------------------------

    def num_valid(self) -> int:
        """Transitions that can be sampled now: the last n − 1 steps wait until their n-step sum is known."""
        first = max(0, self.steps - self.rows)
        return max(0, self.steps - self.n_step + 1 - first) * self.num_envs

    def sample(self, batch_size: int, generator: torch.Generator) -> ReplayBatch:
        """`batch_size` transitions drawn uniformly (with replacement) using only `generator`."""
        valid = self.num_valid()
        if not 1 <= batch_size <= valid:
            raise ConfigError(
                f"replay buffer: batch_size {batch_size} must be between 1 and the {valid} transitions that "
                f"can be sampled ({len(self)} stored, n_step {self.n_step}); collect more steps first"
            )
        flat = torch.randint(valid, (batch_size,), generator=generator, device=generator.device)
        n, rn = self.num_envs, self.rows * self.num_envs  # storage viewed flat: index row·N + env
        oldest = max(0, self.steps - self.rows) % self.rows
        first = (flat.to(self.device) + oldest * n) % rn  # take/index_select: ~2x faster than [row, env]
        env = first % n
        ret, terminated = torch.take(self.rewards, first), torch.take(self.terminated, first)
        alive = ~(terminated | torch.take(self.truncated, first))  # the episode goes on after the last step
        extra = torch.zeros_like(first)  # rewards summed after the first one
        for k in range(1, self.n_step):
            at = (first + k * n) % rn
            ret = torch.where(alive, ret + self.gamma**k * torch.take(self.rewards, at), ret)
            terminal = torch.take(self.terminated, at)
            terminated = terminated | (alive & terminal)
            extra = extra + alive
            alive = alive & ~(terminal | torch.take(self.truncated, at))
        discount = torch.pow(self.gamma, extra + 1).to(ret.dtype)  # γ^k, k rewards summed
        # next_obs: the final obs where the episode ended at the last step summed, else the obs after it.
        last = (first + extra * n) % rn if self.n_step > 1 else first
        row = last // n
        ended_row = self.terminated.index_select(0, row) | self.truncated.index_select(0, row)  # [B, N]
        rank = ended_row.cumsum(dim=1).gather(1, env[:, None]).squeeze(1) - 1  # this sub-env's place in them
        final = self.finals.index_select(0, (self.final_start.index_select(0, row) + rank) % len(self.finals))
        following = self.obs.view(rn, -1).index_select(0, (last + n) % rn)
        newest = row == (self.steps - 1) % self.rows  # the obs after it is not written yet: `pending`
        following = torch.where(newest[:, None], self.pending.index_select(0, env), following)
        next_obs = torch.where(alive[:, None], following, final)
        obs = self.obs.view(rn, -1).index_select(0, first).float()
        actions = self.actions.view(rn, -1).index_select(0, first).view(batch_size, *self.action_shape)
        return ReplayBatch(obs, actions, ret, next_obs.float(), terminated, discount)

    # -- checkpoint ------------------------------------------------------------------------------------------

    def _layout(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "obs_dim": self.obs_dim,
            "action_shape": list(self.action_shape),
            "num_envs": self.num_envs,
            "obs_dtype": _dtype_name(self.obs_dtype),
            "action_dtype": _dtype_name(self.action_dtype),
        }

    def state_dict(self) -> dict[str, Any]:
        """Only the live rows (oldest first) and live final observations: tensors and plain values."""
        rows = torch.arange(max(0, self.steps - self.rows), self.steps, device=self.device) % self.rows
        finals = torch.arange(self._first_final(), self.finals_total, device=self.device) % len(self.finals)
        return {
            "layout": self._layout(),
            "steps": self.steps,
            "finals_total": self.finals_total,
            **{k: getattr(self, k)[rows] for k in ("obs", "actions", "rewards", "terminated", "truncated")},
            "final_start": self.final_start[rows],
            "finals": self.finals[finals],
            "pending": self.pending.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; refuses a checkpoint of another layout with a one-line CheckpointError."""
        layout, here = state.get("layout"), self._layout()
        if not isinstance(layout, dict) or layout != here:
            diff = [f"{k} {layout.get(k)!r} (here {v!r})" for k, v in here.items() if layout.get(k) != v]
            what = ", ".join(diff) if isinstance(layout, dict) else "no layout"
            raise CheckpointError(f"replay buffer: the checkpoint's buffer does not match this one: {what}")
        steps, total = state.get("steps"), state.get("finals_total")
        if not isinstance(steps, int) or not isinstance(total, int) or steps < 0:
            raise CheckpointError(f"replay buffer: bad counters in the checkpoint (steps {steps!r})")

        def check(key: str, shape: tuple[int, ...]) -> None:
            value = state.get(key)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise CheckpointError(f"replay buffer: '{key}' in the checkpoint is {got}, expected {shape}")

        live = min(steps, self.rows)
        for key in ("obs", "actions", "rewards", "terminated", "truncated", "final_start"):
            check(key, (live, *getattr(self, key).shape[1:]))
        check("pending", (self.num_envs, self.obs_dim))
        first = int(state["final_start"][0]) if live else 0  # finals written since the oldest live row
        check("finals", (total - first, self.obs_dim))
        rows = torch.arange(steps - live, steps, device=self.device) % self.rows
        for key in ("obs", "actions", "rewards", "terminated", "truncated", "final_start"):
            getattr(self, key)[rows] = state[key].to(self.device, getattr(self, key).dtype)
        self.steps, self.finals_total = steps, first
        self.finals = self.finals.new_zeros(64, self.obs_dim)
        self._push_finals(state["finals"].to(self.device, self.obs_dtype))
        self.pending.copy_(state["pending"])
