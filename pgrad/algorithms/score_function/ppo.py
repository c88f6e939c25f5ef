"""PPO: proximal policy optimisation, clipped surrogate or adaptive KL penalty (Schulman et al. 2017).

Estimator: several epochs of minibatch ascent on a surrogate whose gradient at θ = θ_old is the
score-function estimate with GAE(λ) advantages,

    ∇θ E[ρ_t Â_t] = E[ρ_t ∇θ log πθ(a_t|s_t) Â_t],   ρ_t = πθ(a_t|s_t) / πθ_old(a_t|s_t)

    L_clip = −E[min(ρ_t Â_t, clip(ρ_t, 1−ε, 1+ε) Â_t)]      --loss clip (no gradient once ρ leaves the band)
    L_kl   = −E[ρ_t Â_t] + β KL(π_old ‖ πθ)                  --loss kl   (β adapted towards --kl-target)

plus c_v · value loss (optionally clipped around the old values) − c_e · entropy. Â_t is GAE(λ) on
fixed-length rollouts of continuing episodes; a time-limit truncation bootstraps from V(final observation),
not from the next episode's reset observation and not as a terminal (CleanRL's ppo.py treats it as one).

Defaults: the PPO paper's MuJoCo optimisation settings as Stable-Baselines3 ships them (Adam lr 3e-4,
10 epochs, γ 0.99, λ 0.95, ε 0.2, c_v 0.5, no entropy bonus, no value clipping, gradient-norm clip 0.5,
advantages standardised per minibatch), on CleanRL-style short rollouts of continuing episodes (8 envs ×
128 steps, 4 minibatches of 256) with CleanRL's linear learning-rate annealing to 0. They differ from
CleanRL's ppo.py (4 envs, lr 2.5e-4, 4 epochs, c_e 0.01, value clipping on) and from SB3's PPO (1 env ×
2048 steps, minibatches of 64, constant lr). rl-baselines3-zoo's tuned CartPole setting is in
`benchmarks/acceptance.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from pgrad.algorithms.common import (
    ImitativePrior,
    LinearDecay,
    PriorConfig,
    accumulate,
    anneal_lr,
    check_at_least,
    check_non_negative,
    check_positive,
    check_unit_interval,
    clip_and_step,
    extension_note,
    gae_batch,
    make_policy,
    make_value,
    mean_metrics,
    update_normalizers,
)
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import (
    adaptive_kl_beta,
    clipped_surrogate,
    explained_variance,
    kl_k3,
    kl_penalty_surrogate,
    normalize,
    value_loss,
)
from pgrad.optim import make_optimizer
from pgrad.policies.normalizers import RewardScaler
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.rollout import StepCollector
from pgrad.run.seeding import derive_seed


@dataclass
class Config(PriorConfig):
    """PPO options (`pgrad train ppo --help`). Defaults: see the module docstring (paper/SB3 optimisation
    settings on CleanRL-style rollouts)."""

    num_envs: int = 8
    """Sub-envs stepped together."""
    num_steps: int = 128
    """Steps per sub-env per rollout; batch = num_envs · num_steps."""
    gamma: float = 0.99
    """Discount γ."""
    gae_lambda: float = 0.95
    """GAE λ."""
    loss: Literal["clip", "kl"] = "clip"
    """Clipped surrogate, or the adaptive-KL-penalty surrogate."""
    clip_coef: float = 0.2
    """Clip range ε of the probability ratio."""
    anneal_clip: bool = False
    """Anneal ε linearly to 0 over the run (rl-zoo's CartPole setting)."""
    kl_beta: float = 1.0
    """Initial KL-penalty coefficient β (--loss kl)."""
    kl_target: float = 0.01
    """Target KL for adapting β (--loss kl): β ×2 when the KL after the update is above 1.5·target, ÷2 below
    target/1.5."""
    update_epochs: int = 10
    """Passes over each batch."""
    num_minibatches: int = 4
    """Minibatches per pass."""
    lr: float = 3e-4
    """Learning rate (policy and value share one optimiser)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the run."""
    optimizer: str = "adam"
    """sgd, adam, adamw, rmsprop, muon, laprop."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip (0: none)."""
    normalize_advantages: bool = True
    """Standardise advantages per minibatch."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient c_e."""
    vf_coef: float = 0.5
    """Value-loss coefficient c_v."""
    clip_vloss: bool = False
    """Clip the value update around the old values by clip_coef."""
    target_kl: float | None = None
    """Stop the epochs early once the approximate KL exceeds this."""
    init_std: float = 1.0
    """Initial standard deviation of Gaussian policies."""
    normalize_obs: bool = False
    """Standardise observations with running statistics (saved in checkpoints, frozen in evaluation)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (reset per sub-env at episode end)."""
    compile: bool = False
    """torch.compile the minibatch loss (forwards, losses and diagnostics; backward through the compiled
    graph). On CPU at 64×64 a minibatch step is 1.6–2.2× faster once compiled, after 3–25 s of compiling on
    the first update: it pays on long runs (1.13× end to end on HalfCheetah 1M; docs/performance.md)."""


def check_config(config: Config) -> None:
    """One-line errors for invalid option values."""
    check_at_least(config, 1, "num_envs", "num_steps", "update_epochs", "num_minibatches")
    if config.num_minibatches > config.num_envs * config.num_steps:
        raise ConfigError(
            f"num_minibatches ({config.num_minibatches}) exceeds the batch size "
            f"({config.num_envs * config.num_steps})"
        )
    check_unit_interval(config, "gamma", "gae_lambda")
    check_positive(config, "clip_coef", "kl_beta", "kl_target")
    check_non_negative(config, "max_grad_norm", "ent_coef", "vf_coef")


class PPO(Algorithm):
    name = "ppo"
    family = "score function"
    summary = "PPO: minibatch epochs on the clipped (or KL-penalised) ratio surrogate with GAE(λ) advantages"
    Config = Config
    workers = "rollouts"  # --workers K: Ray actors sample for it (pgrad.run.workers)
    free_state = ("prior",)  # the prior's own shapes (it may differ from the policy): checked on load
    # `pgrad tune`'s search (pgrad.workflow.tune), after rl-zoo's sample_ppo_params (lr up to 1e-2: the
    # CartPole preset's 4e-3 is above its 2e-3; γ and λ from its categorical lists; minibatches by count).
    search_space: ClassVar[dict[str, tuple]] = {
        "lr": ("log", 1e-5, 1e-2),
        "num_steps": ("categorical", (32, 64, 128, 256, 512, 1024, 2048)),
        "num_minibatches": ("categorical", (1, 4, 8, 16, 32)),
        "update_epochs": ("categorical", (1, 5, 10, 20)),
        "gamma": ("categorical", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        "gae_lambda": ("categorical", (0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)),
        "clip_coef": ("categorical", (0.1, 0.2, 0.3, 0.4)),
        "ent_coef": ("log", 1e-8, 0.1),
        "max_grad_norm": ("float", 0.3, 2.0),
    }

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config)
        self.policy = make_policy(envs, config).to(device)
        self.value = make_value(envs, config).to(device)
        self.prior = ImitativePrior(config, envs, device, self.name)  # --init-from, --prior-kl
        self.prior.start(self.policy, self.value)
        self.model = nn.ModuleDict({"policy": self.policy, "value": self.value})
        self.params = list(self.model.parameters())
        self.optimizer = make_optimizer(config.optimizer, self.model.named_parameters(), config.lr)
        self.reward_scaler = (
            RewardScaler(config.num_envs, config.gamma).to(device) if config.normalize_reward else None
        )
        self.collector = StepCollector(envs, derive_seed(seed, "train", 0))
        self.kl_beta = config.kl_beta
        self.schedule = LinearDecay(total_steps)  # --anneal-lr / --anneal-clip
        self.batch_steps = config.num_envs * config.num_steps
        self._loss = torch.compile(self._minibatch_loss) if config.compile else self._minibatch_loss
        self._compiled = False

    # -- one update -----------------------------------------------------------------------------------------
    def iteration(self, index: int) -> IterationResult:
        config = self.config
        self.prior.check_ready()
        left = self.schedule.fraction(self.envs.global_step)
        lr = anneal_lr(self.optimizer, left if config.anneal_lr else 1.0)
        clip = config.clip_coef * left if config.anneal_clip else config.clip_coef
        clip = max(clip, 1e-8)

        rollout = self.collector.collect(self.policy, config.num_steps)
        rewards = rollout.rewards
        if self.reward_scaler is not None:
            rewards = torch.stack(
                [
                    self.reward_scaler.update_and_scale(
                        rewards[t], rollout.terminated[t], rollout.truncated[t]
                    )
                    for t in range(rollout.num_steps)
                ]
            )
        values, advantages, returns = gae_batch(self.value, rollout, config.gamma, config.gae_lambda, rewards)

        batch = {
            "obs": rollout.obs.flatten(0, 1),
            "actions": rollout.actions.flatten(0, 1),
            "log_probs": rollout.log_probs.flatten(0, 1),
            "advantages": advantages.flatten(),
            "returns": returns.flatten(),
            "values": values.flatten(),
        }
        metrics = self._update(batch, clip)
        metrics["stats/explained_variance"] = explained_variance(batch["values"], batch["returns"])
        metrics["stats/lr"] = lr
        metrics["stats/clip_coef"] = clip
        if config.loss == "kl":
            # d = E[KL(π_old ‖ πθ)] after the epochs (paper, section 4), not the mean of the KLs seen before
            # each step (0 on the first one): k3 with the collected actions.
            with torch.no_grad():
                new_log_probs = self.policy.distribution(batch["obs"]).log_prob(batch["actions"])
                kl = kl_k3(log_q=batch["log_probs"], log_p=new_log_probs).mean()
            self.kl_beta = adaptive_kl_beta(self.kl_beta, kl, config.kl_target)
            metrics["stats/kl_after_update"] = kl
            metrics["stats/kl_beta"] = self.kl_beta
        update_normalizers(batch["obs"], self.policy, self.value)  # after the update, as acting saw them
        return IterationResult(metrics, rollout.episode_returns, rollout.episode_lengths)

    def _update(self, batch: dict[str, torch.Tensor], clip: float) -> dict[str, Any]:
        config = self.config
        size = len(batch["obs"])
        minibatch = size // config.num_minibatches
        sums: dict[str, Any] = {}
        count = 0
        epochs = 0
        full_batch = config.num_minibatches == 1
        if full_batch and config.normalize_advantages:  # the same set every epoch: standardise it once
            batch = {**batch, "advantages": normalize(batch["advantages"])}
        for epoch in range(config.update_epochs):
            epochs = epoch + 1
            epoch_kl = torch.zeros((), dtype=torch.float64, device=batch["obs"].device)
            if full_batch:  # a full-batch step does not depend on the order: skip the shuffle
                minibatches = [batch]
            else:
                order = torch.randperm(size, device=batch["obs"].device)
                minibatches = [
                    {k: v[order[start : start + minibatch]] for k, v in batch.items()}
                    for start in range(0, minibatch * config.num_minibatches, minibatch)
                ]
            for mb in minibatches:
                info = self._minibatch_step(mb, clip)
                epoch_kl = epoch_kl + info["stats/approx_kl"].double() / config.num_minibatches
                accumulate(sums, info)
                count += 1
            if config.target_kl is not None and float(epoch_kl) > config.target_kl:  # one sync per epoch
                break
        metrics = mean_metrics(sums, count)
        metrics["stats/epochs"] = epochs
        return metrics

    def _minibatch_step(self, mb: dict[str, torch.Tensor], clip: float) -> dict[str, Any]:
        coefficients: tuple[Any, Any] = (clip, self.kl_beta)
        if self.config.compile:  # as tensors: a float changing every iteration (annealing) would recompile
            like = mb["log_probs"]
            coefficients = tuple(torch.tensor(c, dtype=like.dtype, device=like.device) for c in coefficients)
        inputs = (mb["obs"], mb["actions"], mb["log_probs"], mb["advantages"], mb["returns"], mb["values"])
        try:
            loss, metrics = self._loss(*inputs, *coefficients)
        except Exception as exc:
            if not self.config.compile or self._compiled:
                raise
            # the first call compiles: a failure there is the machine's (no C++ toolchain, ...)
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ConfigError(
                f"--compile: torch.compile could not compile PPO's loss here ({type(exc).__name__}: "
                f"{first}); run without --compile"
            ) from exc
        self._compiled = True
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics["stats/grad_norm"] = clip_and_step(self.optimizer, self.params, self.config.max_grad_norm)
        return metrics

    def _minibatch_loss(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_log_probs: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        old_values: torch.Tensor,
        clip: float,
        kl_beta: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The minibatch loss and its diagnostics (tensors): one graph, compiled whole with --compile."""
        config = self.config
        standardise = config.normalize_advantages and config.num_minibatches > 1  # else done once in _update
        dist = self.policy.distribution(obs)
        log_prob = dist.log_prob(actions)
        advantages = normalize(advantages) if standardise else advantages
        if config.loss == "clip":
            policy_loss, info = clipped_surrogate(log_prob, old_log_probs, advantages, clip)
        else:
            policy_loss, info = kl_penalty_surrogate(log_prob, old_log_probs, advantages, kl_beta)
        v_loss, v_info = value_loss(
            self.value(obs),
            returns,
            old_values=old_values if config.clip_vloss else None,
            clip_coef=clip if config.clip_vloss else None,
        )
        entropy = dist.entropy().mean()
        prior_loss, prior_kl = self.prior.penalty(obs, dist)
        loss = policy_loss + prior_loss + config.vf_coef * v_loss - config.ent_coef * entropy
        metrics = {
            "loss/policy": policy_loss.detach(),
            "loss/value": v_loss.detach(),
            "stats/entropy": entropy.detach(),
        }
        if self.prior.prior is not None:
            metrics["stats/prior_kl"] = prior_kl
        metrics.update({f"stats/{k}": v for k, v in {**info, **v_info}.items()})
        return loss, metrics

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "kl_beta": self.kl_beta,
            "schedule": self.schedule.state_dict(),
            "collector": self.collector.state_dict(),
        }
        if self.reward_scaler is not None:
            state["reward_scaler"] = self.reward_scaler.state_dict()
        if self.prior.prior is not None:
            state["prior"] = self.prior.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_beta = float(state["kl_beta"])
        self.prior.load_state_dict(state.get("prior"))
        if "schedule" in state:  # checkpoints before schedules were saved: the budget's linear decay
            self.schedule.load_state_dict(state["schedule"])
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
        if "collector" in state:  # where the episodes stand (restored exactly when the envs are too)
            self.collector.load_state_dict(state["collector"])

    def extend_budget(self, step: int, total_steps: int) -> str | None:
        self.total_steps = total_steps
        note = self.config.anneal_lr or self.config.anneal_clip
        self.schedule.extend(step, total_steps)
        return extension_note(self.schedule, step, "learning rate and clip range") if note else None

    def on_resume(self, iteration: int) -> None:
        # Gymnasium env state cannot be saved without pickle: resumed runs start new episodes.
        self.collector.restart(derive_seed(self.seed, "resume", iteration))
