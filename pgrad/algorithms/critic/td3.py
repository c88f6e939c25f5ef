"""TD3: twin delayed deep deterministic policy gradient (Fujimoto et al. 2018).

Estimator — DDPG's deterministic policy gradient through the first of two critics:

    ∇θJ ≈ 1/B Σ_i ∇ₐQ₁(s_i, a)|_{a = μθ(s_i)} ∇θ μθ(s_i)       (every `policy_delay`-th update)

with three fixes for the critic's overestimation, which this gradient would otherwise exploit:

    clipped double Q:         y = R + γᵏ (1 − terminated) min(Q̄₁, Q̄₂)(s', a')
    target policy smoothing:  a' = clip(μ̄(s') + clip(ε, −c, c), low, high),   ε ~ N(0, (σ̃h)²), c = c̃h
    delayed actor:            actor and all targets move once per `policy_delay` critic updates

Defaults: the paper's and Stable-Baselines3's (256×256 ReLU, Adam 1e-3, batch 256, τ 0.005, exploration
σ 0.1, smoothing σ̃ 0.2 clipped at c̃ 0.5 — fractions of the action box's half-width h — policy delay 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from pgrad.algorithms.critic import ddpg
from pgrad.errors import ConfigError
from pgrad.run.replay import ReplayBatch


@dataclass
class Config(ddpg.Config):
    """TD3 options (`pgrad train td3 --help`)."""

    policy_delay: int = 2
    """Critic updates per actor (and target) update."""
    target_noise: float = 0.2
    """Target-policy smoothing σ̃, as a fraction of the action box's half-width."""
    target_noise_clip: float = 0.5
    """Clip c̃ of the smoothing noise, as a fraction of the half-width."""


class TD3(ddpg.DeterministicActorCritic):
    name = "td3"
    family = "learned critic"
    summary = "TD3: deterministic PG through Q₁ with clipped double-Q targets, smoothing, delayed actor"
    Config = Config
    # `pgrad tune`'s search: DDPG's (rl-zoo's sample_td3_params is the same) and the actor's delay.
    search_space: ClassVar[dict[str, tuple]] = {
        **ddpg.DDPG.search_space,
        "policy_delay": ("categorical", (1, 2, 3)),
    }
    critics = 2

    def __init__(self, config: Config, *args, **kwargs):
        if config.policy_delay < 1 or config.target_noise < 0 or config.target_noise_clip < 0:
            raise ConfigError("policy_delay must be >= 1, target_noise and target_noise_clip >= 0")
        super().__init__(config, *args, **kwargs)

    def update(self, batch: ReplayBatch) -> dict[str, Tensor]:
        config = self.config
        with torch.no_grad():
            mode = self.policy_target.distribution(batch.next_obs).mode
            noise = (torch.randn_like(mode) * config.target_noise).clamp(
                -config.target_noise_clip, config.target_noise_clip
            )
            next_actions = torch.clamp(mode + noise * self.half_width, self.low, self.high)
        metrics = self.critic_update(batch, next_actions)
        if (self.updates + 1) % config.policy_delay == 0:
            metrics.update(self.actor_update(batch))
        return metrics
