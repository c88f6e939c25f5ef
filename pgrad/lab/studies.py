"""Lab studies: families of estimators measured across sample budgets, written as a table and a plot.

`pgrad lab STUDY` runs one (`pgrad lab list` names them) and writes `STUDY.md` and `STUDY.png` into the
output folder; `pgrad lab claims` runs the claims of `pgrad.lab.claims`. A study whose axis is not the budget
(`windows`: the window length h) returns a `StudyPage` with its own tables and plot.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from pgrad.lab.measure import Estimator, Measurement, measure
from pgrad.lab.pathwise import (
    CRITIC_SAMPLES,
    ExactQ,
    actor_loss_estimator,
    actor_loss_problem,
    bptt_estimator,
    diff_lqr_problem,
    dpg_estimator,
    dpg_problem,
    fitted_q_ensemble,
    paired_difference_estimator,
    relaxation_estimator,
    relaxation_problem,
    zeroth_order_estimator,
)
from pgrad.lab.report import markdown_table, plot_measurements
from pgrad.lab.score_function import (
    estimator,
    make_problem,
    off_policy_estimator,
    optimal_constant_baseline,
)
from pgrad.lab.windows import plot_windows, window_page, window_study


@dataclass
class StudyOptions:
    """Options shared by the studies (`pgrad lab STUDY --help`)."""

    budgets: tuple[int, ...] = (10, 100, 1000)
    """Samples (episodes) per estimate."""
    estimates: int = 200
    """Independent estimates per budget."""
    problem: str = "random"
    """Tabular problem: random (6 states, 3 actions) or frozenlake (4x4, slippery)."""
    horizon: int = 10
    """Episode length H of the finite-horizon objective."""
    seed: int = 0
    """Seed of the problem, the policy and the estimates."""


@dataclass
class StudyPage:
    """What a study returns when the standard table and plot (against the budget B) do not fit its axis (e.g.
    the window length h): its measurements, its own markdown body and a function writing its plot."""

    title: str
    measurements: list[Measurement]
    body: str
    plot: Callable[[Path], Path]


def _run(options: StudyOptions, estimators: dict[str, Estimator], exact) -> list[Measurement]:
    return [
        measure(name, est, exact, budget, options.estimates, seed=options.seed)
        for name, est in estimators.items()
        for budget in options.budgets
    ]


def study_baselines(options: StudyOptions) -> tuple[str, list[Measurement]]:
    """Naive PG, reward-to-go and baselines (mean, per-step, optimal constant, learned V with error 0.1).

    ĝ = 1/B Σ_episodes Σ_t ∇ log π(a_t|s_t) (Ψ_t − b_t) with Ψ_t the whole return G(τ) (naive) or the
    reward-to-go G_t; b = batch mean, per-time-step mean, V̂_t(s_t) = V_t(s_t) + 0.1·ξ, or the per-parameter
    constant b_k = E[S_k² G] / E[S_k²] (estimated from an independent batch of 50,000 episodes).
    The exact ∇J is the finite-horizon (γ = 1) softmax gradient Σ_t d_t(s) π(a|s)(Q_t(s,a) − V_t(s))."""
    p = make_problem(options.problem, options.horizon, options.seed)
    best = optimal_constant_baseline(p, seed=options.seed + 123)
    estimators = {
        "whole return (naive PG)": estimator(p, "total"),
        "whole return − optimal b": estimator(p, "optimal_baseline", baseline=best),
        "reward-to-go": estimator(p, "reward_to_go"),
        "rtg − batch mean": estimator(p, "mean_baseline"),
        "rtg − per-step mean": estimator(p, "per_step_baseline"),
        "rtg − V (error 0.1)": estimator(p, "value_baseline", error=0.1),
    }
    return f"Score-function baselines on the {p.name} MDP, H = {p.horizon}, J = {p.J:.3f}", _run(
        options, estimators, p.exact
    )


def study_gae(options: StudyOptions) -> tuple[str, list[Measurement]]:
    """GAE(λ) with exact V and with a critic of error 0.15, for λ in 0 … 1.

    Ψ_t = Σ_k (γλ)^k δ_{t+k}, δ_t = r_t + V̂_{t+1}(s_{t+1}) − V̂_t(s_t), V̂ = V + error·ξ. With the exact V every
    λ is unbiased (E[δ_t | s_t, a_t] = Q_t − V_t); with an error, λ < 1 trusts V̂ and is biased, λ = 1 is the
    Monte Carlo return minus a baseline (unbiased, highest variance)."""
    p = make_problem(options.problem, options.horizon, options.seed)
    estimators = {
        f"GAE λ={lam} (V error {err})": estimator(p, "gae", lam=lam, error=err)
        for err in (0.0, 0.15)
        for lam in (0.0, 0.5, 0.9, 1.0)
    }
    return f"GAE(λ) on the {p.name} MDP, H = {p.horizon}", _run(options, estimators, p.exact)


def study_off_policy(options: StudyOptions) -> tuple[str, list[Measurement]]:
    """Per-decision importance-sampled REINFORCE from behaviour policies of growing mismatch δ.

    Episodes come from π_b = softmax(θ + δ ξ); ĝ = 1/B Σ Σ_t ∇ log πθ(a_t|s_t) Σ_{t'≥t} w_{t'} r_{t'} with
    w_{t'} = Π_{k≤t'} πθ(a_k|s_k)/π_b(a_k|s_k): unbiased for ∇J(θ); its variance grows with δ and H."""
    p = make_problem(options.problem, options.horizon, options.seed)
    estimators = {"on-policy reward-to-go": estimator(p, "reward_to_go")}
    estimators.update({f"IS, mismatch δ={d}": off_policy_estimator(p, d) for d in (0.1, 0.25, 0.5)})
    return f"Importance-sampled off-policy PG on the {p.name} MDP, H = {p.horizon}", _run(
        options, estimators, p.exact
    )


def study_critic(options: StudyOptions) -> tuple[str, list[Measurement]]:
    """DPG through a critic with a controlled error, and the shipped actor losses of DDPG, TD3 and SAC through
    exact and fitted critics, on an LQR (budget B: x₀ draws for DPG, replay states for the shipped losses).

    DPG: ĝ = 1/B Σ_b Σ_t γᵗ ∇_u Q̂(x_t, u)|_{u = −K x_t} ∇_K u for u = −Kx; Q̂ uses the policy's cost matrix P
    (exact) or P + error·‖P‖·E (a wrong critic). Shipped losses (`actor_loss_estimator`), on B states from the
    policy's discounted state distribution: DDPG −mean Q(x, −Kx) (`deterministic_actor_loss`, one-member
    `QEnsemble`), TD3 −mean Q₁(x, −Kx) of twins, SAC mean[α log π(u|x) − min_j Q_j(x, u)] with u = −Kx + 0.5ε
    reparameterised (`reparameterised_actor_loss`, `ensemble_min`); ĝ = −∇_K loss / (1 − γ). Critics: the
    exact Q, or `QEnsemble`s (64×64 ReLU) regressed on N exact Q values of a replay of u = −Kx + 0.5ε, each
    member on its own bootstrap and initialisation (`fitted_q_ensemble`). Not shipped: SAC's loss on Q₁
    alone, and "SAC min − Q₁ (paired)" = ĝ_SAC − ĝ_Q₁ + ∇J on the same samples, whose bias is the min's
    own. Exact ∇J: the closed form ∇_K J = −2[(R + γBᵀPB)K − γBᵀPA]Σ, with Σ of the noisy policy for SAC
    (α log π(u|x) = log N(σε; 0, σ²) does not depend on K)."""
    problem, K, exact = dpg_problem(options.seed)
    named: dict[str, tuple[Estimator, Tensor]] = {
        f"DPG, critic error {e}": (dpg_estimator(problem, K, e), exact) for e in (0.0, 0.05, 0.1, 0.2)
    }
    _, _, exacts = actor_loss_problem(options.seed)
    deterministic, stochastic = exacts["deterministic"], exacts["sac"]
    critics = {"exact Q": (ExactQ(problem, K, 1), ExactQ(problem, K, 2))}
    for samples in CRITIC_SAMPLES:
        single = fitted_q_ensemble(problem, K, samples, members=1, seed=options.seed + 10)
        twins = fitted_q_ensemble(problem, K, samples, members=2, seed=options.seed + 20)
        critics[f"fitted, N = {samples}"] = (single, twins)
    for label, (single, twins) in critics.items():
        sac = actor_loss_estimator(problem, K, "sac", twins)
        named[f"DDPG, {label}"] = (actor_loss_estimator(problem, K, "ddpg", single), deterministic)
        named[f"TD3 (Q₁ of twins), {label}"] = (actor_loss_estimator(problem, K, "td3", twins), deterministic)
        named[f"SAC (min of twins), {label}"] = (sac, stochastic)
        if label == "exact Q":
            continue  # the min of two exact critics is the exact critic: nothing to ablate
        sac_q1 = actor_loss_estimator(problem, K, "sac_q1", twins)
        named[f"SAC loss on Q₁ (ablation), {label}"] = (sac_q1, stochastic)
        named[f"SAC min − Q₁ (paired), {label}"] = (
            paired_difference_estimator(sac, sac_q1, stochastic),
            stochastic,
        )
    title = "Pathwise gradients through a critic on a 3-state LQR: DPG, and DDPG / TD3 / SAC's actor losses"
    return title, [
        measure(name, est, g, budget, options.estimates, seed=options.seed)
        for name, (est, g) in named.items()
        for budget in options.budgets
    ]


def study_bptt(options: StudyOptions) -> tuple[str, list[Measurement]]:
    """BPTT (reparameterised) vs the score function on a differentiable LQR, same rollouts budget.

    u = −Kx + σε. BPTT differentiates the rollout return through the dynamics and u (`bptt_loss`); the score
    function uses Σ_t ∇ log π(u_t|x_t) G_t on the same kind of rollouts. Exact ∇J: autograd of
    `DiffLQR.expected_return` (a Riccati-style recursion)."""
    env, K, sigma, exact = diff_lqr_problem(seed=options.seed)
    estimators = {
        "BPTT": bptt_estimator(env, K, sigma, "bptt"),
        "score function (reward-to-go)": bptt_estimator(env, K, sigma, "score"),
    }
    return f"BPTT vs score function, differentiable LQR, H = {env.horizon}, σ = {sigma}", _run(
        options, estimators, exact
    )


def study_relaxations(options: StudyOptions) -> tuple[str, list[Measurement]]:
    """Straight-through, Gumbel-Softmax (τ = 0.5, 1, 2) and ReinMax on a quadratic f of a categorical.

    Exact: ∇θ E_{D∼Cat(softmax θ)}[f(D)] = Σ_k ∇π_k f(e_k). Straight-through uses ∂softmax in the backward
    pass (first order), ReinMax a second-order (Heun) correction that is exact for quadratic f; Gumbel-Softmax
    differentiates a relaxed sample (biased at every temperature)."""
    logits, f, exact = relaxation_problem(seed=options.seed)
    estimators = {"straight-through": relaxation_estimator(logits, f, "straight_through")}
    estimators.update(
        {
            f"Gumbel-Softmax τ={t}": relaxation_estimator(logits, f, "gumbel_softmax", t)
            for t in (0.5, 1.0, 2.0)
        }
    )
    estimators["ReinMax"] = relaxation_estimator(logits, f, "reinmax")
    return "Categorical relaxations: ∇θ E[f(D)], D ~ Cat(softmax θ), f quadratic", _run(
        options, estimators, exact
    )


def study_zeroth_order(options: StudyOptions) -> tuple[str, list[Measurement]]:
    """Finite differences, antithetic Gaussian smoothing and the α-order mix vs BPTT on a differentiable LQR.

    Finite differences (the references' method): ĝ_i = (Ĵ(θ + εe_i) − Ĵ(θ − εe_i)) / 2ε with Ĵ a mean of B
    rollouts under common random numbers, 2d evaluations. Gaussian smoothing: ĝ = 1/B Σ (Ĵ(θ + σu) − Ĵ(θ −
    σu)) u / 2σ, u ~ N(0, I), unbiased for the smoothed objective. α-order (Suh et al. 2022): α·BPTT + (1−α)·
    smoothing with α = 0.5. Exact ∇J: autograd of `DiffLQR.expected_return`."""
    env, K, sigma, exact = diff_lqr_problem(seed=options.seed)
    estimators = {
        "BPTT": bptt_estimator(env, K, sigma, "bptt"),
        "finite differences ε=1e-3": zeroth_order_estimator(env, K, sigma, "fd"),
        "antithetic smoothing σ=0.01": zeroth_order_estimator(env, K, sigma, "smoothing"),
        "α-order α=0.5": zeroth_order_estimator(env, K, sigma, "alpha"),
    }
    return f"Zeroth-order estimators vs BPTT, differentiable LQR, H = {env.horizon}", _run(
        options, estimators, exact
    )


def study_windows(options: StudyOptions) -> StudyPage:
    """SHAC's windowed gradient as the window h grows (1 … 64): on an LQR closed by the exact, a 30%-wrong
    and no critic (bias against the exact ∇J with its closed form, variance per window and per env step), and
    on the contact toy at three stiffnesses (APG windows against a finite-difference reference). B = the
    largest --budgets windows per LQR estimate, M = --estimates; 10·M contact episodes per (k, h)."""
    budget = max(options.budgets)
    study = window_study(budget, options.estimates, seed=options.seed)
    measurements = [row.measurement for row in [*study.lqr, *study.contact]]
    return StudyPage(
        "SHAC's window length h: bias and variance on an LQR and on the contact toy",
        measurements,
        window_page(study, budget, options.estimates),
        lambda path: plot_windows(study, path),
    )


STUDIES: dict[str, Callable[[StudyOptions], tuple[str, list[Measurement]] | StudyPage]] = {
    "baselines": study_baselines,
    "gae": study_gae,
    "off_policy": study_off_policy,
    "critic": study_critic,
    "bptt": study_bptt,
    "relaxations": study_relaxations,
    "zeroth_order": study_zeroth_order,
    "windows": study_windows,
}


def run_study(name: str, options: StudyOptions, out: str | Path) -> tuple[str, Path]:
    """Run a study; write `<out>/<name>.md` and `<out>/<name>.png`; return the markdown and the plot path."""
    result = STUDIES[name](options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(result, StudyPage):
        title, body, plot = result.title, result.body, result.plot(out / f"{name}.png")
    else:
        title, measurements = result
        body = markdown_table(measurements)
        plot = plot_measurements(measurements, out / f"{name}.png", title)
    about = inspect.cleandoc(STUDIES[name].__doc__ or "")
    command = (
        f"pgrad lab {name} --estimates {options.estimates} --budgets {' '.join(map(str, options.budgets))}"
    )
    text = (
        f"# {title}\n\n{about}\n\nStatistics: see [README.md](README.md) (`pgrad.lab.measure`). "
        f"Reproduce with `{command}`.\n\n{body}\n\n![{name}]({plot.name})\n"
    )
    (out / f"{name}.md").write_text(text)
    return text, plot
