"""CrossQ: SAC with batch-normalised critics and no target networks (Bhatt et al. 2024, ICLR).

Estimator — SAC's reparameterised pathwise gradient through the minimum of the critics:

    ∇θJ ≈ 1/B Σ_i ∇θ [min_j Q_j(s_i, aθ(s_i, ε_i)) − α log πθ(aθ(s_i, ε_i)|s_i)]

What changes is the critic. Each Q_j normalises its inputs and hidden pre-activations with batch
normalisation, and the target uses the critics themselves instead of slow Polyak copies:

    [Q(s, a); Q(s', a')] = Q([s; s'], [a; a'])        one joint forward, a' ~ π(·|s')
    y = R + γᵏ (1 − terminated) [min_j Q_j(s', a') − α log π(a'|s')]        (no gradient through y)

Evaluating (s, a) and (s', a') in one batch makes both halves see the same batch statistics; separately,
the off-policy actions a in the buffer and the on-policy a' would be normalised differently and the target
would be biased. The actor and temperature update every `policy_delay` critic updates, with the critics in
evaluation mode (running statistics). Without targets the critic learns fast enough that CrossQ matches
SAC at a fraction of the update-to-data ratio of REDQ/DroQ.

Defaults: the paper's (Adam lr 1e-3 with β₁ 0.5, policy delay 3, batch-norm momentum 0.01, no targets)
except the critic width: the paper's 2048×2048 critics cost ~24 GFLOP an update, minutes per thousand steps
on a 2-core CPU, so the default here is 256×256 (`--critic-hidden-sizes 2048 2048` for the paper's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from pgrad.algorithms.common import clip_and_step
from pgrad.algorithms.critic import sac
from pgrad.errors import ConfigError
from pgrad.estimators import ensemble_min, reparameterised_actor_loss, soft_value, td_target, temperature_loss
from pgrad.policies.critics import QEnsemble
from pgrad.run.replay import ReplayBatch


@dataclass
class Config(sac.Config):
    """CrossQ options (`pgrad train crossq --help`)."""

    actor_lr: float = 1e-3
    """Actor learning rate."""
    critic_lr: float = 1e-3
    """Critic learning rate."""
    adam_beta1: float = 0.5
    """β₁ of Adam (the paper's 0.5 damps momentum, which batch normalisation makes noisy)."""
    policy_delay: int = 3
    """Critic updates per actor and temperature update."""
    critic_hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden sizes of each critic (the paper: 2048 × 2048)."""
    bn_momentum: float = 0.01
    """Momentum of the batch-normalisation running statistics (used in evaluation mode)."""


class CrossQ(sac.SAC):
    name = "crossq"
    family = "learned critic"
    summary = "CrossQ: SAC's reparameterised gradient, batch-normalised critics, no target networks"
    Config = Config
    # `pgrad tune`'s search (pgrad.workflow.tune): around the paper's lr 1e-3, β₁ 0.5, policy delay 3.
    search_space: ClassVar[dict[str, tuple]] = {
        "actor_lr": ("log", 1e-4, 3e-3),
        "critic_lr": ("log", 1e-4, 3e-3),
        "gamma": ("categorical", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        "batch_size": ("categorical", (128, 256, 512)),
        "policy_delay": ("categorical", (1, 2, 3)),
        "adam_beta1": ("categorical", (0.5, 0.9)),
    }

    def __init__(self, config: Config, *args, **kwargs):
        if config.policy_delay < 1 or not 0 < config.bn_momentum <= 1:
            raise ConfigError("policy_delay must be >= 1 and bn_momentum in (0, 1]")
        super().__init__(config, *args, **kwargs)
        self.critic_target = None  # no target networks
        self.target_params = []

    def make_critic(self, obs_dim: int, action_dim: int) -> QEnsemble:
        config = self.config
        return QEnsemble(
            obs_dim,
            action_dim,
            config.critic_hidden_sizes,
            config.activation,
            config.critics,
            batch_norm=True,
            bn_momentum=config.bn_momentum,
        )

    def optimizer_options(self) -> dict[str, Any]:
        return (
            {"betas": (self.config.adam_beta1, 0.999)}
            if self.config.optimizer.lower() in ("adam", "adamw")
            else {}
        )

    def update(self, batch: ReplayBatch) -> dict[str, Tensor]:
        config = self.config
        alpha = self.log_alpha.detach().exp()
        n = len(batch.obs)
        with torch.no_grad():
            next_dist = self.policy.distribution(batch.next_obs)
            next_actions = next_dist.rsample()
            next_log_prob = next_dist.log_prob(next_actions)
        q_all = self.critic(torch.cat([batch.obs, batch.next_obs]), torch.cat([batch.actions, next_actions]))
        q, next_q = q_all[:, :n], q_all[:, n:].detach()
        target = td_target(
            batch.rewards,
            batch.discount,
            batch.terminated,
            soft_value(ensemble_min(next_q), next_log_prob, alpha),
        )
        critic_loss = 0.5 * (q - target).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        metrics = {
            "loss/critic": critic_loss.detach(),
            "stats/q_mean": q.detach().mean(),
            "stats/critic_grad_norm": clip_and_step(
                self.critic_optimizer, self.critic_params, config.max_grad_norm
            ),
            "stats/alpha": alpha,
        }
        if (self.updates + 1) % config.policy_delay:
            return metrics
        self.critic.eval()  # the actor reads the critics with their running statistics
        dist = self.policy.distribution(batch.obs)
        actions = dist.rsample()
        log_prob = dist.log_prob(actions)
        actor_loss, _ = reparameterised_actor_loss(
            ensemble_min(self.critic(batch.obs, actions)), log_prob, alpha
        )
        for p, g in zip(self.actor_params, torch.autograd.grad(actor_loss, self.actor_params), strict=True):
            p.grad = g
        metrics["stats/actor_grad_norm"] = clip_and_step(
            self.actor_optimizer, self.actor_params, config.max_grad_norm
        )
        self.critic.train()
        if self.log_alpha.requires_grad:
            alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()
        metrics.update({"loss/actor": actor_loss.detach(), "stats/entropy": -log_prob.detach().mean()})
        return metrics
