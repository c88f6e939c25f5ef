"""`pgrad compare`: algorithms across seeds, with rliable's interquartile mean and stratified-bootstrap CIs.

    pgrad compare RUN_DIR... [--label-by algorithm|env|tag|algorithm+env] [--metric eval|train] [--out DIR]
                  [--reps N] [--seed S] [--confidence 0.95]
    pgrad compare --algos ppo,a2c --env CartPole-v1 --seeds 5 --total-steps N [--out DIR] [--eval-every N]

Run folders are grouped by a label read from their run.json. For each group, and for a run's score `x_r`
(its return at a step, or its final return), the statistics are taken across the group's runs r = 1..n:

    IQM    = mean of the runs between the 25th and 75th percentile: sort x, drop ⌊n/4⌋ at each end, average
             (scipy.stats.trim_mean(x, 0.25), which rliable.metrics.aggregate_iqm is; with n < 4 it drops
             nothing and equals the mean)
    P(X > Y) = (1 / (n_X n_Y)) Σ_i Σ_j [x_i > y_j] + ½ [x_i = y_j]     (Mann-Whitney U / (n_X n_Y))

Confidence intervals are percentile intervals of the stratified bootstrap (`rliable.library.
get_interval_estimates`): the runs of a group are resampled with replacement `reps` times and the statistic
recomputed; for P(X > Y) the two groups are resampled independently, so groups of different sizes are fine.
rliable 1.2 draws its resamples from numpy's global generator whatever `random_state` it is given, so each
estimate seeds that generator with `seed` (restoring its state after): the same seed gives the same CIs.

Learning curves are taken on a common grid of env steps (every step at which any run recorded the metric);
each run's curve is interpolated linearly onto it and never extrapolated, so a group's curve covers the steps
that all of its runs cover. Outputs: compare.md (table), compare.json (every number), compare.png (curves).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import tyro

from pgrad.errors import CheckpointError, ConfigError, PgradWarning, did_you_mean, optional_import

LABELS = ("algorithm", "env", "tag", "algorithm+env")
METRICS = {"eval": "eval/mean_return", "train": "charts/episode_return"}
SWEEP_FILE = "sweep.json"  # written by `pgrad sweep` in its folder (pgrad.workflow.sweep)
MAX_GRID = 500  # learning-curve points per group at most: a longer union of steps is resampled evenly
FEATURE = "pgrad compare"


# -- reading runs --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Run:
    """One run folder: its label, where it came from, and its (step, score) series for the metric."""

    run_dir: str
    label: str
    algorithm: str
    env: str
    seed: int | None
    steps: np.ndarray
    scores: np.ndarray


def _label(saved: dict[str, Any], label_by: str, run_dir: Path) -> str:
    if label_by == "tag":
        tag = (saved.get("run") or {}).get("tag")
        if not tag:
            raise ConfigError(
                f"{run_dir / 'run.json'} has no tag, which --label-by tag needs (train with --tag NAME), "
                "or label by algorithm, env or algorithm+env"
            )
        return str(tag)
    algorithm, env = str(saved["algorithm"]), str(saved.get("env", "?"))
    return {"algorithm": algorithm, "env": env, "algorithm+env": f"{algorithm} on {env}"}[label_by]


def _series(records: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records holding a finite `key`, by step (the last record of a step wins)."""
    points: dict[int, float] = {}
    for record in records:
        value, step = record.get(key), record.get("global_step")
        finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if finite and isinstance(step, int | float) and not isinstance(step, bool):
            points[int(step)] = float(value)
    steps = np.array(sorted(points), dtype=np.int64)
    return steps, np.array([points[int(s)] for s in steps], dtype=np.float64)


def sweep_run_dirs(folder: str | Path) -> list[Path]:
    """The run folders of the `pgrad sweep` in `folder` (its sweep.json) that finished, in the sweep's
    order: what `pgrad compare SWEEP_DIR --label-by tag` compares."""
    path = Path(folder) / SWEEP_FILE
    if not path.exists():
        raise ConfigError(f"{folder} holds no {SWEEP_FILE}: not a pgrad sweep folder")
    runs = json.loads(path.read_text())["runs"]
    return [Path(folder) / r["label"] / f"s{r['seed']}" for r in runs if r["status"] != "failed"]


def read_runs(run_dirs: Sequence[str | Path], label_by: str, metric: str) -> list[_Run]:
    """The runs of `run_dirs`, labelled, with their `metric` series; one-line errors for a folder that is not
    a run, a run that never recorded the metric, a folder given twice."""
    from pgrad.run.folder import RUN_FILE, read_run_file
    from pgrad.run.logger import METRICS_FILE, read_metrics

    key = METRICS[metric]
    runs, seen = [], {}
    # a sweep's folder (sweep.json, no run.json) stands for its finished runs
    expanded = [
        run
        for given in run_dirs
        for run in (
            sweep_run_dirs(given)
            if (Path(given) / SWEEP_FILE).exists() and not (Path(given) / "run.json").exists()
            else [given]
        )
    ]
    for given in expanded:
        path = Path(given)
        if not path.is_dir():
            raise ConfigError(f"{path}: no such run folder")
        if not (path / RUN_FILE).exists():
            raise ConfigError(f"{path} is not a pgrad run folder (no {RUN_FILE})")
        resolved = path.resolve()
        if resolved in seen:
            raise ConfigError(
                f"run folder {path} is given twice (also as {seen[resolved]}): it would count twice"
            )
        seen[resolved] = path
        saved = read_run_file(path)
        steps, scores = _series(read_metrics(path), key)
        if len(steps) == 0:
            what = "evaluation" if metric == "eval" else "finished training episode"
            raise ConfigError(
                f"{path / METRICS_FILE} has no '{key}' record: the run has no {what} to compare"
                + (" (train with evaluations: --eval-episodes > 0)" if metric == "eval" else "")
            )
        seed = (saved.get("run") or {}).get("seed")
        runs.append(
            _Run(
                str(path),
                _label(saved, label_by, path),
                str(saved["algorithm"]),
                str(saved.get("env", "?")),
                seed if isinstance(seed, int) else None,
                steps,
                scores,
            )
        )
    return runs


# -- statistics ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (which rliable's resampling uses) and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _median(scores: np.ndarray) -> float:
    """Median across runs. (rliable's aggregate_median is the median of per-task *means*: with one task,
    the mean.)"""
    return float(np.median(scores))


# rliable calls the statistic once per bootstrap resample; scipy's trim_mean and mannwhitneyu cost ~0.5 ms a
# call in argument handling, so the resamples use these numpy twins (the tests hold them equal to rliable's);
# the point estimates reported are rliable's own.
def _iqm(scores: np.ndarray) -> Any:
    """rliable's aggregate_iqm (trim_mean(·, 0.25) over runs × tasks) at each trailing index: sort the
    n = runs × tasks scores, drop ⌊n/4⌋ at each end, average the rest. [N, T] → scalar; [N, T, F] → [F]."""
    flat = scores.reshape(scores.shape[0] * scores.shape[1], -1)
    n = flat.shape[0]
    cut = int(0.25 * n)
    value = np.sort(flat, axis=0)[cut : n - cut].mean(axis=0)
    return value if scores.ndim > 2 else value[0]


def _improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's probability_of_improvement: per task, the mean over all pairs (x_i, y_j) of [x_i > y_j] +
    ½[x_i = y_j] (Mann-Whitney U / (n_x n_y)); averaged over tasks. [N, T], [M, T] → scalar."""
    x, y = scores_x[:, None, :], scores_y[None, :, :]
    return float(np.mean((x > y).mean(axis=(0, 1)) + 0.5 * (x == y).mean(axis=(0, 1))))


def _interval(rly: Any, scores: Any, func: Any, reps: int, confidence: float, seed: int) -> np.ndarray:
    """The CI [2, ...] of `func` on `scores` (an array, or a list of arrays resampled independently)."""
    with _numpy_seed(seed):
        _, interval = rly.get_interval_estimates(
            {"x": scores}, func, reps=reps, confidence_interval_size=confidence
        )
    return interval["x"]


def _grid(runs: list[_Run]) -> tuple[np.ndarray, bool]:
    """The common steps: every step at which a run recorded the metric (evenly resampled past MAX_GRID)."""
    steps = np.unique(np.concatenate([run.steps for run in runs]))
    if len(steps) <= MAX_GRID:
        return steps, False
    return np.unique(np.linspace(steps[0], steps[-1], MAX_GRID).round().astype(np.int64)), True


def _curve(
    rly: Any, runs: list[_Run], grid: np.ndarray, reps: int, confidence: float, seed: int
) -> dict[str, Any]:
    """A group's IQM curve with its pointwise CI, on the grid steps that every run of the group covers."""
    start, end = max(run.steps[0] for run in runs), min(run.steps[-1] for run in runs)
    steps = grid[(grid >= start) & (grid <= end)]
    curve: dict[str, Any] = {"steps": steps.tolist(), "iqm": [], "ci_low": None, "ci_high": None}
    if len(steps) == 0:
        return curve
    values_N1F = np.stack([np.interp(steps, run.steps, run.scores) for run in runs])[:, None, :]
    curve["iqm"] = _iqm(values_N1F).tolist()
    if len(runs) >= 2:
        interval = _interval(rly, values_N1F, _iqm, reps, confidence, seed)
        curve.update(ci_low=interval[0].tolist(), ci_high=interval[1].tolist())
    return curve


def _finals(
    rly: Any, metrics: Any, finals: np.ndarray, reps: int, confidence: float, seed: int
) -> dict[str, Any]:
    """IQM, median and mean of the runs' final scores, each with its CI (None with a single run)."""
    scores_N1 = finals[:, None]
    out: dict[str, Any] = {}
    statistics = (
        ("iqm", metrics.aggregate_iqm, _iqm),
        ("median", _median, _median),
        ("mean", metrics.aggregate_mean, metrics.aggregate_mean),
    )
    for name, point, resampled in statistics:
        out[name], out[f"{name}_ci"] = float(point(scores_N1)), None
        if len(finals) >= 2:
            low, high = np.ravel(_interval(rly, scores_N1, resampled, reps, confidence, seed))
            out[f"{name}_ci"] = [float(low), float(high)]
    return out


# -- the comparison ------------------------------------------------------------------------------------------
def _check_options(label_by: str, metric: str, reps: int, confidence: float, seed: int) -> None:
    if label_by not in LABELS:
        raise ConfigError(
            f"--label-by: unknown label '{label_by}'{did_you_mean(label_by, LABELS)} "
            f"(labels: {', '.join(LABELS)})"
        )
    if metric not in METRICS:
        raise ConfigError(f"--metric: unknown metric '{metric}' (metrics: {', '.join(METRICS)})")
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"--reps must be an int >= 1, got {reps!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise ConfigError(f"--confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"--seed must be an int in [0, 2**32), got {seed!r}")  # numpy's seed range


def compare(
    run_dirs: Sequence[str | Path],
    label_by: str = "algorithm",
    metric: str = "eval",
    out: str | Path | None = None,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Compare groups of runs: learning curves and final scores, IQM with stratified-bootstrap CIs.

    `run_dirs` are run folders; they are grouped by `label_by` ("algorithm", "env", "tag" — the run option
    `tag` — or "algorithm+env"), in the order the labels first appear. `metric` is "eval" (the evaluations'
    `eval/mean_return`) or "train" (`charts/episode_return`, the mean return of the training episodes of
    each log interval). Each run's final score is its last record of the metric.

    For a group of n runs with scores x: IQM = trim_mean(x, 0.25) (the mean of the middle half; the mean
    when n < 4), the median and the mean, each with a `confidence` percentile CI from `reps` stratified
    bootstrap resamples of the runs (rliable), seeded by `seed`. Between groups X and Y (each pair once, X
    first): P(X > Y) = mean over all pairs (x_i, y_j) of [x_i > y_j] + ½[x_i = y_j], with a CI from resampling
    each group independently. A group of one run gets its point estimates and no CI (None).

    Learning curves: the IQM across runs at each step of a common grid (the union of the steps at which runs
    recorded the metric, at most 500 points), each run linearly interpolated onto it between its first and
    last record and never beyond, with a pointwise CI band.

    Returns the content of compare.json (also written, with compare.md and compare.png, into `out` when
    given). Requires the `compare` extra (rliable).
    """
    if isinstance(run_dirs, str | Path):
        run_dirs = [run_dirs]
    _check_options(label_by, metric, reps, confidence, seed)
    if not run_dirs:
        raise ConfigError("pgrad compare needs at least one run folder")
    rly = optional_import("rliable.library", "compare", FEATURE)
    metrics = optional_import("rliable.metrics", "compare", FEATURE)
    runs = read_runs(run_dirs, label_by, metric)
    groups: dict[str, list[_Run]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    grid, thinned = _grid(runs)
    notes: list[str] = []
    if thinned:
        notes.append(
            f"the runs recorded the metric at more than {MAX_GRID} distinct steps: curves are taken "
            f"at {len(grid)} evenly spaced steps"
        )
    result_groups = []
    for label, members in groups.items():
        finals = np.array([run.scores[-1] for run in members])
        curve = _curve(rly, members, grid, reps, confidence, seed)
        result_groups.append(
            {
                "label": label,
                "n_runs": len(members),
                "runs": [
                    {
                        "run_dir": run.run_dir,
                        "algorithm": run.algorithm,
                        "env": run.env,
                        "seed": run.seed,
                        "final_step": int(run.steps[-1]),
                        "final_score": float(run.scores[-1]),
                    }
                    for run in members
                ],
                "final": _finals(rly, metrics, finals, reps, confidence, seed),
                "curve": curve,
            }
        )
        notes.extend(_group_notes(label, members, curve))
    few = [f"'{label}' ({len(members)})" for label, members in groups.items() if 2 <= len(members) < 4]
    if few:
        notes.append(
            f"fewer than 4 runs in {', '.join(few)}: the IQM trims ⌊n/4⌋ = 0 runs at each end and equals the "
            "mean; train more seeds for a robust estimate"
        )
    pairwise = _pairwise(rly, metrics, groups, reps, confidence, seed)
    if len(groups) == 1:
        notes.append("one group: no pairwise comparison (label the runs differently with --label-by)")
    result = {
        "label_by": label_by,
        "metric": METRICS[metric],
        "confidence": confidence,
        "reps": reps,
        "seed": seed,
        "grid": grid.tolist(),
        "groups": result_groups,
        "pairwise": pairwise,
        "notes": notes,
    }
    if out is not None:
        write_outputs(result, out)
    return result


def _group_notes(label: str, members: list[_Run], curve: dict[str, Any]) -> list[str]:
    notes = []
    if len(members) < 2:
        notes.append(f"'{label}' has 1 run: no confidence intervals (a bootstrap over one run is degenerate)")
    envs = sorted({run.env for run in members})
    if len(envs) > 1:
        message = (
            f"'{label}' mixes envs {', '.join(envs)}: their returns are on different scales "
            "(--label-by algorithm+env compares per env)"
        )
        warnings.warn(message, PgradWarning, stacklevel=3)
        notes.append(message)
    last = max(int(run.steps[-1]) for run in members)
    if not curve["steps"]:
        notes.append(
            f"'{label}': its runs share no step span (one ends before another's first record): no curve"
        )
    elif curve["steps"][-1] < last:
        shortest = min(members, key=lambda run: run.steps[-1])
        notes.append(
            f"'{label}': the curve stops at step {curve['steps'][-1]:,}, where its shortest run "
            f"({shortest.run_dir}) ends (curves are not extrapolated); its longest ends at {last:,}"
        )
    return notes


def _pairwise(
    rly: Any, metrics: Any, groups: dict[str, list[_Run]], reps: int, confidence: float, seed: int
) -> list[dict[str, Any]]:
    """P(X > Y) of the final scores for each pair of groups (X before Y); a CI when both have 2+ runs."""
    finals = {label: np.array([[run.scores[-1]] for run in members]) for label, members in groups.items()}
    labels = list(groups)
    pairs = []
    for i, x in enumerate(labels):
        for y in labels[i + 1 :]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # scipy's p-value when all scores tie
                value = float(metrics.probability_of_improvement(finals[x], finals[y]))
            interval = None
            if min(len(finals[x]), len(finals[y])) >= 2:
                scores = [finals[x], finals[y]]
                low, high = np.ravel(_interval(rly, scores, _improvement, reps, confidence, seed))
                interval = [float(low), float(high)]
            pairs.append({"x": x, "y": y, "probability": value, "ci": interval})
    return pairs


# -- outputs -------------------------------------------------------------------------------------------------
def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.2f}"


def _with_ci(value: float, interval: list[float] | None, fmt=_num) -> str:
    if interval is None:
        return f"{fmt(value)} (no CI)"
    return f"{fmt(value)} [{fmt(interval[0])}, {fmt(interval[1])}]"


def format_table(result: dict[str, Any]) -> str:
    """compare.md: the final-scores table, the pairwise probabilities of improvement and the notes."""
    level = f"{100 * result['confidence']:g}%"
    n_runs = sum(group["n_runs"] for group in result["groups"])
    n_groups = len(result["groups"])
    lines = [
        "# pgrad compare",
        "",
        f"{n_runs} run{'s' * (n_runs != 1)} in {n_groups} group{'s' * (n_groups != 1)} (by "
        f"{result['label_by']}); score: the last "
        f"`{result['metric']}` of each run. IQM: mean of the middle half of the runs. Brackets: {level} "
        f"stratified-bootstrap CIs ({result['reps']:,} resamples, seed {result['seed']}).",
        "",
        "## Final scores",
        "",
        f"| group | runs | final step | IQM [{level} CI] | median [{level} CI] | mean [{level} CI] |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for group in result["groups"]:
        final = group["final"]
        steps = [run["final_step"] for run in group["runs"]]
        span = f"{min(steps):,}" if min(steps) == max(steps) else f"{min(steps):,}–{max(steps):,}"
        cells = [_with_ci(final[name], final[f"{name}_ci"]) for name in ("iqm", "median", "mean")]
        lines.append(f"| {group['label']} | {group['n_runs']} | {span} | {' | '.join(cells)} |")
    if result["pairwise"]:
        lines += [
            "",
            "## Probability of improvement",
            "",
            "P(X > Y): the chance that a run of X ends above a run of Y (ties count half).",
            "",
            f"| X | Y | P(X > Y) [{level} CI] |",
            "| --- | --- | ---: |",
        ]
        for pair in result["pairwise"]:
            cell = _with_ci(pair["probability"], pair["ci"], fmt=lambda v: f"{v:.2f}")
            lines.append(f"| {pair['x']} | {pair['y']} | {cell} |")
    if result["notes"]:
        lines += ["", "## Notes", "", *(f"- {note}" for note in result["notes"])]
    return "\n".join(lines) + "\n"


def plot_curves(result: dict[str, Any], path: str | Path) -> Path:
    """compare.png: each group's IQM across runs against env steps, with its pointwise CI band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for group in result["groups"]:
        curve = group["curve"]
        if not curve["steps"]:
            continue
        label = f"{group['label']} ({group['n_runs']} run{'s' if group['n_runs'] != 1 else ''})"
        (line,) = ax.plot(
            curve["steps"],
            curve["iqm"],
            marker="o" if len(curve["steps"]) <= 2 else None,  # a one-point curve is a dot
            markersize=3,
            label=label,
        )
        if curve["ci_low"] is not None:
            ax.fill_between(
                curve["steps"],
                curve["ci_low"],
                curve["ci_high"],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
    name = "evaluation return" if result["metric"] == METRICS["eval"] else "training episode return"
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"IQM of {name}")
    ax.set_title(
        f"IQM across runs, {100 * result['confidence']:g}% CI band ({result['reps']:,} bootstrap resamples)"
    )
    ax.grid(alpha=0.3)
    if any(group["curve"]["steps"] for group in result["groups"]):
        ax.legend()
    else:  # no group's runs share a span of steps
        ax.text(0.5, 0.5, "no common steps: no curve", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_outputs(result: dict[str, Any], out: str | Path) -> list[Path]:
    """Write compare.json, compare.md and compare.png into `out` (created if needed)."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compare.json").write_text(json.dumps(result, indent=1) + "\n")
    (folder / "compare.md").write_text(format_table(result))
    return [folder / "compare.md", folder / "compare.json", plot_curves(result, folder / "compare.png")]


# -- training what is missing --------------------------------------------------------------------------------
def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples → lists, as run.json stores them


def _prepare_run(
    cls: Any, env: str, seed: int, total_steps: int, run_dir: Path, options: dict[str, Any]
) -> str:
    """Train, resume or reuse the run of `cls` on `env` with `seed` in `run_dir`; returns what was done."""
    from pgrad.algorithms.presets import preset
    from pgrad.api import resume, train
    from pgrad.run.checkpoint import latest_checkpoint
    from pgrad.run.config import RESUMABLE_OPTIONS, RunConfig
    from pgrad.run.folder import BOOKKEEPING, RUN_FILE, read_run_file

    if not run_dir.exists() or all(p.name in BOOKKEEPING for p in run_dir.iterdir()):
        print(f"pgrad compare: training {cls.name} seed {seed} → {run_dir}", file=sys.stderr)
        train(cls.name, env, total_steps=total_steps, seed=seed, run_dir=str(run_dir), **options)
        return "trained"
    if not (run_dir / RUN_FILE).exists():
        raise ConfigError(f"{run_dir} is not empty and holds no pgrad run (no {RUN_FILE}); move it away")
    saved = read_run_file(run_dir)
    found = (saved.get("algorithm"), saved.get("env"), (saved.get("run") or {}).get("seed"))
    if found != (cls.name, env, seed):
        raise ConfigError(
            f"{run_dir} holds a run of {found[0]} on {found[1]} with seed {found[2]}, not of {cls.name} on "
            f"{env} with seed {seed}; move it away or choose another --out"
        )
    # The options that decide what is learned must be those the run was trained with: its config (the
    # algorithm's defaults, the preset, the options given) and the run options given.
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    algo_options = {k: v for k, v in options.items() if k not in run_fields}
    use_preset = options.get("preset", True)
    applied = {k: v for k, v in preset(cls.name, env).items() if k not in algo_options} if use_preset else {}
    expected_config = _normalise({**dataclasses.asdict(cls.Config()), **applied, **algo_options})
    expected_run = _normalise({k: v for k, v in options.items() if k in run_fields})
    for expected, have in (
        (expected_config, saved.get("config") or {}),
        (expected_run, saved.get("run") or {}),
    ):
        for key, value in expected.items():
            skip = key in RESUMABLE_OPTIONS or (key == "backend" and value == "auto")
            if not skip and key in have and have[key] != value:
                raise ConfigError(
                    f"{run_dir} was trained with {key}={have[key]!r}, not {value!r}: move it away or choose "
                    "another --out to train with these options"
                )
    try:
        step = int(latest_checkpoint(run_dir / "checkpoints").name.split("_")[1])
    except CheckpointError as exc:
        raise ConfigError(
            f"{run_dir} holds a run without a usable checkpoint ({exc}); remove the folder to train it again"
        ) from None
    if step >= total_steps or _reached_target(run_dir, saved, step):
        print(f"pgrad compare: reusing {run_dir} (finished at step {step:,})", file=sys.stderr)
        return "reused"
    print(f"pgrad compare: resuming {run_dir} from step {step:,}", file=sys.stderr)
    resume(run_dir, total_steps=total_steps, **{k: v for k, v in options.items() if k in RESUMABLE_OPTIONS})
    return "resumed"


def _reached_target(run_dir: Path, saved: dict[str, Any], step: int) -> bool:
    """A run that stopped early at its target return (its last evaluation, at its last checkpoint)."""
    from pgrad.run.logger import read_metrics

    target = (saved.get("run") or {}).get("target_return")
    steps, scores = _series(read_metrics(run_dir), METRICS["eval"])
    return target is not None and len(steps) > 0 and steps[-1] == step and scores[-1] >= target


def compare_algorithms(
    algos: Sequence[str],
    env: str,
    seeds: int | Sequence[int],
    total_steps: int,
    out: str | Path,
    *,
    label_by: str = "algorithm",
    metric: str = "eval",
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    **train_options: Any,
) -> dict[str, Any]:
    """Train each algorithm on `env` with seeds 0..seeds−1 (or the seeds given) where missing, then `compare`.

    Runs live in `out/runs/{algo}-{env}-s{seed}`. A folder whose run finished (its latest checkpoint at
    `total_steps` or beyond, or at its target return) is reused; an unfinished one (interrupted, or trained
    to a smaller budget) is resumed with `pgrad.resume` to `total_steps`; an empty or missing one is trained
    with `pgrad.train(algo, env, total_steps=..., seed=..., **train_options)`. A folder holding another run,
    or one trained with other options, is refused. The comparison (see `compare`) is written into `out`.
    """
    from pgrad.algorithms import get_algorithm

    _check_options(label_by, metric, reps, confidence, seed)
    if isinstance(algos, str):
        algos = [a for a in algos.split(",") if a]
    if not algos:
        raise ConfigError("--algos needs at least one algorithm (e.g. --algos ppo,a2c)")
    classes = [get_algorithm(name) for name in algos]  # every name checked before anything trains
    names = [cls.name for cls in classes]
    if len(set(names)) < len(names):
        raise ConfigError(f"--algos names an algorithm twice: {','.join(algos)}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) else list(seeds)
    if not seed_list or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seed_list):
        raise ConfigError(f"--seeds must be >= 1 (seeds 0..N-1) or a list of seeds >= 0, got {seeds!r}")
    if not isinstance(env, str):
        raise ConfigError("compare_algorithms trains on a Gymnasium env id (a string)")
    for key in ("seed", "run_dir", "total_steps", "env"):
        if key in train_options:
            raise ConfigError(f"compare_algorithms sets '{key}' itself; it cannot be a training option")
    runs_root = Path(out) / "runs"
    run_dirs = []
    for cls in classes:
        for s in seed_list:
            run_dir = runs_root / f"{cls.name}-{env.replace(':', '_').replace('/', '_')}-s{s}"
            _prepare_run(cls, env, s, total_steps, run_dir, train_options)
            run_dirs.append(run_dir)
    return compare(
        run_dirs, label_by=label_by, metric=metric, out=out, reps=reps, seed=seed, confidence=confidence
    )


# -- command line --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CompareArgs:
    """Compare run folders (RUN_DIR...) or train and compare algorithms (--algos): IQM across seeds with
    stratified-bootstrap CIs (rliable). Writes compare.md, compare.json and compare.png into --out."""

    run_dirs: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR...")] = ()
    """Run folders to compare (or use --algos)."""
    label_by: Literal["algorithm", "env", "tag", "algorithm+env"] = "algorithm"
    """Group runs by this field of their run.json (tag: the run option `tag`)."""
    metric: Literal["eval", "train"] = "eval"
    """eval: evaluation returns (eval/mean_return); train: training returns (charts/episode_return)."""
    out: str = "compare"
    """Folder for compare.md, compare.json and compare.png (with --algos, the runs go to OUT/runs/)."""
    reps: int = 2000
    """Bootstrap resamples per confidence interval."""
    seed: int = 0
    """Seed of the bootstrap (the same seed gives the same intervals)."""
    confidence: float = 0.95
    """Coverage of the confidence intervals."""
    algos: str | None = None
    """Comma-separated algorithms to train and compare (instead of RUN_DIR...), e.g. ppo,a2c."""
    env: str | None = None
    """With --algos: the Gymnasium env id (default CartPole-v1)."""
    seeds: int | None = None
    """With --algos: train seeds 0..SEEDS-1 (default 5)."""
    total_steps: int | None = None
    """With --algos: env steps per run (default 100,000)."""
    eval_every: int | None = None
    """With --algos: evaluate every this many env steps (default total-steps / 10)."""
    eval_episodes: int | None = None
    """With --algos: episodes per evaluation (default 10)."""
    tensorboard: bool = True
    """With --algos: also write TensorBoard scalars in each run."""
    progress: bool = True
    """With --algos: show a progress bar while training."""
    threads: int = 1
    """torch CPU threads."""


_ALGOS_ONLY = ("env", "seeds", "total_steps", "eval_every", "eval_episodes")


def main(argv: Sequence[str]) -> int:
    """`pgrad compare ...`: compare (training first with --algos), write the outputs, print the table."""
    from pgrad.cli import _parse
    from pgrad.run.config import use_threads

    args = _parse(CompareArgs, argv, "pgrad compare")
    use_threads(args.threads)
    if args.algos is None:
        given = [f"--{k.replace('_', '-')}" for k in _ALGOS_ONLY if getattr(args, k) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --algos (training runs to compare)")
        if not args.run_dirs:
            raise ConfigError("`pgrad compare` needs run folders (pgrad compare RUN_DIR...) or --algos A,B")
        result = compare(
            args.run_dirs, args.label_by, args.metric, args.out, args.reps, args.seed, args.confidence
        )
    else:
        if args.run_dirs:
            raise ConfigError("give either run folders or --algos, not both")
        total_steps = 100_000 if args.total_steps is None else args.total_steps
        if total_steps < 1:
            raise ConfigError(f"--total-steps must be >= 1, got {total_steps}")
        options: dict[str, Any] = {
            "eval_every": args.eval_every if args.eval_every is not None else max(total_steps // 10, 1),
            "tensorboard": args.tensorboard,
            "progress": args.progress,
            "threads": args.threads,
        }
        if args.eval_episodes is not None:
            options["eval_episodes"] = args.eval_episodes
        result = compare_algorithms(
            args.algos,
            args.env or "CartPole-v1",
            5 if args.seeds is None else args.seeds,
            total_steps,
            args.out,
            label_by=args.label_by,
            metric=args.metric,
            reps=args.reps,
            seed=args.seed,
            confidence=args.confidence,
            **options,
        )
    print(format_table(result), end="")
    out = Path(args.out)
    print(f"\nwrote {out / 'compare.md'}, {out / 'compare.json'}, {out / 'compare.png'}")
    return 0
