"""REINFORCE family: naive policy gradient, REINFORCE (reward-to-go) and REINFORCE with a baseline.

Estimator (Williams 1992; the references' naive PG, causality and baseline slides), over M whole episodes:

    ∇θJ ≈ 1/M Σ_i Σ_t ∇θ log πθ(a_t|s_t) · (Ψ_t − b_t)

    Ψ_t = G(τ_i) = Σ_k γ^k r_k               --returns total         (naive PG: the whole return)
    Ψ_t = G_t   = Σ_{t'≥t} γ^{t'−t} r_{t'}   --returns reward_to_go  (REINFORCE: causality)

    b_t = 0                                     --baseline none
        = mean of Ψ over the batch              --baseline mean
        = mean of Ψ over steps at the same time-in-episode      --baseline per_step
        = b_k = E[W_k S_k] / E[S_k²] per parameter k            --baseline optimal
          (S = Σ_t ∇ log π, W = Σ_t ∇ log π · Ψ_t: the constant that minimises the estimator's variance)
        = V_φ(s_t), a value network fitted to G_t   --baseline value

Any baseline that does not depend on a_t leaves the estimate unbiased (E[∇ log π(a|s) b(s)] = 0); a good one
lowers its variance. γ = 1 gives the undiscounted finite-horizon return. With γ < 1 the estimate above (what
nearly every implementation computes) is not the gradient of the discounted J = E[Σ_t γᵗ r_t]: that one
weights step t by γᵗ, t its index in the episode (--discount-weighting, `pgrad.estimators.discount_weights`):

    ∇θJ ≈ 1/M Σ_i Σ_t γᵗ ∇θ log πθ(a_t|s_t) · (Ψ_t − b_t)

(with the optimal baseline, S and W then sum γᵗ ∇ log π too). An episode cut by a time limit ends its
returns there, or, with the value baseline and --bootstrap-truncated, adds γ V(final observation).

Each update resets the envs (seeds derived from the run seed and the iteration) and collects exactly
`episodes_per_update` whole episodes with the current policy (see `pgrad.run.rollout.collect_episodes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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
    make_policy,
    make_value,
    update_normalizers,
)
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import (
    discount_weights,
    episode_index,
    explained_variance,
    flat_jacobian,
    kl_k3,
    mean_baseline,
    normalize,
    optimal_baseline,
    per_step_mean_baseline,
    reward_to_go,
    score_function_loss,
    total_return,
)
from pgrad.optim import make_optimizer
from pgrad.policies.networks import ValueNetwork
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.rollout import collect_episodes
from pgrad.run.seeding import derive_seed
from pgrad.types import Rollout


@dataclass
class Config(PriorConfig):
    """REINFORCE options (`pgrad train reinforce --help`)."""

    num_envs: int = 4
    """Sub-envs stepped together; each runs episodes_per_update / num_envs whole episodes per update."""
    episodes_per_update: int = 8
    """Episodes M in each batch (a multiple of num_envs)."""
    gamma: float = 0.99
    """Discount γ; 1.0 gives the undiscounted finite-horizon return."""
    returns: Literal["total", "reward_to_go"] = "reward_to_go"
    """Weight of each log-prob: the whole-episode return (naive PG) or the reward-to-go (REINFORCE)."""
    baseline: Literal["none", "mean", "per_step", "optimal", "value"] = "value"
    """Baseline subtracted from the returns (see the module docstring)."""
    normalize_advantages: bool = False
    """Standardise Ψ − b over the batch (a constant shift and a positive rescaling of the step)."""
    bootstrap_truncated: bool = True
    """With the value baseline: a time-limit cut adds γ V(final observation) to the return."""
    discount_weighting: bool = False
    """Multiply step t's score-function term by γᵗ (t: its index in the episode), the factor of the exact
    gradient of the discounted return that implementations usually drop (after --normalize-advantages)."""
    lr: float = 1e-3
    """Policy learning rate."""
    optimizer: str = "adam"
    """Optimiser for policy and value: sgd, adam, adamw, rmsprop."""
    max_grad_norm: float = 0.0
    """Clip the policy gradient to this global norm (0: no clipping)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    value_lr: float = 1e-3
    """Value-network learning rate (value baseline)."""
    value_iters: int = 20
    """Gradient steps fitting the value network on each batch (value baseline)."""
    value_minibatches: int = 1
    """Minibatches per value iteration."""
    normalize_obs: bool = False
    """Standardise observations with running statistics (saved in checkpoints, frozen in evaluation)."""


def check_config(config: Config) -> None:
    """One-line errors for invalid option values."""
    check_at_least(config, 1, "num_envs", "episodes_per_update", "value_minibatches")
    check_multiple(
        config, "episodes_per_update", "num_envs", ": each sub-env runs the same number of whole episodes"
    )
    check_unit_interval(config, "gamma")
    check_non_negative(config, "value_iters", "max_grad_norm", "ent_coef")
    if config.baseline == "optimal" and config.normalize_advantages:
        raise ConfigError(
            "baseline 'optimal' sets its own per-parameter baseline; drop --normalize-advantages"
        )


def weights(rollout: Rollout, config: Config, next_values: torch.Tensor | None) -> torch.Tensor:
    """Ψ_t of every step [T, N]: the whole-episode return or the reward-to-go."""
    if config.returns == "total":
        return total_return(rollout.rewards, rollout.terminated, rollout.truncated, config.gamma)
    return reward_to_go(rollout.rewards, rollout.terminated, rollout.truncated, config.gamma, next_values)


class Reinforce(Algorithm):
    name = "reinforce"
    family = "score function"
    summary = "naive PG / REINFORCE: Σ ∇log π · (G − b), b ∈ {none, mean, per-step, optimal, learned V}"
    Config = Config
    workers = "rollouts"  # --workers K: Ray actors sample for it (pgrad.run.workers)
    free_state = ("prior",)  # the prior's own shapes (it may differ from the policy): checked on load
    # `pgrad tune`'s search (pgrad.workflow.tune): step sizes, discount, episodes per update, baseline.
    search_space: ClassVar[dict[str, tuple]] = {
        "lr": ("log", 1e-4, 1e-2),
        "gamma": ("categorical", (0.95, 0.98, 0.99, 0.995, 0.999)),
        "episodes_per_update": ("categorical", (8, 16, 32)),
        "baseline": ("categorical", ("mean", "per_step", "value")),
        "value_lr": ("log", 1e-4, 1e-2),
    }

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config)
        self.policy = make_policy(envs, config).to(device)
        self.policy_optimizer = make_optimizer(config.optimizer, self.policy.parameters(), config.lr)
        self.value: ValueNetwork | None = None
        if config.baseline == "value":
            self.value = make_value(envs, config).to(device)
            self.value_optimizer = make_optimizer(config.optimizer, self.value.parameters(), config.value_lr)
        self.prior = ImitativePrior(config, envs, device, self.name)  # --init-from, --prior-kl
        self.prior.start(self.policy, self.value)

    # -- one update -----------------------------------------------------------------------------------------
    def iteration(self, index: int) -> IterationResult:
        config = self.config
        self.prior.check_ready()
        rollout = collect_episodes(
            self.envs,
            self.policy,
            config.episodes_per_update // config.num_envs,
            derive_seed(self.seed, "train", index),
        )
        mask = rollout.mask
        next_values = None
        if self.value is not None and config.bootstrap_truncated:
            with torch.no_grad():
                next_values = self.value(rollout.next_obs)
        psi = weights(rollout, config, next_values)
        episode_id, step_in_episode = episode_index(rollout.terminated, rollout.truncated)
        _, episode_of_step = torch.unique(episode_id[mask], return_inverse=True)
        num_episodes = int(episode_of_step.max()) + 1
        step_weights = None  # γᵗ per step (--discount-weighting): every episode starts at row 0 here
        if config.discount_weighting:
            gamma_t, _ = discount_weights(
                rollout.terminated, rollout.truncated, config.gamma, dtype=psi.dtype
            )
            step_weights = gamma_t[mask]

        obs, actions = rollout.obs[mask], rollout.actions[mask]
        metrics: dict[str, float] = {}
        if config.baseline == "optimal":
            metrics.update(
                self._optimal_baseline_step(
                    obs, actions, psi[mask], episode_of_step, num_episodes, step_weights
                )
            )
        else:
            advantages = psi - self._baseline(rollout, psi, step_in_episode)
            advantages = advantages[mask]
            if config.normalize_advantages:
                advantages = normalize(advantages)
            if step_weights is not None:
                advantages = advantages * step_weights
            metrics.update(self._policy_step(obs, actions, advantages, num_episodes))
        metrics.update(self._diagnostics(obs, actions, rollout.log_probs[mask]))
        if self.value is not None:
            metrics.update(self._fit_value(obs, psi[mask]))
        update_normalizers(obs, self.policy, self.value)  # after the update: acting and ∇ saw the same stats
        return IterationResult(metrics, rollout.episode_returns, rollout.episode_lengths)

    def _baseline(self, rollout: Rollout, psi: torch.Tensor, step_in_episode: torch.Tensor) -> torch.Tensor:
        kind = self.config.baseline
        if kind == "none":
            return torch.zeros_like(psi)
        if kind == "mean":
            return mean_baseline(psi, rollout.mask).expand_as(psi)
        if kind == "per_step":
            return per_step_mean_baseline(psi, step_in_episode, rollout.mask)
        with torch.no_grad():  # value: fitted on earlier batches only, so b(s) is independent of this batch
            return self.value(rollout.obs)

    def _policy_step(
        self, obs: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, num_episodes: int
    ) -> dict[str, Any]:
        dist = self.policy.distribution(obs)
        # Sum over steps, mean over episodes: the gradient of this loss is −ĝ exactly.
        policy_loss, _ = score_function_loss(dist.log_prob(actions), advantages, normalizer=num_episodes)
        entropy = dist.entropy().mean()
        prior_loss, prior_kl = self.prior.penalty(obs, dist)  # obs: the valid steps only
        self.policy_optimizer.zero_grad(set_to_none=True)
        (policy_loss + prior_loss - self.config.ent_coef * entropy).backward()
        grad_norm = clip_and_step(self.policy_optimizer, self.policy.parameters(), self.config.max_grad_norm)
        return {
            **({"stats/prior_kl": prior_kl} if self.prior.prior is not None else {}),
            "loss/policy": policy_loss.detach(),
            "stats/entropy": entropy.detach(),
            "stats/grad_norm": grad_norm,
            "stats/advantage_mean": advantages.mean(),
            "stats/advantage_std": advantages.std() if len(advantages) > 1 else 0.0,
        }

    def _optimal_baseline_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        psi: torch.Tensor,
        episode: torch.Tensor,
        num_episodes: int,
        step_weights: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        dist = self.policy.distribution(obs)
        log_prob = dist.log_prob(actions)
        if step_weights is not None:  # γᵗ ∇ log π: S_i and W_i of the discount-weighted estimator
            log_prob = log_prob * step_weights
        zeros = log_prob.new_zeros(num_episodes)
        score_sums = zeros.index_add(0, episode, log_prob)  # Σ_t log π per episode → S_i after ∇
        weighted = zeros.index_add(0, episode, log_prob * psi)  # Σ_t Ψ_t log π per episode → W_i after ∇
        # keep the graph for the entropy bonus's and the prior penalty's backward below
        keep = self.config.ent_coef > 0 or self.prior.prior is not None
        jac = flat_jacobian(torch.cat([score_sums, weighted]), params, retain_graph=keep)
        S, W = jac[:num_episodes], jac[num_episodes:]
        b = optimal_baseline(S, W)
        grad_J = (W - b * S).mean(0)
        entropy = dist.entropy().mean()
        prior_loss, prior_kl = self.prior.penalty(obs, dist)
        self.policy_optimizer.zero_grad(set_to_none=True)
        if keep:
            (prior_loss - self.config.ent_coef * entropy).backward()
        offset = 0
        for p in params:
            g = -grad_J[offset : offset + p.numel()].view_as(p)
            p.grad = g if p.grad is None else p.grad + g
            offset += p.numel()
        grad_norm = clip_and_step(self.policy_optimizer, self.policy.parameters(), self.config.max_grad_norm)
        return {
            **({"stats/prior_kl": prior_kl} if self.prior.prior is not None else {}),
            "stats/entropy": entropy.detach(),
            "stats/grad_norm": grad_norm,
            "stats/baseline_mean": b.mean(),
        }

    @torch.no_grad()
    def _diagnostics(self, obs: torch.Tensor, actions: torch.Tensor, old_log_prob: torch.Tensor) -> dict:
        # k3 estimator of KL(π_old ‖ π_new) (Schulman 2020): unbiased and always ≥ 0.
        new_log_prob = self.policy.distribution(obs).log_prob(actions)
        return {"stats/approx_kl": kl_k3(log_q=old_log_prob, log_p=new_log_prob).mean()}

    def _fit_value(self, obs: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        assert self.value is not None
        with torch.no_grad():
            before = self.value(obs)
        config = self.config
        loss = fit_value(
            self.value, self.value_optimizer, obs, targets, config.value_iters, config.value_minibatches
        )
        return {"loss/value": loss, "stats/explained_variance": explained_variance(before, targets)}

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "policy": self.policy.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
        }
        if self.value is not None:
            state["value"] = self.value.state_dict()
            state["value_optimizer"] = self.value_optimizer.state_dict()
        if self.prior.prior is not None:
            state["prior"] = self.prior.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.prior.load_state_dict(state.get("prior"))
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        if self.value is not None:
            self.value.load_state_dict(state["value"])
            self.value_optimizer.load_state_dict(state["value_optimizer"])
