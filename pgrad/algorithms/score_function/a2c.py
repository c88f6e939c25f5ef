"""A2C: synchronous advantage actor-critic (Mnih et al. 2016), one gradient step per short rollout.

Estimator, over a batch of B = num_envs · num_steps steps of continuing episodes:

    ∇θJ ≈ 1/B Σ_t ∇θ log πθ(a_t|s_t) · Ψ_t

    Ψ_t = G_t − V_w(s_t)                           --critic value  (advantage actor-critic)
    Ψ_t = Q_w(s_t, a_t)  [− Σ_a π(a|s_t) Q_w(s_t, a)]   --critic q [--q-baseline]  (Q actor-critic)

The critic regresses on the target G_t, bootstrapped from C(s') = V_w(s') or Q_w(s', a'), a' ~ π(·|s'):

    G_t = r_t + γ (1 − term_t) C(s_{t+1})                    --target td0   (TD(0); with Q: SARSA's target)
    G_t = Σ_{k<m} γ^k r_{t+k} + γ^m (1 − term) C(s_{t+m})    --target nstep (m: to the rollout or episode end)
    G_t = r_t + γ (1 − term_t) [(1−λ) C(s_{t+1}) + λ G_{t+1}]   --target gae   (λ-return; G − V = GAE(λ))

--discount-weighting multiplies step t's term by γᵗ, t its index in its episode (counted across rollouts:
an episode runs on through many short rollouts), the factor of the exact gradient of the discounted return
J = E[Σ_t γᵗ r_t] that nearly every implementation drops (`pgrad.estimators.discount_weights`).

A step cut by the time limit or by the rollout end bootstraps from the TRUE next state (the final observation,
`rollout.next_obs`), never from the next episode's reset observation; only termination stops bootstrapping.

Loss L = L_π + c_v · ½ mean (C(s_t[, a_t]) − G_t)² − c_e · H[π], one step of the optimiser(s) per rollout:
--architecture shared puts actor and critic on one trunk (`ActorCritic`) with one optimiser; separate gives
each its own network, optimiser and gradient clip. Defaults follow rl-baselines3-zoo's CartPole A2C
(Stable-Baselines3: 8 envs × 5 steps, RMSprop lr 7e-4 (α 0.99, ε 1e-5), γ 0.99, c_v 0.5, clip 0.5,
n-step returns to the rollout end — SB3's gae_lambda = 1.0 — and separate 64×64 actor and critic MLPs).
SB3 steps both networks with one RMSprop and one joint clip; RMSprop scales each parameter on its own, so
separate optimisers differ from it only in the clip (per network here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from gymnasium import spaces
from torch import nn

from pgrad.algorithms.common import (
    ImitativePrior,
    PriorConfig,
    check_at_least,
    check_non_negative,
    check_unit_interval,
    clip_and_step,
    head_options,
    update_normalizers,
)
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import (
    discount_weights,
    explained_variance,
    n_step_return,
    normalize,
    score_function_loss,
    td_lambda_return,
    value_loss,
)
from pgrad.optim import make_optimizer
from pgrad.policies.networks import ActorCritic, Policy, QNetwork, ValueNetwork
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.rollout import StepCollector
from pgrad.run.seeding import derive_seed
from pgrad.types import Rollout


@dataclass
class Config(PriorConfig):
    """A2C options (`pgrad train a2c --help`). Defaults: rl-baselines3-zoo's CartPole-v1 A2C."""

    num_envs: int = 8
    """Sub-envs stepped together."""
    num_steps: int = 5
    """Steps per sub-env per rollout (one gradient step each); batch = num_envs · num_steps."""
    gamma: float = 0.99
    """Discount γ."""
    target: Literal["td0", "nstep", "gae"] = "nstep"
    """Critic target / advantage: TD(0), n-step returns to the rollout or episode end, or λ-returns (GAE)."""
    gae_lambda: float = 0.95
    """λ of --target gae (λ = 1 equals nstep, λ = 0 equals td0)."""
    architecture: Literal["shared", "separate"] = "separate"
    """One trunk with policy and critic heads and one optimiser, or two networks with separate optimisers."""
    critic: Literal["value", "q"] = "value"
    """State-value critic V(s) (advantage G − V), or action-value critic Q(s, a) weighting the score."""
    q_baseline: bool = False
    """--critic q with discrete actions: subtract V(s) = Σ_a π(a|s) Q(s, a) from Q(s, a_t)."""
    lr: float = 7e-4
    """Learning rate (the actor's, with --architecture separate)."""
    value_lr: float | None = None
    """Critic learning rate with --architecture separate (None: lr)."""
    optimizer: str = "rmsprop"
    """sgd, adam, adamw, rmsprop (α 0.99, ε 1e-5 as in SB3's A2C), muon, laprop."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip, per network with --architecture separate (0: none)."""
    normalize_advantages: bool = False
    """Standardise the actor's weights Ψ over the batch."""
    discount_weighting: bool = False
    """Multiply step t's score-function term by γᵗ (t: its index in the episode, across rollouts), the factor
    of the exact gradient of the discounted return that implementations usually drop (after normalising)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient c_e."""
    vf_coef: float = 0.5
    """Critic-loss coefficient c_v (the critic loss is ½·MSE)."""
    init_std: float = 1.0
    """Initial standard deviation of Gaussian policies."""
    normalize_obs: bool = False
    """Standardise observations with running statistics (saved in checkpoints, frozen in evaluation)."""


def check_config(config: Config, envs: VecEnv) -> None:
    """One-line errors for invalid option values (choices are checked against the Config's types)."""
    check_at_least(config, 1, "num_envs", "num_steps")
    check_unit_interval(config, "gamma", "gae_lambda")
    check_non_negative(config, "max_grad_norm", "ent_coef", "vf_coef")
    if config.q_baseline and config.critic != "q":
        raise ConfigError("q_baseline needs --critic q")
    if config.q_baseline and not isinstance(envs.single_action_space, spaces.Discrete):
        raise ConfigError(
            f"q_baseline sums π(a|s) Q(s, a) over actions: it needs a Discrete action space, "
            f"env '{envs.label}' has {envs.single_action_space}"
        )
    if config.value_lr is not None and config.architecture == "shared":
        raise ConfigError("value_lr applies to --architecture separate (shared has one optimiser: use lr)")


def critic_targets(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    config: Config,
) -> torch.Tensor:
    """G_t [T, N] of --target (module docstring); next_values[t] = C(s_{t+1}) of the true next state."""
    if config.target == "td0":
        return n_step_return(rewards, next_values, terminated, truncated, config.gamma, 1)
    if config.target == "nstep":  # n = T: every return runs to its episode's end or the rollout's end
        return n_step_return(rewards, next_values, terminated, truncated, config.gamma, rewards.shape[0])
    return td_lambda_return(
        rewards, values, next_values, terminated, truncated, config.gamma, config.gae_lambda
    )


def make_networks(config: Config, envs: VecEnv, device: torch.device) -> nn.Module:
    """A2C's networks for `envs`' spaces: one `ActorCritic` (--architecture shared) or a ModuleDict of a
    `Policy` and a critic (separate): V(s), Q(s, ·) as |A| outputs (discrete actions) or Q(s, a) from
    concat(s, a) (Box actions). A3C's parameter server and actor-learners build theirs here too."""
    space = envs.single_action_space
    heads = head_options(envs, config)
    q_discrete = config.critic == "q" and isinstance(space, spaces.Discrete)
    q_box = config.critic == "q" and not q_discrete
    outputs = int(space.n) if q_discrete else 1
    action_dim = int(space.shape[0]) if q_box else 0
    net = {
        "hidden_sizes": config.hidden_sizes,
        "activation": config.activation,
        "normalize_obs": config.normalize_obs,
    }
    if config.architecture == "shared":
        return ActorCritic(
            envs.obs_dim,
            space,
            head=config.policy,
            value_outputs=outputs,
            action_dim=action_dim,
            **net,
            **heads,
        ).to(device)
    policy = Policy(envs.obs_dim, space, head=config.policy, **net, **heads).to(device)
    critic = (
        QNetwork(envs.obs_dim, outputs=outputs, action_dim=action_dim, **net)
        if config.critic == "q"
        else ValueNetwork(envs.obs_dim, **net)
    ).to(device)
    return nn.ModuleDict({"policy": policy, "critic": critic})


def network_groups(model: nn.Module) -> dict[str, nn.Module]:
    """The independently stepped and clipped parameter groups of `make_networks`' model: {"model"} (shared)
    or {"policy", "critic"} (separate)."""
    if isinstance(model, ActorCritic):
        return {"model": model}
    return {"policy": model["policy"], "critic": model["critic"]}


def make_optimizers(config: Config, groups: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per parameter group (RMSprop with SB3's α 0.99, ε 1e-5); the critic's at value_lr."""
    options = {"alpha": 0.99, "eps": 1e-5} if config.optimizer.lower() == "rmsprop" else {}
    value_lr = config.value_lr if config.value_lr is not None else config.lr
    return {
        name: make_optimizer(
            config.optimizer,
            module.named_parameters(),
            value_lr if name == "critic" else config.lr,
            **options,
        )
        for name, module in groups.items()
    }


class A2C(Algorithm):
    name = "a2c"
    family = "score function"
    summary = "A2C: one step per short rollout on Σ ∇log π · Ψ, Ψ = n-step/TD/GAE advantage or Q critic"
    Config = Config
    workers = "rollouts"  # --workers K: Ray actors sample for it (pgrad.run.workers)
    free_state = ("prior",)  # the prior's own shapes (it may differ from the policy): checked on load
    # `pgrad tune`'s search (pgrad.workflow.tune), after rl-zoo's sample_a2c_params (its n_steps is for one
    # env; here per sub-env, around SB3's 5).
    search_space: ClassVar[dict[str, tuple]] = {
        "lr": ("log", 1e-5, 2e-3),
        "num_steps": ("categorical", (5, 8, 16, 32, 64)),
        "gamma": ("categorical", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        "ent_coef": ("log", 1e-8, 0.1),
        "max_grad_norm": ("float", 0.3, 2.0),
        "normalize_advantages": ("categorical", (False, True)),
    }

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_config(config, envs)
        space = envs.single_action_space
        self.q_discrete = config.critic == "q" and isinstance(space, spaces.Discrete)
        self.q_box = config.critic == "q" and not self.q_discrete
        self.shared = config.architecture == "shared"
        self.model = make_networks(config, envs, device)
        groups = network_groups(self.model)
        if self.shared:
            self.policy = self.model.policy
        else:
            self.policy, self.critic = groups["policy"], groups["critic"]
        if self.shared and config.init_from is not None:
            raise ConfigError(
                f"init_from '{config.init_from}': a run's policy initialises a2c's separate networks only "
                "(--architecture separate)"
            )
        self.prior = ImitativePrior(config, envs, device, self.name)  # --init-from, --prior-kl
        self.prior.start(self.policy, None if self.shared else self.critic)
        self.optimizers = make_optimizers(config, groups)
        self.param_groups = {name: list(module.parameters()) for name, module in groups.items()}
        self.collector = StepCollector(
            envs, derive_seed(seed, "train", 0), count_steps=config.discount_weighting
        )

    # -- actor and critic -----------------------------------------------------------------------------------
    def _critic_action(self, sample: torch.Tensor) -> torch.Tensor | None:
        """What a Box Q critic reads: the env action of a sample (None for V and discrete-Q critics)."""
        return self.policy.to_env_action(sample) if self.q_box else None

    def _evaluate(self, obs: torch.Tensor, actions: torch.Tensor | None):
        """(π(·|obs), critic output C, actions): C = V(s) [B], Q(s, ·) [B, |A|] or Q(s, a) [B] (Box).

        A Box Q critic needs a; with actions None it is sampled from π (the bootstrap's a' ~ π(·|s')).
        """
        if self.shared:
            features = self.model.features(obs)
            dist = self.policy.head(features)
        else:
            dist = self.policy.distribution(obs)
        if self.q_box and actions is None:
            actions = self._sample_next_actions(dist)
        critic_actions = self._critic_action(actions) if self.q_box else None
        if self.shared:
            out = self.model.critic(features, critic_actions)
        else:
            out = self.critic(obs) if critic_actions is None else self.critic(obs, critic_actions)
        return dist, out, actions

    def _sample_next_actions(self, dist) -> torch.Tensor:
        """a' ~ π(·|s') for the Q critic's SARSA-style bootstrap."""
        return dist.sample()

    def _at(self, out: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """C(s, a): pick Q(s, a) from Q(s, ·) for discrete actions; V(s) and Box Q(s, a) pass through."""
        if self.q_discrete:
            return out.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        return out

    @torch.no_grad()
    def _bootstrap(self, rollout: Rollout) -> torch.Tensor:
        """C(s_{t+1}) [T, N] at the true next states: V(s'), or Q(s', a') with a' ~ π(·|s')."""
        dist, out, _ = self._evaluate(rollout.next_obs, None)
        if self.q_discrete:
            return self._at(out, self._sample_next_actions(dist))
        return out

    # -- one update -----------------------------------------------------------------------------------------
    def loss(self, rollout: Rollout) -> tuple[torch.Tensor, dict[str, Any]]:
        """(L, diagnostics) of one rollout at the current weights (module docstring); no step is taken."""
        config = self.config
        next_values = self._bootstrap(rollout)
        dist, out, _ = self._evaluate(rollout.obs, rollout.actions)
        critic_sa = self._at(out, rollout.actions)  # C(s_t[, a_t]) [T, N], with grad
        values = critic_sa.detach()
        returns = critic_targets(
            rollout.rewards, values, next_values, rollout.terminated, rollout.truncated, config
        )
        if config.critic == "value":
            weights = returns - values  # the advantage estimate Â_t
        else:
            weights = values
            if config.q_baseline:  # V(s) = Σ_a π(a|s) Q(s, a): no gradient through the baseline
                weights = weights - (dist.probs.detach() * out.detach()).sum(-1)
        weights = weights.flatten()
        if config.normalize_advantages:
            weights = normalize(weights)
        if config.discount_weighting:  # γᵗ, t counted from each episode's start in an earlier rollout
            gamma_t, _ = discount_weights(
                rollout.terminated, rollout.truncated, config.gamma, rollout.start_step, weights.dtype
            )
            weights = weights * gamma_t.flatten()

        log_prob = dist.log_prob(rollout.actions).flatten()
        policy_loss, _ = score_function_loss(log_prob, weights)
        critic_loss, _ = value_loss(critic_sa.flatten(), returns.flatten())
        entropy = dist.entropy().mean()
        prior_loss, prior_kl = self.prior.penalty(rollout.obs, dist)  # every step of the rollout is valid
        loss = policy_loss + prior_loss + config.vf_coef * critic_loss - config.ent_coef * entropy
        info = {
            "loss/policy": policy_loss.detach(),
            "loss/value": critic_loss.detach(),
            "stats/entropy": entropy.detach(),
            "stats/explained_variance": explained_variance(values.flatten(), returns.flatten()),
            "stats/advantage_mean": weights.mean(),
        }
        if self.prior.prior is not None:
            info["stats/prior_kl"] = prior_kl
        return loss, info

    def iteration(self, index: int) -> IterationResult:
        config = self.config
        self.prior.check_ready()
        rollout = self.collector.collect(self.policy, config.num_steps)
        loss, metrics = self.loss(rollout)
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norms = {
            name: clip_and_step(self.optimizers[name], params, config.max_grad_norm)
            for name, params in self.param_groups.items()
        }
        metrics["stats/grad_norm"] = grad_norms.get("model", grad_norms.get("policy"))
        if not self.shared:
            metrics["stats/value_grad_norm"] = grad_norms["critic"]
        # after the update: acting and the gradient used the same statistics
        update_normalizers(rollout.obs.flatten(0, 1), self.policy, None if self.shared else self.critic)
        return IterationResult(metrics, rollout.episode_returns, rollout.episode_lengths)

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "collector": self.collector.state_dict(),
        }
        if self.prior.prior is not None:
            state["prior"] = self.prior.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.prior.load_state_dict(state.get("prior"))
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        if "collector" in state:  # where the episodes stand (restored exactly when the envs are too)
            self.collector.load_state_dict(state["collector"])

    def on_resume(self, iteration: int) -> None:
        # Gymnasium env state cannot be saved without pickle: resumed runs start new episodes.
        self.collector.restart(derive_seed(self.seed, "resume", iteration))
