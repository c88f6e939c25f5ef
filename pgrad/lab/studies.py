"""Lab studies: families of estimators measured across sample budgets, written as a table and a plot.

`pgrad lab STUDY` runs one (`pgrad lab list` names them) and writes `STUDY.md` and `STUDY.png` into the
output folder; `pgrad lab claims` runs the claims of `pgrad.lab.claims`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pgrad.lab.measure import Estimator, Measurement, measure
from pgrad.lab.pathwise import (
    bptt_estimator,
    diff_lqr_problem,
    dpg_estimator,
    dpg_problem,
    fitted_q_network,
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
    """DPG through a critic on LQR: exact Q, and Q with relative errors 0.05, 0.1, 0.2 (budget: x₀ draws).

    ĝ = 1/B Σ_b Σ_t γᵗ ∇_u Q̂(x_t, u)|_{u = −K x_t} ∇_K u for the deterministic policy u = −Kx; Q̂ uses the
    policy's cost matrix P (exact) or P + error·‖P‖·E (a wrong critic). Exact ∇J from the closed form
    ∇_K J = −2[(R + γBᵀPB)K − γBᵀPA]Σ."""
    problem, K, exact = dpg_problem(options.seed)
    estimators = {f"DPG, critic error {e}": dpg_estimator(problem, K, e) for e in (0.0, 0.05, 0.1, 0.2)}
    for samples in (200, 5000):
        critic = fitted_q_network(problem, K, samples)
        estimators[f"DPG, fitted Q network ({samples} samples)"] = dpg_estimator(problem, K, critic=critic)
    return "Pathwise gradient through a critic (DPG) on a 3-state LQR", _run(options, estimators, exact)


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


STUDIES: dict[str, Callable[[StudyOptions], tuple[str, list[Measurement]]]] = {
    "baselines": study_baselines,
    "gae": study_gae,
    "off_policy": study_off_policy,
    "critic": study_critic,
    "bptt": study_bptt,
    "relaxations": study_relaxations,
    "zeroth_order": study_zeroth_order,
}


def run_study(name: str, options: StudyOptions, out: str | Path) -> tuple[str, Path]:
    """Run a study; write `<out>/<name>.md` and `<out>/<name>.png`; return the markdown and the plot path."""
    title, measurements = STUDIES[name](options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_measurements(measurements, out / f"{name}.png", title)
    about = (STUDIES[name].__doc__ or "").strip()
    command = (
        f"pgrad lab {name} --estimates {options.estimates} --budgets {' '.join(map(str, options.budgets))}"
    )
    text = (
        f"# {title}\n\n{about}\n\nStatistics: see [README.md](README.md) (`pgrad.lab.measure`). "
        f"Reproduce with `{command}`.\n\n{markdown_table(measurements)}\n\n![{name}]({plot.name})\n"
    )
    (out / f"{name}.md").write_text(text)
    return text, plot
