"""Edge cases of the estimators that their main tests do not reach: empty batches, boundaries of acceptance
tests, any-rank inputs, defaults, and the diagnostics they return (which the harness logs)."""

import math

import pytest
import torch

from pgrad import estimators as e
from pgrad.errors import ConfigError


def test_kl_penalty_surrogate_reports_the_ratio():
    log_prob = torch.log(torch.tensor([0.2, 0.5, 0.9]))
    old = torch.log(torch.tensor([0.4, 0.5, 0.3]))
    _, info = e.kl_penalty_surrogate(log_prob, old, torch.ones(3), beta=0.5)
    ratio = torch.tensor([0.5, 1.0, 3.0])
    assert float(info["ratio_mean"]) == pytest.approx(float(ratio.mean()))
    assert float(info["ratio_max"]) == pytest.approx(3.0)
    assert float(info["approx_kl"]) == pytest.approx(float(((ratio - 1) - ratio.log()).mean()))


def test_actor_losses_of_an_empty_batch_are_zero_and_keep_the_graph():
    q = torch.zeros(0, requires_grad=True)
    loss, info = e.deterministic_actor_loss(q)
    assert float(loss.detach()) == 0.0 and info == {"q_mean": 0.0}
    loss.backward()
    loss, info = e.reparameterised_actor_loss(q, torch.zeros(0), 0.1)
    assert float(loss) == 0.0 and info == {"q_mean": 0.0, "log_prob_mean": 0.0, "entropy": -0.0}
    _, info = e.reparameterised_actor_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -2.0]), 0.1)
    assert info == {"q_mean": 2.0, "log_prob_mean": -1.5, "entropy": 1.5}


@pytest.mark.parametrize("shape", [(0, 3), (4, 0)])
def test_bptt_loss_of_an_empty_window_is_zero(shape):
    rewards = torch.zeros(shape, requires_grad=True)
    loss, info = e.bptt_loss(rewards, 0.9, torch.zeros(shape, dtype=torch.bool))
    assert float(loss) == 0.0
    assert info == {"window_return": 0.0, "bootstrap_mean": 0.0, "episode_ends": 0.0}


def test_gumbel_softmax_relaxes_the_last_dimension_of_any_rank():
    logits = torch.randn(2, 3, 4)
    y = e.gumbel_softmax(logits, 0.7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(y.sum(-1), torch.ones(2, 3))
    hard = e.gumbel_softmax(logits, 0.7, hard=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(hard.sum(-1), torch.ones(2, 3)) and torch.equal(hard.argmax(-1), y.argmax(-1))


def test_fisher_vector_product_has_no_damping_by_default():
    theta = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    old = torch.softmax(theta.detach(), 0)

    def kl():
        new = torch.softmax(theta, 0)
        return (old * (old.log() - new.log())).sum()

    v = torch.tensor([1.0, 2.0, -1.0])
    fisher = torch.diag(old) - torch.outer(old, old)  # Hessian of the KL of a softmax at θ_old
    torch.testing.assert_close(e.fisher_vector_product(kl, [theta], v), fisher @ v)
    torch.testing.assert_close(e.make_fisher_vector_product(kl, [theta])(v), fisher @ v)
    torch.testing.assert_close(e.fisher_vector_product(kl, [theta], v, damping=0.5), fisher @ v + 0.5 * v)


def test_line_search_rejects_a_step_that_does_not_improve():
    x0, step = torch.zeros(2), torch.ones(2)
    calls = []

    def flat(x):  # no change at all: an improvement of exactly 0 is not one
        calls.append(x)
        return 1.0, 0.0

    x, info = e.backtracking_line_search(flat, x0, step, 1.0, 0.01, max_backtracks=3, accept_ratio=0.0)
    assert torch.equal(x, x0) and info["accepted"] == 0.0 and info["backtracks"] == 3.0
    # no first-order decrease: nothing is tried
    x, info = e.backtracking_line_search(flat, x0, step, 0.0, 0.01)
    assert torch.equal(x, x0)
    assert info == {"accepted": 0.0, "backtracks": 0.0, "step_fraction": 0.0, "improvement": 0.0, "kl": 0.0}
    assert len(calls) == 4  # f(x0) and three candidates, then nothing


def quadratic(thetas):
    return (thetas**2).sum(-1) + 3.0


@pytest.mark.parametrize("baseline", [None, 1.5, "center"])
def test_one_sided_gaussian_smoothing_is_the_plain_formula(baseline):
    theta = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    samples, evaluations = e.gaussian_smoothing_samples(
        quadratic,
        theta,
        0.1,
        4,
        antithetic=False,
        baseline=baseline,
        generator=torch.Generator().manual_seed(3),
    )
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    b = {None: 0.0, 1.5: 1.5, "center": float(quadratic(theta))}[baseline]
    expected = torch.stack([(quadratic(theta + 0.1 * eps[s]) - b) / 0.1 * eps[s] for s in range(4)])
    torch.testing.assert_close(samples, expected)
    assert evaluations == (5 if baseline == "center" else 4)


def test_gaussian_smoothing_accepts_one_sample_and_chunks_of_one():
    theta = torch.tensor([0.5, -1.0], dtype=torch.float64)
    full, _ = e.gaussian_smoothing_samples(
        quadratic, theta, 0.1, 3, generator=torch.Generator().manual_seed(0)
    )
    chunked, n = e.gaussian_smoothing_samples(
        quadratic, theta, 0.1, 3, generator=torch.Generator().manual_seed(0), chunk_size=1
    )
    torch.testing.assert_close(chunked, full)
    assert n == 6
    one, n = e.gaussian_smoothing_samples(quadratic, theta, 0.1, 1, antithetic=False, baseline="center")
    assert one.shape == (1, 2) and n == 2
    g, n = e.finite_difference_gradient(quadratic, theta, 1e-4, chunk_size=1)
    torch.testing.assert_close(g, 2 * theta)
    assert n == 4


@pytest.mark.parametrize("baseline", [True, "mean", [1.0]])
def test_a_bad_one_sided_baseline_is_refused(baseline):
    with pytest.raises(ConfigError, match="baseline must be None, a number or 'center'"):
        e.gaussian_smoothing_samples(quadratic, torch.zeros(2), 0.1, 2, antithetic=False, baseline=baseline)


def test_adaptive_alpha_with_no_variance_trusts_the_first_order_estimate():
    first = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    zeroth = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    gradient, info = e.adaptive_alpha_order_gradient(first, zeroth, gamma=10.0, bound=1.0)
    assert info["alpha"] == 1.0 and not math.isnan(info["alpha"])
    torch.testing.assert_close(gradient, torch.tensor([1.0, 0.0]))
    with pytest.raises(ConfigError, match="first_order_samples must be a floating"):
        e.adaptive_alpha_order_gradient([[1.0, 0.0], [1.0, 0.0]], zeroth, 1.0, 1.0)


def test_per_step_baseline_names_returns_in_its_errors():
    with pytest.raises(ConfigError, match="returns must have a floating dtype"):
        e.per_step_mean_baseline(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long))


def test_self_normalised_weights_of_a_single_column_given_as_a_vector():
    """[T] weights (one env) self-normalise as the [T, 1] column does."""
    w = torch.tensor([0.5, 2.0, 1.0, 4.0], dtype=torch.float64)
    term = torch.tensor([False, True, False, True])
    vector = e.clip_weights(
        w, self_normalize=True, terminated=term, truncated=torch.zeros(4, dtype=torch.bool)
    )
    column = e.clip_weights(
        w[:, None],
        self_normalize=True,
        terminated=term[:, None],
        truncated=torch.zeros(4, 1, dtype=torch.bool),
    )
    torch.testing.assert_close(vector, column[:, 0])
    # two episodes: Z_0 = (0.5 + 1) / 2, Z_1 = (2 + 4) / 2
    torch.testing.assert_close(
        vector, torch.tensor([0.5 / 0.75, 2 / 3.0, 1 / 0.75, 4 / 3.0], dtype=torch.float64)
    )


def test_group_advantages_treat_each_group_on_its_own():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])  # a constant group beside a varied one
    out = e.group_relative_advantages(rewards)
    assert torch.equal(out[0], torch.zeros(3))
    torch.testing.assert_close(out[1], torch.tensor([-1.0, 0.0, 1.0]) / (1.0 + 1e-8))
    exact = e.group_relative_advantages(rewards, eps=0.0)  # no ε: the constant group must not be 0/0
    assert torch.equal(exact[0], torch.zeros(3)) and torch.equal(exact[1], torch.tensor([-1.0, 0.0, 1.0]))


def test_ess_of_a_single_weight_of_any_shape():
    assert e.effective_sample_size(torch.tensor(2.5)) == 1.0
    assert e.effective_sample_size(torch.tensor([[1.0, 1.0], [1.0, 1.0]])) == pytest.approx(4.0)


def test_infinite_or_nan_alpha_is_refused():
    for alpha in (math.inf, math.nan):
        with pytest.raises(ConfigError, match="alpha must be finite"):
            e.reparameterised_actor_loss(torch.zeros(2), torch.zeros(2), alpha)


@pytest.mark.parametrize("logits", [torch.tensor(1.0), torch.zeros(3, 0)])
@pytest.mark.parametrize("relax", ["straight_through", "gumbel_softmax", "reinmax"])
def test_logits_without_categories_are_refused(relax, logits):
    with pytest.raises(ConfigError, match=r"logits must have shape \[\.\.\., K\] with K >= 1"):
        getattr(e, relax)(logits, temperature=1.0)


def test_reinmax_relaxes_the_last_dimension_of_any_rank():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    y = e.reinmax(logits, 0.7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y.detach().sum(-1), torch.ones(2, 3))  # one-hot values
    (y * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    flat_logits = logits.detach().reshape(6, 4).requires_grad_(True)
    flat = e.reinmax(flat_logits, 0.7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(flat.detach().reshape(2, 3, 4), y.detach())
    (flat * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(flat_logits.grad.reshape(2, 3, 4), logits.grad)  # the same gradient too


def test_conjugate_gradient_runs_ten_iterations_by_default():
    a = torch.diag(torch.logspace(0, 6, 30, dtype=torch.float64))  # ill-conditioned: no early convergence
    calls = []

    def matvec(v):
        calls.append(1)
        return a @ v

    e.conjugate_gradient(matvec, torch.ones(30, dtype=torch.float64))
    assert len(calls) == 10


def test_flat_gradients_of_something_the_parameters_do_not_touch_are_zeros():
    p, q = torch.ones(2, 3, requires_grad=True), torch.ones(4, requires_grad=True)
    assert torch.equal(e.flat_grad(torch.tensor(1.0), [p, q]), torch.zeros(10))
    assert torch.equal(e.flat_grad((q**2).sum(), [p, q]), torch.cat([torch.zeros(6), 2 * torch.ones(4)]))
    jac = e.flat_jacobian(q * 3.0, [p, q])
    assert jac.shape == (4, 10)
    assert torch.equal(jac[:, :6], torch.zeros(4, 6)) and torch.equal(jac[:, 6:], 3 * torch.eye(4))


def test_products_come_back_in_the_parameters_dtype():
    p = torch.ones(3, requires_grad=True)
    fvp = e.make_fisher_vector_product(lambda: (p**2).sum(), [p])
    out = fvp(torch.ones(3, dtype=torch.float64))
    assert out.dtype == torch.float32 and torch.equal(out, 2 * torch.ones(3))
    mixed = e.alpha_order_gradient(torch.ones(3), torch.zeros(3, dtype=torch.float64), 0.25)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, torch.full((3,), 0.25))
    with pytest.raises(ConfigError, match=r"zeroth_order must be a floating torch\.Tensor, got"):
        e.alpha_order_gradient(torch.ones(3), [0.0, 0.0, 0.0], 0.5)


def test_gaussian_smoothing_gradient_evaluates_in_chunks():
    sizes = []

    def f(thetas):
        sizes.append(len(thetas))
        return thetas.sum(-1)

    e.gaussian_smoothing_gradient(f, torch.zeros(3), 0.1, 5, chunk_size=2)
    assert sizes == [2, 2, 2, 2, 2]  # 10 antithetic evaluations, two at a time


def test_empty_rollouts_give_empty_weights():
    for shape in ((0, 3), (4, 0)):
        flags = torch.zeros(shape, dtype=torch.bool)
        assert e.cumulative_log_ratio(torch.zeros(shape), flags, flags).shape == shape
        assert e.trajectory_weights(torch.zeros(shape), flags, flags).shape == shape


def test_cumulative_log_ratio_of_an_empty_batch_or_one_step_and_of_a_single_column():
    """An empty time axis gives an empty result of the input's shape and dtype for any trailing shape, a
    single sub-env's [T] column (time-major needs only the time axis) is summed like a [T, 1] one, and one
    step is still raised to −1000 below it."""
    for dtype in (torch.float32, torch.float64):
        for shape in ((0,), (0, 3), (0, 0), (4, 0)):
            flags = torch.zeros(shape, dtype=torch.bool)
            out = e.cumulative_log_ratio(torch.zeros(shape, dtype=dtype), flags, flags)
            assert out.shape == shape and out.dtype == dtype
    log_ratio = torch.tensor([0.5, -1.0, 2.0, 0.25])
    terminated, truncated = torch.tensor([False, True, False, False]), torch.zeros(4, dtype=torch.bool)
    expected = torch.tensor([0.5, -0.5, 2.0, 2.25])  # a new episode starts after row 1
    assert torch.equal(e.cumulative_log_ratio(log_ratio, terminated, truncated), expected)
    column = e.cumulative_log_ratio(log_ratio[:, None], terminated[:, None], truncated[:, None])
    assert torch.equal(column, expected[:, None])
    one = torch.zeros(1, 3, dtype=torch.bool)
    out = e.cumulative_log_ratio(torch.tensor([[-math.inf, -2000.0, 0.5]]), one, one)
    assert torch.equal(out, torch.tensor([[-1000.0, -1000.0, 0.5]]))


def test_score_function_loss_reports_means_over_the_masked_entries():
    log_prob = torch.tensor([-1.0, -2.0, -4.0])
    advantages = torch.tensor([1.0, 2.0, 6.0])
    _, info = e.score_function_loss(log_prob, advantages, mask=torch.tensor([True, True, False]))
    assert float(info["log_prob_mean"]) == -1.5 and float(info["advantage_mean"]) == 1.5
    _, info = e.score_function_loss(log_prob, advantages, mask=torch.zeros(3, dtype=torch.bool))
    assert float(info["log_prob_mean"]) == 0.0 and float(info["advantage_mean"]) == 0.0
    _, info = e.score_function_loss(log_prob, advantages)
    assert float(info["log_prob_mean"]) == pytest.approx(-7 / 3) and float(info["advantage_mean"]) == 3.0
