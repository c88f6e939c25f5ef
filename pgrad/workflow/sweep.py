"""`pgrad sweep ALGO --env X --grid KEY=V1,V2 --seeds N`: a grid × seeds of runs, each one Ray task.

    pgrad sweep ALGO --env ENV [--seeds N | --seed-list 0,3] [--grid lr=1e-3,3e-4 --grid num_steps=64,128]
                [--out DIR] [--ray-address A] [--max-parallel P] [--max-retries R] [run and algorithm flags]

Every point of the cross product of the grid's values, for every seed, is one run of `pgrad.train` in
`DIR/<label>/s<seed>`, where the label names the point (`lr=0.001,num_steps=64`; the algorithm's name when
there is no grid) and is also the run's `tag`, so `pgrad compare DIR/*/s* --label-by tag` compares the points.
Each run is a Ray task holding one CPU: a local Ray runs as many at once as the machine has cores, a cluster
(`--ray-address auto`) as many as it has CPUs; `--max-parallel P` caps it.

A run folder is trained, resumed or reused as `pgrad compare --algos` does it (`compare._prepare_run`): a
finished run is reused, an unfinished one resumed from its last checkpoint, a folder holding another run or
one trained with other options refused in one line before any task starts. A run that fails (an invalid
option only the algorithm checks, a non-finite return, an env error) is recorded with its reason and the
others go on; a task whose worker process died is retried by Ray (`--max-retries`) and resumes from the
run's last checkpoint (a run that died before its first checkpoint starts again).

Per grid point, over the seeds s = 1..n that finished, with R_s the mean return of run s's final evaluation:

    mean = (1/n) Σ_s R_s        std = sqrt( Σ_s (R_s − mean)² / (n − 1) )     (the sample std; none for n = 1)

written with each run's figures to DIR/sweep.json and DIR/sweep.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import math
import os
import shlex
import socket
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pgrad.errors import ConfigError, Interrupted, did_you_mean
from pgrad.workflow.compare import SWEEP_FILE

FEATURE = "pgrad sweep"
TABLE_FILE = "sweep.md"
MAX_TAG = 64  # a run's tag (RunConfig.tag) holds at most this many characters
# set by the sweep for every run: not options a user passes
OWN_OPTIONS = ("seed", "run_dir", "tag", "env", "total_steps", "ray_address", "workers")
# files a run writes into its folder (a run that stopped before its first checkpoint holds only these)
RUN_CONTENT = {"run.json", "metrics.jsonl", "tb", "checkpoints", "learning_curve.png", "wandb"}


# -- the grid ------------------------------------------------------------------------------------------------
def _split_values(text: str) -> list[str]:
    """`1e-3,3e-4` → ['1e-3', '3e-4']; commas inside brackets belong to a value (`[64,64],[32,32]`)."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += (char in "[(") - (char in "])")
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return [v.strip() for v in values]


def _fits(config_cls: type, key: str, value: Any, what: str) -> str | None:
    """None when `value` has the type of the option `key`, else the type check's message."""
    from pgrad.run.config import check_field_types

    try:
        check_field_types(dataclasses.replace(config_cls(), **{key: value}), what)
    except ConfigError as exc:
        return str(exc)
    return None


def _candidates(text: str) -> list[Any]:
    """What a grid value written as text may mean, most literal first: JSON (numbers, true/false/null,
    [lists]), Python's words, int/float spellings JSON refuses (`1_000`, `.5`), `64x64` for a tuple."""
    out: list[Any] = []
    with contextlib.suppress(ValueError):
        out.append(json.loads(text))
    out += [{"True": True, "False": False, "None": None, "none": None}[text]] if text in (
        "True", "False", "None", "none"
    ) else []  # fmt: skip
    for parse in (int, float):
        with contextlib.suppress(ValueError):
            out.append(parse(text))
    if "x" in text:
        with contextlib.suppress(ValueError):
            out.append(tuple(int(part) for part in text.split("x")))
    typed = []
    for value in out:
        value = tuple(value) if isinstance(value, list) else value
        typed.append(value)
        if isinstance(value, float) and value.is_integer():
            typed.append(int(value))  # 1e3 for an int option
        if isinstance(value, int) and not isinstance(value, bool):
            typed.append(float(value))  # 1 for a float option
    return typed


def typed_value(cls: Any, key: str, value: Any) -> Any:
    """`value` for the option `key` of `cls.Config`: a Python value is checked against the field's type; a
    string is read by it (the string itself for a str option, else a number, bool, None or tuple). An int
    for an option that takes floats becomes a float (`lr=1` is 1.0, as the command line types it)."""
    if isinstance(value, str):
        if _fits(cls.Config, key, value, cls.name) is None:
            return value  # a str option takes the text as it is
        value = next((c for c in _candidates(value) if _fits(cls.Config, key, c, cls.name) is None), value)
    value = tuple(value) if isinstance(value, list) else value
    problem = _fits(cls.Config, key, value, cls.name)
    if problem is not None:
        raise ConfigError(f"--grid {key}: value {value!r} does not fit ({problem})")
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value) if _fits(cls.Config, key, float(value), cls.name) is None else value
    return value


def _text(value: Any) -> str:
    """A grid value in a label: floats as Python writes them (shortest exact: 0.0003, 1e-05), tuples 64x64."""
    if isinstance(value, tuple):
        return "x".join(_text(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def parse_grid(cls: Any, grid: Mapping[str, Any] | Sequence[str] | None) -> dict[str, list[Any]]:
    """The grid as {option: [typed values]}, in the order given. `grid` is a mapping of option → values (a
    list, or one string `"1e-3,3e-4"`), or the command line's `["lr=1e-3,3e-4", "num_steps=64,128"]`. A key
    that is not an option of the algorithm's Config, a value that does not fit its type, or a value given
    twice is one ConfigError naming the key."""
    from pgrad.run.config import RunConfig

    if grid is None:
        return {}
    if isinstance(grid, str):
        grid = [grid]
    items: list[tuple[str, Any]] = []
    if isinstance(grid, Mapping):
        items = list(grid.items())
    else:
        for entry in grid:
            key, eq, values = str(entry).partition("=")
            if not eq or not key.strip() or not values.strip():
                raise ConfigError(f"--grid must be KEY=V1,V2,... (e.g. --grid lr=1e-3,3e-4), got {entry!r}")
            items.append((key.strip(), values))
    fields = [f.name for f in dataclasses.fields(cls.Config)]
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    out: dict[str, list[Any]] = {}
    for key, values in items:
        key = key.replace("-", "_")
        if key in out:
            raise ConfigError(f"--grid {key} is given twice: give all its values in one --grid {key}=V1,V2")
        if key not in fields:
            if key in run_fields:
                raise ConfigError(
                    f"--grid {key}: a run option, not an option of {cls.name}; a grid varies the algorithm's "
                    "options (seeds: --seeds or --seed-list)"
                )
            raise ConfigError(f"--grid {key}: not an option of {cls.name}{did_you_mean(key, fields)}")
        texts = _split_values(values) if isinstance(values, str) else list(values)
        if not texts or any(isinstance(t, str) and not t for t in texts):
            raise ConfigError(f"--grid {key}: an empty value in {values!r}")
        typed = [typed_value(cls, key, t) for t in texts]
        labels = [_text(v) for v in typed]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ConfigError(f"--grid {key}: the value {twice[0]} is given twice")
        out[key] = typed
    return out


def grid_points(grid: dict[str, list[Any]], algorithm: str) -> list[tuple[str, dict[str, Any]]]:
    """Every point of the cross product as (label, {option: value}); the label is `algorithm` without a grid.
    A label must be a folder name and a run tag: one line of at most 64 characters, no `/`."""
    points = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        label = ",".join(f"{k}={_text(v)}" for k, v in params.items()) or algorithm
        if len(label) > MAX_TAG or "/" in label or not label.isprintable() or " " in label:
            raise ConfigError(
                f"--grid: the point '{label}' names a run folder and its tag, which must be at most "
                f"{MAX_TAG} characters without spaces or '/': use fewer grid keys or shorter values"
            )
        points.append((label, params))
    return points


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"--seeds must be >= 1 (seeds 0..N-1), got {seeds}")
        return list(range(seeds))
    listed = list(seeds)
    if not listed or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in listed):
        raise ConfigError(f"--seed-list must be seeds >= 0 (e.g. 0,3), got {seeds!r}")
    if len(set(listed)) < len(listed):
        raise ConfigError(f"--seed-list names a seed twice: {listed}")
    return listed


# -- one run: a Ray task -------------------------------------------------------------------------------------
def _final(run_dir: Path) -> dict[str, Any]:
    """The run's final evaluation (its last `eval/mean_return` record), last step and training time."""
    from pgrad.run.logger import read_metrics

    records = read_metrics(run_dir)
    evals = [r for r in records if "eval/mean_return" in r]
    if not evals:
        raise ConfigError(f"{run_dir} recorded no evaluation")
    last = evals[-1]
    value = last["eval/mean_return"]
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"the final evaluation at step {last['global_step']:,} returned {value} (non-finite)"
        )
    times = [r["time"] for r in records if isinstance(r.get("time"), int | float)]
    return {
        "final_return": float(value),
        "final_return_std": last.get("eval/std_return"),  # across the final evaluation's episodes
        "final_step": int(last["global_step"]),
        "train_time": float(times[-1]) if times else None,  # the trainer's loop time, over all sessions
    }


def _clear_unstarted(run_dir: Path, job: dict[str, Any]) -> bool:
    """Empty a folder holding this very run (same algorithm, env, seed, tag) that stopped before its first
    checkpoint (its worker died, or it failed while building): nothing there can be resumed, and
    `compare._prepare_run` would refuse it. Returns whether it did."""
    import shutil

    from pgrad.run.checkpoint import LATEST
    from pgrad.run.folder import BOOKKEEPING, RUN_FILE, RunLock, read_run_file

    if not (run_dir / RUN_FILE).exists() or (run_dir / "checkpoints" / LATEST).exists():
        return False
    if not _same_run(read_run_file(run_dir), job):
        return False  # someone else's run: compare._prepare_run refuses it with its reason
    if any(p.name not in RUN_CONTENT | BOOKKEEPING for p in run_dir.iterdir()):
        return False
    lock = RunLock(run_dir)
    lock.acquire(write_pid=False)  # a run folder another process writes is refused here, in one line
    try:
        for path in run_dir.iterdir():
            if path.name not in BOOKKEEPING:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    finally:
        lock.release()
    return True


def _same_run(saved: dict[str, Any], job: dict[str, Any]) -> bool:
    run = saved.get("run") or {}
    return (saved.get("algorithm"), saved.get("env"), run.get("seed"), run.get("tag")) == (
        job["algorithm"],
        job["env"],
        job["seed"],
        job["label"],
    )


def run_task(job: dict[str, Any]) -> dict[str, Any]:
    """One run of the sweep (the body of its Ray task): train, resume or reuse it, then read its final
    evaluation. Never raises for the run's own failure: returns it with its reason. The run's stderr
    (progress, warnings, the traceback of a failure) goes to the log file beside its folder."""
    from pgrad.algorithms import get_algorithm
    from pgrad.run.config import use_threads
    from pgrad.workflow.compare import _prepare_run

    start = time.monotonic()
    run_dir = Path(job["run_dir_abs"])
    result: dict[str, Any] = {"label": job["label"], "seed": job["seed"], "run_dir": job["run_dir"]}
    result.update(status="failed", reason=None, host=socket.gethostname(), pid=os.getpid())
    log = Path(job["log_abs"])
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as stream, contextlib.redirect_stderr(stream), contextlib.redirect_stdout(stream):
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} on {result['host']}", flush=True)
        try:
            use_threads(job["options"].get("threads", 1))
            cls = get_algorithm(job["algorithm"])
            if _clear_unstarted(run_dir, job):
                print(f"pgrad sweep: {run_dir} stopped before its first checkpoint: training it again")
            status = _prepare_run(cls, job["env"], job["seed"], job["total_steps"], run_dir, job["options"])
            result.update(_final(run_dir), status=status)
        except Exception as exc:  # this run fails, not the sweep
            traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0]
            result["reason"] = first if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {first}"
    result["seconds"] = time.monotonic() - start
    return result


# -- the sweep -----------------------------------------------------------------------------------------------
def _check_options(cls: Any, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fixed options split into (run, algorithm), each checked by name and type before Ray starts."""
    from pgrad.run.config import RunConfig, check_field_types, check_run_config

    own = sorted(set(options) & set(OWN_OPTIONS))
    if own:
        why = {
            "seed": "seeds: seeds= (--seeds N or --seed-list)",
            "run_dir": "each run's folder is OUT/<label>/s<seed>",
            "tag": "each run's tag is its grid point's label",
            "workers": "each run is one Ray task on one CPU and samples in it",
        }
        reasons = "; ".join(f"{k}: {why.get(k, 'an argument of sweep itself')}" for k in own)
        raise ConfigError(f"{FEATURE}: {', '.join(own)} cannot be given as run options ({reasons})")
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    algo_fields = {f.name for f in dataclasses.fields(cls.Config)}
    for name in options:
        if name not in run_fields | algo_fields:
            known = run_fields | algo_fields
            raise ConfigError(f"{FEATURE}: unknown option '{name}' for {cls.name}{did_you_mean(name, known)}")
    run = {k: v for k, v in options.items() if k in run_fields}
    algo = {k: v for k, v in options.items() if k not in run_fields}
    check_run_config(dataclasses.replace(RunConfig(), **run))
    check_field_types(dataclasses.replace(cls.Config(), **algo), cls.name)
    return run, algo


def _preflight(cls: Any, job: dict[str, Any]) -> None:
    """Refuse, before any task starts, a folder holding another run or this run with other options:
    `compare._prepare_run` with a budget of 0 checks the folder and stops there (it trains nothing)."""
    from pgrad.run.checkpoint import LATEST
    from pgrad.run.folder import BOOKKEEPING, RUN_FILE, read_run_file
    from pgrad.workflow.compare import _prepare_run

    run_dir = Path(job["run_dir_abs"])
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{job['run_dir']} is a file, not a run folder")
    if not run_dir.exists() or all(p.name in BOOKKEEPING for p in run_dir.iterdir()):
        return  # new: trained by its task
    if (run_dir / RUN_FILE).exists() and not (run_dir / "checkpoints" / LATEST).exists():
        saved = read_run_file(run_dir)
        if not _same_run(saved, job):
            raise ConfigError(
                f"{job['run_dir']} holds a run of {saved.get('algorithm')} on {saved.get('env')} with seed "
                f"{(saved.get('run') or {}).get('seed')}, not this sweep's: move it away or choose another "
                "--out"
            )
        return  # this run, stopped before its first checkpoint: its task trains it again
    saved_kwargs = read_run_file(run_dir).get("env_kwargs") if (run_dir / RUN_FILE).exists() else None
    if saved_kwargs is not None and saved_kwargs != json.loads(json.dumps(job["env_kwargs"])):
        raise ConfigError(
            f"{job['run_dir']} was trained with env_kwargs={saved_kwargs!r}, not {job['env_kwargs']!r}: "
            "move it away or choose another --out"
        )
    with contextlib.redirect_stderr(io.StringIO()):  # its "reusing ..." line is not news here
        _prepare_run(cls, job["env"], job["seed"], 0, run_dir, job["options"])


def _points_summary(points: list[tuple[str, dict]], runs: list[dict], seeds: list[int]) -> list[dict]:
    """Per grid point: its runs' final returns, their mean and sample std, times."""
    out = []
    for label, params in points:
        members = [r for r in runs if r["label"] == label]
        done = [r for r in members if r["status"] != "failed" and r.get("final_return") is not None]
        returns = [r["final_return"] for r in done]
        n = len(returns)
        mean = sum(returns) / n if n else None
        std = math.sqrt(sum((x - mean) ** 2 for x in returns) / (n - 1)) if n >= 2 else None
        times = [r["train_time"] for r in done if r.get("train_time") is not None]
        out.append(
            {
                "label": label,
                "params": params,
                "seeds": len(seeds),
                "done": n,
                "failed": [r["seed"] for r in members if r["status"] == "failed"],
                "returns": returns,
                "mean_return": mean,
                "std_return": std,
                "train_time": sum(times) / len(times) if times else None,  # per run
                "seconds": sum(r.get("seconds", 0.0) for r in members),  # this call's task time, summed
            }
        )
    return out


def compare_command(result: dict[str, Any]) -> str | None:
    """The `pgrad compare` line comparing the sweep's finished runs by grid point (None: none finished);
    compare reads the sweep's folder as its finished runs (`pgrad.workflow.compare.sweep_run_dirs`)."""
    if not any(r["status"] != "failed" for r in result["runs"]):
        return None
    out = shlex.quote(str(result["out"]))
    return f"pgrad compare {out} --label-by tag --out {shlex.quote(str(Path(result['out']) / 'compare'))}"


def format_table(result: dict[str, Any]) -> str:
    """sweep.md: one row per grid point, the failed runs with their reasons, the wall time."""
    n_points, n_seeds = len(result["points"]), len(result["seeds"])
    lines = [
        f"# pgrad sweep: {result['algorithm']} on {result['env']}",
        "",
        f"{n_points} grid point{'s' * (n_points != 1)} × {n_seeds} seed{'s' * (n_seeds != 1)} "
        f"({', '.join(map(str, result['seeds']))}), {result['total_steps']:,} env steps per run. Final "
        "return: the mean return of each run's last evaluation; mean ± sample std (n − 1) across its seeds.",
        "",
        "| grid point | seeds done | final return | train time per run (s) | this call (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for point in result["points"]:
        if point["mean_return"] is None:
            shown = "–"
        elif point["std_return"] is None:
            shown = f"{point['mean_return']:.1f}"
        else:
            shown = f"{point['mean_return']:.1f} ± {point['std_return']:.1f}"
        train = "–" if point["train_time"] is None else f"{point['train_time']:.1f}"
        done = f"{point['done']}/{point['seeds']}"
        lines.append(f"| {point['label']} | {done} | {shown} | {train} | {point['seconds']:.1f} |")
    failed = [r for r in result["runs"] if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {r['label']} seed {r['seed']}: {r['reason']} (log: {r['log']})" for r in failed]
    counts = ", ".join(f"{v} {k}" for k, v in result["counts"].items() if v)
    lines += [
        "",
        f"{len(result['runs'])} runs ({counts}) in {result['wall_time']:.1f} s of wall time, at most "
        f"{result['parallel']} at a time.",
    ]
    if result["compare_command"]:
        lines += ["", "Compare the grid points (IQM and bootstrap CIs, learning curves):", "", "```bash"]
        lines += [result["compare_command"], "```"]
    return "\n".join(lines) + "\n"


def _get(ray: Any, ref: Any, job: dict[str, Any], retries: int) -> dict[str, Any]:
    """A finished task's result; a task Ray gave up on (its worker died more than `retries` times, it was
    cancelled) as a failed run, with Ray's reason in one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        if isinstance(exc, ray.exceptions.TaskCancelledError):
            reason = "cancelled"
        elif isinstance(exc, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
            reason = f"its worker process died {retries + 1} time(s) ({type(exc).__name__})"
        else:
            reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        return {"label": job["label"], "seed": job["seed"], "run_dir": job["run_dir"], "status": "failed",
                "reason": reason, "seconds": 0.0}  # fmt: skip


def _announce(done: int, total: int, result: dict[str, Any]) -> None:
    head = f"pgrad sweep: [{done}/{total}] {result['label']} seed {result['seed']}:"
    if result["status"] == "failed":
        print(f"{head} failed: {result['reason']} (log: {result.get('log')})", file=sys.stderr, flush=True)
        return
    print(
        f"{head} {result['status']} ({result['final_step']:,} steps), final return "
        f"{result['final_return']:.1f}, {result['seconds']:.0f} s",
        file=sys.stderr,
        flush=True,
    )


def sweep(
    algo: str,
    env: str,
    grid: Mapping[str, Any] | Sequence[str] | None = None,
    seeds: int | Sequence[int] = 3,
    out: str | Path | None = None,
    *,
    total_steps: int = 100_000,
    ray_address: str | None = None,
    max_parallel: int | None = None,
    max_retries: int = 3,
    env_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train every point of `grid` × `seeds` as Ray tasks; returns what sweep.json holds.

    `grid` maps options of the algorithm's Config to values (`{"lr": [1e-3, 3e-4]}`; strings are read by the
    option's type, as on the command line: `{"lr": "1e-3,3e-4"}`); `seeds` is N (seeds 0..N−1) or a list.
    Each point and seed is one run of `pgrad.train(algo, env, total_steps=..., seed=s, tag=label, **point,
    **options)` in `out/<label>/s<seed>`, in a Ray task with one CPU (`ray_address`: the cluster to join;
    None: a local Ray with this machine's cores; `max_parallel`: at most that many at once). `options` are
    fixed run and algorithm options (eval_every defaults to total_steps // 10 and checkpoint_every to
    total_steps // 10, so a retried task loses little). Finished runs are reused, unfinished ones resumed;
    a folder holding other options is refused before anything starts. A failed run is recorded (status
    "failed", its reason) and the others go on; a task whose worker died is retried up to `max_retries`
    times and resumes from its last checkpoint.

    The result: settings, `runs` (each run's status — trained, resumed, reused or failed —, final return,
    final step, training time, this call's seconds, log file), `points` (per grid point: seeds done, mean
    and sample std of the final returns), wall_time, and `compare_command`. sweep.json and sweep.md are
    written into `out`.
    """
    from pgrad.algorithms import get_algorithm
    from pgrad.run.ray_cluster import cluster_cpus, connect, ray_module

    cls = get_algorithm(algo)
    if not isinstance(env, str):
        raise ConfigError(
            f"{FEATURE} trains on a Gymnasium env id (a string): its tasks build the env themselves"
        )
    if cls.workers == "own" or cls.default_workers:
        raise ConfigError(
            f"{FEATURE}: {cls.name} runs its own Ray actors, which cannot start inside a sweep's one-CPU "
            f"tasks; train its seeds with `pgrad train {cls.name} --workers K`"
        )
    run_options, algo_options = _check_options(cls, options)
    grid = parse_grid(cls, grid)
    points = grid_points(grid, cls.name)
    clash = sorted({k for _, params in points for k in params} & set(algo_options))
    if clash:
        raise ConfigError(f"--grid {clash[0]} is also given as a fixed option: give it once")
    seed_list = _seed_list(seeds)
    for name, value, least in (("total_steps", total_steps, 1), ("max_retries", max_retries, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"--{name.replace('_', '-')} must be an int >= {least}, got {value!r}")
    if max_parallel is not None and (isinstance(max_parallel, bool) or not isinstance(max_parallel, int)
                                     or max_parallel < 1):  # fmt: skip
        raise ConfigError(f"--max-parallel must be an int >= 1, got {max_parallel!r}")
    if run_options.get("eval_episodes", 1) < 1:
        raise ConfigError(f"{FEATURE} compares each run's final evaluation: --eval-episodes must be >= 1")
    run_options.setdefault("eval_every", max(total_steps // 10, 1))
    run_options.setdefault("checkpoint_every", max(total_steps // 10, 1))
    env_kwargs = dict(env_kwargs or {})
    if out is None:
        out = Path("sweep") / f"{cls.name}-{env.replace(':', '_').replace('/', '_')}"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")

    jobs = []
    for label, params in points:
        for seed in seed_list:
            run_dir = out / label / f"s{seed}"
            options_ = {**run_options, **algo_options, **params, "tag": label}
            if env_kwargs:  # a keyword of pgrad.train, which compare._prepare_run passes on
                options_["env_kwargs"] = env_kwargs
            jobs.append(
                {
                    "algorithm": cls.name,
                    "env": env,
                    "env_kwargs": env_kwargs,
                    "label": label,
                    "seed": seed,
                    "total_steps": total_steps,
                    "run_dir": str(run_dir),
                    "run_dir_abs": str(run_dir.resolve()),  # a worker's working folder may differ
                    "log_abs": str(run_dir.resolve().parent / f"s{seed}.log"),
                    "options": options_,
                }
            )
    for job in jobs:
        _preflight(cls, job)
    ray_module(FEATURE)  # the extra's one-line error before the folder is made

    ray = connect(ray_address, FEATURE)
    out.mkdir(parents=True, exist_ok=True)
    parallel = min(max_parallel or len(jobs), len(jobs), max(cluster_cpus(ray), 1))
    remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(run_task)
    start = time.monotonic()
    print(
        f"pgrad sweep: {len(points)} grid point(s) × {len(seed_list)} seed(s) of {cls.name} on {env}, "
        f"{len(jobs)} runs, {parallel} at a time; each run's log: {out}/<label>/s<seed>.log",
        file=sys.stderr,
        flush=True,
    )
    queue, pending, results = list(jobs), {}, {}
    try:
        while queue or pending:
            while queue and len(pending) < (max_parallel or len(jobs)):
                job = queue.pop(0)
                pending[remote.remote(job)] = job
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                result = {
                    **_get(ray, ref, job, max_retries),
                    "log": str(Path(job["run_dir"]).parent / f"s{job['seed']}.log"),
                }
                results[(job["label"], job["seed"])] = result
                _announce(len(results), len(jobs), result)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # the run stops where it is; its last checkpoint is where the next call resumes
        raise Interrupted(
            f"{FEATURE} stopped with {len(results)} of {len(jobs)} runs done; run the same command again to "
            "continue (finished runs are reused, unfinished ones resume from their last checkpoint)",
            130,
        ) from None
    wall = time.monotonic() - start

    runs = [results[(job["label"], job["seed"])] for job in jobs]
    statuses = ("trained", "resumed", "reused", "failed")
    result = {
        "algorithm": cls.name,
        "env": env,
        "env_kwargs": env_kwargs,
        "grid": grid,
        "seeds": seed_list,
        "total_steps": total_steps,
        "options": {k: v for k, v in {**run_options, **algo_options}.items()},
        "out": str(out),
        "runs": runs,
        "points": _points_summary(points, runs, seed_list),
        "counts": {s: sum(r["status"] == s for r in runs) for s in statuses},
        "wall_time": wall,
        "parallel": parallel,
    }
    result["compare_command"] = compare_command(result)
    result = json.loads(json.dumps(result))  # as sweep.json holds it (tuples → lists)
    (out / SWEEP_FILE).write_text(json.dumps(result, indent=1) + "\n")
    (out / TABLE_FILE).write_text(format_table(result))
    return result


# -- command line --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SweepFlags:
    """pgrad sweep's own flags (the others are pgrad train's)."""

    seeds: int | None = None
    """Train seeds 0..SEEDS-1 (default 3)."""
    seed_list: str | None = None
    """Comma-separated seeds instead of --seeds, e.g. 0,3."""
    out: str | None = None
    """Folder of the sweep: OUT/<label>/s<seed> per run, sweep.json, sweep.md (default sweep/ALGO-ENV)."""
    ray_address: str | None = None
    """Ray cluster to run the tasks on ("auto" or HOST:PORT); default: a local Ray with this machine's
    cores."""
    max_parallel: int | None = None
    """At most this many runs at once (default: as many as the cluster has CPUs)."""
    max_retries: int = 3
    """Times Ray reruns a task whose worker process died (it resumes from its last checkpoint)."""


OWN_FLAGS = ("--grid", *(f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(SweepFlags)))
USAGE = """usage: pgrad sweep ALGO --env ENV_ID [--seeds N | --seed-list 0,3] [--grid KEY=V1,V2 ...]
                   [--total-steps N] [--out DIR] [--ray-address A] [--max-parallel P] [--max-retries R]
                   [pgrad train's run and algorithm flags] [--config FILE] [--env-kwargs JSON] [--env-arg K=V]

Train every point of the grid (the cross product of the --grid options' values) with every seed, each run
one Ray task on one CPU, in DIR/<label>/s<seed> (label: the point, e.g. lr=0.001,num_steps=64; also the
run's tag).
The same command again reuses finished runs and resumes unfinished ones. Writes DIR/sweep.json and
DIR/sweep.md and prints the `pgrad compare ... --label-by tag` line that compares the points.

  --grid KEY=V1,V2     an option of ALGO's Config and its values (repeat for more options); values are read by
                       the option's type (1e-3, 64, true, none, [64,64] or 64x64 for a tuple)
  --seeds N            seeds 0..N-1 (default 3);  --seed-list 0,3: these seeds
  --out DIR            the sweep's folder (default sweep/ALGO-ENV)
  --ray-address A      the Ray cluster ("auto" or HOST:PORT; default: a local Ray with this machine's cores);
                       on a cluster DIR must be on a filesystem every node shares
  --max-parallel P     at most P runs at once (default: one per CPU of the cluster)
  --max-retries R      reruns of a task whose worker process died (default 3; it resumes from a checkpoint)
  --eval-every N       default total-steps / 10;  --checkpoint-every N: default total-steps / 10

Other flags are pgrad train's (`pgrad train ALGO --help`), fixed for every run; --seed, --run-dir, --tag and
--workers are set by the sweep. A run that fails is reported with its reason; the others go on (exit status 1
when any failed)."""


def _take(argv: Sequence[str], flags: Sequence[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(flag, value) of each of `flags` on the line (`FLAG VALUE` or `FLAG=VALUE`), and the other args."""
    taken, rest, items = [], [], iter(argv)
    for arg in items:
        name = arg.split("=", 1)[0]
        if name in flags:
            taken.append((name, arg.split("=", 1)[1] if "=" in arg else next(items, None)))
        else:
            rest.append(arg)
    return taken, rest


def main(argv: Sequence[str]) -> int:
    """`pgrad sweep ALGO ...`: parse the line, sweep, print the table and the compare command."""
    from pgrad.cli import _algorithm_line, _parse, _parse_train
    from pgrad.run.config import RunConfig

    line = _algorithm_line(argv, "sweep")
    if line is None or any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    cls, run_values, _, env_kwargs, rest = line
    taken, rest = _take(rest, OWN_FLAGS)
    missing = [flag for flag, value in taken if value is None]
    if missing:
        raise ConfigError(f"{missing[0]} needs a value (see `pgrad sweep --help`)")
    grid = [value for flag, value in taken if flag == "--grid"]
    flags = [f"{flag}={value}" for flag, value in taken if flag != "--grid"]
    own = _parse(SweepFlags, flags, f"pgrad sweep {cls.name}")
    for flag in ("--seed", "--run-dir", "--tag", "--workers"):
        if any(a == flag or a.startswith(flag + "=") for a in rest):
            raise ConfigError(
                f"{flag} is set by pgrad sweep for each run"
                + (": use --seeds N or --seed-list 0,3" if flag == "--seed" else "")
            )
    if own.seeds is not None and own.seed_list is not None:
        raise ConfigError("give --seeds N or --seed-list, not both")
    seeds: int | list[int] = 3 if own.seeds is None else own.seeds
    if own.seed_list is not None:
        try:
            seeds = [int(s) for s in own.seed_list.split(",")]
        except ValueError:
            raise ConfigError(
                f"--seed-list must be comma-separated ints (e.g. 0,3), got {own.seed_list!r}"
            ) from None
    # a --config file (a run.json works) gives fixed options; its per-run ones are the sweep's to set
    run_values = {k: v for k, v in run_values.items() if k not in ("seed", "run_dir", "tag", "ray_address")}
    env = _flag_value_or(rest, "--env", run_values.get("env"))
    if env is None:
        raise ConfigError(f"pgrad sweep {cls.name}: --env ENV_ID is needed (or an env in the --config file)")
    args, applied, use_preset = _parse_train(
        line._replace(run_values=run_values, rest=rest), env, f"pgrad sweep {cls.name}"
    )
    # the options that differ from what pgrad.train would use anyway (the Config's defaults and the preset)
    baseline_algo = dataclasses.replace(cls.Config(), **applied)
    options = {
        f.name: getattr(args.algo, f.name)
        for f in dataclasses.fields(cls.Config)
        if getattr(args.algo, f.name) != getattr(baseline_algo, f.name)
    }
    for f in dataclasses.fields(RunConfig):
        value, flag = getattr(args.run, f.name), f"--{f.name.replace('_', '-')}"
        given = f.name in run_values or any(a == flag or a.startswith(flag + "=") for a in rest)
        if f.name not in (*OWN_OPTIONS, "preset") and (given or value != getattr(RunConfig(), f.name)):
            options[f.name] = value
    if not use_preset:
        options["preset"] = False
    result = sweep(
        cls.name,
        args.run.env,
        grid=grid,
        seeds=seeds,
        out=own.out,
        total_steps=args.run.total_steps,
        ray_address=own.ray_address,
        max_parallel=own.max_parallel,
        max_retries=own.max_retries,
        env_kwargs=env_kwargs,
        **options,
    )
    print(format_table(result), end="")
    out = Path(result["out"])
    print(f"\nwrote {out / SWEEP_FILE}, {out / TABLE_FILE}")
    return 1 if result["counts"]["failed"] else 0


def _flag_value_or(argv: Sequence[str], flag: str, default: Any) -> Any:
    from pgrad.cli import _flag_value

    value = _flag_value(argv, flag)
    return default if value is None else value
