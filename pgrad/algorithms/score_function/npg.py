"""NPG: natural policy gradient (Kakade 2001), with the KL-normalised step of Schulman et al. 2015.

Estimator: the score-function gradient g = ∇θ E[ρ_t Â_t] at θ = θ_old (ρ_t = πθ/πθ_old, GAE(λ) advantages),
preconditioned by the inverse Fisher matrix F = E[∇ log π ∇ log πᵀ] = ∇²θ KL(πθ_old ‖ πθ)|θ_old:

    x = F⁻¹ g                  conjugate gradient on Fisher-vector products F v = ∇θ(∇θ KL · v)
    θ ← θ + √(2δ / xᵀF x) · x   the step whose quadratic KL model equals δ = --max-kl

TRPO (trpo.py) adds a backtracking line search that checks the true KL and the surrogate improvement. The
value function is fitted separately by Adam on the GAE returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.distributions import kl_divergence

from pgrad.algorithms.base import Algorithm, IterationResult, NetworkConfig, make_policy
from pgrad.envs.gym import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import (
    explained_variance,
    flat_grad,
    flat_params,
    gae,
    make_fisher_vector_product,
    natural_gradient_step,
    normalize,
    set_flat_params,
    value_loss,
)
from pgrad.optim import make_optimizer
from pgrad.policies.networks import ValueNetwork
from pgrad.run.rollout import StepCollector
from pgrad.run.seeding import derive_seed


@dataclass
class Config(NetworkConfig):
    """NPG options (`pgrad train npg --help`)."""

    num_envs: int = 8
    """Sub-envs stepped together."""
    num_steps: int = 256
    """Steps per sub-env per batch."""
    gamma: float = 0.99
    """Discount γ."""
    gae_lambda: float = 0.97
    """GAE λ."""
    max_kl: float = 0.01
    """KL radius δ of each natural step."""
    cg_iterations: int = 15
    """Conjugate-gradient iterations for F⁻¹g."""
    cg_damping: float = 0.1
    """Damping added to the Fisher matrix (F + λI), for a well-conditioned solve."""
    normalize_advantages: bool = True
    """Standardise advantages over the batch."""
    value_lr: float = 1e-3
    """Value-network learning rate."""
    value_epochs: int = 10
    """Passes over each batch fitting the value network."""
    value_minibatches: int = 8
    """Minibatches per value pass."""
    optimizer: str = "adam"
    """Optimiser of the value network."""
    policy: Literal["auto", "categorical", "diag_gaussian", "discretised"] = "auto"
    """Action distribution (needs an analytic KL: the tanh-Gaussian has none)."""
    normalize_obs: bool = False
    """Standardise observations with running statistics."""


def check_config(config: Any) -> None:
    if config.num_envs < 1 or config.num_steps < 1 or config.cg_iterations < 1:
        raise ConfigError("num_envs, num_steps and cg_iterations must be >= 1")
    if config.max_kl <= 0:
        raise ConfigError(f"max_kl must be > 0, got {config.max_kl}")
    if config.policy not in ("auto", "categorical", "diag_gaussian", "discretised"):
        raise ConfigError(
            f"policy '{config.policy}' has no analytic KL for the Fisher matrix; try diag_gaussian"
        )
    if config.cg_damping < 0:
        raise ConfigError(f"cg_damping must be >= 0, got {config.cg_damping}")
    for name in ("gamma", "gae_lambda"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {getattr(config, name)}")


class NPG(Algorithm):
    name = "npg"
    family = "score function"
    summary = "natural PG: F⁻¹∇J by conjugate gradient on Fisher-vector products, step scaled to KL δ"
    Config = Config

    def __init__(self, config: Any, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config)
        self.policy = make_policy(envs, config).to(device)
        self.value = ValueNetwork(
            envs.obs_dim, config.hidden_sizes, config.activation, normalize_obs=config.normalize_obs
        ).to(device)
        self.value_optimizer = make_optimizer(
            config.optimizer, self.value.named_parameters(), config.value_lr
        )
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        self.collector = StepCollector(envs, derive_seed(seed, "train", 0))

    def iteration(self, index: int) -> IterationResult:
        config = self.config
        rollout = self.collector.collect(self.policy, config.num_steps)
        with torch.no_grad():
            values = self.value(rollout.obs)
            next_values = self.value(rollout.next_obs)
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
        advantages = advantages.flatten()
        if config.normalize_advantages:
            advantages = normalize(advantages)
        metrics = self._policy_step(obs, actions, rollout.log_probs.flatten(), advantages)
        metrics.update(self._fit_value(obs, returns.flatten()))
        metrics["stats/explained_variance"] = explained_variance(values.flatten(), returns.flatten())
        if config.normalize_obs:
            self.policy.normalizer.update(obs)
            self.value.normalizer.update(obs)
        return IterationResult(metrics, rollout.episode_returns, rollout.episode_lengths)

    # -- the natural step -----------------------------------------------------------------------------------
    def _surrogate(self, obs, actions, old_log_prob, advantages) -> torch.Tensor:
        """E[ρ Â]: its gradient at θ_old is the score-function estimate."""
        log_prob = self.policy.distribution(obs).log_prob(actions)
        return (torch.exp(log_prob - old_log_prob) * advantages).mean()

    def _natural_direction(self, obs, actions, old_log_prob, advantages):
        """(surrogate at θ_old, δ-scaled natural step, its info, a KL(π_old‖πθ) function of the current θ)."""
        with torch.no_grad():
            old_dist = self.policy.distribution(obs)

        def mean_kl() -> torch.Tensor:
            return kl_divergence(old_dist, self.policy.distribution(obs)).mean()

        surrogate = self._surrogate(obs, actions, old_log_prob, advantages)
        grad = flat_grad(surrogate, self.params)
        fvp = make_fisher_vector_product(mean_kl, self.params, self.config.cg_damping)
        step, info = natural_gradient_step(grad, fvp, self.config.max_kl, self.config.cg_iterations)
        info["grad_norm"] = float(grad.norm())
        return surrogate.detach(), step, info, mean_kl

    def _policy_step(self, obs, actions, old_log_prob, advantages) -> dict[str, float]:
        surrogate, step, info, mean_kl = self._natural_direction(obs, actions, old_log_prob, advantages)
        with torch.no_grad():
            set_flat_params(self.params, flat_params(self.params) + step)
            kl = float(mean_kl())
        return {
            "loss/policy": -float(surrogate),
            "stats/approx_kl": kl,
            **{f"stats/{k}": float(v) for k, v in info.items()},
        }

    def _fit_value(self, obs: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        size = len(obs)
        minibatch = max(1, size // self.config.value_minibatches)
        total, count = 0.0, 0
        for _ in range(self.config.value_epochs):
            order = torch.randperm(size, device=obs.device)
            for start in range(0, size, minibatch):
                rows = order[start : start + minibatch]
                loss, _ = value_loss(self.value(obs[rows]), returns[rows])
                self.value_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.value_optimizer.step()
                total, count = total + loss.item(), count + 1
        return {"loss/value": total / max(count, 1)}

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])

    def on_resume(self, iteration: int) -> None:
        self.collector.restart(derive_seed(self.seed, "resume", iteration))
