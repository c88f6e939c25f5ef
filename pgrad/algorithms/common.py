"""Plumbing every algorithm shares, so that each algorithm file shows only what is specific to its estimator.

- `NetworkConfig` and `make_policy` / `make_value`: the network fields of every Config and the networks they
  describe;
- `clip_and_step`, `fit_value`, `anneal_lr`: one gradient step with a global-norm clip, regression of a value
  network on fixed targets, and the one learning-rate schedule convention (`group["lr"] =
  group["initial_lr"] · fraction`, fraction = share of the step budget left);
- `gae_batch`: V(s), V(s'), GAE(λ) advantages and λ-returns of a fixed-length rollout;
- `policy_from_run`: a trainable copy of another run's policy (imitative priors, references, behaviour);
- `PriorConfig`, `ImitativePrior`, `policy_kl`: --init-from and the β·KL(πθ ‖ π_prior) penalty shared by the
  score-function algorithms;
- config checks that give one-line errors naming the option.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import gae, value_loss
from pgrad.policies.distributions import TanhGaussian
from pgrad.policies.networks import Policy, ValueNetwork
from pgrad.run.checkpoint import load_checkpoint
from pgrad.run.evaluate import Agent, load_policy, resolve_checkpoint
from pgrad.types import Rollout

# -- networks ----------------------------------------------------------------------------------------------


@dataclass
class NetworkConfig:
    """Network fields every algorithm's Config shares (its own fields follow); read by `make_policy`."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy and value MLPs."""
    activation: Literal["tanh", "relu", "elu", "silu"] = "tanh"
    """Hidden activation."""
    policy: Literal["auto", "categorical", "diag_gaussian", "tanh_gaussian", "discretised"] = "auto"
    """Action distribution (auto: categorical for Discrete, diagonal Gaussian for Box)."""
    bins: int = 11
    """Bins per action dimension for the discretised policy."""


def head_options(envs: VecEnv, config: Any) -> dict[str, Any]:
    """Policy-head keyword arguments from a config: bins (discretised heads), init_std (Gaussian heads)."""
    kind = getattr(config, "policy", "auto")
    gaussian = kind in ("diag_gaussian", "tanh_gaussian") or (
        kind == "auto" and isinstance(envs.single_action_space, spaces.Box)
    )
    options: dict[str, Any] = {}
    if kind == "discretised":
        options["bins"] = config.bins
    if gaussian and hasattr(config, "init_std"):
        options["init_std"] = config.init_std
    return options


def make_policy(envs: VecEnv, config: Any) -> Policy:
    """The policy an algorithm's config asks for, from its shared fields: hidden_sizes, activation, policy
    (the head kind), bins (discretised heads), init_std (Gaussian heads) and normalize_obs, where present."""
    return Policy(
        envs.obs_dim,
        envs.single_action_space,
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        head=getattr(config, "policy", "auto"),
        normalize_obs=getattr(config, "normalize_obs", False),
        **head_options(envs, config),
    )


def make_value(envs: VecEnv, config: Any) -> ValueNetwork:
    """A state-value network shaped like the policy's trunk (hidden_sizes, activation, normalize_obs)."""
    return ValueNetwork(
        envs.obs_dim,
        config.hidden_sizes,
        config.activation,
        normalize_obs=getattr(config, "normalize_obs", False),
    )


def policy_from_run(run_dir: str, envs: VecEnv, option: str) -> Policy:
    """A fresh, trainable copy of a pgrad run's policy, checked against the env's spaces (`option` names the
    config field that asked for it, for the error message)."""
    agent = load_policy(run_dir)
    if agent.policy.obs_dim != envs.obs_dim or agent.action_space != envs.single_action_space:
        raise ConfigError(
            f"{option} '{run_dir}': its policy acts on obs_dim {agent.policy.obs_dim} / "
            f"{agent.action_space}, env '{envs.label}' has {envs.obs_dim} / {envs.single_action_space}"
        )
    policy = copy.deepcopy(agent.policy).train()
    policy.requires_grad_(True)
    return policy


def update_normalizers(obs: Tensor, *modules: nn.Module | None) -> None:
    """Merge `obs` into the running observation statistics of each module that has a normaliser. Algorithms
    call it after their update, so acting and the gradient used the same statistics."""
    for module in modules:
        normalizer = getattr(module, "normalizer", None) if module is not None else None
        if normalizer is not None:
            normalizer.update(obs)


# -- steps -------------------------------------------------------------------------------------------------


def clip_and_step(optimizer: torch.optim.Optimizer, params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Clip the gradients of `params` to global norm `max_norm` (0: no clip) and take one optimiser step.

    Returns the global gradient norm before clipping, as a 0-d tensor (no device sync)."""
    params = list(params)
    if max_norm > 0:
        grad_norm = nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    else:  # the norm only: scaling every gradient by min(1, ∞) would change nothing and cost a pass
        grads = [p.grad for p in params if p.grad is not None]
        grad_norm = nn.utils.get_total_norm(grads, foreach=True) if grads else torch.zeros(())
    optimizer.step()
    return grad_norm


def fit_value(
    value: nn.Module,
    optimizer: torch.optim.Optimizer,
    obs: Tensor,
    targets: Tensor,
    epochs: int,
    minibatches: int | None = None,
) -> Tensor:
    """Regress V(obs) on fixed `targets` by minimising ½ mean (V − R)² for `epochs` passes.

    `minibatches` None: one full-batch step per pass, in a fixed order; otherwise each pass shuffles the batch
    and steps on chunks of max(1, B // minibatches) rows (the last chunk may be smaller). A critic ensemble
    (output [E, B]) regresses every member on the same targets: ½ mean over members and rows.
    Returns the mean loss over all steps (a 0-d tensor; 0 when epochs is 0).
    """
    size = len(obs)
    total = torch.zeros((), device=obs.device)
    count = 0
    for _ in range(epochs):
        if minibatches is None:
            chunks = [None]
        else:
            order = torch.randperm(size, device=obs.device)
            step = max(1, size // minibatches)
            chunks = [order[start : start + step] for start in range(0, size, step)]
        for rows in chunks:
            x, y = (obs, targets) if rows is None else (obs[rows], targets[rows])
            predicted = value(x)
            loss, _ = value_loss(predicted.flatten(), y.expand_as(predicted).flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.detach(), count + 1
    return total / max(count, 1)


class LinearDecay:
    """The factor of every linear annealing schedule: 1 at the start of the run, → 0 at the step budget.

        fraction(step) = f₀ · max(0, 1 − (step − s₀) / (T − s₀))        (f₀ = 1, s₀ = 0 for a new run)

    `extend(step, T')` (a resumed run given a new budget) continues from the current value f(step) down to 0
    at T', so the schedule never jumps. Its state is saved in checkpoints.
    """

    def __init__(self, total_steps: int):
        self.start_step, self.start_fraction, self.end_step = 0, 1.0, int(total_steps)

    def fraction(self, step: int) -> float:
        left = 1.0 - (step - self.start_step) / max(self.end_step - self.start_step, 1)
        return self.start_fraction * max(0.0, left)

    def extend(self, step: int, total_steps: int) -> None:
        self.start_fraction, self.start_step, self.end_step = self.fraction(step), step, int(total_steps)

    def state_dict(self) -> dict[str, float]:
        return {
            "start_step": self.start_step,
            "start_fraction": self.start_fraction,
            "end_step": self.end_step,
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.start_step = int(state["start_step"])
        self.start_fraction = float(state["start_fraction"])
        self.end_step = int(state["end_step"])


def extension_note(schedule: LinearDecay, step: int, what: str) -> str:
    """What extending a run does to an annealed `what` (for `Algorithm.extend_budget`)."""
    fraction = schedule.fraction(step)
    if fraction == 0.0:
        return f"{what} had annealed to 0 and stays there: the extra steps will not change the policy"
    return f"{what} continue from {fraction:.3g}× their initial value down to 0 at the new budget"


def anneal_lr(optimizer: torch.optim.Optimizer, fraction: float) -> float:
    """Set every param group's lr to its `initial_lr` (see `pgrad.optim.make_optimizer`) times `fraction`;
    returns the first group's new lr."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * fraction
    return optimizer.param_groups[0]["lr"]


def gae_batch(
    value: nn.Module, rollout: Rollout, gamma: float, lam: float, rewards: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(V(s_t), GAE(λ) advantages, λ-returns), each [T, N], of a fixed-length rollout.

    V(s_{t+1}) is taken at the true next state (`rollout.next_obs`: the final observation where an episode
    ended), so a time-limit end bootstraps and a termination does not. `rewards` overrides the rollout's (e.g.
    scaled rewards)."""
    with torch.no_grad():
        values = value(rollout.obs)
        next_values = value(rollout.next_obs)
    advantages, returns = gae(
        rollout.rewards if rewards is None else rewards,
        values,
        next_values,
        rollout.terminated,
        rollout.truncated,
        gamma,
        lam,
    )
    return values, advantages, returns


def mean_metrics(sums: dict[str, Tensor | float], count: int) -> dict[str, float]:
    """Averages of summed per-step diagnostics, converted to Python floats once."""
    return {k: float(v) / max(count, 1) for k, v in sums.items()}


def accumulate(sums: dict[str, Any], info: dict[str, Any]) -> None:
    """Add each diagnostic of `info` into `sums`, in float64; tensors stay tensors (no sync per step)."""
    for k, v in info.items():
        v = v.detach().double() if isinstance(v, Tensor) else float(v)
        sums[k] = sums[k] + v if k in sums else v


# -- config checks -----------------------------------------------------------------------------------------


def check_at_least(config: Any, low: int, *names: str) -> None:
    """Each named option must be >= low."""
    for name in names:
        if getattr(config, name) < low:
            raise ConfigError(f"{name} must be >= {low}, got {getattr(config, name)}")


def check_unit_interval(config: Any, *names: str) -> None:
    """Each named option must lie in [0, 1] (discounts, λ)."""
    for name in names:
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {getattr(config, name)}")


def check_positive(config: Any, *names: str) -> None:
    """Each named option must be > 0."""
    for name in names:
        if not getattr(config, name) > 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(config, name)}")


def check_non_negative(config: Any, *names: str) -> None:
    """Each named option must be >= 0 (coefficients, clip norms where 0 means off)."""
    for name in names:
        if not getattr(config, name) >= 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(config, name)}")


def check_multiple(config: Any, name: str, of: str, why: str = "") -> None:
    """Option `name` must be a multiple of option `of`."""
    value, base = getattr(config, name), getattr(config, of)
    if value % base:
        raise ConfigError(f"{name} ({value}) must be a multiple of {of} ({base}){why}")


def check_run_option(config: Any, name: str, allowed: tuple[str, ...]) -> None:
    """Option `name` is one of `allowed` or 'run:DIR' (the policy of a pgrad run)."""
    value = getattr(config, name)
    if value not in allowed and not (value.startswith("run:") and value[4:]):
        choices = " or ".join(f"'{a}'" for a in allowed)
        raise ConfigError(f"{name} must be {choices} or 'run:DIR', got '{value}'")


class TensorState:
    """Named tensor attributes of an object (SAC's log α, DDPG's OU noise) as a checkpointable part."""

    def __init__(self, owner: Any, *names: str):
        self.owner, self.names = owner, names

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self.owner, name).detach().clone() for name in self.names}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.names:
            current = getattr(self.owner, name)
            if isinstance(current, torch.nn.Parameter):
                with torch.no_grad():
                    current.copy_(state[name])
            else:
                setattr(self.owner, name, state[name].to(current.device))


# -- imitative prior ---------------------------------------------------------------------------------------


@dataclass
class PriorConfig(NetworkConfig):
    """`NetworkConfig` plus the imitative-prior fields every score-function Config shares (docs/imitation.md).
    They change what is learned, so they live in the algorithm's Config (recorded in run.json)."""

    init_from: str | None = None
    """Start the policy (and the value network, where the run has one of the same shapes) from this pgrad
    run's latest checkpoint, e.g. a `pgrad bc` run; the network options must describe the same policy."""
    prior_kl: float = 0.0
    """β of the imitative-prior penalty β·mean_s KL(πθ(·|s) ‖ π_prior(·|s)) added to the policy loss
    (0: off)."""
    prior_from: str | None = None
    """Run whose policy is the frozen prior π_prior of --prior-kl (default: the --init-from run)."""


def policy_kl(p: Distribution, q: Distribution) -> Tensor:
    """Analytic KL(p ‖ q) per state, shape [B], of two action distributions of one head kind.

    Categorical: Σ_a p(a) (log p(a) − log q(a)); diagonal Gaussian: Σ_d log(σ_q/σ_p) + (σ_p² + (μ_p − μ_q)²) /
    (2σ_q²) − ½; discretised: the sum of its per-dimension categorical KLs; tanh-Gaussian: the KL of the
    Gaussians before the squash (a = c + s·tanh(u) is a bijection, and KL is invariant under one).
    """
    if isinstance(p, TanhGaussian) and isinstance(q, TanhGaussian):
        p, q = Independent(Normal(p.mu, p.sigma), 1), Independent(Normal(q.mu, q.sigma), 1)
    try:
        return kl_divergence(p, q)
    except NotImplementedError:
        raise ConfigError(
            f"prior_kl: no analytic KL between {type(p).__name__} and {type(q).__name__} policies"
        ) from None


def _weights_match(module: nn.Module, weights: dict[str, Tensor]) -> bool:
    """Whether `weights` has exactly `module`'s state_dict keys and shapes."""
    own = module.state_dict()
    return set(own) == set(weights) and all(own[k].shape == weights[k].shape for k in own)


def _value_weights(algorithm_state: Any) -> dict[str, Tensor] | None:
    """The value network's weights in a checkpoint's /algorithm state: `value` (REINFORCE, VPG, NPG, IS-PG)
    or the `value.` entries of `model` (PPO); None when there is neither."""
    if not isinstance(algorithm_state, dict):
        return None
    if isinstance(algorithm_state.get("value"), dict):
        return algorithm_state["value"]
    model = algorithm_state.get("model")
    if isinstance(model, dict):
        found = {k[len("value.") :]: v for k, v in model.items() if k.startswith("value.")}
        return found or None
    return None


class ImitativePrior:
    """`--init-from`, `--prior-kl` and `--prior-from` of a score-function algorithm.

    `start(policy, value)` copies the init-from run's policy (and value network, where present and of the
    same shapes) into the freshly built networks and sets up the frozen prior π_prior (the init-from
    policy itself unless `prior_from` names another run). `penalty(obs, dist)` is β·mean_s KL(πθ ‖ π_prior),
    the term every algorithm adds to its policy loss. The prior's spec and weights are saved in the
    algorithm's checkpoints (`state_dict`), so a resumed run does not need the prior's folder: where a folder
    is missing at construction, the networks keep their fresh weights until `load_state_dict` restores them,
    and `check_ready` (called by each iteration) refuses to train a fresh run without them.
    """

    def __init__(self, config: Any, envs: VecEnv, device: torch.device, algorithm: str):
        self.beta = float(getattr(config, "prior_kl", 0.0))
        self.init_from: str | None = getattr(config, "init_from", None)
        self.prior_from: str | None = getattr(config, "prior_from", None)
        self.envs, self.device, self.algorithm = envs, device, algorithm
        if not self.beta >= 0:
            raise ConfigError(f"prior_kl must be >= 0, got {self.beta}")
        if self.beta > 0 and self.init_from is None and self.prior_from is None:
            raise ConfigError("prior_kl > 0 needs a prior: give --init-from DIR or --prior-from DIR")
        if self.prior_from is not None and self.beta == 0:
            raise ConfigError(f"prior_from '{self.prior_from}' is only used with --prior-kl β > 0")
        self.prior: Policy | None = None
        self.missing: list[str] = []  # folders not found: to be restored from a checkpoint

    @property
    def source(self) -> str | None:
        """The run folder of the prior π_prior (None: no KL term)."""
        return (self.prior_from or self.init_from) if self.beta > 0 else None

    def _load(self, run_dir: str, option: str) -> tuple[dict[str, Any], Agent] | None:
        if not Path(run_dir).exists():
            self.missing.append(f"{option} '{run_dir}'")
            return None
        _, folder = resolve_checkpoint(run_dir)
        state, _ = load_checkpoint(folder)
        agent = load_policy(folder)
        if agent.policy.obs_dim != self.envs.obs_dim or agent.action_space != self.envs.single_action_space:
            raise ConfigError(
                f"{option} '{run_dir}': its policy acts on obs_dim {agent.policy.obs_dim} / "
                f"{agent.action_space}, env '{self.envs.label}' has {self.envs.obs_dim} / "
                f"{self.envs.single_action_space}"
            )
        return state, agent

    def start(self, policy: Policy, value: nn.Module | None = None) -> None:
        """Initialise `policy` (and `value`) from the init-from run and build the frozen prior."""
        loaded = self._load(self.init_from, "init_from") if self.init_from is not None else None
        if loaded is not None:
            state, agent = loaded
            weights = agent.policy.state_dict()
            if (
                not _weights_match(policy, weights)
                or agent.policy.spec()["head"]["kind"] != policy.spec()["head"]["kind"]
            ):
                theirs, ours = agent.policy.spec(), policy.spec()
                raise ConfigError(
                    f"init_from '{self.init_from}': its policy network (hidden_sizes "
                    f"{tuple(theirs['hidden_sizes'])}, {theirs['head']['kind']} head, normalize_obs "
                    f"{theirs['normalize_obs']}) differs from this {self.algorithm} run's (hidden_sizes "
                    f"{tuple(ours['hidden_sizes'])}, {ours['head']['kind']} head, normalize_obs "
                    f"{ours['normalize_obs']}): give the same network options"
                )
            policy.load_state_dict(weights)
            theirs_value = _value_weights(state.get("algorithm"))
            if value is not None and theirs_value is not None and _weights_match(value, theirs_value):
                value.load_state_dict(theirs_value)
        if self.source is None:
            return
        if self.prior_from is None or self.prior_from == self.init_from:
            # the init-from policy (a placeholder when its folder is missing: a resume restores it)
            self.prior = copy.deepcopy(policy)
        else:
            loaded = self._load(self.prior_from, "prior_from")
            self.prior = copy.deepcopy(policy) if loaded is None else loaded[1].policy.to(self.device)
            kind, own = self.prior.spec()["head"]["kind"], policy.spec()["head"]["kind"]
            if kind != own:
                where = f"init_from '{self.init_from}'" if self.init_from else f"this {self.algorithm} run"
                raise ConfigError(
                    f"prior_from '{self.prior_from}' has a {kind} policy, {where} a {own} one: "
                    "their KL is not defined"
                )
        self.prior.requires_grad_(False).eval()

    def check_ready(self) -> None:
        """Refuse to train while a prior folder was missing and no checkpoint restored what it held."""
        if self.missing:
            raise ConfigError(
                f"{self.algorithm}: {', '.join(self.missing)}: no such run folder (and no checkpoint of this "
                "run holds its weights)"
            )

    def penalty(self, obs: Tensor, dist: Distribution, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(β·KL term, mean KL) over the states `obs` (`mask`: which rows count), πθ = `dist`, π_prior frozen.

            penalty = β · Σ_s m_s KL(πθ(·|s) ‖ π_prior(·|s)) / Σ_s m_s

        Its gradient, β · mean_s Σ_a πθ(a|s) (log πθ(a|s) − log π_prior(a|s) + 1) ∇θ log πθ(a|s) for a
        discrete policy, flows through πθ only."""
        if self.prior is None:
            zero = torch.zeros((), device=obs.device)
            return zero, zero
        with torch.no_grad():
            prior_dist = self.prior.distribution(obs)
        kl = policy_kl(dist, prior_dist)
        if mask is None:
            mean = kl.mean()
        else:
            mask = mask.to(kl.dtype)
            mean = (kl * mask).sum() / mask.sum().clamp(min=1.0)
        return self.beta * mean, mean.detach()

    def state_dict(self) -> dict[str, Any]:
        """The prior's spec and weights (empty without a KL term). Stored under the algorithm's `prior`."""
        if self.prior is None:
            return {}
        return {"spec": self.prior.spec(), "weights": self.prior.state_dict()}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore the prior saved by `state_dict` (rebuilt from its spec: its folder is not needed)."""
        self.missing = []
        if self.prior is None or not state:
            return
        with torch.random.fork_rng(devices=[]):
            prior = Policy.from_spec(state["spec"])
        prior.load_state_dict(state["weights"])
        self.prior = prior.to(self.device).requires_grad_(False).eval()
