"""GRPO: group relative policy optimisation (Shao et al. 2024, DeepSeekMath), and Dr. GRPO (Liu et al. 2025).

Estimator: no critic. Each update draws `num_groups` start states and runs a group of G = `group_size`
whole episodes o_1..o_G from each (sub-envs reset with the same seed). An episode's outcome R_i is its return
(undiscounted by default); every step of episode i gets the same group-relative advantage

    Â_i = (R_i − mean_j R_j) / std_j R_j          (GRPO)       Â_i = R_i − mean_j R_j       (Dr. GRPO)

and the policy ascends, for `update_epochs` epochs of minibatches, the clipped surrogate with a per-step KL
penalty to a frozen reference policy π_ref (k3 estimator, samples from πθ):

    J(θ) = 1/G Σ_i 1/|o_i| Σ_t [ min(ρ_it Â_i, clip(ρ_it, 1−ε, 1+ε) Â_i) − β D_it ]          (GRPO)
    J(θ) = 1/(G·L) Σ_i Σ_t [ … same … ]                                                      (Dr. GRPO)

    ρ_it = πθ(a_t|s_t) / πθ_old(a_t|s_t),   D_it = π_ref/πθ − log(π_ref/πθ) − 1  at (s_t, a_t)

(the 1/G mean runs over all num_groups·G episodes of the batch). At θ = θ_old and β = 0 its gradient is the
score-function estimate 1/G Σ_i w_i Â_i Σ_t ∇θ log πθ(a_t|s_t) with w_i = 1/|o_i| (GRPO) or 1/L (Dr. GRPO).

Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective", section 3.1) drops
both the std division (it up-weights groups that are nearly all right or all wrong) and the 1/|o_i| length
normalisation (it shrinks the per-step penalty of long wrong answers, so they grow). As in their released
code, the per-episode sum over steps is divided by a constant L, the generation budget: here the env's time
limit (`max_episode_steps`; 1 if it has none), or `length_constant` when given.

The reference π_ref is the initial policy (`--reference initial`) or the policy of an earlier pgrad run
(`--reference run:DIR`, an imitative prior); `--init-from DIR` starts the trained policy from a run's policy
(same network options). π_ref is frozen and saved in checkpoints. The shared `--prior-kl β` penalty (analytic
β·KL(πθ ‖ π_prior), docs/imitation.md) is a separate term, added as in every score-function algorithm.
`rloo.py` reuses all of this with leave-one-out advantages.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from pgrad.algorithms.common import (
    ImitativePrior,
    LinearDecay,
    PriorConfig,
    accumulate,
    anneal_lr,
    check_at_least,
    check_non_negative,
    check_positive,
    check_run_option,
    check_unit_interval,
    clip_and_step,
    extension_note,
    make_policy,
    mean_metrics,
    policy_from_run,
)
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import clipped_surrogate, group_relative_advantages, kl_k3
from pgrad.optim import make_optimizer
from pgrad.policies.networks import Policy
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.rollout import collect_episodes
from pgrad.run.seeding import derive_seed
from pgrad.types import Rollout


@dataclass
class GroupConfig(PriorConfig):
    """Options shared by GRPO and RLOO. The VecEnv has num_envs = num_groups · group_size sub-envs."""

    num_groups: int = 8
    """Start states (prompts) per update; each gets its own reset seed."""
    group_size: int = 8
    """Episodes G per group, all started from the group's state (G >= 2)."""
    gamma: float = 1.0
    """Discount of an episode's outcome R_i = Σ_t γ^t r_t (1.0: the plain return)."""
    update_epochs: int = 4
    """Passes over each batch."""
    num_minibatches: int = 4
    """Minibatches of steps per pass."""
    clip_coef: float = 0.2
    """Clip range ε of the probability ratio to the behaviour policy."""
    beta: float = 0.04
    """Coefficient of the per-step k3 KL penalty to the reference policy (0: none, no reference pass)."""
    reference: str = "initial"
    """Reference policy π_ref: 'initial' (the starting policy) or 'run:DIR' (the policy of a pgrad run)."""
    length_constant: int | None = None
    """Constant L dividing each episode's step sum where there is no 1/|o_i| (None: the env's time limit)."""
    lr: float = 3e-3
    """Learning rate."""
    anneal_lr: bool = False
    """Anneal the learning rate linearly to 0 over the run."""
    optimizer: str = "adam"
    """sgd, adam, adamw, rmsprop, muon, laprop."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip (0: none)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient (per-step mean)."""

    @property
    def num_envs(self) -> int:
        """Sub-envs the harness builds: one per episode of the batch (derived, not an option)."""
        return self.num_groups * self.group_size


@dataclass
class Config(GroupConfig):
    """GRPO options (`pgrad train grpo --help`)."""

    dr_grpo: bool = False
    """Dr. GRPO: no std division in Â and no 1/|o_i| (step sums divided by the constant L instead)."""


def check_config(config: GroupConfig) -> None:
    """One-line errors for invalid option values."""
    check_at_least(config, 1, "num_groups", "update_epochs", "num_minibatches")
    if config.group_size < 2:
        raise ConfigError(
            f"group_size must be >= 2 (advantages compare episodes of a group), got {config.group_size}"
        )
    check_unit_interval(config, "gamma")
    check_positive(config, "clip_coef")
    check_non_negative(config, "beta", "max_grad_norm", "ent_coef")
    check_run_option(config, "reference", ("initial",))
    if config.length_constant is not None:
        check_at_least(config, 1, "length_constant")


def episode_outcomes(rewards: Tensor, mask: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """Outcome R_n = Σ_t γ^t r_tn and length |o_n| of the one episode in each column ([T, N] → [N], [N])."""
    discount = gamma ** torch.arange(rewards.shape[0], device=rewards.device, dtype=rewards.dtype)
    returns = (rewards * mask * discount[:, None]).sum(0)
    return returns, mask.sum(0)


class GRPO(Algorithm):
    name = "grpo"
    family = "score function"
    summary = "GRPO / Dr. GRPO: clipped ratio, group-relative outcome advantages, k3 KL to a frozen reference"
    Config = Config
    workers = "rollouts"  # --workers K: Ray actors sample for it (pgrad.run.workers)
    free_state = ("prior",)  # the prior's own shapes (it may differ from the policy): checked on load
    # `pgrad tune`'s search (pgrad.workflow.tune; RLOO inherits it): step size, group size, epochs, ε and
    # the KL weight β (0: none, as DAPO; 0.04: DeepSeekMath's).
    search_space: ClassVar[dict[str, tuple]] = {
        "lr": ("log", 1e-4, 1e-2),
        "group_size": ("categorical", (4, 8, 16)),
        "update_epochs": ("categorical", (1, 4, 10)),
        "clip_coef": ("categorical", (0.1, 0.2, 0.3)),
        "beta": ("categorical", (0.0, 0.01, 0.04, 0.1)),
    }

    def __init__(self, config: GroupConfig, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config)
        if envs.num_envs != config.num_envs:
            raise ConfigError(
                f"{self.name} needs num_groups · group_size = {config.num_envs} sub-envs, the VecEnv has "
                f"{envs.num_envs}"
            )
        self.policy = make_policy(envs, config).to(device)
        self.prior = ImitativePrior(config, envs, device, self.name)  # --init-from, --prior-kl
        self.prior.start(self.policy)
        self.reference: Policy | None = None
        if config.beta > 0:
            if config.reference == "initial":
                self.reference = copy.deepcopy(self.policy)
            else:
                self.reference = policy_from_run(config.reference[4:], envs, "reference").to(device)
            self.reference.requires_grad_(False).eval()
        self.optimizer = make_optimizer(config.optimizer, self.policy.named_parameters(), config.lr)
        self.length_constant = float(config.length_constant or envs.max_episode_steps or 1)
        self.schedule = LinearDecay(total_steps)  # --anneal-lr

    # -- what GRPO and RLOO differ in -----------------------------------------------------------------------
    def advantages(self, outcomes_GK: Tensor) -> Tensor:
        """Outcome advantages Â [num_groups, G] from the outcomes [num_groups, G]."""
        return group_relative_advantages(outcomes_GK, scale=not self.config.dr_grpo)

    def length_normalized(self) -> bool:
        """Divide each episode's step sum by its length |o_i| (True) or by the constant L (False)."""
        return not self.config.dr_grpo

    # -- one update -----------------------------------------------------------------------------------------
    def collect(self, index: int) -> Rollout:
        """One whole episode per sub-env; the G sub-envs of a group are reset with the same seed."""
        config = self.config
        seeds = [derive_seed(self.seed, "group", index, g) for g in range(config.num_groups)]
        return collect_episodes(
            self.envs, self.policy, 1, seed=[s for s in seeds for _ in range(config.group_size)]
        )

    def iteration(self, index: int) -> IterationResult:
        config = self.config
        self.prior.check_ready()
        if config.anneal_lr:
            anneal_lr(self.optimizer, self.schedule.fraction(self.envs.global_step))
        rollout = self.collect(index)
        mask = rollout.mask
        outcomes_N, lengths_N = episode_outcomes(rollout.rewards, mask, config.gamma)
        advantages_N = self.advantages(outcomes_N.view(config.num_groups, config.group_size)).reshape(-1)
        num_episodes = config.num_envs
        norm_N = (
            lengths_N.to(outcomes_N.dtype)
            if self.length_normalized()
            else outcomes_N.new_full((num_episodes,), self.length_constant)
        )
        steps = int(mask.sum())
        # Per-step weight of the objective, w_i = 1/(G·|o_i|) or 1/(G·L), times the number of steps B:
        # the surrogates average over a minibatch, and mean_B(B·w·ℓ) = Σ w·ℓ (w > 0 commutes with min/clip).
        weight_N = steps / (num_episodes * norm_N)
        T = rollout.num_steps
        batch = {
            "obs": rollout.obs[mask],
            "actions": rollout.actions[mask],
            "log_probs": rollout.log_probs[mask],
            "advantages": advantages_N.expand(T, -1)[mask],
            "weights": weight_N.expand(T, -1)[mask],
        }
        if self.reference is not None:
            with torch.no_grad():
                batch["ref_log_probs"] = self.reference.distribution(batch["obs"]).log_prob(batch["actions"])
        metrics = self._update(batch)
        groups = outcomes_N.view(config.num_groups, config.group_size)
        metrics["stats/outcome_mean"] = float(outcomes_N.mean())
        metrics["stats/outcome_group_std"] = float(groups.std(dim=1).mean())
        metrics["stats/degenerate_groups"] = float((groups == groups[:, :1]).all(dim=1).float().mean())
        metrics["stats/advantage_abs_mean"] = float(advantages_N.abs().mean())
        metrics["stats/lr"] = self.optimizer.param_groups[0]["lr"]
        return IterationResult(metrics, rollout.episode_returns, rollout.episode_lengths)

    def _update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        config = self.config
        size = len(batch["obs"])
        sums: dict[str, Any] = {}
        count = 0
        for _ in range(config.update_epochs):
            order = torch.randperm(size, device=batch["obs"].device)
            for rows in order.chunk(config.num_minibatches):
                accumulate(sums, self._minibatch_step({k: v[rows] for k, v in batch.items()}))
                count += 1
        return mean_metrics(sums, count)

    def _minibatch_step(self, mb: dict[str, Tensor]) -> dict[str, Tensor]:
        config = self.config
        dist = self.policy.distribution(mb["obs"])
        log_prob = dist.log_prob(mb["actions"])
        policy_loss, info = clipped_surrogate(
            log_prob, mb["log_probs"], mb["advantages"] * mb["weights"], config.clip_coef
        )
        entropy = dist.entropy().mean()
        prior_loss, prior_kl = self.prior.penalty(mb["obs"], dist)  # the valid steps only
        loss = policy_loss + prior_loss - config.ent_coef * entropy
        metrics: dict[str, Tensor] = {}
        if self.prior.prior is not None:
            metrics["stats/prior_kl"] = prior_kl
        if self.reference is not None:
            # k3 with samples from πθ: q = πθ, p = π_ref; the gradient flows through πθ only.
            kl_BT = kl_k3(log_q=log_prob, log_p=mb["ref_log_probs"])
            kl_loss = (kl_BT * mb["weights"]).mean()
            loss = loss + config.beta * kl_loss
            metrics["loss/kl_ref"] = kl_loss.detach()
            metrics["stats/kl_ref"] = kl_BT.detach().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = self.policy.parameters()
        metrics["stats/grad_norm"] = clip_and_step(self.optimizer, params, config.max_grad_norm)
        metrics["loss/policy"] = policy_loss.detach()
        metrics["stats/entropy"] = entropy.detach()
        metrics["stats/approx_kl"] = info["approx_kl"]
        metrics["stats/clip_fraction"] = info["clip_fraction"]
        return metrics

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
        }
        if self.reference is not None:
            state["reference"] = self.reference.state_dict()
        if self.prior.prior is not None:
            state["prior"] = self.prior.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "schedule" in state:  # checkpoints before schedules were saved: the budget's linear decay
            self.schedule.load_state_dict(state["schedule"])
        if self.reference is not None:
            self.reference.load_state_dict(state["reference"])
        self.prior.load_state_dict(state.get("prior"))

    def extend_budget(self, step: int, total_steps: int) -> str | None:
        self.total_steps = total_steps
        self.schedule.extend(step, total_steps)
        return extension_note(self.schedule, step, "learning rate") if self.config.anneal_lr else None
