"""VPG: vanilla policy gradient with GAE(λ) advantages and a separately fitted value function.

Estimator (stated most plainly by OpenAI Spinning Up's VPG), over a batch of B steps of continuing episodes:

    ∇θJ ≈ 1/B Σ_t ∇θ log πθ(a_t|s_t) · Â_t

    δ_t = r_t + γ (1 − term_t) V_φ(s_{t+1}) − V_φ(s_t)
    Â_t = δ_t + γλ (1 − done_t) Â_{t+1}               (GAE(λ), standardised over the batch)

ONE gradient step on −1/B Σ_t log πθ(a_t|s_t) Â_t per batch, then V_φ is fitted by `value_iters` full-batch
steps of ½ mean (V_φ(s_t) − R_t)² on the λ-returns R_t = Â_t + V_φ(s_t) (before standardising), with its own
optimiser. An episode cut by its time limit or by the end of the batch bootstraps from V_φ(s_{t+1}) of the
true next state (the final observation); only termination stops bootstrapping.

Spinning Up's settings are 4000 steps per epoch, policy lr 3e-4, value lr 1e-3, 80 value steps, λ 0.97.
One small step per 4000 env steps learns slowly: measured here on CartPole-v1 (seed 0) the deterministic
evaluation was still at 435 after 500k steps. The defaults take 4× smaller batches (1000 steps) and a 10×
larger policy step (lr 3e-3), which reached 500 within 25k–50k steps on seeds 0–4; pass
--steps-per-epoch 4000 --lr 3e-4 for Spinning Up's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pgrad.algorithms.base import Algorithm, IterationResult, NetworkConfig, make_policy
from pgrad.envs.gym import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import explained_variance, gae, kl_k3, normalize, score_function_loss, value_loss
from pgrad.optim import make_optimizer
from pgrad.policies.networks import ValueNetwork
from pgrad.run.rollout import StepCollector
from pgrad.run.seeding import derive_seed


@dataclass
class Config(NetworkConfig):
    """VPG options (`pgrad train vpg --help`)."""

    num_envs: int = 4
    """Sub-envs stepped together."""
    steps_per_epoch: int = 1000
    """Env steps per batch (one policy step each), summed over sub-envs; a multiple of num_envs."""
    gamma: float = 0.99
    """Discount γ."""
    gae_lambda: float = 0.97
    """GAE λ."""
    lr: float = 3e-3
    """Policy learning rate (Spinning Up: 3e-4 with 4000-step batches)."""
    value_lr: float = 1e-3
    """Value-network learning rate."""
    value_iters: int = 80
    """Full-batch gradient steps fitting the value network on each batch."""
    optimizer: str = "adam"
    """Optimiser of the policy and of the value network: sgd, adam, adamw, rmsprop, muon, laprop."""
    normalize_advantages: bool = True
    """Standardise the advantages over the batch."""
    max_grad_norm: float = 0.0
    """Clip the policy gradient to this global norm (0: no clipping)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    init_std: float = 1.0
    """Initial standard deviation of Gaussian policies."""
    normalize_obs: bool = False
    """Standardise observations with running statistics (saved in checkpoints, frozen in evaluation)."""


def check_config(config: Config) -> None:
    """One-line errors for invalid option values."""
    if config.num_envs < 1 or config.steps_per_epoch < 1:
        raise ConfigError(
            f"num_envs and steps_per_epoch must be >= 1, got {config.num_envs}, {config.steps_per_epoch}"
        )
    if config.steps_per_epoch % config.num_envs:
        raise ConfigError(
            f"steps_per_epoch ({config.steps_per_epoch}) must be a multiple of num_envs ({config.num_envs})"
        )
    for name in ("gamma", "gae_lambda"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {getattr(config, name)}")
    if config.value_iters < 0:
        raise ConfigError(f"value_iters must be >= 0, got {config.value_iters}")
    if config.max_grad_norm < 0:
        raise ConfigError(f"max_grad_norm must be >= 0, got {config.max_grad_norm}")


class VPG(Algorithm):
    name = "vpg"
    family = "score function"
    summary = "vanilla PG: one step on Σ ∇log π · GAE(λ) per batch, value net fitted on the λ-returns"
    Config = Config

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config)
        self.policy = make_policy(envs, config).to(device)
        self.value = ValueNetwork(
            envs.obs_dim, config.hidden_sizes, config.activation, normalize_obs=config.normalize_obs
        ).to(device)
        self.policy_optimizer = make_optimizer(config.optimizer, self.policy.named_parameters(), config.lr)
        self.value_optimizer = make_optimizer(
            config.optimizer, self.value.named_parameters(), config.value_lr
        )
        self.num_steps = config.steps_per_epoch // config.num_envs
        self.collector = StepCollector(envs, derive_seed(seed, "train", 0))

    # -- one update -----------------------------------------------------------------------------------------
    def iteration(self, index: int) -> IterationResult:
        config = self.config
        rollout = self.collector.collect(self.policy, self.num_steps)
        with torch.no_grad():
            values = self.value(rollout.obs)
            next_values = self.value(rollout.next_obs)  # V of the true next state (final obs at an end)
        advantages, returns = gae(
            rollout.rewards,
            values,
            next_values,
            rollout.terminated,
            rollout.truncated,
            config.gamma,
            config.gae_lambda,
        )
        obs, actions = rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1)
        advantages, returns = advantages.flatten(), returns.flatten()
        if config.normalize_advantages:
            advantages = normalize(advantages)
        metrics = self._policy_step(obs, actions, rollout.log_probs.flatten(), advantages)
        metrics["stats/explained_variance"] = explained_variance(values.flatten(), returns)
        metrics.update(self._fit_value(obs, returns))
        if config.normalize_obs:  # after the update: acting and the gradient used the same statistics
            self.policy.normalizer.update(obs)
            self.value.normalizer.update(obs)
        return IterationResult(metrics, rollout.episode_returns, rollout.episode_lengths)

    def _policy_step(
        self, obs: torch.Tensor, actions: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor
    ) -> dict[str, float]:
        dist = self.policy.distribution(obs)
        policy_loss, _ = score_function_loss(dist.log_prob(actions), advantages)
        entropy = dist.entropy().mean()
        loss = policy_loss - self.config.ent_coef * entropy
        self.policy_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        grad_norm = nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm, foreach=True)
        self.policy_optimizer.step()
        with torch.no_grad():  # how far the one step moved π: KL(π_old ‖ π_new), k3 estimate
            approx_kl = kl_k3(old_log_prob, self.policy.distribution(obs).log_prob(actions)).mean()
        return {
            "loss/policy": policy_loss.item(),
            "stats/entropy": entropy.item(),
            "stats/grad_norm": float(grad_norm),
            "stats/approx_kl": float(approx_kl),
        }

    def _fit_value(self, obs: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        loss = torch.zeros(())
        for _ in range(self.config.value_iters):
            loss, _ = value_loss(self.value(obs), returns)
            self.value_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.value_optimizer.step()
        return {"loss/value": loss.item()}

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])

    def on_resume(self, iteration: int) -> None:
        # Gymnasium env state cannot be saved without pickle: resumed runs start new episodes.
        self.collector.restart(derive_seed(self.seed, "resume", iteration))
