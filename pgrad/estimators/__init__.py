"""Return and advantage estimators: pure tensor functions over time-major [T, N] rollouts."""

from pgrad.estimators.advantages import (
    episode_index,
    gae,
    group_relative_advantages,
    leave_one_out_advantages,
    mean_baseline,
    normalize,
    optimal_baseline,
    per_step_mean_baseline,
)
from pgrad.estimators.returns import n_step_return, reward_to_go, td_lambda_return, total_return

__all__ = [
    "episode_index",
    "gae",
    "group_relative_advantages",
    "leave_one_out_advantages",
    "mean_baseline",
    "n_step_return",
    "normalize",
    "optimal_baseline",
    "per_step_mean_baseline",
    "reward_to_go",
    "td_lambda_return",
    "total_return",
]
