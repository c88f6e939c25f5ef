"""Markdown tables and log-log plots of lab measurements."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgrad.lab.measure import Measurement

COLUMNS = (
    ("estimator", "estimator", "{}"),
    ("budget", "B", "{}"),
    ("relative_bias", "rel. bias", "{:.4f}"),
    ("corrected_bias", "noise-corrected", "{:.4f}"),
    ("bias_low", "bias 99% low", "{:.4f}"),
    ("bias_high", "bias 99% high", "{:.4f}"),
    ("bias_p", "bias p", "{:.2g}"),
    ("bias_dof", "ν", "{:.1f}"),
    ("total_variance", "tr Cov", "{:.4g}"),
    ("snr", "SNR", "{:.3g}"),
    ("cosine", "cos(ĝ, ∇J)", "{:.3f}"),
    ("cost", "cost", "{:.0f}"),
    ("seconds_per_estimate", "s / estimate", "{:.2g}"),
)


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A markdown table of dict rows; `columns` are (key, title, format) triples."""
    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) for key, _, fmt in columns) + " |")
    return "\n".join(lines)


def markdown_table(measurements: list[Measurement]) -> str:
    """One row per (estimator, budget)."""
    return format_table([m.row() for m in measurements], COLUMNS)


def plot_measurements(measurements: list[Measurement], path: str | Path, title: str = "") -> Path:
    """Total variance and relative bias against the budget B, log-log, one line per estimator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name: dict[str, list[Measurement]] = defaultdict(list)
    for m in measurements:
        by_name[m.estimator].append(m)
    fig, (ax_var, ax_bias) = plt.subplots(1, 2, figsize=(11, 4))
    for name, ms in by_name.items():
        ms = sorted(ms, key=lambda m: m.budget)
        budgets = [m.budget for m in ms]
        ax_var.loglog(budgets, [max(m.total_variance, 1e-300) for m in ms], "o-", label=name)
        (line,) = ax_bias.loglog(budgets, [max(m.relative_bias, 1e-300) for m in ms], "o-", label=name)
        # The 99% upper bound on the bias (its lower bound is often 0, which a log axis cannot show).
        ax_bias.loglog(budgets, [m.bias_high for m in ms], "--", color=line.get_color(), alpha=0.6)
    ax_var.set(xlabel="samples per estimate B", ylabel="total variance tr Cov[ĝ]", title="variance")
    ax_bias.set(
        xlabel="samples per estimate B",
        ylabel="‖ḡ − ∇J‖ / ‖∇J‖ (dashed: 99% upper bound on ‖E ĝ − ∇J‖ / ‖∇J‖)",
        title="relative bias",
    )
    for ax in (ax_var, ax_bias):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return _save(fig, path, title)


def _save(fig: Any, path: str | Path, title: str | None) -> Path:
    """Title, lay out, write and close a figure."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


@dataclass
class Line:
    """One line of a `Panel`: y against x, with a matplotlib format string (e.g. "o-", "--")."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    style: str = "o-"
    color: str | None = None


@dataclass
class Panel:
    """One axes of `plot_panels`."""

    title: str
    xlabel: str
    ylabel: str
    lines: list[Line] = field(default_factory=list)
    xlog: bool = True
    ylog: bool = True


def plot_panels(panels: Sequence[Panel], path: str | Path, title: str = "") -> Path:
    """Side-by-side panels of lines (for studies whose x axis is not the budget B, e.g. a window length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for line in panel.lines:
            # A log axis cannot show 0: such points are left out (e.g. a closed-form bias that is exactly 0).
            points = [(x, y) for x, y in zip(line.x, line.y, strict=True) if not panel.ylog or y > 0]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, line.style, label=line.label, color=line.color)
        if panel.xlog:
            ax.set_xscale("log", base=2)
        if panel.ylog:
            ax.set_yscale("log")
        ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return _save(fig, path, title)
