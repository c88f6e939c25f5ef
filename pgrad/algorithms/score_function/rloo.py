"""RLOO: REINFORCE with a leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics").

Estimator: no critic. A group of k = `group_size` whole episodes from the same start state (sub-envs reset
with the same seed); each episode's outcome R_i (its return, undiscounted by default) is baselined by the
mean outcome of the other k − 1 episodes, which do not depend on episode i's actions (so no bias):

    A_i = R_i − 1/(k−1) Σ_{j≠i} R_j = k/(k−1) (R_i − R̄)

    ∇θJ ≈ 1/k Σ_i A_i Σ_t ∇θ log πθ(a_t|s_t)        (the episode is one action: log π(o_i) = Σ_t log π)

As in "Back to Basics" the episode's log-probability is summed over its steps (no 1/|o_i|), here divided by a
constant L (the env's time limit, or `length_constant`) to keep the scale of the loss fixed. The update is the
one GRPO uses (`grpo.py`): `update_epochs` epochs of minibatches on the clipped ratio to the behaviour policy,
per-step k3 KL penalty β·(π_ref/πθ − log(π_ref/πθ) − 1) to a frozen reference policy:

    J(θ) = 1/(k·L) Σ_i Σ_t [ min(ρ_it A_i, clip(ρ_it, 1−ε, 1+ε) A_i) − β D_it ]

With one epoch, one minibatch and β = 0 this is exactly one RLOO (REINFORCE) step. The 1/k mean runs over all
num_groups·k episodes of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from pgrad.algorithms.score_function.grpo import GRPO, GroupConfig
from pgrad.estimators import leave_one_out_advantages


@dataclass
class Config(GroupConfig):
    """RLOO options (`pgrad train rloo --help`)."""


class RLOO(GRPO):
    name = "rloo"
    family = "score function"
    summary = "RLOO: REINFORCE over whole episodes with the leave-one-out group mean as baseline"
    Config = Config
    workers = "rollouts"  # --workers K: Ray actors sample for it (pgrad.run.workers)

    def advantages(self, outcomes_GK: Tensor) -> Tensor:
        return leave_one_out_advantages(outcomes_GK)

    def length_normalized(self) -> bool:
        return False
