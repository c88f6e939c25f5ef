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
from typing import Any, Literal

import torch

from pgrad.algorithms.base import Algorithm, IterationResult, NetworkConfig, make_policy
from pgrad.envs.gym import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import episode_index, mean_baseline, reward_to_go
from pgrad.estimators.importance import (
    clip_weights,
    effective_sample_size,
    importance_weighted_advantages,
    per_decision_weights,
    trajectory_weights,
)
from pgrad.estimators.surrogates import explained_variance, score_function_loss
from pgrad.optim import make_optimizer
from pgrad.policies.networks import Policy, ValueNetwork
from pgrad.run.rollout import collect_episodes
from pgrad.run.seeding import derive_seed

# What the replay keeps of each batch (Rollout fields, time-major [T, N, ...]).
FIELDS = ("obs", "actions", "log_probs", "rewards", "terminated", "truncated", "next_obs", "mask")


@dataclass
class Config(NetworkConfig):
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
    """One-line errors for invalid option values."""
    if config.num_envs < 1 or config.episodes_per_update < 1:
        raise ConfigError("num_envs and episodes_per_update must be >= 1")
    if config.episodes_per_update % config.num_envs:
        raise ConfigError(
            f"episodes_per_update ({config.episodes_per_update}) must be a multiple of num_envs "
            f"({config.num_envs}): each sub-env runs the same number of whole episodes"
        )
    if not 0.0 <= config.gamma <= 1.0:
        raise ConfigError(f"gamma must be in [0, 1], got {config.gamma}")
    if config.behaviour != "lagged" and not (config.behaviour.startswith("run:") and config.behaviour[4:]):
        raise ConfigError(f"behaviour must be 'lagged' or 'run:DIR', got '{config.behaviour}'")
    for name in ("refresh_every", "replay_batches", "updates_per_batch"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.weights not in ("trajectory", "per_decision"):
        raise ConfigError(f"weights must be 'trajectory' or 'per_decision', got '{config.weights}'")
    if config.max_weight is not None and not config.max_weight > 0:
        raise ConfigError(f"max_weight must be > 0 (or None for no truncation), got {config.max_weight}")
    if config.baseline not in ("none", "mean", "value"):
        raise ConfigError(f"baseline must be 'none', 'mean' or 'value', got '{config.baseline}'")
    if config.value_iters < 0:
        raise ConfigError(f"value_iters must be >= 0, got {config.value_iters}")


def stack_batches(batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batches of different lengths side by side: [T_max, ΣN, ...], each padded at the end with masked-out,
    terminated one-step episodes (so nothing leaks from one batch's episodes into another's)."""
    T = max(int(b["rewards"].shape[0]) for b in batches)
    out: dict[str, torch.Tensor] = {}
    for key in FIELDS:
        parts = []
        for b in batches:
            x = b[key]
            pad = T - x.shape[0]
            if pad:
                fill = (torch.ones if key == "terminated" else torch.zeros)(
                    (pad, *x.shape[1:]), dtype=x.dtype, device=x.device
                )
                x = torch.cat([x, fill])
            parts.append(x)
        out[key] = torch.cat(parts, dim=1)
    return out


def load_behaviour(run_dir: str, envs: VecEnv) -> Policy:
    """The policy of a pgrad run dir (its latest checkpoint), checked against the env's spaces."""
    from pgrad.api import load  # here, not at the top: pgrad.api imports the trainer, which imports us

    agent = load(run_dir)
    if agent.policy.obs_dim != envs.obs_dim or agent.action_space != envs.single_action_space:
        raise ConfigError(
            f"behaviour 'run:{run_dir}': its policy acts on obs_dim {agent.policy.obs_dim} / "
            f"{agent.action_space}, env '{envs.label}' has {envs.obs_dim} / {envs.single_action_space}"
        )
    return agent.policy


class ImportanceSampledPG(Algorithm):
    name = "is_pg"
    family = "score function"
    summary = "off-policy REINFORCE: trajectory or per-decision importance weights, truncation, WIS, replay"
    Config = Config

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config)
        self.policy = make_policy(envs, config).to(device)
        self.policy_optimizer = make_optimizer(config.optimizer, self.policy.named_parameters(), config.lr)
        if config.behaviour == "lagged":
            self.behaviour = copy.deepcopy(self.policy)
        else:
            self.behaviour = load_behaviour(config.behaviour[4:], envs).to(device)
        self.behaviour.requires_grad_(False).eval()
        self.value: ValueNetwork | None = None
        if config.baseline == "value":
            self.value = ValueNetwork(
                envs.obs_dim, config.hidden_sizes, config.activation, normalize_obs=config.normalize_obs
            ).to(device)
            self.value_optimizer = make_optimizer(
                config.optimizer, self.value.named_parameters(), config.value_lr
            )
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
        data = self._prepare(stack_batches(self.replay))
        sums: dict[str, float] = {}
        for _ in range(config.updates_per_batch):
            for key, value in self._policy_step(data).items():
                sums[key] = sums.get(key, 0.0) + value / config.updates_per_batch
        metrics = {**sums, "stats/replay_episodes": float(data["episodes"])}
        if self.value is not None:
            metrics.update(self._fit_value(rollout))
        if config.normalize_obs:  # after the update, so acting and the gradient used the same statistics
            obs = rollout.obs[rollout.mask]
            self.policy.normalizer.update(obs)
            if self.value is not None:
                self.value.normalizer.update(obs)
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
        self.policy_optimizer.zero_grad(set_to_none=True)
        (policy_loss - config.ent_coef * entropy).backward()
        max_norm = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm)
        self.policy_optimizer.step()
        metrics = {
            "loss/policy": policy_loss.item(),
            "stats/entropy": entropy.item(),
            "stats/grad_norm": float(grad_norm),
        }
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
        loss = torch.zeros(())
        for _ in range(config.value_iters):
            loss = 0.5 * (self.value(obs) - targets).pow(2).mean()
            self.value_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.value_optimizer.step()
        return {"loss/value": loss.item(), "stats/explained_variance": explained_variance(before, targets)}

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
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.behaviour.load_state_dict(state["behaviour"])
        self.replay = [{key: batch[key].to(self.device) for key in FIELDS} for batch in state["replay"]]
        if self.value is not None:
            self.value.load_state_dict(state["value"])
            self.value_optimizer.load_state_dict(state["value_optimizer"])
