"""`pgrad report RUN_DIR... [--out DIR] [--group]`: explain a run with its curves and plain-language warnings.

A report reads only the run folder (run.json and metrics.jsonl) and writes one page per run, or one page for
all of them with `--group`: `report.html` (self-contained, its PNGs inline as base64) and `report.md` with the
PNGs beside it. A page has

- a header: algorithm, env, seed, steps, training time, final and best evaluation, the options that differ
  from the algorithm's defaults (and the run options that differ from RunConfig's);
- panels, each drawn only when the run logged its metric: return (training episodes and evaluation ± std),
  each loss/*, entropy, approximate KL, clip fraction, explained variance, gradient norms, steps/s;
- warnings drawn from the metrics by the rules below, each a sentence with the numbers, the step and what to
  try, and the list of checks that ran (or why one could not), so that "No warnings" says what was checked.

The warnings come from `pgrad.workflow.diagnose` (its docstring and docs/workflow/report.md give each rule).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pgrad.errors import ConfigError, PgradError
from pgrad.workflow.diagnose import (
    EVAL,
    GRAD_NORMS,
    TRAIN,
    Check,
    Finding,
    RunData,
    checks,
    num,
    numeric_or_null,
    read_run,
    span,
    windows,
)

# Panels besides the return and the losses: (file stem, title, metric keys, log scale allowed).
PANELS = (
    ("entropy", "policy entropy", ("stats/entropy",), False),
    ("approx_kl", "approximate KL per update", ("stats/approx_kl",), True),
    ("clip_fraction", "clip fraction", ("stats/clip_fraction",), False),
    ("explained_variance", "explained variance of the critic", ("stats/explained_variance",), False),
    ("grad_norm", "gradient norm (before clipping)", GRAD_NORMS, True),
    ("sps", "env steps per second", ("charts/sps",), False),
)
# Run options not worth listing as changes: shown in the header already, or how the run was watched.
_RUN_SHOWN = ("env", "seed", "total_steps", "run_dir", "backend", "progress", "tensorboard", "threads")


# -- header --------------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """As JSON stores it (tuples become lists), for comparing run.json with a dataclass's defaults."""
    return json.loads(json.dumps(value, default=str))


def config_changes(run: RunData) -> list[tuple[str, str, str]]:
    """(option, value, default) for the run.json options that differ from the algorithm's defaults (marked
    "(preset)" where pgrad's per-env preset set them), then the run options that differ from RunConfig's."""
    from pgrad.algorithms import get_algorithm
    from pgrad.run.config import RunConfig

    rows: list[tuple[str, str, str]] = []
    preset = run.info.get("preset") or {}
    try:
        defaults = _plain(dataclasses.asdict(get_algorithm(str(run.info["algorithm"])).Config()))
    except PgradError:
        defaults = {}  # an algorithm this version does not know: every option is listed
    for key, value in (run.info.get("config") or {}).items():
        default = defaults.get(key, "—")
        if _plain(value) != default:
            rows.append((key + (" (preset)" if key in preset else ""), _show(value), _show(default)))
    run_defaults = _plain(dataclasses.asdict(RunConfig()))
    for key, value in (run.info.get("run") or {}).items():
        if key not in _RUN_SHOWN and key in run_defaults and _plain(value) != run_defaults[key]:
            rows.append((f"run.{key}", _show(value), _show(run_defaults[key])))
    return rows


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(_plain(value))


def summary(run: RunData) -> dict[str, Any]:
    """The header's facts about one run."""
    info, opts = run.info, run.info.get("run") or {}
    times = [r["time"] for r in run.records if isinstance(r.get("time"), int | float)]
    # (mean, std, step) of each evaluation with a finite mean
    evals = [
        (float(r[EVAL]), r.get("eval/std_return"), int(r["global_step"]))
        for r in run.records
        if numeric_or_null(r.get(EVAL)) and r.get(EVAL) is not None and math.isfinite(r[EVAL])
    ]
    tr_steps, tr_values = run.finite(TRAIN)
    out: dict[str, Any] = {
        "run": run.label,
        "algorithm": info.get("algorithm", "?"),
        "env": info.get("env", opts.get("env", "?")),
        "seed": opts.get("seed", "?"),
        "steps": run.last_step,
        "total_steps": opts.get("total_steps"),
        "time": max(times) if times else None,
        "evaluations": len(evals),
        "final_eval": evals[-1] if evals else None,
        "best_eval": max(evals, key=lambda e: e[0]) if evals else None,  # the first of equal bests
        "train_return": None,
    }
    if len(tr_values):
        wins = windows(run, tr_steps, tr_values)
        out["train_return"] = (wins[-1].mean, wins[-1])
    return out


def _eval_text(value: tuple | None) -> str:
    if value is None:
        return "—"
    mean, std, step = value
    return f"{num(mean)} ± {num(std, 3) if isinstance(std, int | float) else '?'} (step {step:,})"


def _time_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# -- plots ---------------------------------------------------------------------------------------------------
def _panels(runs: Sequence[RunData]) -> list[tuple[str, str, tuple[str, ...], bool]]:
    """The panels the runs have metrics for: return, each loss, then PANELS."""
    keys = {key for run in runs for key in run.metric_names()}
    out = []
    if TRAIN in keys or EVAL in keys:
        out.append(("return", "episode return", (TRAIN, EVAL), False))
    for key in sorted(k for k in keys if k.startswith("loss/")):
        out.append((key.replace("/", "_"), key, (key,), True))
    out += [panel for panel in PANELS if any(k in keys for k in panel[2])]
    return out


def plot_panel(
    runs: Sequence[RunData],
    panel: tuple[str, str, tuple[str, ...], bool],
    path: Path,
    marks: Sequence[Finding] = (),
) -> Path:
    """One panel as a PNG: one line per run and metric (the return panel: training line, evaluation ± std);
    a log scale where the values are positive and span more than two decades; warnings as dotted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem, title, keys, log_ok = panel
    fig, ax = plt.subplots(figsize=(7, 3.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    positive: list[float] = []
    for i, run in enumerate(runs):
        name = f"{run.label}: " if len(runs) > 1 else ""
        for j, key in enumerate(k for k in keys if k in run.metric_names()):
            # a group: one colour per run, one line style per metric; one run: one colour per metric
            color = colors[(i if len(runs) > 1 else j) % len(colors)]
            steps, values = run.series(key)
            if key == EVAL:
                _, stds = run.series("eval/std_return")
                stds = stds if len(stds) == len(values) else np.zeros_like(values)
                ax.errorbar(
                    steps,
                    values,
                    yerr=np.nan_to_num(stds),
                    fmt="o-",
                    ms=3,
                    capsize=2,
                    color=color,
                    alpha=0.9,
                    label=f"{name}evaluation ± std",
                )
                continue
            label = {TRAIN: "training episodes"}.get(key, key)
            style = ("-", "--", ":", "-.")[j % 4] if len(runs) > 1 and stem != "return" else "-"
            alpha = 0.55 if stem == "return" else 0.9
            ax.plot(steps, values, style, lw=1.2, color=color, alpha=alpha, label=f"{name}{label}")
            positive += [float(v) for v in values if np.isfinite(v)]
    if log_ok and positive and min(positive) > 0 and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
    for finding in marks:
        if finding.step is not None and finding.metric in keys:
            ax.axvline(finding.step, color="red", ls=":", lw=1.2)
    ax.set(xlabel="env steps", title=title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.15, top=0.9)  # fixed: tight_layout doubles the cost
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- the page ------------------------------------------------------------------------------------------------
# A page is a list of blocks rendered twice, as markdown and as HTML:
#   ("h1"|"h2"|"h3"|"p", text) · ("ul", [items]) · ("table", headers, rows) · ("img", title, png path)


def _blocks(runs: Sequence[RunData], results: Sequence[list[Check]], images: Sequence[tuple[str, Path]]):
    blocks: list[tuple] = []
    facts = [summary(run) for run in runs]
    if len(runs) == 1:
        f = facts[0]
        blocks.append(("h1", f"Report: {f['algorithm']} on {f['env']} (seed {f['seed']})"))
        budget = f" of {f['total_steps']:,}" if isinstance(f["total_steps"], int) else ""
        train = f["train_return"]
        rows = [
            ("run folder", str(runs[0].path)),
            ("algorithm", str(f["algorithm"])),
            ("env", str(f["env"])),
            ("seed", str(f["seed"])),
            ("env steps", f"{f['steps']:,}{budget}"),
            ("training time", _time_text(f["time"])),
            ("evaluations", str(f["evaluations"])),
            ("final evaluation", _eval_text(f["final_eval"])),
            ("best evaluation", _eval_text(f["best_eval"])),
            (
                "training return, last window",
                "—" if train is None else f"{num(train[0])} ({span(train[1])})",
            ),
        ]
        blocks.append(("table", ("", ""), rows))
    else:
        blocks.append(("h1", f"Report: {len(runs)} runs"))
        headers = (
            "run",
            "algorithm",
            "env",
            "seed",
            "env steps",
            "time",
            "final eval",
            "best eval",
            "warnings",
        )
        rows = [
            (
                f["run"],
                str(f["algorithm"]),
                str(f["env"]),
                str(f["seed"]),
                f"{f['steps']:,}",
                _time_text(f["time"]),
                _eval_text(f["final_eval"]),
                _eval_text(f["best_eval"]),
                str(sum(len(c.findings) for c in result)),
            )
            for f, result in zip(facts, results, strict=True)
        ]
        blocks.append(("table", headers, rows))
    blocks.append(("h2", "Warnings"))
    for run, result in zip(runs, results, strict=True):
        if len(runs) > 1:
            blocks.append(("h3", run.label))
        findings = [f for check in result for f in check.findings]
        if findings:
            blocks.append(("ul", [f"**{f.code}**: {f.message}" for f in findings]))
        else:
            blocks.append(("p", "No warnings: every check below that ran found nothing."))
    blocks.append(("h2", "Curves"))
    if len(runs) == 1 and any(f.step is not None for check in results[0] for f in check.findings):
        blocks.append(("p", "Red dotted lines mark the step of a warning on the panel of its metric."))
    for title, path in images:
        blocks.append(("img", title, path))
    blocks.append(("h2", "Configuration"))
    for run in runs:
        if len(runs) > 1:
            blocks.append(("h3", run.label))
        changes = config_changes(run)
        if changes:
            blocks.append(
                ("p", "Options that differ from the algorithm's defaults (run.* from the run defaults):")
            )
            blocks.append(("table", ("option", "value", "default"), changes))
        else:
            blocks.append(("p", "Every option at the algorithm's defaults."))
    blocks.append(("h2", "Checks"))
    blocks.append(("p", "Each rule (docs/workflow/report.md gives its formula) and what it measured."))
    for run, result in zip(runs, results, strict=True):
        if len(runs) > 1:
            blocks.append(("h3", run.label))
        blocks.append(("table", ("rule", "result", "measured"), [(c.code, c.status, c.note) for c in result]))
    return blocks


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[tuple], folder: Path) -> str:
    """The page as markdown, images linked by their path relative to `folder`."""
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "|" + " --- |" * len(headers)]
            lines += ["| " + " | ".join(_md_cell(str(c)) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[1]}]({Path(block[2]).relative_to(folder).as_posix()})")
    return "\n\n".join(out) + "\n"


def _html_text(text: str) -> str:
    """Escaped text, with markdown's **bold** and `code` kept."""
    parts = html.escape(text).split("**")
    text = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


_CSS = """body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:0.5rem 0}td,th{border:1px solid #ccc;padding:0.2rem 0.5rem;
text-align:left;vertical-align:top;font-size:0.9rem}img{max-width:100%;display:block;margin:0.5rem 0}
li{margin:0.4rem 0}code{background:#f3f3f3;padding:0 0.2rem}"""


def render_html(blocks: Sequence[tuple], title: str) -> str:
    """The page as one self-contained HTML file: every PNG inline as base64."""
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3", "p"):
            body.append(f"<{kind}>{_html_text(block[1])}</{kind}>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_html_text(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            headers, rows = block[1], block[2]
            head = (
                ""
                if not any(headers)
                else "<tr>" + "".join(f"<th>{_html_text(h)}</th>" for h in headers) + "</tr>"
            )
            cells = "".join(
                "<tr>" + "".join(f"<td>{_html_text(str(c))}</td>" for c in row) + "</tr>" for row in rows
            )
            body.append(f"<table>{head}{cells}</table>")
        elif kind == "img":
            data = base64.b64encode(Path(block[2]).read_bytes()).decode("ascii")
            alt = html.escape(block[1], quote=True)
            body.append(f'<img alt="{alt}" src="data:image/png;base64,{data}">')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_page(runs: Sequence[RunData], out: Path) -> dict[str, Any]:
    """Check the runs, draw their panels and write `out`/report.html, report.md and the PNGs."""
    out.mkdir(parents=True, exist_ok=True)
    results = [checks(run) for run in runs]
    marks = [f for check in results[0] for f in check.findings] if len(runs) == 1 else []
    images = []
    for panel in _panels(runs):
        images.append((panel[1], plot_panel(runs, panel, out / f"{panel[0]}.png", marks)))
    blocks = _blocks(runs, results, images)
    title = blocks[0][1]
    (out / "report.md").write_text(render_markdown(blocks, out), encoding="utf-8")
    (out / "report.html").write_text(render_html(blocks, title), encoding="utf-8")
    warnings = [
        {"run_dir": str(run.path), **f.as_dict()}
        for run, result in zip(runs, results, strict=True)
        for check in result
        for f in check.findings
    ]
    return {
        "html": str(out / "report.html"),
        "markdown": str(out / "report.md"),
        "images": [str(path) for _, path in images],
        "run_dirs": [str(run.path) for run in runs],
        "warnings": warnings,
    }


def report(
    run_dirs: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    group: bool = False,
    threads: int = 1,
) -> dict[str, Any]:
    """Write a report for each run folder (or one for all of them with `group`) and return what was written.

    Pages go to RUN_DIR/report/ by default; `out` puts a single run's (or the group's) page there, and each
    of several runs' pages in `out`/<run folder name>/. `group` needs `out` when there are several runs.
    Returns {"pages": [{"html", "markdown", "images", "run_dirs", "warnings"}], "warnings": [...]}, each
    warning a dict with run_dir, code, message, step (None for a property of the whole run) and metric.
    """
    from pgrad.run.config import use_threads

    use_threads(threads)
    paths = [run_dirs] if isinstance(run_dirs, str | Path) else list(run_dirs)
    if not paths:
        raise ConfigError("pgrad report needs at least one run folder")
    if len({Path(p).resolve() for p in paths}) < len(paths):
        raise ConfigError("pgrad report: a run folder is given twice")
    runs = [read_run(p) for p in paths]
    if len(runs) > 1 and len({run.label for run in runs}) < len(runs):
        for run in runs:  # two folders with the same name: tell them apart by their whole path
            run.label = str(run.path)
    if group and len(runs) > 1 and out is None:
        raise ConfigError("pgrad report --group with several runs needs --out DIR (where the page goes)")
    if group or len(runs) == 1:
        folder = Path(out) if out is not None else runs[0].path / "report"
        pages = [write_page(runs, folder)]
    else:
        if out is not None and len({run.path.name for run in runs}) < len(runs):
            raise ConfigError(
                "pgrad report --out: two run folders have the same name; report them one by one"
            )
        pages = [
            write_page([run], Path(out) / run.path.name if out is not None else run.path / "report")
            for run in runs
        ]
    return {"pages": pages, "warnings": [w for page in pages for w in page["warnings"]]}


# -- command line --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ReportArgs:
    """Explain runs: curves, header and warnings drawn from their metrics, as report.html and report.md."""

    out: str | None = None
    """Folder for the page (default: RUN_DIR/report/; with several runs, OUT/<run folder name>/ each)."""
    group: bool = False
    """One page for all the runs, one line per run in each panel (needs --out with several runs)."""
    threads: int = 1
    """torch CPU threads."""


def main(argv: Sequence[str]) -> int:
    """`pgrad report RUN_DIR... [--out DIR] [--group]`: prints each page's path and each run's warnings."""
    from pgrad.cli import _parse

    run_dirs, flags, items = [], [], iter(argv)
    for arg in items:  # run folders anywhere on the line; --out and --threads take the word after them
        if arg in ("--out", "--threads"):
            flags += [arg, *([value] if (value := next(items, None)) is not None else [])]
        elif arg.startswith("-"):
            flags.append(arg)
        else:
            run_dirs.append(arg)
    if "-h" in flags or "--help" in flags:
        _parse(ReportArgs, ["--help"], "pgrad report RUN_DIR...")
    args = _parse(ReportArgs, flags, "pgrad report RUN_DIR...")
    if not run_dirs:
        raise ConfigError("`pgrad report` needs one or more run folders: pgrad report RUN_DIR... [--out DIR]")
    result = report(run_dirs, out=args.out, group=args.group, threads=args.threads)
    for page in result["pages"]:
        for run_dir in page["run_dirs"]:
            found = [w for w in page["warnings"] if w["run_dir"] == run_dir]
            print(
                f"{run_dir}: {len(found)} warning{'s' if len(found) != 1 else ''}"
                if found
                else f"{run_dir}: no warnings"
            )
            for w in found:
                print(f"  [{w['code']}] {w['message']}")
        print(f"report: {page['html']} and {page['markdown']} ({len(page['images'])} PNGs)")
    return 0
