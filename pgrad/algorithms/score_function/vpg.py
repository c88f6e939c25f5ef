"""VPG: vanilla policy gradient with GAE(λ) advantages and a separately fitted value function.

Estimator (stated most plainly by OpenAI Spinning Up's VPG), over a batch of B steps of continuing episodes:

    ∇θJ ≈ 1/B Σ_t ∇θ log πθ(a_t|s_t) · Â_t

    δ_t = r_t + γ (1 − term_t) V_φ(s_{t+1}) − V_φ(s_t)
    Â_t = δ_t + γλ (1 − done_t) Â_{t+1}               (GAE(λ), standardised over the batch)

--discount-weighting multiplies step t's term by γᵗ, t its index in its episode (counted across batches:
episodes run on from one batch into the next), which makes it the gradient of the discounted return
J = E[Σ_t γᵗ r_t] rather than the γᵗ-free direction nearly every implementation follows
(`pgrad.estimators.discount_weights`; see docs/score_function.md).

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
from typing import Any, ClassVar

import torch

from pgrad.algorithms.common import (
    ImitativePrior,
    PriorConfig,
    check_at_least,
    check_multiple,
    check_non_negative,
    check_unit_interval,
    clip_and_step,
    fit_value,
    gae_batch,
    make_policy,
    make_value,
    update_normalizers,
)
from pgrad.envs.base import VecEnv
from pgrad.estimators import discount_weights, explained_variance, kl_k3, normalize, score_function_loss
from pgrad.optim import make_optimizer
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.rollout import StepCollector
from pgrad.run.seeding import derive_seed


@dataclass
class Config(PriorConfig):
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
    discount_weighting: bool = False
    """Multiply step t's score-function term by γᵗ (t: its index in the episode, across batches), the factor
    of the exact gradient of the discounted return that implementations usually drop (after normalising)."""
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
    check_at_least(config, 1, "num_envs", "steps_per_epoch")
    check_multiple(config, "steps_per_epoch", "num_envs")
    check_unit_interval(config, "gamma", "gae_lambda")
    check_non_negative(config, "value_iters", "max_grad_norm", "ent_coef")


class VPG(Algorithm):
    name = "vpg"
    family = "score function"
    summary = "vanilla PG: one step on Σ ∇log π · GAE(λ) per batch, value net fitted on the λ-returns"
    Config = Config
    workers = "rollouts"  # --workers K: Ray actors sample for it (pgrad.run.workers)
    free_state = ("prior",)  # the prior's own shapes (it may differ from the policy): checked on load
    # `pgrad tune`'s search (pgrad.workflow.tune): both step sizes, γ, GAE λ (rl-zoo's), the batch.
    search_space: ClassVar[dict[str, tuple]] = {
        "lr": ("log", 1e-4, 1e-2),
        "value_lr": ("log", 1e-4, 1e-2),
        "gamma": ("categorical", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        "gae_lambda": ("categorical", (0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)),
        "steps_per_epoch": ("categorical", (500, 1000, 2000, 4000)),
    }

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config)
        self.policy = make_policy(envs, config).to(device)
        self.value = make_value(envs, config).to(device)
        self.prior = ImitativePrior(config, envs, device, self.name)  # --init-from, --prior-kl
        self.prior.start(self.policy, self.value)
        self.policy_optimizer = make_optimizer(config.optimizer, self.policy.named_parameters(), config.lr)
        self.value_optimizer = make_optimizer(
            config.optimizer, self.value.named_parameters(), config.value_lr
        )
        self.num_steps = config.steps_per_epoch // config.num_envs
        self.collector = StepCollector(
            envs, derive_seed(seed, "train", 0), count_steps=config.discount_weighting
        )

    # -- one update -----------------------------------------------------------------------------------------
    def iteration(self, index: int) -> IterationResult:
        config = self.config
        self.prior.check_ready()
        rollout = self.collector.collect(self.policy, self.num_steps)
        values, advantages, returns = gae_batch(self.value, rollout, config.gamma, config.gae_lambda)
        obs, actions = rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1)
        advantages, returns = advantages.flatten(), returns.flatten()
        if config.normalize_advantages:
            advantages = normalize(advantages)
        if config.discount_weighting:  # γᵗ, t counted from each episode's start in an earlier batch
            gamma_t, _ = discount_weights(
                rollout.terminated, rollout.truncated, config.gamma, rollout.start_step, advantages.dtype
            )
            advantages = advantages * gamma_t.flatten()
        metrics = self._policy_step(obs, actions, rollout.log_probs.flatten(), advantages)
        metrics["stats/explained_variance"] = explained_variance(values.flatten(), returns)
        metrics["loss/value"] = fit_value(self.value, self.value_optimizer, obs, returns, config.value_iters)
        update_normalizers(obs, self.policy, self.value)  # after the update: acting and ∇ saw the same stats
        return IterationResult(metrics, rollout.episode_returns, rollout.episode_lengths)

    def _policy_step(
        self, obs: torch.Tensor, actions: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor
    ) -> dict[str, Any]:
        dist = self.policy.distribution(obs)
        policy_loss, _ = score_function_loss(dist.log_prob(actions), advantages)
        entropy = dist.entropy().mean()
        prior_loss, prior_kl = self.prior.penalty(obs, dist)
        loss = policy_loss + prior_loss - self.config.ent_coef * entropy
        self.policy_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_and_step(self.policy_optimizer, self.policy.parameters(), self.config.max_grad_norm)
        with torch.no_grad():  # how far the one step moved π: KL(π_old ‖ π_new), k3 estimate
            approx_kl = kl_k3(old_log_prob, self.policy.distribution(obs).log_prob(actions)).mean()
        return {
            **({"stats/prior_kl": prior_kl} if self.prior.prior is not None else {}),
            "loss/policy": policy_loss.detach(),
            "stats/entropy": entropy.detach(),
            "stats/grad_norm": grad_norm,
            "stats/approx_kl": approx_kl,
        }

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
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
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        if "collector" in state:  # where the episodes stand (restored exactly when the envs are too)
            self.collector.load_state_dict(state["collector"])

    def on_resume(self, iteration: int) -> None:
        # Gymnasium env state cannot be saved without pickle: resumed runs start new episodes.
        self.collector.restart(derive_seed(self.seed, "resume", iteration))
