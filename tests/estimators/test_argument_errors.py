"""A bad argument to an estimator is a one-line ConfigError that names it (and, for a tensor of the wrong
shape, the argument whose shape it must have): DESIGN.md's "errors say what and where", for every check."""

import re

import pytest
import torch

from pgrad import estimators as e
from pgrad.errors import ConfigError

T, N = 3, 2
R = torch.zeros(T, N)
F = torch.zeros(T, N, dtype=torch.bool)
LONG_R = torch.zeros(T + 1, N)
LONG_F = torch.zeros(T + 1, N, dtype=torch.bool)
LP = torch.zeros(4)
LONG_LP = torch.zeros(5)


def shape(name, ref):
    return rf"{name} has shape .* expected the shape of {ref} "


def bad_after_x0(which):
    """A line-search objective that is fine at x0 and returns a string as its loss (0) or KL (1) after."""

    def f(x):
        if torch.equal(x, LP):
            return 0.0, 0.0
        return ("a", 0.0) if which == 0 else (0.0, "a")

    return f


def f_quadratic(thetas):
    return (thetas**2).sum(-1)


CASES = [
    # returns
    (lambda: e.total_return(R, LONG_F, F, 0.9), shape("terminated", "rewards")),
    (lambda: e.total_return(R, F, LONG_F, 0.9), shape("truncated", "rewards")),
    (lambda: e.total_return(R, F, F, 1.5), r"gamma must be in \[0, 1\]"),
    (lambda: e.total_return(torch.zeros(()), F, F, 0.9), r"rewards must be time-major"),
    (lambda: e.total_return(F, F, F, 0.9), r"rewards must have a floating dtype"),
    (lambda: e.reward_to_go(R, F, F, 0.9, LONG_R), shape("next_values", "rewards")),
    (lambda: e.reward_to_go(R, F, F, 2.0), r"gamma must be in \[0, 1\]"),
    (lambda: e.n_step_return(R, LONG_R, F, F, 0.9, 2), shape("next_values", "rewards")),
    (lambda: e.n_step_return(R, R, F, F, 0.9, 0), r"n must be an int >= 1"),
    (lambda: e.td_lambda_return(R, LONG_R, R, F, F, 0.9, 0.5), shape("values", "rewards")),
    (lambda: e.td_lambda_return(R, R, LONG_R, F, F, 0.9, 0.5), shape("next_values", "rewards")),
    (lambda: e.td_lambda_return(R, R, R, F, F, 0.9, 1.5), r"lam must be in \[0, 1\]"),
    # advantages
    (lambda: e.gae(R, LONG_R, R, F, F, 0.9, 0.5), shape("values", "rewards")),
    (lambda: e.gae(R, R, LONG_R, F, F, 0.9, 0.5), shape("next_values", "rewards")),
    (lambda: e.gae(R, R, R, F, F, -0.1, 0.5), r"gamma must be in \[0, 1\]"),
    (lambda: e.gae(R, R, R, F, F, 0.9, True), r"lam must be a real number in \[0, 1\]"),
    (lambda: e.mean_baseline(R, LONG_F), shape("mask", "returns")),
    (
        lambda: e.per_step_mean_baseline(R, torch.zeros(T + 1, N, dtype=torch.long)),
        shape("step_in_episode", "returns"),
    ),
    (lambda: e.per_step_mean_baseline(R, R), r"step_in_episode must be an integer tensor"),
    (
        lambda: e.per_step_mean_baseline(R, -torch.ones(T, N, dtype=torch.long)),
        r"step_in_episode must be >= 0",
    ),
    (
        lambda: e.per_step_mean_baseline(R, torch.zeros(T, N, dtype=torch.long), LONG_F),
        shape("mask", "returns"),
    ),
    (lambda: e.optimal_baseline(R, LONG_R), shape("weighted_score_sums", "score_sums")),
    (lambda: e.group_relative_advantages(R, eps=-1.0), r"eps must be a real number >= 0"),
    (
        lambda: e.leave_one_out_advantages(torch.zeros(3, 1)),
        r"leave_one_out_advantages: group size .* must be >= 2, got 1",
    ),
    (lambda: e.normalize(R, LONG_F), shape("mask", "advantages")),
    (lambda: e.normalize(R, eps=-1.0), r"eps must be a real number >= 0"),
    (lambda: e.episode_index(torch.tensor(True), torch.tensor(True)), r"terminated must be time-major"),
    (lambda: e.episode_index(F, LONG_F), shape("truncated", "terminated")),
    # losses
    (lambda: e.score_function_loss(LP, LONG_LP), shape("advantages", "log_prob")),
    (lambda: e.importance_ratio(LP, LONG_LP), shape("old_log_prob", "log_prob")),
    (lambda: e.clipped_surrogate(LP, LONG_LP, LP, 0.2), shape("old_log_prob", "log_prob")),
    (lambda: e.clipped_surrogate(LP, LP, LONG_LP, 0.2), shape("advantages", "log_prob")),
    (
        lambda: e.clipped_surrogate(LP, LP, LP, 0.2, torch.ones(5, dtype=torch.bool)),
        shape("mask", "log_prob"),
    ),
    (lambda: e.clipped_surrogate(LP, LP, LP, 0.0), r"clip_coef must be a finite number > 0"),
    (lambda: e.clipped_surrogate(LP, LP, LP, 0.2, clip_coef_low=-1.0), r"clip_coef_low must be a finite"),
    (lambda: e.kl_penalty_surrogate(LP, LP, LP, -1.0), r"beta must be a finite number >= 0"),
    (lambda: e.kl_penalty_surrogate(LP, LP, LP, 1.0, kl=LONG_LP), shape("kl", "log_prob")),
    (lambda: e.adaptive_kl_beta(0.0, 0.1, 0.01), r"beta must be a finite number > 0"),
    (lambda: e.adaptive_kl_beta(1.0, "x", 0.01), r"kl must be a real number"),
    (lambda: e.adaptive_kl_beta(1.0, 0.1, 0.0), r"target_kl must be a finite number > 0"),
    (lambda: e.adaptive_kl_beta(1.0, 0.1, 0.01, factor=0.0), r"factor must be a finite number > 0"),
    (lambda: e.adaptive_kl_beta(1.0, 0.1, 0.01, factor=0.5), r"factor must be >= 1"),
    (lambda: e.adaptive_kl_beta(1.0, 0.1, 0.01, scale=0.0), r"scale must be a finite number > 0"),
    (lambda: e.kl_k1(LP, LONG_LP), shape("log_p", "log_q")),
    (lambda: e.kl_k2(LP, LONG_LP), shape("log_p", "log_q")),
    (lambda: e.kl_k3(LP, LONG_LP), shape("log_p", "log_q")),
    (lambda: e.value_loss(LP, LONG_LP), shape("returns", "values")),
    (lambda: e.value_loss(LP, LP, LP, clip_coef=-1.0), r"clip_coef must be a finite number > 0"),
    (
        lambda: e.value_loss(LP, LP, None, clip_coef=0.2),
        r"value_loss: clip_coef is set but old_values is None",
    ),
    (lambda: e.value_loss(LP, LP, LONG_LP, clip_coef=0.2), shape("old_values", "values")),
    (lambda: e.explained_variance(LP, LONG_LP), shape("targets", "predictions")),
    # importance weights
    (lambda: e.cumulative_log_ratio(R, LONG_F, F), shape("terminated", "log_ratio")),
    (lambda: e.per_decision_weights(R, F, LONG_F), shape("truncated", "log_ratio")),
    (lambda: e.trajectory_weights(R, LONG_F, F), shape("terminated", "log_ratio")),
    (lambda: e.effective_sample_size(R, LONG_F), shape("mask", "weights")),
    (lambda: e.clip_weights(F), r"weights must have a floating dtype"),
    (lambda: e.clip_weights(R, 0.0), r"max_weight must be > 0"),
    (
        lambda: e.clip_weights(R, self_normalize=True),
        r"clip_weights: self_normalize needs the terminated and truncated",
    ),
    (
        lambda: e.clip_weights(torch.tensor(1.0), self_normalize=True, terminated=F, truncated=F),
        r"weights must be time-major \[T, N\] to self-normalise, got a 0-d tensor",
    ),
    (lambda: e.importance_weighted_advantages(LONG_R, R, F, F, 0.9), shape("weights", "rewards")),
    (lambda: e.importance_weighted_advantages(R, R, F, F, 0.9, LONG_R), shape("baselines", "rewards")),
    (
        lambda: e.importance_weighted_advantages(R, R, F, F, 0.9, None, LONG_R),
        shape("next_values", "rewards"),
    ),
    # trust region
    (lambda: e.conjugate_gradient(lambda v: v, "b"), r"b must be a torch.Tensor"),
    (lambda: e.conjugate_gradient(lambda v: v, LP, iterations=-1), r"iterations must be >= 0"),
    (
        lambda: e.natural_gradient_step(LP + 1, lambda v: v, 0.01, cg_iterations=0),
        r"cg_iterations must be >= 1",
    ),
    (lambda: e.natural_gradient_step(LP + 1, lambda v: v, 0.0), r"max_kl must be a finite number > 0"),
    (
        lambda: e.backtracking_line_search(lambda x: (0.0, 0.0), LP, LP, 1.0, 0.01, max_backtracks=0),
        r"max_backtracks must be >= 1",
    ),
    (
        lambda: e.backtracking_line_search(lambda x: ("a", 0.0), LP, LP + 1, 1.0, 0.01),
        r"f\(x0\) loss must be a",
    ),
    (lambda: e.backtracking_line_search(bad_after_x0(0), LP, LP + 1, 1.0, 0.01), r"f\(x\) loss must be a"),
    (lambda: e.backtracking_line_search(bad_after_x0(1), LP, LP + 1, 1.0, 0.01), r"f\(x\) kl must be a"),
    # zeroth order
    (lambda: e.gaussian_smoothing_samples(f_quadratic, LP, 0.1, 0), r"num_samples must be >= 1"),
    (lambda: e.gaussian_smoothing_samples(f_quadratic, LP, 0.0, 2), r"sigma must be a finite number > 0"),
    (lambda: e.gaussian_smoothing_samples(f_quadratic, LP, 0.1, 2, chunk_size=0), r"chunk_size must be >= 1"),
    (
        lambda: e.gaussian_smoothing_samples(f_quadratic, LP, 0.1, 2, antithetic=True, baseline=0.0),
        r"baseline is only used by the one-sided estimator \(antithetic=False\); pass None",
    ),
    (lambda: e.finite_difference_gradient(f_quadratic, LP, 0.0), r"epsilon must be a finite number > 0"),
    (lambda: e.alpha_order_gradient(LP, LP, 2.0), r"alpha must be a number in \[0, 1\]"),
    (
        lambda: e.adaptive_alpha_order_gradient(LP, torch.zeros(3, 4), 1.0, 1.0),
        r"first_order_samples must be a floating \[B, P\] tensor with B >= 2",
    ),
    (
        lambda: e.adaptive_alpha_order_gradient(torch.zeros(3, 4), torch.zeros(3, 4), 0.0, 1.0),
        r"gamma must be",
    ),
    (
        lambda: e.adaptive_alpha_order_gradient(torch.zeros(3, 4), torch.zeros(3, 4), 1.0, 0.0),
        r"bound must be",
    ),
    # pathwise and relaxations
    (lambda: e.deterministic_actor_loss("q"), r"q_values must be a torch.Tensor"),
    (lambda: e.reparameterised_actor_loss(LP, LONG_LP, 0.1), shape("log_prob", "q_values")),
    (lambda: e.bptt_loss(R, 0.9, LONG_F), shape("terminated", "rewards")),
    (lambda: e.bptt_loss(R, 0.9, F, truncated=LONG_F), shape("truncated", "rewards")),
    (lambda: e.bptt_loss(R, 0.9, F, torch.zeros(N + 1)), shape("bootstrap_values", r"rewards\[-1\]")),
    (lambda: e.bptt_loss(R, 0.9, F, LONG_R), shape("bootstrap_values", "rewards")),
    (
        lambda: e.bptt_loss(R, 0.9, F, torch.zeros(N), truncated=torch.ones(T, N, dtype=torch.bool)),
        r"bootstrap_values has shape \[N\] but truncated is set before the last row: pass "
        r"bootstrap_values as \[T, N\] \(V of each final observation\)",
    ),
    (
        lambda: e.expected_soft_value(R[0, 0], R[0, 0], R[0, 0], 0.1),
        r"q_values must be \[\.\.\., A\], got shape \(\)",
    ),
    (lambda: e.straight_through(R, temperature=0.0), r"temperature must be a finite number > 0"),
    (lambda: e.gumbel_softmax(R, 0.0), r"temperature must be a finite number > 0"),
    (lambda: e.reinmax(R, 0.0), r"temperature must be a finite number > 0"),
]


@pytest.mark.parametrize(("call", "message"), CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_a_bad_argument_is_a_one_line_error_naming_it(call, message):
    with pytest.raises(ConfigError) as info:
        call()
    text = str(info.value)
    assert re.match(message, text), text  # the message starts with what is wrong
    assert "\n" not in text
