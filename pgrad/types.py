"""Data passed between the env layer, the harness and the algorithms. Time-major: [T, N, ...]."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Rollout:
    """T steps of N sub-envs. Row t of sub-env n is the transition (s_t, a_t, r_t, s_{t+1}).

    `next_obs` is the true s_{t+1}: on an episode end it is the final observation (never the reset
    observation), so V(next_obs) bootstraps a truncated episode correctly. `terminated` and `truncated` stay
    apart. `mask` marks the steps that belong to the batch (collectors that gather whole episodes leave out
    the steps of episodes they could not finish). `start_step` numbers the steps of episodes a rollout
    continues from an earlier one (`StepCollector(count_steps=True)`): row 0 of sub-env n is step
    start_step[n] of its episode. Whole-episode batches (`collect_episodes`) start every episode at row 0 and
    leave it None.
    """

    obs: torch.Tensor  # [T, N, D]
    actions: torch.Tensor  # [T, N] or [T, N, A]: samples in the distribution's space (what log_prob takes)
    log_probs: torch.Tensor  # [T, N] log-probability of the actions under the behaviour policy
    rewards: torch.Tensor  # [T, N]
    terminated: torch.Tensor  # [T, N] bool
    truncated: torch.Tensor  # [T, N] bool
    next_obs: torch.Tensor  # [T, N, D]
    mask: torch.Tensor  # [T, N] bool
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))  # finished episodes in the batch
    episode_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    start_step: torch.Tensor | None = None  # [N] int64 time index of row 0 in its episode (None: not counted)

    @property
    def num_steps(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def num_envs(self) -> int:
        return int(self.rewards.shape[1])
