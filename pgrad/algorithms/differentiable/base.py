"""What the differentiable-simulator algorithms share: a differentiable rollout window through the env.

`rollout(envs, act, steps)` starts from the env's current batched state (carried over from the previous
window as a constant: gradients never cross a window boundary — truncated BPTT), steps every sub-env
`steps` times through `DiffVecEnv.advance` with `act(obs)` and keeps everything the losses need:

    rewards [T, N]      r_t(θ), differentiable through the actions and the states
    final_obs [T, N, D] observation of the true next state s_{t+1} (the final state where an episode ended),
                        differentiable (a critic bootstrap V(s_{t+1}) depends on θ through it)
    obs [T, N, D]       the observations acted on (detached: the critic's regression inputs)
    terminated, truncated [T, N]
    log_probs [T, N]    log πθ(a_t|s_t) of the actions taken, differentiable, when `act` returns them (SAPO)
    contact, cut [T, N] with `contact_threshold` on an env that reports contact forces (AHAC): the peak
                        contact force of each step, and where it exceeded the threshold (see below)

Where an episode ends, the env restarts that row from a fresh start state (no gradient); the window's loss
cuts its return there (`pgrad.estimators.bptt_loss`). The window's last state goes back, detached, into the
env.

Stiff contact (`contact_threshold`): where a step's contact force (`diff_env.contact_force(state, action)`,
the peak spring force inside the step) exceeds the threshold, the gradient is stopped at that step: its next
state — the one the window continues from and the one a bootstrap would read — is detached for that row, so
no later reward or value sends gradient back through the stiff step. The step is flagged in `cut`; the loss
closes that row's return there as at a time-limit end (with a bootstrap that is now a constant).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError
from pgrad.policies.critics import ValueEnsemble


@dataclass
class Window:
    """One differentiable rollout window, time-major (see the module docstring)."""

    obs: Tensor
    rewards: Tensor
    final_obs: Tensor
    terminated: Tensor
    truncated: Tensor
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    episode_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    log_probs: Tensor | None = None
    contact: Tensor | None = None
    cut: Tensor | None = None

    @property
    def segment_ends(self) -> Tensor:
        """Where the actor's return is closed with a bootstrap: time-limit ends and stiff-contact cuts."""
        return self.truncated if self.cut is None else self.truncated | (self.cut & ~self.terminated)


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Evaluate `module` as a fixed function: gradients flow through its inputs, none reach its weights."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def require_differentiable(envs: VecEnv, algorithm: str) -> Any:
    """The env's differentiable model, or a one-line error saying how to get one."""
    if not hasattr(envs, "advance") or not hasattr(envs, "diff_env"):
        raise ConfigError(
            f"{algorithm} backpropagates through the simulator: it needs a differentiable env, e.g. "
            "--env pgrad/DiffPendulum-v0, pgrad/CartPoleSwingUp-v0, pgrad/DiffLQR-v0 or pgrad/ContactToy-v0 "
            f"(env '{envs.label}' is not one)"
        )
    return envs.diff_env


def rollout(
    envs: Any,
    act: Callable[[Tensor], Tensor | tuple[Tensor, Tensor]],
    steps: int,
    seed: int,
    contact_threshold: float | None = None,
) -> Window:
    """A differentiable window of `steps` steps from the env's current state (see the module docstring).

    `act(obs)` returns the actions, or (actions, their log-probabilities) to keep those in the window.
    """
    if not envs._started:
        envs.reset(seed=seed)
    env = envs.diff_env
    measure_contact = contact_threshold is not None and hasattr(env, "contact_force")
    state = envs.state.detach()  # the carried state is a constant: truncated BPTT
    obs, rewards, finals, terms, truncs, log_probs, contacts, cuts = [], [], [], [], [], [], [], []
    returns, lengths = [], []
    for _ in range(steps):
        o = env.observe(state)
        action = act(o)
        if isinstance(action, tuple):
            action, log_prob = action
            log_probs.append(log_prob)
        action = action.to(state.dtype)
        if measure_contact:
            with torch.no_grad():
                force = env.contact_force(state.detach(), action.detach())
            stiff = force > contact_threshold
            contacts.append(force)
            cuts.append(stiff)
        state, reward, terminated, truncated, true_next, stats = envs.advance(state, action)
        if measure_contact and bool(stiff.any()):  # no gradient back through a stiff step
            state = torch.where(stiff[:, None], state.detach(), state)
            true_next = torch.where(stiff[:, None], true_next.detach(), true_next)
        obs.append(o.detach())
        rewards.append(reward)
        finals.append(env.observe(true_next))
        terms.append(terminated)
        truncs.append(truncated)
        if len(stats.env_index):
            returns.append(stats.returns)
            lengths.append(stats.lengths)
    envs.state = state.detach()
    return Window(
        torch.stack(obs),
        torch.stack(rewards),
        torch.stack(finals),
        torch.stack(terms),
        torch.stack(truncs),
        np.concatenate(returns) if returns else np.zeros(0),
        np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64),
        torch.stack(log_probs) if log_probs else None,
        torch.stack(contacts) if contacts else None,
        torch.stack(cuts) if cuts else None,
    )


def gradient_spread(
    group_loss: Callable[[Tensor], Tensor], params: list[Tensor], n: int, groups: int = 8
) -> Tensor:
    """Spread of the actor gradient across envs: the trace of the per-env gradient covariance, estimated from
    the gradients of `groups` disjoint groups of envs (`group_loss(columns)` is the loss of those columns).

    A group of m envs averages m per-env gradients, so Var(group gradient) = Var(env gradient) / m. Costs
    `groups` backward passes through the window's graph, so algorithms compute it only on demand.
    """
    groups = max(2, min(groups, n))
    flat = []
    for columns in torch.arange(n).chunk(groups):
        grads = torch.autograd.grad(group_loss(columns), params, retain_graph=True, allow_unused=True)
        flat.append(
            torch.cat(
                [
                    (torch.zeros_like(p) if g is None else g).reshape(-1)
                    for g, p in zip(grads, params, strict=True)
                ]
            )
        )
    return torch.stack(flat).var(dim=0, correction=1).sum() * (n / groups)


class TwinCritics:
    """The critics of AHAC and SAPO (mixed in before SHAC): `config.critics` value networks and no target
    critic; the TD(λ) targets use their minimum."""

    def make_critics(self) -> tuple[ValueEnsemble, None]:
        config = self.config
        critics = ValueEnsemble(self.envs.obs_dim, config.hidden_sizes, config.activation, config.critics)
        return critics.to(self.device), None

    def target_values(self, obs: Tensor) -> Tensor:
        return self.critic(obs).min(dim=0).values

    def after_critic_fit(self) -> None:
        pass  # no target critic
