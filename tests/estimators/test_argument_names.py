"""Every argument of every public estimator is checked, and the one-line error names it: each tensor argument
given a string, an integer tensor or a tensor of the wrong shape, and each number given a bool, is a
ConfigError that says which argument (DESIGN.md: "errors say what and where")."""

import re

import pytest
import torch

from pgrad import estimators as e
from pgrad.errors import ConfigError

T, N = 3, 2


def valid_calls():
    """fn name -> valid keyword arguments (small, time-major where it applies)."""
    r = torch.rand(T, N)
    flags = torch.zeros(T, N, dtype=torch.bool)
    lp = torch.log(torch.rand(4))
    p = torch.zeros(3, requires_grad=True)
    return {
        "total_return": {"rewards": r, "terminated": flags, "truncated": flags, "gamma": 0.9},
        "reward_to_go": {
            "rewards": r,
            "terminated": flags,
            "truncated": flags,
            "gamma": 0.9,
            "next_values": r,
        },
        "n_step_return": {
            "rewards": r,
            "next_values": r,
            "terminated": flags,
            "truncated": flags,
            "gamma": 0.9,
            "n": 2,
        },
        "td_lambda_return": {
            "rewards": r,
            "values": r,
            "next_values": r,
            "terminated": flags,
            "truncated": flags,
            "gamma": 0.9,
            "lam": 0.5,
        },
        "gae": {
            "rewards": r,
            "values": r,
            "next_values": r,
            "terminated": flags,
            "truncated": flags,
            "gamma": 0.9,
            "lam": 0.5,
        },
        "mean_baseline": {"returns": r, "mask": flags},
        "episode_index": {"terminated": flags, "truncated": flags},
        "episode_time": {"terminated": flags, "truncated": flags, "start": torch.zeros(N, dtype=torch.long)},
        "discount_weights": {
            "terminated": flags,
            "truncated": flags,
            "gamma": 0.9,
            "start": torch.zeros(N, dtype=torch.long),
        },
        "per_step_mean_baseline": {"returns": r, "step_in_episode": torch.zeros(T, N, dtype=torch.long)},
        "optimal_baseline": {"score_sums": r, "weighted_score_sums": r},
        "group_relative_advantages": {"rewards": r, "eps": 1e-8},
        "leave_one_out_advantages": {"rewards": r},
        "normalize": {"advantages": r, "mask": flags, "eps": 1e-8},
        "score_function_loss": {"log_prob": lp, "advantages": lp, "mask": lp > -1},
        "importance_ratio": {"log_prob": lp, "old_log_prob": lp},
        "clipped_surrogate": {
            "log_prob": lp,
            "old_log_prob": lp,
            "advantages": lp,
            "clip_coef": 0.2,
            "mask": lp > -1,
            "clip_coef_low": 0.1,
        },
        "kl_penalty_surrogate": {"log_prob": lp, "old_log_prob": lp, "advantages": lp, "beta": 1.0, "kl": lp},
        "adaptive_kl_beta": {"beta": 1.0, "kl": 0.01, "target_kl": 0.01, "factor": 1.5, "scale": 2.0},
        "kl_k1": {"log_q": lp, "log_p": lp},
        "kl_k2": {"log_q": lp, "log_p": lp},
        "kl_k3": {"log_q": lp, "log_p": lp},
        "value_loss": {"values": lp, "returns": lp, "old_values": lp, "clip_coef": 0.2, "mask": lp > -1},
        "explained_variance": {"predictions": lp, "targets": lp, "mask": lp > -1},
        "cumulative_log_ratio": {"log_ratio": r, "terminated": flags, "truncated": flags},
        "per_decision_weights": {"log_ratio": r, "terminated": flags, "truncated": flags},
        "trajectory_weights": {"log_ratio": r, "terminated": flags, "truncated": flags},
        "clip_weights": {
            "weights": r,
            "max_weight": 2.0,
            "self_normalize": True,
            "terminated": flags,
            "truncated": flags,
            "mask": flags,
        },
        "effective_sample_size": {"weights": r, "mask": flags},
        "importance_weighted_advantages": {
            "weights": r,
            "rewards": r,
            "terminated": flags,
            "truncated": flags,
            "gamma": 0.9,
            "baselines": r,
            "next_values": r,
        },
        "conjugate_gradient": {
            "matvec": lambda v: v,
            "b": torch.ones(3),
            "iterations": 3,
            "tolerance": 1e-10,
        },
        "natural_gradient_step": {
            "grad": torch.ones(3),
            "fvp": lambda v: v,
            "max_kl": 0.01,
            "cg_iterations": 3,
        },
        "backtracking_line_search": {
            "f": lambda x: (float(-x.sum()), 0.0),
            "x0": torch.zeros(3),
            "full_step": torch.ones(3),
            "expected_improvement": 3.0,
            "max_kl": 0.01,
            "max_backtracks": 2,
            "accept_ratio": 0.1,
            "shrink": 0.5,
        },
        "flat_grad": {"output": (p**2).sum(), "params": [p]},
        "flat_jacobian": {"outputs": p**2, "params": [p]},
        "fisher_vector_product": {"kl_fn": lambda: (p**2).sum(), "params": [p], "vector": torch.ones(3)},
        "gaussian_smoothing_samples": {
            "f": lambda x: x.sum(-1),
            "theta": torch.zeros(3),
            "sigma": 0.1,
            "num_samples": 2,
            "antithetic": False,
            "baseline": 0.5,
            "chunk_size": 2,
        },
        "gaussian_smoothing_gradient": {
            "f": lambda x: x.sum(-1),
            "theta": torch.zeros(3),
            "sigma": 0.1,
            "num_samples": 2,
            "chunk_size": 2,
        },
        "finite_difference_gradient": {"f": lambda x: x.sum(-1), "theta": torch.zeros(3), "epsilon": 1e-3},
        "alpha_order_gradient": {"first_order": torch.ones(3), "zeroth_order": torch.ones(3), "alpha": 0.5},
        "adaptive_alpha_order_gradient": {
            "first_order_samples": torch.rand(4, 3),
            "zeroth_order_samples": torch.rand(4, 3),
            "gamma": 1.0,
            "bound": 1.0,
            "delta": 0.05,
        },
        "deterministic_actor_loss": {"q_values": lp},
        "reparameterised_actor_loss": {"q_values": lp, "log_prob": lp, "alpha": 0.1},
        "bptt_loss": {
            "rewards": r,
            "gamma": 0.9,
            "terminated": flags,
            "bootstrap_values": r,
            "truncated": flags,
        },
        "straight_through": {"logits": r, "temperature": 1.0},
        "gumbel_softmax": {"logits": r, "temperature": 1.0},
        "reinmax": {"logits": r, "temperature": 1.0},
        "td_target": {"rewards": r, "discount": r, "terminated": flags, "next_values": r},
        "ensemble_min": {"q_values": r},
        "soft_value": {"q_values": r, "log_prob": r, "alpha": 0.1},
        "expected_soft_value": {"q_values": r, "probs": r, "log_probs": r, "alpha": 0.1},
        "temperature_loss": {"log_alpha": torch.zeros(()), "log_prob": lp, "target_entropy": -1.0},
        "polyak_update": {"target": [torch.zeros(3)], "online": [torch.ones(3)], "tau": 0.5},
    }


CALLS = valid_calls()
# arguments that legitimately accept what the cases below give them
ACCEPTS_BOOL = {"self_normalize", "antithetic"}
NOT_SHAPE_CHECKED = {  # the reference of the shape check (first tensor), or shapes that are free by design
    ("effective_sample_size", "weights"),
    ("temperature_loss", "log_prob"),
    ("temperature_loss", "log_alpha"),
    ("flat_grad", "output"),
    ("flat_jacobian", "outputs"),
    ("ensemble_min", "q_values"),
    ("mean_baseline", "returns"),
    ("normalize", "advantages"),
    ("group_relative_advantages", "rewards"),
    ("leave_one_out_advantages", "rewards"),
    ("optimal_baseline", "score_sums"),
    ("straight_through", "logits"),
    ("gumbel_softmax", "logits"),
    ("reinmax", "logits"),
    ("alpha_order_gradient", "first_order"),
    ("gaussian_smoothing_samples", "theta"),
    ("gaussian_smoothing_gradient", "theta"),
    ("finite_difference_gradient", "theta"),
    ("conjugate_gradient", "b"),
    ("natural_gradient_step", "grad"),
    ("backtracking_line_search", "x0"),
    ("fisher_vector_product", "vector"),  # checked against the parameter count, by name (below)
    ("adaptive_alpha_order_gradient", "first_order_samples"),
    ("adaptive_alpha_order_gradient", "zeroth_order_samples"),  # its own batch size B0
    ("importance_weighted_advantages", "rewards"),  # the reference the others must match
    ("kl_penalty_surrogate", "kl"),  # a 0-d KL is allowed
    ("td_target", "discount"),  # a float discount is allowed
}


def cases(kind):
    for fn, kwargs in sorted(CALLS.items()):
        first_tensor = next((k for k, v in kwargs.items() if isinstance(v, torch.Tensor)), None)
        for arg, value in kwargs.items():
            if kind == "number" and isinstance(value, float) and arg not in ACCEPTS_BOOL:
                yield fn, arg
            if not isinstance(value, torch.Tensor):
                continue
            if kind == "type":
                yield fn, arg
            if kind == "dtype" and value.is_floating_point() and fn not in ("flat_grad", "flat_jacobian"):
                yield fn, arg
            if kind == "shape" and arg != first_tensor and (fn, arg) not in NOT_SHAPE_CHECKED:
                yield fn, arg


def check(fn, arg, bad, pattern):
    kwargs = {**CALLS[fn], arg: bad}
    with pytest.raises(ConfigError) as info:
        getattr(e, fn)(**kwargs)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert "\n" not in message


def test_every_public_estimator_has_a_valid_call_here():
    assert set(CALLS) == set(e.__all__) - {"make_fisher_vector_product", "set_flat_params", "flat_params"}
    assert set(CALLS) <= set(e.__all__)
    for fn, kwargs in CALLS.items():
        getattr(e, fn)(**kwargs)


@pytest.mark.parametrize(("fn", "arg"), list(cases("type")))
def test_a_tensor_argument_that_is_no_tensor_is_named(fn, arg):
    check(fn, arg, "not a tensor", rf"\b{arg}\b")


@pytest.mark.parametrize(("fn", "arg"), list(cases("dtype")))
def test_a_float_tensor_argument_with_an_integer_dtype_is_named(fn, arg):
    check(fn, arg, torch.zeros(CALLS[fn][arg].shape, dtype=torch.long), rf"\b{arg}\b")


@pytest.mark.parametrize(("fn", "arg"), list(cases("shape")))
def test_a_tensor_of_the_wrong_shape_is_named_with_what_it_must_match(fn, arg):
    value = CALLS[fn][arg]
    bad = torch.zeros((value.shape[0] + 1, *value.shape[1:]), dtype=value.dtype)
    check(fn, arg, bad, rf"\b{arg}\b.*(shape|match)")


@pytest.mark.parametrize(("fn", "arg"), list(cases("number")))
def test_a_number_argument_given_a_bool_is_named(fn, arg):
    check(fn, arg, True, rf"\b{arg}\b")
