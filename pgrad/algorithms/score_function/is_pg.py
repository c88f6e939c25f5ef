"""Importance-sampled off-policy policy gradient: REINFORCE on episodes collected by another policy π_b.

Estimator over the M whole episodes of the replay (each collected by its own behaviour policy π_b), with
ρ_k = πθ(a_k|s_k) / π_b(a_k|s_k) and G_t the reward-to-go (Precup, Sutton & Singh 2000; the references'
off-policy slides):

    --weights trajectory:    ∇θJ ≈ 1/M Σ_i w_i Σ_t ∇θ log πθ(a_t|s_t) (G_t − b_t),      w_i = Π_{all t} ρ_t
    --weights per_decision:  ∇θJ ≈ 1/M Σ_i Σ_t ∇θ log πθ(a_t|s_t) (Σ_{t'≥t} γ^{t'−t} w_{t'} r_{t'} − w_t b_t),
                             w_t = Π_{k≤t} ρ_k

The per-decision form is the exact one: reward r_{t'} depends on the actions up to t', so it carries their
weight w_{t'} (weighting all of G_t by w_t would be biased). Both are unbiased for any state baseline
(b = 0, the batch mean of G, or a value network V(s_t) fitted to the newest batch's returns) and both grow in
variance exponentially with the horizon and the policy mismatch. Weights are formed in log space (float64);
--max-weight c truncates them at c (Ionides 2008; bias towards π_b, bounded variance) and --self-normalize
divides them by their batch mean (weighted importance sampling; biased, consistent). A time-limit cut adds
γ w_e V(final observation) with the value baseline (--bootstrap-truncated).

Data: each iteration collects `episodes_per_update` whole episodes with the behaviour policy, stores them with
π_b's log-probs in a replay of the last `replay_batches` batches, and takes `updates_per_batch` gradient steps
on the whole replay (weights recomputed at each step, since πθ moves). The behaviour is
    --behaviour lagged   a frozen copy of the learner, refreshed every `refresh_every` iterations: between
                         refreshes the batches come from a stale policy, so the learner trains off-policy;
    --behaviour run:DIR  the fixed policy of a pgrad run (e.g. a REINFORCE run).
With refresh_every = replay_batches = updates_per_batch = 1 every ρ is 1 and the update is REINFORCE's.

Diagnostics are measured on the raw weights (before truncation / normalisation), one weight per episode for
--weights trajectory and one per step for per_decision: stats/ess = (Σw)²/Σw² and stats/ess_fraction (ESS
over the number of weights), stats/weight_max, stats/weight_mean, stats/clip_fraction (share above c), and
stats/approx_kl (k3 estimate of KL(π_b ‖ πθ) on the replay).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from pgrad.algorithms.common import (
    ImitativePrior,
    PriorConfig,
    accumulate,
    check_at_least,
    check_multiple,
    check_non_negative,
    check_run_option,
    check_unit_interval,
    clip_and_step,
    fit_value,
    make_policy,
    make_value,
    mean_metrics,
    policy_from_run,
    update_normalizers,
)
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import (
    clip_weights,
    effective_sample_size,
    episode_index,
    explained_variance,
    importance_weighted_advantages,
    mean_baseline,
    per_decision_weights,
    reward_to_go,
    score_function_loss,
    trajectory_weights,
)
from pgrad.optim import make_optimizer
from pgrad.policies.networks import ValueNetwork
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.rollout import collect_episodes, stack_rollouts
from pgrad.run.seeding import derive_seed

# What the replay keeps of each batch (Rollout fields, time-major [T, N, ...]).
FIELDS = ("obs", "actions", "log_probs", "rewards", "terminated", "truncated", "next_obs", "mask")


@dataclass
class Config(PriorConfig):
    """Importance-sampled PG options (`pgrad train is_pg --help`)."""

    num_envs: int = 4
    """Sub-envs stepped together; each runs episodes_per_update / num_envs whole episodes per batch."""
    episodes_per_update: int = 8
    """Episodes collected per iteration (a multiple of num_envs)."""
    gamma: float = 0.99
    """Discount γ."""
    behaviour: str = "lagged"
    """Behaviour policy: 'lagged' (a copy of the learner refreshed every refresh_every iterations) or
    'run:DIR' (the fixed policy of a pgrad run dir)."""
    refresh_every: int = 2
    """Iterations between refreshes of the lagged behaviour copy (1: collect on-policy)."""
    replay_batches: int = 2
    """The last this many batches (with their behaviour log-probs) make up the replay."""
    updates_per_batch: int = 2
    """Gradient steps on the replay per iteration."""
    weights: Literal["trajectory", "per_decision"] = "per_decision"
    """Importance weights: Π over the whole episode, or Π up to each reward's step (see the docstring)."""
    max_weight: float | None = None
    """Truncate the importance weights at this value c (None: no truncation, unbiased)."""
    self_normalize: bool = False
    """Divide the weights by their batch mean (weighted importance sampling)."""
    baseline: Literal["none", "mean", "value"] = "value"
    """State baseline b: none, the batch mean of the returns, or a value network."""
    bootstrap_truncated: bool = True
    """With the value baseline: a time-limit cut adds γ w V(final observation) to the return."""
    lr: float = 1e-3
    """Policy learning rate."""
    optimizer: str = "adam"
    """Optimiser for policy and value: sgd, adam, adamw, rmsprop, muon, laprop."""
    max_grad_norm: float = 0.0
    """Clip the policy gradient to this global norm (0: no clipping)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    value_lr: float = 1e-3
    """Value-network learning rate (value baseline)."""
    value_iters: int = 20
    """Gradient steps fitting the value network on each new batch (value baseline)."""
    normalize_obs: bool = False
    """Standardise observations with running statistics (saved in checkpoints, frozen in evaluation)."""


def check_config(config: Config) -> None:
    """One-line errors for invalid option values (choices are checked against the Config's types)."""
    check_at_least(config, 1, "num_envs", "episodes_per_update", "refresh_every", "replay_batches")
    check_at_least(config, 1, "updates_per_batch")
    check_multiple(
        config, "episodes_per_update", "num_envs", ": each sub-env runs the same number of whole episodes"
    )
    check_unit_interval(config, "gamma")
    check_run_option(config, "behaviour", ("lagged",))
    if config.max_weight is not None and not config.max_weight > 0:
        raise ConfigError(f"max_weight must be > 0 (or None for no truncation), got {config.max_weight}")
    check_non_negative(config, "value_iters", "max_grad_norm", "ent_coef")


class ImportanceSampledPG(Algorithm):
    name = "is_pg"
    family = "score function"
    summary = "off-policy REINFORCE: trajectory or per-decision importance weights, truncation, WIS, replay"
    Config = Config
    workers = "rollouts"  # --workers K: Ray actors sample for it (pgrad.run.workers)
    free_state = ("prior",)  # the prior's own shapes (it may differ from the policy): checked on load
    # `pgrad tune`'s search (pgrad.workflow.tune): step size, γ, batch, how stale the behaviour policy gets
    # and how often each batch is reused, the weights' form.
    search_space: ClassVar[dict[str, tuple]] = {
        "lr": ("log", 1e-4, 1e-2),
        "gamma": ("categorical", (0.95, 0.98, 0.99, 0.995, 0.999)),
        "episodes_per_update": ("categorical", (8, 16, 32)),
        "refresh_every": ("categorical", (1, 2, 4, 8)),
        "updates_per_batch": ("categorical", (1, 2, 4)),
        "weights": ("categorical", ("trajectory", "per_decision")),
    }

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config)
        self.policy = make_policy(envs, config).to(device)
        self.policy_optimizer = make_optimizer(config.optimizer, self.policy.named_parameters(), config.lr)
        if config.behaviour == "lagged":
            self.behaviour = copy.deepcopy(self.policy)
        else:
            self.behaviour = policy_from_run(config.behaviour[4:], envs, "behaviour").to(device)
        self.behaviour.requires_grad_(False).eval()
        self.value: ValueNetwork | None = None
        if config.baseline == "value":
            self.value = make_value(envs, config).to(device)
            self.value_optimizer = make_optimizer(
                config.optimizer, self.value.named_parameters(), config.value_lr
            )
        self.prior = ImitativePrior(config, envs, device, self.name)  # --init-from, --prior-kl
        self.prior.start(self.policy, self.value)
        if config.behaviour == "lagged":  # lags the policy as initialised
            self.behaviour.load_state_dict(self.policy.state_dict())
        self.replay: list[dict[str, torch.Tensor]] = []

    # -- one iteration --------------------------------------------------------------------------------------
    def iteration(self, index: int) -> IterationResult:
        config = self.config
        if config.behaviour == "lagged" and index % config.refresh_every == 0:
            self.behaviour.load_state_dict(self.policy.state_dict())
        rollout = collect_episodes(
            self.envs,
            self.behaviour,
            config.episodes_per_update // config.num_envs,
            derive_seed(self.seed, "train", index),
        )
        self.replay.append({key: getattr(rollout, key) for key in FIELDS})
        del self.replay[: -config.replay_batches]
        data = self._prepare(stack_rollouts(self.replay))
        sums: dict[str, Any] = {}
        for _ in range(config.updates_per_batch):
            accumulate(sums, self._policy_step(data))
        metrics = {**mean_metrics(sums, config.updates_per_batch), "stats/replay_episodes": data["episodes"]}
        if self.value is not None:
            metrics.update(self._fit_value(rollout))
        # after the update, so acting and the gradient used the same statistics
        update_normalizers(rollout.obs[rollout.mask], self.policy, self.value)
        return IterationResult(metrics, rollout.episode_returns, rollout.episode_lengths)

    def _prepare(self, replay: dict[str, torch.Tensor]) -> dict[str, Any]:
        """What stays fixed during the iteration's updates: returns, baselines, the flat batch (float64)."""
        config = self.config
        mask, term, trunc = replay["mask"], replay["terminated"], replay["truncated"]
        rewards = replay["rewards"].double()
        _, step_in_episode = episode_index(term, trunc)
        data: dict[str, Any] = {
            "replay": replay,
            "rewards": rewards,
            "obs": replay["obs"][mask],
            "actions": replay["actions"][mask],
            "episodes": int((mask & (step_in_episode == 0)).sum()),
            "baselines": None,
            "next_values": None,
        }
        if self.value is not None:
            with torch.no_grad():  # b(s) from earlier fits: a function of the state only
                data["baselines"] = self.value(replay["obs"]).double()
                if config.bootstrap_truncated:
                    data["next_values"] = self.value(replay["next_obs"]).double()
        elif config.baseline == "mean":
            G = reward_to_go(rewards, term, trunc, config.gamma)
            data["baselines"] = mean_baseline(G, mask).expand_as(G)
        return data

    def _policy_step(self, data: dict[str, Any]) -> dict[str, float]:
        config = self.config
        replay = data["replay"]
        mask, term, trunc = replay["mask"], replay["terminated"], replay["truncated"]
        dist = self.policy.distribution(data["obs"])
        log_prob = dist.log_prob(data["actions"])
        log_ratio = torch.zeros_like(data["rewards"])
        log_ratio[mask] = log_prob.detach().double() - replay["log_probs"][mask].double()
        make = trajectory_weights if config.weights == "trajectory" else per_decision_weights
        raw = make(log_ratio, term, trunc)
        weights = clip_weights(
            raw,
            config.max_weight,
            self_normalize=config.self_normalize,
            terminated=term,
            truncated=trunc,
            mask=mask,
        )
        psi = importance_weighted_advantages(
            weights, data["rewards"], term, trunc, config.gamma, data["baselines"], data["next_values"]
        )
        # Σ over steps, mean over episodes: the gradient of this loss is −ĝ exactly.
        policy_loss, _ = score_function_loss(log_prob, psi[mask], normalizer=max(data["episodes"], 1))
        entropy = dist.entropy().mean()
        prior_loss, prior_kl = self.prior.penalty(data["obs"], dist)  # the valid steps only
        self.policy_optimizer.zero_grad(set_to_none=True)
        (policy_loss + prior_loss - config.ent_coef * entropy).backward()
        grad_norm = clip_and_step(self.policy_optimizer, self.policy.parameters(), config.max_grad_norm)
        metrics = {
            "loss/policy": policy_loss.detach(),
            "stats/entropy": entropy.detach(),
            "stats/grad_norm": grad_norm,
        }
        if self.prior.prior is not None:
            metrics["stats/prior_kl"] = prior_kl
        metrics.update(self._weight_stats(raw, log_ratio, mask, term, trunc))
        return metrics

    def _weight_stats(
        self, raw: torch.Tensor, log_ratio: torch.Tensor, mask: torch.Tensor, term, trunc
    ) -> dict[str, float]:
        """Diagnostics of the raw weights: one per episode (trajectory) or one per step (per_decision)."""
        units = mask
        if self.config.weights == "trajectory":
            units = mask & (episode_index(term, trunc)[1] == 0)
        w = raw[units]
        ess = effective_sample_size(w)
        c = self.config.max_weight
        lr = log_ratio[mask]
        return {
            "stats/ess": ess,
            "stats/ess_fraction": ess / max(len(w), 1),
            "stats/weight_max": float(w.max()) if len(w) else 0.0,
            "stats/weight_mean": float(w.mean()) if len(w) else 0.0,
            "stats/clip_fraction": float((w > c).double().mean()) if c is not None and len(w) else 0.0,
            # k3 estimate of KL(π_b ‖ πθ), samples from π_b (Schulman 2020): unbiased, ≥ 0
            "stats/approx_kl": float((torch.expm1(lr) - lr).mean()) if len(lr) else 0.0,
        }

    def _fit_value(self, rollout) -> dict[str, float]:
        """Fit V to the newest batch's (unweighted, behaviour) returns: a baseline need only depend on s."""
        assert self.value is not None
        config, mask = self.config, rollout.mask
        with torch.no_grad():
            next_values = self.value(rollout.next_obs) if config.bootstrap_truncated else None
        targets = reward_to_go(
            rollout.rewards, rollout.terminated, rollout.truncated, config.gamma, next_values
        )
        obs, targets = rollout.obs[mask], targets[mask]
        with torch.no_grad():
            before = self.value(obs)
        loss = fit_value(self.value, self.value_optimizer, obs, targets, config.value_iters)
        return {"loss/value": loss, "stats/explained_variance": explained_variance(before, targets)}

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "policy": self.policy.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "behaviour": self.behaviour.state_dict(),
            "replay": [dict(batch) for batch in self.replay],
        }
        if self.value is not None:
            state["value"] = self.value.state_dict()
            state["value_optimizer"] = self.value_optimizer.state_dict()
        if self.prior.prior is not None:
            state["prior"] = self.prior.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.behaviour.load_state_dict(state["behaviour"])
        self.prior.load_state_dict(state.get("prior"))
        self.replay = [{key: batch[key].to(self.device) for key in FIELDS} for batch in state["replay"]]
        if self.value is not None:
            self.value.load_state_dict(state["value"])
            self.value_optimizer.load_state_dict(state["value_optimizer"])
