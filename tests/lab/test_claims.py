"""The claims hold on seed 0, their verdicts are counted over seeds, and every check of every claim can fail.

The acceptance run over seeds 0–9 (`run_claims(seeds=range(10))`, ~3 min) is in docs/lab/claims.md; here
each claim runs on one seed, and then once per check with a wrong input substituted (a biased estimator,
extra noise, a critic with an error where the claim says exact, a finite-difference routine that evaluates
more than it reports, ...): the named check, and so the claim's verdict, must turn false.
"""

import functools

import pytest
import torch

import pgrad.lab.claims as claims
import pgrad.lab.score_function as score_function
import pgrad.lab.surrogates as surrogates
from pgrad.envs.diff import ContactToy
from pgrad.lab.claims import CLAIMS, Claim, ClaimVerdict, claims_table, run_claims
from pgrad.lab.exact import lqr_solution
from pgrad.lab.pathwise import diff_lqr_problem, exact_q


@pytest.fixture(scope="module")
def seed_0():
    """Every claim on seed 0, run once for the tests of this module."""
    return {number: claim(0) for number, claim in CLAIMS.items()}


@pytest.mark.parametrize("number", sorted(CLAIMS))
def test_claim_holds_on_seed_0(seed_0, number):
    claim = seed_0[number]
    print(f"claim {claim.number}: {claim.figure}")
    assert claim.holds, f"claim {claim.number} ({claim.text}) fails {claim.failed}: {claim.figure}"
    assert claim.checks and all(isinstance(ok, bool) for ok in claim.checks.values())


def test_verdicts_count_the_seeds_a_claim_holds_on():
    verdicts = run_claims([9], seeds=[0, 1, 2])
    assert [v.number for v in verdicts] == [9] and verdicts[0].verdict == "holds on 3/3"
    assert [run.seed for run in verdicts[0].runs] == [0, 1, 2]
    table = claims_table(verdicts)
    assert "holds on 3/3" in table and "--seeds 3" in table

    ok = Claim(1, "text", "figure", {"a": True}, seed=0, unbiased_bound=0.1)
    bad = Claim(1, "text", "figure", {"a": True, "b": False}, seed=1, unbiased_bound=0.3)
    verdict = ClaimVerdict(1, "text", [ok, bad])
    assert verdict.holds_on == 1 and not verdict.holds and verdict.unbiased_bound == 0.3
    assert verdict.verdict == "holds on 1/2 (fails on seed 1: b)"
    with pytest.raises(ValueError):
        run_claims([9], seeds=[])


# -- mutations ----------------------------------------------------------------------------------------------


def _wrap(est, transform):
    """The estimator with transform(estimates [.., P], generator) applied to its output (and to its batch)."""

    def one(budget, gen):
        grad, cost = est(budget, gen)
        return transform(grad, gen), cost

    if hasattr(est, "batch"):

        def batch(budget, estimates, gen):
            grads, cost = est.batch(budget, estimates, gen)
            return transform(grads, gen), cost

        one.batch = batch
    return one


def shifted(est, shift):
    """E[ĝ] moved by `shift`: a biased estimator."""
    return _wrap(est, lambda g, gen: g + shift)


def noisy(est, scale):
    """Extra zero-mean noise of std `scale` per coordinate, independent of B: unbiased, higher variance."""
    return _wrap(est, lambda g, gen: g + scale * torch.randn(g.shape, generator=gen, dtype=g.dtype))


def mutate_tabular(monkeypatch, kind, change):
    """Replace the score-function estimators of one kind (and options) by change(estimator, problem)."""
    real = claims.estimator

    def factory(problem, k, **options):
        est = real(problem, k, **options)
        return change(est, problem, options) if k == kind else est

    monkeypatch.setattr(claims, "estimator", factory)


def _biased_tabular(kind, factor, when=lambda options: True):
    def setup(monkeypatch):
        mutate_tabular(
            monkeypatch,
            kind,
            lambda est, problem, options: (
                shifted(est, factor * problem.exact.reshape(-1)) if when(options) else est
            ),
        )

    return setup


def _noisy_tabular(kind, scale, when=lambda options: True):
    def setup(monkeypatch):
        mutate_tabular(
            monkeypatch, kind, lambda est, problem, options: noisy(est, scale) if when(options) else est
        )

    return setup


def _exact_critic_gae(monkeypatch):
    real = claims.estimator
    monkeypatch.setattr(
        claims,
        "estimator",
        lambda p, k, **o: real(p, k, **{**o, "error": 0.0}) if k == "gae" else real(p, k, **o),
    )


def _bad_optimal_baseline(monkeypatch):
    real = claims.optimal_constant_baseline
    monkeypatch.setattr(claims, "optimal_constant_baseline", lambda problem, **kw: 0.5 * real(problem, **kw))


def _dpg_errors(mapping):
    def setup(monkeypatch):
        real = claims.dpg_estimator

        def factory(problem, K, critic_error=0.0, **kw):
            return real(problem, K, mapping(critic_error), **kw)

        monkeypatch.setattr(claims, "dpg_estimator", factory)

    return setup


def _exact_fitted_critic(monkeypatch):
    def fitted(problem, K, samples, seed=0):
        P = lqr_solution(problem, K).P
        return functools.partial(exact_q, problem, P)

    monkeypatch.setattr(claims, "fitted_q_network", fitted)


def _bptt(change):
    def setup(monkeypatch):
        real = claims.bptt_estimator

        def factory(env, K, sigma, method):
            return change(real, env, K, sigma, method)

        monkeypatch.setattr(claims, "bptt_estimator", factory)

    return setup


def _biased_bptt(real, env, K, sigma, method):
    est = real(env, K, sigma, method)
    return shifted(est, diff_lqr_problem(seed=0)[3]) if method == "bptt" else est


def _bptt_is_score(real, env, K, sigma, method):
    return real(env, K, sigma, "score")


def _smooth_instead_of_heaviside(monkeypatch):
    monkeypatch.setattr(claims, "ContactToy", lambda **kw: ContactToy(**{**kw, "variant": "smooth"}))


def _returns_ignore_theta(monkeypatch):
    real = claims.contact_returns
    fixed = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    monkeypatch.setattr(claims, "contact_returns", lambda env, theta, *args: real(env, fixed, *args))


def _constant_spread(monkeypatch):
    def per_rollout(env, theta, sigma, rollouts, gen):
        return torch.randn(rollouts, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    monkeypatch.setattr(claims, "contact_bptt_per_rollout", per_rollout)


def _relaxation(swap):
    def setup(monkeypatch):
        real = claims.relaxation_estimator

        def factory(logits, f, method, temperature=1.0):
            if method in swap:  # the substitute at its own default temperature
                return real(logits, f, swap[method])
            return real(logits, f, method, temperature)

        monkeypatch.setattr(claims, "relaxation_estimator", factory)

    return setup


def _fd_ignores_epsilon(monkeypatch):
    real = claims.finite_difference_gradient
    monkeypatch.setattr(
        claims, "finite_difference_gradient", lambda f, theta, eps, **kw: real(f, theta, 0.1, **kw)
    )


def _fd_without_round_off(monkeypatch):
    """A routine whose error falls like ε² forever (no round-off): the claim's round-off check must fail."""
    real = claims.finite_difference_gradient

    def gradient(f, theta, eps, **kw):
        _, evaluations = real(f, theta, 1e-3, **kw)  # the same evaluations as the real routine
        n, m = (3, 2) if theta.numel() == 6 else (4, 3)
        exact = diff_lqr_problem(seed=0, n=n, m=m)[3]
        return exact * (1 + eps * eps), evaluations

    monkeypatch.setattr(claims, "finite_difference_gradient", gradient)


def _fd_evaluates_more_than_it_reports(monkeypatch):
    real = claims.finite_difference_gradient

    def gradient(f, theta, eps, **kw):
        f(theta[None])  # one extra evaluation of J(θ), not in the report
        return real(f, theta, eps, **kw)

    monkeypatch.setattr(claims, "finite_difference_gradient", gradient)


def _unweighted_importance_sampling(monkeypatch):
    monkeypatch.setattr(
        score_function, "per_decision_weights", lambda log_ratio, *args: torch.ones_like(log_ratio)
    )


def _swap_horizons(monkeypatch):
    real = claims.make_problem
    swap = {5: 20, 20: 5}
    monkeypatch.setattr(
        claims,
        "make_problem",
        lambda kind, horizon, seed: real(kind, horizon=swap.get(horizon, horizon), seed=seed),
    )


def _swap_mismatch(monkeypatch):
    real = claims.off_policy_estimator
    swap = {0.1: 0.5, 0.5: 0.1}
    monkeypatch.setattr(
        claims,
        "off_policy_estimator",
        lambda problem, mismatch, seed: real(problem, swap.get(mismatch, mismatch), seed),
    )


def _window_critic(mapping):
    """The LQR window closed by critic_scale ↦ mapping(critic_scale) (1 = exact V, 0 = no critic)."""

    def setup(monkeypatch):
        real = claims.shac_window_estimator

        def factory(problem, K, sigma, window, critic_scale=1.0):
            return real(problem, K, sigma, window, mapping(critic_scale))

        monkeypatch.setattr(claims, "shac_window_estimator", factory)

    return setup


def _noisy_windows(monkeypatch):
    real = claims.shac_window_estimator
    monkeypatch.setattr(claims, "shac_window_estimator", lambda *args, **kw: noisy(real(*args, **kw), 3.0))


def _swap_windows(monkeypatch):
    real = claims.shac_window_estimator
    swap = {2: 32, 32: 2}

    def factory(problem, K, sigma, window, critic_scale=1.0):
        return real(problem, K, sigma, swap.get(window, window), critic_scale)

    monkeypatch.setattr(claims, "shac_window_estimator", factory)


def _closed_form_forgets_the_critic(monkeypatch):
    """A closed form that ignores the missing critic (its mean would be ∇J): the estimates contradict it."""
    real = claims.window_expected_gradient

    def closed_form(problem, K, sigma, window, critic_scale=1.0):
        return real(problem, K, sigma, window, 1.0)

    monkeypatch.setattr(claims, "window_expected_gradient", closed_form)


def _flat_contact_variance(monkeypatch):
    def gradients(env, theta, sigma, window, rollouts, gen):
        return torch.randn(rollouts, 3, generator=gen, dtype=torch.float64)

    monkeypatch.setattr(claims, "contact_window_gradients", gradients)


def _swap_stiffness(monkeypatch):
    real = claims.contact_window_env
    monkeypatch.setattr(claims, "contact_window_env", lambda k: real({1e3: 3e4, 3e4: 1e3}.get(k, k)))


def _discount_weighting(value):
    """Every γᵗ option of the score-function estimators forced to `value` (both sides of claim 14 alike)."""

    def setup(monkeypatch):
        real = claims.estimator
        monkeypatch.setattr(
            claims, "estimator", lambda p, k, **o: real(p, k, **{**o, "discount_weighting": value})
        )

    return setup


def _gamma_free_mean_with_gamma(monkeypatch):
    """A closed form that keeps γᵗ (the exact gradient): the γᵗ-free estimates contradict it."""
    monkeypatch.setattr(claims, "gamma_free_mean", lambda problem: problem.exact.reshape(-1))


def _swap_gammas(monkeypatch):
    real = claims.make_problem
    swap = {0.5: 0.99, 0.99: 0.5}

    def factory(kind, horizon, seed, gamma=1.0):
        return real(kind, horizon=horizon, seed=seed, gamma=swap.get(gamma, gamma))

    monkeypatch.setattr(claims, "make_problem", factory)


def _damped_fisher_vector_product(monkeypatch):
    real = claims.make_fisher_vector_product
    monkeypatch.setattr(
        claims, "make_fisher_vector_product", lambda kl, params, damping=0.0: real(kl, params, damping + 0.01)
    )


def _fisher_of_unnormalised_visits(monkeypatch):
    """F under the visit counts d (Σ d = 1/(1 − γ)) instead of d̄: F⁺∇J is (1 − γ)·A/(1 − γ)."""
    real = surrogates.tabular_fisher
    monkeypatch.setattr(surrogates, "tabular_fisher", lambda mdp, theta: real(mdp, theta) / (1 - mdp.gamma))


def _cg(change):
    """conjugate_gradient run for change(k) iterations when asked for k."""

    def setup(monkeypatch):
        real = claims.conjugate_gradient

        def cg(matvec, b, iterations=10, tolerance=1e-10):
            return real(matvec, b, iterations=change(iterations), tolerance=tolerance)

        monkeypatch.setattr(claims, "conjugate_gradient", cg)

    return setup


def _uniform_states(monkeypatch):
    """Fisher-vector products from states drawn uniformly instead of from d̄: biased."""
    real = claims.sampled_fvp_estimator

    def factory(problem, vector, kind, fvp_factory):
        uniform = torch.full_like(problem.weights, 1.0 / problem.weights.numel())
        return real(problem, vector, kind, fvp_factory, states=uniform)

    monkeypatch.setattr(claims, "sampled_fvp_estimator", factory)


def _noisy_fvp(monkeypatch):
    """Extra noise of a fixed size, whatever N: the error stops falling like 1/√N."""
    real = claims.sampled_fvp_estimator

    def factory(problem, vector, kind, fvp_factory):
        scale = 0.3 * float((problem.fisher @ vector).norm()) / vector.numel() ** 0.5
        return noisy(real(problem, vector, kind, fvp_factory), scale)

    monkeypatch.setattr(claims, "sampled_fvp_estimator", factory)


def _wrong_advantages(monkeypatch):
    """PPO's advantages from a Q with an error: its first-epoch gradient is biased."""
    real = claims.make_problem

    def factory(kind, horizon, seed, **kw):
        problem = real(kind, horizon=horizon, seed=seed, **kw)
        error = torch.randn(problem.Q.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        problem.Q = problem.Q + 0.3 * error
        return problem

    monkeypatch.setattr(claims, "make_problem", factory)


def _ppo(change):
    def setup(monkeypatch):
        real = claims.ppo_epochs
        monkeypatch.setattr(claims, "ppo_epochs", lambda *args: change(real, *args))

    return setup


def _ppo_without_steps(real, problem, clip, epochs, episodes, estimates, step, seed, surrogate):
    return real(problem, clip, epochs, episodes, estimates, 0.0, seed, surrogate)


def _ppo_epochs_reversed(real, *args):
    run = real(*args)
    return surrogates.PPOEpochs(run.estimates[::-1], run.exact[::-1], run.clip_fraction[::-1])


def _surrogate_without_the_clip(monkeypatch):
    real = claims.clipped_surrogate
    monkeypatch.setattr(
        claims, "clipped_surrogate", lambda lp, old, adv, clip_coef, **kw: real(lp, old, adv, 1e9)
    )


def _rloo_with_its_own_reward(monkeypatch):
    """RLOO's baseline with the sample's own reward in it: the plain group mean."""
    real = claims.group_relative_advantages
    monkeypatch.setattr(claims, "leave_one_out_advantages", lambda rewards: real(rewards, scale=False))


def _mean_centred_is_leave_one_out(monkeypatch):
    """A 'Dr. GRPO' whose baseline leaves the sample out (RLOO itself): no (G − 1)/G."""
    real = claims.group_relative_advantages

    def advantages(rewards, eps=1e-8, scale=True):
        return real(rewards, eps, scale) if scale else claims.leave_one_out_advantages(rewards)

    monkeypatch.setattr(claims, "group_relative_advantages", advantages)


def _grpo_without_std(monkeypatch):
    real = claims.group_relative_advantages
    monkeypatch.setattr(
        claims, "group_relative_advantages", lambda rewards, eps=1e-8, scale=True: real(rewards, eps, False)
    )


def _closed_form_without_lengths(monkeypatch):
    real = claims.group_estimator_mean
    monkeypatch.setattr(
        claims, "group_estimator_mean", lambda problem, fn, size, normalized=False: real(problem, fn, size)
    )


MUTATIONS = [
    (1, "unbiased at B = 10, 100, 1000", _biased_tabular("total", 0.1)),
    (1, "‖ḡ − ∇J‖ ∝ B^s, −0.8 < s < −0.2", _noisy_tabular("total", 3.0)),
    (2, "reward-to-go unbiased", _biased_tabular("reward_to_go", 0.5)),
    (2, "tr Cov(reward-to-go) < tr Cov(whole return)", _noisy_tabular("reward_to_go", 0.5)),
    (3, "mean, V and badly wrong V baselines unbiased", _biased_tabular("value_baseline", 0.5)),
    (3, "tr Cov(mean baseline) < tr Cov(none)", _noisy_tabular("mean_baseline", 0.5)),
    (3, "tr Cov(learned V) < tr Cov(none)", _noisy_tabular("value_baseline", 0.5, lambda o: o["error"] < 1)),
    (4, "tr Cov(optimal b) < tr Cov(every constant b)", _bad_optimal_baseline),
    (5, "λ = 0 biased", _exact_critic_gae),
    (5, "λ = 1 unbiased", _biased_tabular("gae", 0.3, lambda o: o["lam"] == 1.0)),
    (5, "bias falls as λ → 1", _biased_tabular("gae", 0.5, lambda o: o["lam"] == 0.5)),
    (
        5,
        "variance grows as λ → 1 (λ = 0, 0.5 < 0.9 < 1)",
        _noisy_tabular("gae", 0.05, lambda o: o["lam"] == 0.0),
    ),
    (6, "exact critic unbiased", _dpg_errors(lambda e: e + 0.1)),
    (6, "critic errors 0.1, 0.2, 0.4 biased", _dpg_errors(lambda e: 0.0)),
    (6, "bias grows with the critic error", _dpg_errors(lambda e: {0.1: 0.4, 0.4: 0.1}.get(e, e))),
    (6, "fitted Q network biased", _exact_fitted_critic),
    (7, "LQR: BPTT unbiased", _bptt(_biased_bptt)),
    (7, "LQR: tr Cov(BPTT) < tr Cov(score function) / 5", _bptt(_bptt_is_score)),
    (7, "Heaviside: BPTT ∂/∂θ₀ = 0", _smooth_instead_of_heaviside),
    (7, "Heaviside: J changes with θ₀ (99%)", _returns_ignore_theta),
    (7, "stiff wall: std grows with H", _constant_spread),
    (7, "stiff wall: std(H = 80) > 100 std(H = 10)", _constant_spread),
    (8, "straight-through biased", _relaxation({"straight_through": "reinmax"})),
    (8, "Gumbel-Softmax biased", _relaxation({"gumbel_softmax": "reinmax"})),
    (8, "ReinMax less biased than straight-through", _relaxation({"reinmax": "straight_through"})),
    (9, "error falls with ε", _fd_ignores_epsilon),
    (9, "round-off: error rises again at tiny ε", _fd_without_round_off),
    (9, "2d counted evaluations per estimate", _fd_evaluates_more_than_it_reports),
    (10, "IS unbiased at every H and δ", _unweighted_importance_sampling),
    (10, "variance ratio grows with H (δ = 0.5)", _swap_horizons),
    (10, "variance ratio grows with δ (H = 10)", _swap_mismatch),
    (11, "exact V: unbiased at h = 1, 4, 32", _window_critic(lambda scale: 1.2 * scale)),
    (11, "exact V: 99% bound on the relative bias < 0.1 at h = 1, 4, 32", _noisy_windows),
    (12, "V = 0: biased at h = 2 and 8", _window_critic(lambda scale: 1.0)),
    (12, "bias falls as h grows (h = 2 > 8 > 32)", _swap_windows),
    (
        12,
        "mean = closed form ∇J + γʰ/(1 − γʰ)·∇E[(V̂ − V)(x_h)] at h = 2, 8, 32",
        _closed_form_forgets_the_critic,
    ),
    (13, "stiff wall: variance grows > 100× from h = 1 to h = 64", _flat_contact_variance),
    (13, "stiff wall's growth > 10× the soft wall's", _swap_stiffness),
    (14, "with γᵗ: unbiased at γ = 0.5, 0.9, 0.99", _discount_weighting(False)),
    (14, "without γᵗ: biased at γ = 0.5, 0.9, 0.99", _discount_weighting(True)),
    (
        14,
        "without γᵗ: mean = Σ_t d_t π (Q_t − V_t), no γᵗ, at γ = 0.5, 0.9, 0.99",
        _gamma_free_mean_with_gamma,
    ),
    (14, "bias grows as γ falls (γ = 0.99 < 0.9 < 0.5)", _swap_gammas),
    (15, "double-backprop FVP = F v (rel. error < 1e-10)", _damped_fisher_vector_product),
    (15, "F⁺∇J = A/(1 − γ) up to per-state shifts (rel. error < 1e-8)", _fisher_of_unnormalised_visits),
    (15, "CG's error never grows (k = 1 … 30; F-norm and Euclidean)", _cg(lambda k: 31 - k)),
    (15, "CG's rel. error < 1e-3 within 25 iterations", _cg(lambda k: min(k, 1))),
    (15, "sampled FVP unbiased at N = 100, 1000, 10000", _uniform_states),
    (15, "sampled FVP error ∝ N^s, −0.6 < s < −0.4", _noisy_fvp),
    (16, "epoch 1 (ratio 1): unbiased for ∇J(θ_old)", _wrong_advantages),
    (16, "epoch 10: biased against ∇J(θ₁₀) at ε = 0.1, 0.2, 0.3", _ppo(_ppo_without_steps)),
    (16, "bias grows over the epochs (epoch 1 < 5 < 10) at ε = 0.1, 0.2, 0.3", _ppo(_ppo_epochs_reversed)),
    (16, "smaller ε drifts more (epoch 10: ε = 0.1 > 0.2 > 0.3 > no clip)", _surrogate_without_the_clip),
    (17, "RLOO unbiased (sampled; exact mean = ∇J)", _rloo_with_its_own_reward),
    (
        17,
        "Dr. GRPO = (G − 1)/G × RLOO, estimate by estimate (exact mean (G − 1)/G·∇J)",
        _mean_centred_is_leave_one_out,
    ),
    (17, "÷ std and ÷ length biased against (G − 1)/G·∇J", _grpo_without_std),
    (17, "÷ std, ÷ length and GRPO's means = their closed forms", _closed_form_without_lengths),
    (
        17,
        "÷ std and ÷ length turn the direction (exact mean: angle to ∇J > 0.1°; RLOO, Dr. GRPO < 1e-4°)",
        _grpo_without_std,
    ),
]


def test_every_check_has_a_mutation(seed_0):
    checks = {(number, check) for number, claim in seed_0.items() for check in claim.checks}
    assert checks == {(number, check) for number, check, _ in MUTATIONS}


@pytest.mark.parametrize("number, check, setup", MUTATIONS, ids=[f"{n}: {c}" for n, c, _ in MUTATIONS])
def test_a_wrong_input_fails_the_check(monkeypatch, number, check, setup):
    setup(monkeypatch)
    claim = CLAIMS[number](0)
    print(f"claim {number} mutated: {claim.figure}")
    assert check in claim.checks, f"no check named {check!r} in claim {number}: {list(claim.checks)}"
    assert not claim.checks[check], f"claim {number}'s check {check!r} passed a wrong input: {claim.figure}"
    assert not claim.holds
