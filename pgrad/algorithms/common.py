"""Plumbing every algorithm shares, so that each algorithm file shows only what is specific to its estimator.

- `NetworkConfig` and `make_policy` / `make_value`: the network fields of every Config and the networks they
  describe;
- `clip_and_step`, `fit_value`, `anneal_lr`: one gradient step with a global-norm clip, regression of a value
  network on fixed targets, and the one learning-rate schedule convention (`group["lr"] =
  group["initial_lr"] · fraction`, fraction = share of the step budget left);
- `gae_batch`: V(s), V(s'), GAE(λ) advantages and λ-returns of a fixed-length rollout;
- `policy_from_run`: a trainable copy of another run's policy (imitative priors, references, behaviour);
- config checks that give one-line errors naming the option.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from gymnasium import spaces
from torch import Tensor, nn

from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.estimators import gae, value_loss
from pgrad.policies.networks import Policy, ValueNetwork
from pgrad.run.evaluate import load_policy
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
