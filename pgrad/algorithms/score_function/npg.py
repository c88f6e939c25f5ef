"""NPG: natural policy gradient (Kakade 2001), with the KL-normalised step of Schulman et al. 2015.

Estimator: the score-function gradient g = ∇θ E[ρ_t Â_t] at θ = θ_old (ρ_t = πθ/πθ_old, GAE(λ) advantages),
preconditioned by the inverse Fisher matrix F = E[∇ log π ∇ log πᵀ] = ∇²θ KL(πθ_old ‖ πθ)|θ_old:

    x = F⁻¹ g                  conjugate gradient on Fisher-vector products F v = ∇θ(∇θ KL · v)
    θ ← θ + √(2δ / xᵀF x) · x   the step whose quadratic KL model equals δ = --max-kl

With --prior-kl β the surrogate is E[ρ_t Â_t] − β·mean_s KL(πθ ‖ π_prior) (docs/imitation.md): its natural
gradient is taken, and TRPO's line search checks the same penalised surrogate.

TRPO (trpo.py) adds a backtracking line search that checks the true KL and the surrogate improvement. The
value function is fitted separately by Adam on the GAE returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch.distributions import kl_divergence

from pgrad.algorithms.common import (
    ImitativePrior,
    PriorConfig,
    check_at_least,
    check_non_negative,
    check_positive,
    check_unit_interval,
    fit_value,
    gae_batch,
    make_policy,
    make_value,
    update_normalizers,
)
from pgrad.envs.base import VecEnv
from pgrad.estimators import (
    explained_variance,
    flat_grad,
    flat_params,
    make_fisher_vector_product,
    natural_gradient_step,
    normalize,
    set_flat_params,
)
from pgrad.optim import make_optimizer
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.rollout import StepCollector
from pgrad.run.seeding import derive_seed


@dataclass
class Config(PriorConfig):
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
    """Action distribution (needs an analytic KL for the Fisher matrix: the tanh-Gaussian has none)."""
    normalize_obs: bool = False
    """Standardise observations with running statistics."""


def check_config(config: Any) -> None:
    """One-line errors for invalid option values (the policy kinds are limited by the Config's type)."""
    check_at_least(config, 1, "num_envs", "num_steps", "cg_iterations", "value_minibatches")
    check_positive(config, "max_kl")
    check_non_negative(config, "cg_damping", "value_epochs")
    check_unit_interval(config, "gamma", "gae_lambda")


class NPG(Algorithm):
    name = "npg"
    family = "score function"
    summary = "natural PG: F⁻¹∇J by conjugate gradient on Fisher-vector products, step scaled to KL δ"
    Config = Config
    workers = "rollouts"  # --workers K: Ray actors sample for it (pgrad.run.workers)
    free_state = ("prior",)  # the prior's own shapes (it may differ from the policy): checked on load
    # `pgrad tune`'s search (pgrad.workflow.tune), after rl-zoo's sample_trpo_params: the KL radius (its
    # target_kl), CG steps, critic updates, γ, λ, the batch.
    search_space: ClassVar[dict[str, tuple]] = {
        "max_kl": ("log", 1e-3, 0.1),
        "num_steps": ("categorical", (64, 128, 256, 512, 1024)),
        "gamma": ("categorical", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        "gae_lambda": ("categorical", (0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)),
        "cg_iterations": ("categorical", (5, 10, 20)),
        "value_lr": ("log", 1e-4, 1e-2),
        "value_epochs": ("categorical", (5, 10, 20)),
    }

    def __init__(self, config: Any, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config)
        self.policy = make_policy(envs, config).to(device)
        self.value = make_value(envs, config).to(device)
        self.value_optimizer = make_optimizer(
            config.optimizer, self.value.named_parameters(), config.value_lr
        )
        self.prior = ImitativePrior(config, envs, device, self.name)  # --init-from, --prior-kl
        self.prior.start(self.policy, self.value)
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        self.collector = StepCollector(envs, derive_seed(seed, "train", 0))

    def iteration(self, index: int) -> IterationResult:
        config = self.config
        self.prior.check_ready()
        rollout = self.collector.collect(self.policy, config.num_steps)
        values, advantages, returns = gae_batch(self.value, rollout, config.gamma, config.gae_lambda)
        obs, actions = rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1)
        advantages, returns = advantages.flatten(), returns.flatten()
        if config.normalize_advantages:
            advantages = normalize(advantages)
        metrics = self._policy_step(obs, actions, rollout.log_probs.flatten(), advantages)
        metrics["loss/value"] = fit_value(
            self.value, self.value_optimizer, obs, returns, config.value_epochs, config.value_minibatches
        )
        metrics["stats/explained_variance"] = explained_variance(values.flatten(), returns)
        if self.prior.prior is not None:  # after the step
            with torch.no_grad():
                metrics["stats/prior_kl"] = float(self.prior.penalty(obs, self.policy.distribution(obs))[1])
        update_normalizers(obs, self.policy, self.value)
        return IterationResult(metrics, rollout.episode_returns, rollout.episode_lengths)

    # -- the natural step -----------------------------------------------------------------------------------
    def _surrogate(self, obs, actions, old_log_prob, advantages) -> torch.Tensor:
        """E[ρ Â] − β·mean KL(πθ ‖ π_prior): its gradient at θ_old is the score-function estimate (minus the
        prior penalty's gradient, with --prior-kl)."""
        dist = self.policy.distribution(obs)
        log_prob = dist.log_prob(actions)
        return (torch.exp(log_prob - old_log_prob) * advantages).mean() - self.prior.penalty(obs, dist)[0]

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

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "collector": self.collector.state_dict(),
        }
        if self.prior.prior is not None:
            state["prior"] = self.prior.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.prior.load_state_dict(state.get("prior"))
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        if "collector" in state:  # where the episodes stand (restored exactly when the envs are too)
            self.collector.load_state_dict(state["collector"])

    def on_resume(self, iteration: int) -> None:
        self.collector.restart(derive_seed(self.seed, "resume", iteration))
