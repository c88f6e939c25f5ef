"""Return estimators: the target G_t that multiplies ∇ log π(a_t|s_t) (or that a critic regresses on).

All functions are pure: tensors in, tensors out, no state. Inputs are detached, so an output never requires
grad. Shapes are time-major [T, N] (T steps of N parallel envs; any trailing batch shape [T, *B] works too),
the output has the shape, dtype and device of `rewards`.

Episode-end semantics at step t (per env column):

* ``terminated[t]``: s_{t+1} is a true terminal state, its value is 0, nothing is bootstrapped.
* ``truncated[t]``: the episode was cut (time limit, or the end of the collected rollout). The recursion stops
  there (step t+1 belongs to the next episode); where a function takes ``next_values``, the cut-off state is
  worth ``next_values[t]`` = V(final observation).
* both set: termination wins. ``done = terminated | truncated``.
* ``next_values[t]`` is V(s_{t+1}) of the TRUE next state (the final observation on an episode end, never the
  reset observation). It is never read on a terminated step (it may hold anything there, even NaN).
* a last row that is not done is treated as truncated by the end of the rollout: functions with
  ``next_values`` bootstrap from ``next_values[T-1]``; the Monte-Carlo ones (no ``next_values``) stop there
  without a bootstrap (the caller guarantees the last row is done for any step it uses).

Flags are bool tensors or 0/1 float tensors (nonzero counts as set).
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from pgrad.errors import ConfigError
from pgrad.estimators import _checks as _c

__all__ = ["n_step_return", "reward_to_go", "td_lambda_return", "total_return"]


# ---------------------------------------------------------------------------------------------------------
# episode structure (shared with advantages.py, importance.py and pathwise.py)


def _episode_flags(
    terminated: object, truncated: object, ref: Tensor, ref_name: str = "rewards"
) -> tuple[Tensor, Tensor]:
    """(terminated, done) as bool tensors shaped like `ref`."""
    term = _c.flags("terminated", terminated, ref, ref_name)
    trunc = _c.flags("truncated", truncated, ref, ref_name)
    return term, term | trunc


def _episode_starts(done: Tensor) -> Tensor:
    """start[t] = True where step t is the first step of an episode (t = 0, or done[t-1])."""
    start = torch.ones_like(done)
    start[1:] = done[:-1]
    return start


def _first_step_index(done: Tensor) -> Tensor:
    """For every step, the row (int64) of its episode's first step (0 for an episode open at row 0)."""
    T = done.shape[0]
    rows = torch.arange(T, device=done.device).view((T,) + (1,) * (done.ndim - 1)).expand(done.shape)
    start_rows = torch.where(_episode_starts(done), rows, torch.zeros_like(rows))
    return torch.cummax(start_rows, dim=0).values


# ---------------------------------------------------------------------------------------------------------
# returns


def total_return(rewards: Tensor, terminated: Tensor, truncated: Tensor, gamma: float) -> Tensor:
    """Whole-episode discounted return, given to every step of the episode.

    For the episode τ that step t belongs to, starting at row s and ending at row e (done[e]):

        G(τ) = Σ_{k=0}^{e−s} γ^k r_{s+k}        (out[t] = G(τ) for every s ≤ t ≤ e)

    This is the weight of every log-prob in the naive ("REINFORCE with total return") estimator. There is no
    bootstrap: termination and truncation both end the episode. An episode already in progress at row 0 starts
    at row 0 (only its part inside the rollout counts). The caller guarantees the last row is done for any
    step it uses (a not-done last row is treated as an episode end).

    Args:
        rewards: [T, N] float rewards r_t.
        terminated, truncated: [T, N] bool (or 0/1) episode-end flags.
        gamma: discount γ ∈ [0, 1].

    Returns:
        [T, N] tensor, dtype/device of ``rewards``; constant within an episode.
    """
    rewards = _c.rewards_tensor(rewards)
    gamma = _c.unit_interval("gamma", gamma)
    _, done = _episode_flags(terminated, truncated, rewards)
    to_go = _discounted_backward(rewards, done, gamma, bootstrap=None)
    return torch.gather(to_go, 0, _first_step_index(done))


def reward_to_go(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    next_values: Tensor | None = None,
) -> Tensor:
    """Discounted reward-to-go within the episode.

    With e the last row of the episode containing step t:

        G_t = Σ_{t'=t}^{e} γ^{t'−t} r_{t'} + γ^{e−t+1} B_e      (= r_t + γ G_{t+1} inside the episode)

    where the bootstrap B_e is

    * ``next_values is None``: 0 (truncation is the end of a finite-horizon episode; a not-done last row is
      treated as an episode end, the caller guarantees it is done for any step it uses);
    * ``next_values`` given: 0 if terminated[e]; V(s_{e+1}) = next_values[e] if truncated[e] (or e = T−1 and
      the last row is not done). So at a truncated step G_t = r_t + γ next_values[t].

    Args:
        rewards: [T, N] float rewards r_t.
        terminated, truncated: [T, N] bool (or 0/1) episode-end flags.
        gamma: discount γ ∈ [0, 1].
        next_values: optional [T, N] V(s_{t+1}) of the true next state (final observation at episode ends).

    Returns:
        [T, N] tensor, dtype/device of ``rewards``.
    """
    rewards = _c.rewards_tensor(rewards)
    gamma = _c.unit_interval("gamma", gamma)
    term, done = _episode_flags(terminated, truncated, rewards)
    if next_values is None:
        return _discounted_backward(rewards, done, gamma, bootstrap=None)
    next_values = _c.like("next_values", next_values, rewards, "rewards").detach()
    return _discounted_backward(rewards, done, gamma, bootstrap=(term, next_values))


def _discounted_backward(
    rewards: Tensor, done: Tensor, gamma: float, bootstrap: tuple[Tensor, Tensor] | None
) -> Tensor:
    """G_t = r_t + γ·next_t, next_t = G_{t+1} if not done_t else (bootstrap value or 0); G_T := bootstrap."""
    T = rewards.shape[0]
    out = torch.empty_like(rewards)
    if T == 0:
        return out
    zero = torch.zeros_like(rewards[0])
    if bootstrap is None:
        following = zero  # G_T: nothing after the rollout
        for t in range(T - 1, -1, -1):
            following = rewards[t] + gamma * torch.where(done[t], zero, following)
            out[t] = following
        return out
    term, next_values = bootstrap
    following = next_values[T - 1]  # a not-done last row bootstraps from V(s_T)
    for t in range(T - 1, -1, -1):
        boot = torch.where(done[t], next_values[t], following)
        following = rewards[t] + gamma * torch.where(term[t], zero, boot)
        out[t] = following
    return out


def n_step_return(
    rewards: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    n: int,
) -> Tensor:
    """n-step bootstrapped return, cut short at episode ends and at the end of the rollout.

        G_t^(n) = Σ_{k=0}^{m−1} γ^k r_{t+k} + γ^m B,     m = min(n, e − t + 1)

    where e is the last row of step t's episode (or T−1) and, with j = t + m − 1 the last step used,
    B = V(s_{j+1}) = next_values[j], except B = 0 when terminated[j]. So n = 1 gives the TD(0) target
    r_t + γ (1 − terminated_t) next_values[t], and n ≥ T gives ``reward_to_go(..., next_values=next_values)``.
    Only ``next_values`` is used (V(s_{t+n}) = next_values[t+n−1]), never a reset observation's value.

    Vectorised over T and N, with a Python loop over k < min(n, T).

    Args:
        rewards: [T, N] float rewards.
        next_values: [T, N] V(s_{t+1}) of the true next state.
        terminated, truncated: [T, N] bool (or 0/1) flags.
        gamma: discount γ ∈ [0, 1].
        n: number of steps, an int ≥ 1.

    Returns:
        [T, N] tensor, dtype/device of ``rewards``.
    """
    rewards = _c.rewards_tensor(rewards)
    next_values = _c.like("next_values", next_values, rewards, "rewards").detach()
    gamma = _c.unit_interval("gamma", gamma)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ConfigError(f"n must be an int >= 1, got {n!r}")
    term, done = _episode_flags(terminated, truncated, rewards)
    T = rewards.shape[0]
    out = torch.zeros_like(rewards)
    if T == 0:
        return out
    zero = torch.zeros_like(rewards)
    # stop[j]: a return that reaches step j must stop there (episode end or last row of the rollout)
    stop = done.clone()
    stop[T - 1] = True
    boot = torch.where(term, zero, next_values)  # value after step j when a return stops at j
    alive = torch.ones_like(done)  # alive[t]: G_t^(n) still accumulates at step t + k
    steps = min(int(n), T)
    discount = 1.0
    for k in range(steps):
        L = T - k  # rows t with t + k < T (the others stopped at an earlier k)
        a = alive[:L]
        ends = a & stop[k:] if k < steps - 1 else a  # last k: every still-alive return bootstraps
        out[:L] += torch.where(a, discount * rewards[k:], zero[:L])
        out[:L] += torch.where(ends, (discount * gamma) * boot[k:], zero[:L])
        alive[:L] = a & ~ends
        discount *= gamma
    return out


def td_lambda_return(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """TD(λ) return, by the backward recursion

        G_t^λ = r_t + γ [(1 − λ) V(s_{t+1}) + λ G_{t+1}^λ],      V(s_{t+1}) = next_values[t]

    stopped at episode ends: G_t^λ = r_t on a terminated step, G_t^λ = r_t + γ next_values[t] on a truncated
    step and on a not-done last row. Equivalently

        G_t^λ = (1−λ) Σ_{k=1}^{m−1} λ^{k−1} G_t^(k) + λ^{m−1} G_t^(m)

    with m the number of steps left in the episode (``n_step_return`` returns G_t^(k)).

    ``values`` (V(s_t)) is only checked, for signature symmetry with ``gae``: the result equals
    ``gae(...)[1]`` (advantages + values) whenever the inputs are consistent, i.e.
    values[t+1] == next_values[t] wherever step t is not done, which holds for any correctly collected
    rollout. λ = 0 gives the TD(0) target, λ = 1 gives ``reward_to_go(..., next_values=next_values)``.

    Args:
        rewards: [T, N] float rewards.
        values: [T, N] V(s_t) (unused apart from checks).
        next_values: [T, N] V(s_{t+1}) of the true next state.
        terminated, truncated: [T, N] bool (or 0/1) flags.
        gamma: discount γ ∈ [0, 1].
        lam: λ ∈ [0, 1].

    Returns:
        [T, N] tensor, dtype/device of ``rewards``.
    """
    rewards = _c.rewards_tensor(rewards)
    _c.like("values", values, rewards, "rewards").detach()
    next_values = _c.like("next_values", next_values, rewards, "rewards").detach()
    gamma = _c.unit_interval("gamma", gamma)
    lam = _c.unit_interval("lam", lam)
    term, done = _episode_flags(terminated, truncated, rewards)
    T = rewards.shape[0]
    out = torch.empty_like(rewards)
    if T == 0:
        return out
    zero = torch.zeros_like(rewards[0])
    stop = done.clone()
    stop[T - 1] = True  # a not-done last row gives r + γ V(s_T)
    following = zero
    for t in range(T - 1, -1, -1):
        mixed = (1.0 - lam) * next_values[t] + lam * following
        boot = torch.where(stop[t], next_values[t], mixed)
        following = rewards[t] + gamma * torch.where(term[t], zero, boot)
        out[t] = following
    return out
