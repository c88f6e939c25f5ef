"""The differentiable-simulator family (SHAC, SAPO, AHAC, APG) against pgrad's own PPO and SAC (issue 10).

Every run is its own process, timed from the outside (interpreter start, imports, training, evaluations: what
a user waits for), one torch thread each, the algorithms alternating within each seed so that machine noise
hits all of them. Each run evaluates 10 deterministic episodes every budget/20 env steps (20 points per
curve); a curve point is (env steps, seconds since the process was launched, eval mean return).

    python benchmarks/differentiable.py [--rows swingup pendulum] [--algos shac sapo ahac apg ppo sac]
                                        [--seeds 0 1 2] [--budget-scale 1.0] [--report-only]

`--budget-scale` multiplies every budget (0.01 for a smoke run). Each finished run is appended at once to
benchmarks/results/differentiable_runs.jsonl; a (row, algo, seed, budget) already there is skipped, so an
interrupted benchmark resumes where it stopped. `--report-only` rebuilds the report from that file.

Rows (benchmarks/results/differentiable.md, differentiable_<row>.png), budgets and options in ROWS:
  swingup   pgrad/CartPoleSwingUp-v0, SHAC's task: 240-step episodes from hanging (hanging still ≈ −2400).
            shac/sapo/ahac/apg 1M env steps, ppo 2M (the issue gives PPO ≥ 2M), sac 50k (≈100 steps/s).
  pendulum  pgrad/DiffPendulum-v0, Gymnasium Pendulum-v1's dynamics and reward, 200-step episodes.
            shac/sapo/ahac/apg 400k env steps, ppo 2M, sac 20k (acceptance.py's sac-pendulum settings).

The report checks the issue's target on the data: SHAC (and SAPO, AHAC) reaches PPO's final return with
≥ 20× fewer env steps and less wall time, on the curves' means over seeds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tyro
from acceptance import CASES  # benchmarks/acceptance.py (this script's folder is on sys.path)

from pgrad.algorithms.presets import PRESETS  # torch-free

RESULTS = Path(__file__).parent / "results"

# rl-baselines3-zoo's Pendulum-v1 PPO (hyperparams/ppo.yml: 4 envs × 1024 steps, minibatches of 64, 10 epochs,
# λ 0.95, lr 1e-3 constant, clip 0.2, no entropy bonus, VecNormalize on observations and rewards) in pgrad's
# names; the zoo's gSDE has no pgrad counterpart. γ is per row (0.9 on Pendulum as in the zoo, 0.99 swing-up).
# PPO and SAC train on the env's batched torch twin (backend native), the simulator the differentiable
# algorithms step, rather than on one Gymnasium env per sub-env; evaluation is the same for all.
PPO_ZOO: dict[str, Any] = {
    **{k: v for k, v in PRESETS["ppo"]["Pendulum-v1"].items() if k != "gamma"},  # pgrad's zoo-style preset
    "backend": "native",
}

# Per row: the env id and, per algorithm, its env-step budget and options (the algorithm's defaults otherwise;
# run options such as backend are allowed too).
ROWS: dict[str, dict[str, Any]] = {
    "swingup": dict(
        env="pgrad/CartPoleSwingUp-v0",
        y_floor=-5000.0,  # plots clip returns below this (a cart sent flying scores ≪ −10⁴)
        algos={
            "shac": dict(budget=1_000_000, options={}),
            "sapo": dict(budget=1_000_000, options={}),
            "ahac": dict(budget=1_000_000, options={}),
            "apg": dict(budget=1_000_000, options={}),
            "ppo": dict(budget=2_000_000, options={**PPO_ZOO, "gamma": 0.99}),
            "sac": dict(budget=50_000, options={"backend": "native"}),
        },
    ),
    "pendulum": dict(
        env="pgrad/DiffPendulum-v0",
        y_floor=-2000.0,
        algos={
            "shac": dict(budget=400_000, options={}),
            "sapo": dict(budget=400_000, options={}),
            "ahac": dict(budget=400_000, options={}),
            "apg": dict(budget=400_000, options={}),
            "ppo": dict(budget=2_000_000, options={**PPO_ZOO, "gamma": 0.9}),
            "sac": dict(budget=20_000, options={**CASES["sac-pendulum"]["options"], "backend": "native"}),
        },
    ),
}

ALGOS = ("shac", "sapo", "ahac", "apg", "ppo", "sac")
CHALLENGERS = ("shac", "sapo", "ahac")  # checked against the target
TARGET_STEPS_RATIO = 20.0
COLORS = {algo: f"C{i}" for i, algo in enumerate(ALGOS)}


def scaled(budget: int, scale: float) -> int:
    return max(1, round(budget * scale))


# -- worker (each run in its own process) ----------------------------------------------------------------


def worker(name: str, algo: str, seed: int, budget: int, launched: float) -> dict[str, Any]:
    """Train one run; its eval curve with seconds since `launched` (the parent's time.time() at launch)."""
    import pgrad
    from pgrad.run.logger import MetricsLogger, read_metrics

    # Stamp every evaluation record with the seconds since the process was launched: the records' own "time"
    # is training time only (no start-up, no evaluations).
    log = MetricsLogger.log

    def stamped(self: MetricsLogger, record: dict[str, Any]) -> None:
        if "eval/mean_return" in record:
            record = {**record, "bench/process_seconds": time.time() - launched}
        log(self, record)

    MetricsLogger.log = stamped  # type: ignore[method-assign]
    row = ROWS[name]
    run_dir = tempfile.mkdtemp(prefix=f"bench-diff-{name}-{algo}-s{seed}-")
    summary = pgrad.train(
        algo, row["env"], total_steps=budget, seed=seed, run_dir=run_dir, threads=1,
        eval_every=max(1, budget // 20), eval_episodes=10, checkpoint_every=0, checkpoint_minutes=0,
        progress=False, tensorboard=False, preset=False, **row["algos"][algo]["options"],
    )  # fmt: skip
    evals = [r for r in read_metrics(run_dir) if "eval/mean_return" in r]
    shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "steps": summary["global_step"],
        "train_seconds": summary["wall_time"],
        "eval": summary["eval"]["mean_return"],
        "eval_std": summary["eval"]["std_return"],
        # (env steps, seconds since launch, eval mean return); training seconds alongside
        "curve": [(r["global_step"], r["bench/process_seconds"], r["eval/mean_return"]) for r in evals],
        "curve_train_seconds": [r.get("time", summary["wall_time"]) for r in evals],
    }


def run_in_process(name: str, algo: str, seed: int, budget: int) -> dict[str, Any]:
    """One run in a fresh interpreter, timed from the outside."""
    launched, start = time.time(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", name, algo, str(seed), str(budget), repr(launched)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {algo} seed {seed} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_seconds": wall}


@dataclasses.dataclass
class Args:
    rows: tuple[str, ...] = tuple(ROWS)
    """Rows to run and report (swingup, pendulum)."""
    algos: tuple[str, ...] = ALGOS
    """Algorithms to run and report."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds per row and algorithm."""
    budget_scale: float = 1.0
    """Multiply every budget by this (e.g. 0.01 for a smoke run); the report shows runs at these budgets."""
    report_only: bool = False
    """Rebuild the tables and plots from the saved runs without training."""


def _results_dir(argv: list[str]) -> tuple[Path, list[str]]:
    """The hidden `--results-dir DIR` option (default benchmarks/results) and the remaining arguments."""
    rest, results = [], RESULTS
    it = iter(argv)
    for arg in it:
        if arg == "--results-dir":
            results = Path(next(it))
        elif arg.startswith("--results-dir="):
            results = Path(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return results, rest


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        name, algo, seed, budget, launched = sys.argv[2:7]
        print(json.dumps(worker(name, algo, int(seed), int(budget), float(launched))))
        return
    results, argv = _results_dir(sys.argv[1:])
    args = tyro.cli(Args, args=argv)
    unknown = sorted(set(args.rows) - set(ROWS)) + sorted(set(args.algos) - set(ALGOS))
    if unknown:
        raise SystemExit(f"unknown rows/algos: {', '.join(unknown)} (rows {list(ROWS)}, algos {list(ALGOS)})")
    runs_file = results / "differentiable_runs.jsonl"
    results.mkdir(parents=True, exist_ok=True)
    done = {(r["row"], r["algo"], r["seed"], r["budget"]) for r in _read(runs_file)}
    failed = []
    for name in () if args.report_only else args.rows:
        for seed in args.seeds:
            for algo in args.algos:  # alternate the algorithms
                budget = scaled(ROWS[name]["algos"][algo]["budget"], args.budget_scale)
                if (name, algo, seed, budget) in done:
                    continue
                try:
                    out = {"row": name, "algo": algo, "seed": seed, "budget": budget}
                    out.update(run_in_process(name, algo, seed, budget))
                except RuntimeError as exc:  # keep going; the run is retried next time
                    print(exc, file=sys.stderr, flush=True)
                    failed.append((name, algo, seed))
                    continue
                with open(runs_file, "a") as f:
                    f.write(json.dumps(out) + "\n")
                print(json.dumps({k: v for k, v in out.items() if not k.startswith("curve")}), flush=True)
    wanted = {
        (name, algo, seed, scaled(ROWS[name]["algos"][algo]["budget"], args.budget_scale))
        for name in args.rows
        for algo in args.algos
        for seed in args.seeds
    }
    latest = {}
    for r in _read(runs_file):
        key = (r["row"], r["algo"], r["seed"], r["budget"])
        if key in wanted:
            latest[key] = r
    if latest:
        _write(list(latest.values()), results, args)
    else:
        have = sorted({(r["row"], r["algo"], r["budget"]) for r in _read(runs_file)})
        print(f"no saved runs at these rows, algos, seeds and budgets in {runs_file} (saved: {have})")
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {failed}")


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- report ----------------------------------------------------------------------------------------------


def mean_curve(rs: list[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    """Steps, seconds and returns averaged over seeds point by point (every seed evaluates at the same
    steps), with the min and max return: arrays of the shortest curve's length."""
    n = min(len(r["curve"]) for r in rs)
    points = np.array([r["curve"][:n] for r in rs], dtype=float).reshape(len(rs), n, 3)
    steps, secs, rets = points[..., 0], points[..., 1], points[..., 2]
    return steps.mean(0), secs.mean(0), rets.mean(0), rets.min(0), rets.max(0)


def first_reach(curve: tuple[np.ndarray, ...], level: float) -> tuple[float, float] | None:
    """(env steps, seconds) of the first point of a mean curve at or above `level`, or None."""
    steps, secs, rets = curve[:3]
    hits = np.flatnonzero(rets >= level - 1e-9)
    return (float(steps[hits[0]]), float(secs[hits[0]])) if len(hits) else None


def _write(runs: list[dict[str, Any]], results: Path, args: Args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = "" if args.budget_scale == 1.0 else f" --budget-scale {args.budget_scale:g}"
    lines = [
        "# Differentiable-simulator family vs PPO and SAC",
        "",
        f"`python benchmarks/differentiable.py{scale}`: every run a separate process timed from outside",
        "(imports and evaluations included), one torch thread, algorithms alternating, a shared 2-core CPU",
        "machine. Evaluation: 10 deterministic episodes every budget/20 env steps. Mean ± std over seeds.",
        "Options per run in `ROWS` of the script (defaults otherwise); PPO is rl-baselines3-zoo's Pendulum",
        "setting without gSDE; PPO and SAC train on the env's batched torch twin, as the differentiable",
        "algorithms do. SAC gets far fewer env steps than the others (about 100 steps/s here).",
        "",
    ]
    targets = [
        "## Target: SHAC reaches PPO's final return with ≥ 20× fewer env steps and less wall time",
        "",
        "On the curves' means over seeds: the first evaluation at or above PPO's final mean return.",
        "PPO's own first evaluation at or above it is the reference (its budget is no smaller); wall =",
        "seconds since the process was launched. *budget ratio* = PPO's budget / the algorithm's steps.",
        "",
        "| row | algo | PPO final return | PPO reaches it at | algo reaches it at | steps ratio "
        "(PPO / algo) | budget ratio | wall ratio (PPO / algo) | target met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    pictures = []
    for name in (n for n in ROWS if any(r["row"] == n for r in runs)):
        row = ROWS[name]
        groups = {a: [r for r in runs if r["row"] == name and r["algo"] == a] for a in ALGOS}
        groups = {a: sorted(rs, key=lambda r: r["seed"]) for a, rs in groups.items() if rs}
        lines += [
            f"## {name}: `{row['env']}`",
            "",
            "| algo | budget (env steps) | seeds | final eval | process wall (s) | training (s) | steps/s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        curves, low = {}, np.inf
        for algo, rs in groups.items():
            evals = np.array([r["eval"] for r in rs])
            wall = np.array([r["process_seconds"] for r in rs])
            train = np.array([r["train_seconds"] for r in rs])
            sps = np.array([r["steps"] / r["train_seconds"] for r in rs])
            seeds = ", ".join(str(r["seed"]) for r in rs)
            lines.append(
                f"| {algo} | {rs[0]['budget']:,} | {seeds} | {evals.mean():.1f} ± {evals.std():.1f} | "
                f"{wall.mean():.1f} ± {wall.std():.1f} | {train.mean():.1f} | {sps.mean():,.0f} |"
            )
            if not all(r["curve"] for r in rs):
                continue
            curves[algo] = curve = mean_curve(rs)
            steps, secs, mean, lo, hi = curve
            low = min(low, lo.min())
            label = f"{algo} ({len(rs)} seed{'s' * (len(rs) > 1)})"
            for ax, x in zip(axes, (steps, secs), strict=True):
                ax.plot(x, mean, color=COLORS[algo], marker=".", label=label)
                ax.fill_between(x, lo, hi, color=COLORS[algo], alpha=0.15, linewidth=0)
        lines.append("")
        if "ppo" in groups:
            level = float(np.mean([r["eval"] for r in groups["ppo"]]))
            ppo_at = first_reach(curves["ppo"], level) if "ppo" in curves else None
            ppo_budget = float(np.mean([r["steps"] for r in groups["ppo"]]))
            for ax in axes:
                ax.axhline(level, color="grey", linestyle="--", linewidth=1, label="PPO final")
            for algo in (a for a in CHALLENGERS if a in curves):
                at = first_reach(curves[algo], level)
                if at is None or ppo_at is None:
                    reached = "not reached" if at is None else f"{at[0]:,.0f} steps, {at[1]:.0f} s"
                    targets.append(
                        f"| {name} | {algo} | {level:.1f} | {_at(ppo_at)} | {reached} | – | – | – | no |"
                    )
                    continue
                steps_ratio, wall_ratio = ppo_at[0] / at[0], ppo_at[1] / at[1]
                met = "yes" if steps_ratio >= TARGET_STEPS_RATIO and wall_ratio > 1 else "no"
                targets.append(
                    f"| {name} | {algo} | {level:.1f} | {_at(ppo_at)} | {_at(at)} | {steps_ratio:.1f}× | "
                    f"{ppo_budget / at[0]:.1f}× | {wall_ratio:.2f}× | {met} |"
                )
        floor = row["y_floor"]
        for ax, xlabel in zip(axes, ("env steps", "seconds since process launch"), strict=True):
            clipped = f" (clipped at {floor:g})" if low < floor else ""
            ax.set_title(f"{name}: eval return vs {xlabel}{clipped}", fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("eval mean return (10 det. episodes)")
            if low < floor:
                ax.set_ylim(bottom=floor)
            ax.grid(alpha=0.3)
        axes[0].set_xscale("log")
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{row['env']}: mean over seeds, band = min–max", fontsize=10)
        fig.tight_layout()
        fig.savefig(results / f"differentiable_{name}.png", dpi=90)
        plt.close(fig)
        pictures.append(f"![{name}](differentiable_{name}.png)")
    text = "\n".join([*lines, *targets, "", *pictures]) + "\n"
    (results / "differentiable.md").write_text(text)
    print(text)


def _at(point: tuple[float, float] | None) -> str:
    return "not reached" if point is None else f"{point[0]:,.0f} steps, {point[1]:.0f} s"


if __name__ == "__main__":
    main()
