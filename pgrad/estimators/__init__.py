"""Estimators of the policy gradient and its ingredients: pure functions, tensors in and tensors out.

returns.py        total return, reward-to-go, n-step and λ-returns
advantages.py     baselines (mean, per-step, optimal), GAE, group-relative and leave-one-out advantages,
                  episode time indices and the γᵗ weights of the discounted policy gradient
importance.py     trajectory and per-decision importance weights, truncation, ESS
losses.py         score-function / clipped / KL-penalty surrogates, KL estimators k1–k3, value loss
trust_region.py   flat parameters, Fisher-vector products, conjugate gradient, natural step, line search
pathwise.py       deterministic / reparameterised actor losses, BPTT loss with a critic bootstrap
relaxations.py    straight-through, Gumbel-Softmax, ReinMax
zeroth_order.py   finite differences, Gaussian smoothing, α-order mixing
"""

from pgrad.estimators.advantages import (
    discount_weights,
    episode_index,
    episode_time,
    gae,
    group_relative_advantages,
    leave_one_out_advantages,
    mean_baseline,
    normalize,
    optimal_baseline,
    per_step_mean_baseline,
)
from pgrad.estimators.importance import (
    clip_weights,
    cumulative_log_ratio,
    effective_sample_size,
    importance_weighted_advantages,
    per_decision_weights,
    trajectory_weights,
)
from pgrad.estimators.losses import (
    adaptive_kl_beta,
    clipped_surrogate,
    explained_variance,
    importance_ratio,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_penalty_surrogate,
    score_function_loss,
    value_loss,
)
from pgrad.estimators.pathwise import bptt_loss, deterministic_actor_loss, reparameterised_actor_loss
from pgrad.estimators.relaxations import gumbel_softmax, reinmax, straight_through
from pgrad.estimators.returns import n_step_return, reward_to_go, td_lambda_return, total_return
from pgrad.estimators.targets import (
    ensemble_min,
    expected_soft_value,
    polyak_update,
    soft_value,
    td_target,
    temperature_loss,
)
from pgrad.estimators.trust_region import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    flat_jacobian,
    flat_params,
    make_fisher_vector_product,
    natural_gradient_step,
    set_flat_params,
)
from pgrad.estimators.zeroth_order import (
    adaptive_alpha_order_gradient,
    alpha_order_gradient,
    finite_difference_gradient,
    gaussian_smoothing_gradient,
    gaussian_smoothing_samples,
)

__all__ = [
    "adaptive_alpha_order_gradient",
    "adaptive_kl_beta",
    "alpha_order_gradient",
    "backtracking_line_search",
    "bptt_loss",
    "clip_weights",
    "clipped_surrogate",
    "conjugate_gradient",
    "cumulative_log_ratio",
    "deterministic_actor_loss",
    "discount_weights",
    "effective_sample_size",
    "ensemble_min",
    "episode_index",
    "episode_time",
    "expected_soft_value",
    "explained_variance",
    "finite_difference_gradient",
    "fisher_vector_product",
    "flat_grad",
    "flat_jacobian",
    "flat_params",
    "gae",
    "gaussian_smoothing_gradient",
    "gaussian_smoothing_samples",
    "group_relative_advantages",
    "gumbel_softmax",
    "importance_ratio",
    "importance_weighted_advantages",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_penalty_surrogate",
    "leave_one_out_advantages",
    "make_fisher_vector_product",
    "mean_baseline",
    "n_step_return",
    "natural_gradient_step",
    "normalize",
    "optimal_baseline",
    "per_decision_weights",
    "per_step_mean_baseline",
    "polyak_update",
    "reinmax",
    "reparameterised_actor_loss",
    "reward_to_go",
    "score_function_loss",
    "set_flat_params",
    "soft_value",
    "straight_through",
    "td_lambda_return",
    "td_target",
    "temperature_loss",
    "total_return",
    "trajectory_weights",
    "value_loss",
]
