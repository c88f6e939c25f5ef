"""Batched episodes of a known tabular MDP under a tabular policy, as time-major [H, B] tensors.

Used where many independent episodes are needed fast (the gradient lab draws hundreds of thousands): B
episodes step together for at most H steps. An episode ends when it enters a terminal state (`terminated`)
or after H steps (`truncated` — for a finite-horizon objective the continuation is worth 0). Rows after an
episode's end are padding: `mask` is False there and their rewards are 0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from pgrad.envs.tabular import TabularMDP


class TabularEpisodes(NamedTuple):
    states: Tensor  # [H, B] int64 s_t
    actions: Tensor  # [H, B] int64 a_t
    rewards: Tensor  # [H, B] r_t (0 on padding)
    terminated: Tensor  # [H, B] bool: s_{t+1} is terminal
    truncated: Tensor  # [H, B] bool: step H−1 of an episode that has not terminated
    next_states: Tensor  # [H, B] int64 s_{t+1}
    mask: Tensor  # [H, B] bool: the step belongs to an episode


def sample_episodes(
    mdp: TabularMDP,
    probs: Tensor,
    num_episodes: int,
    horizon: int,
    generator: torch.Generator | None = None,
) -> TabularEpisodes:
    """Draw `num_episodes` episodes of at most `horizon` steps with the policy table `probs` [S, A] (or a
    time-dependent [H, S, A]); rewards are the expected rewards R[s, a] (the randomness is in the actions
    and transitions, which is all a score-function estimator sees of a tabular MDP)."""
    H, B = int(horizon), int(num_episodes)
    S = mdp.num_states if hasattr(mdp, "num_states") else mdp.P.shape[0]
    terminal = mdp.terminal if mdp.terminal is not None else torch.zeros(S, dtype=torch.bool)
    pi = probs.expand(H, *probs.shape[-2:]) if probs.ndim == 2 else probs
    state = torch.multinomial(mdp.rho.expand(B, S), 1, generator=generator).squeeze(1)
    alive = torch.ones(B, dtype=torch.bool)
    out = {k: [] for k in TabularEpisodes._fields}
    for t in range(H):
        action = torch.multinomial(pi[t][state], 1, generator=generator).squeeze(1)
        next_state = torch.multinomial(mdp.P[state, action], 1, generator=generator).squeeze(1)
        ends = terminal[next_state] & alive
        out["states"].append(state)
        out["actions"].append(action)
        out["rewards"].append(torch.where(alive, mdp.R[state, action], 0.0))
        out["terminated"].append(ends)
        out["truncated"].append(alive & ~ends if t == H - 1 else torch.zeros(B, dtype=torch.bool))
        out["next_states"].append(next_state)
        out["mask"].append(alive.clone())
        # Padding rows after an end are one-step "episodes" of their own, so no recursion crosses them.
        if t < H - 1:
            out["terminated"][-1] = out["terminated"][-1] | ~alive
        alive = alive & ~ends
        state = next_state
    return TabularEpisodes(**{k: torch.stack(v) for k, v in out.items()})
