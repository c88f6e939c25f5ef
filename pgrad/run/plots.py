"""Learning-curve plots from a run's metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

from pgrad.errors import PgradError
from pgrad.run.folder import read_run_file
from pgrad.run.logger import read_metrics


def _run_info(run_dir: str | Path) -> tuple[str, str]:
    """The plot's title and its evaluation label, from run.json (the folder's name and a plain label
    without it)."""
    try:
        run = read_run_file(run_dir)
        title = f"{run['algorithm']} on {run['env']} (seed {run['run']['seed']})"
    except (PgradError, KeyError, TypeError):
        return Path(run_dir).name, "evaluation"
    deterministic = run["run"].get("eval_deterministic", True)
    episodes = run["run"].get("eval_episodes")
    how = "deterministic" if deterministic else "sampled actions"
    return title, f"evaluation ({how}, {episodes} episodes)" if episodes else f"evaluation ({how})"


def plot_learning_curve(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Plot training episode return (mean per iteration) and evaluation return against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    path = Path(path) if path is not None else Path(run_dir) / "learning_curve.png"
    train = [
        (r["global_step"], r["charts/episode_return"])
        for r in records
        if r.get("charts/episode_return") is not None
    ]
    evals = [
        (r["global_step"], r["eval/mean_return"], r.get("eval/std_return") or 0.0)
        for r in records
        if "eval/mean_return" in r
    ]
    title, eval_label = _run_info(run_dir)
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="training episodes (mean per iteration)", alpha=0.7)
    if evals:
        steps, means, stds = zip(*evals, strict=True)
        ax.errorbar(steps, means, yerr=stds, fmt="o-", capsize=3, label=eval_label)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or evals:
        ax.legend()
    else:  # a run too short to finish an episode or evaluate
        ax.text(0.5, 0.5, "no finished episodes yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
