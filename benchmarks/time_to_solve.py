"""Time to solve a task, pgrad vs Stable-Baselines3: what a user waits for.

    python benchmarks/time_to_solve.py [--rows cartpole acrobot pendulum] [--seeds 0 1 2 3 4]
                                       [--quick] [--report-only]

A task is solved at the first evaluation (deterministic episodes, every `eval_every` env steps) whose mean
return is at or above the threshold; training stops there (pgrad: `--target-return`; SB3: EvalCallback +
StopTrainingOnRewardThreshold). Every run is its own process, one torch thread (`--threads 1`,
OMP_NUM_THREADS=1; SB3: torch.set_num_threads(1)), the libraries alternating within each seed (the order
flips every seed) so that machine noise hits both. Two times per run:

  whole-process  from launching the interpreter to the process's exit, timed by the parent around
                 subprocess.run: start-up, imports, training, evaluations, what happens after solving.
                 pgrad's worker leaves as the `pgrad` command does (os._exit once everything is written,
                 see pgrad.cli.entry); SB3's as a Python script does (interpreter teardown).
  in-process     from just before training is set up (after the imports: before the envs and the model are
                 built) to the end of the solving evaluation, evaluations included (wall clock). pgrad: a
                 stamp on each evaluation record of the run's metrics.jsonl; SB3: a stamp after each
                 EvalCallback evaluation. Both workers import what a run imports lazily (torch._dynamo,
                 which the first torch.optim optimizer pulls in: ~2 s here) before the clock starts.

An unsolved run counts with its full time (in-process: to the end of training) and its budget, and is marked.
Medians over seeds. Rows (benchmarks/results/time_to_solve.md, time_to_solve.png), settings in ROWS/SB3_ZOO:

  cartpole  CartPole-v1, ≥ 475 over 20 episodes, eval every 5,000 steps, budget 200k.
            pgrad: exactly `pgrad train ppo --env CartPole-v1 --target-return 475 --eval-every 5000
            --eval-episodes 20` (its preset); SB3: PPO with rl-baselines3-zoo's CartPole-v1 settings.
  acrobot   Acrobot-v1, ≥ −100 over 20 episodes, eval every 10,000 steps, budget 500k; pgrad ppo (preset) vs
            SB3 PPO with the zoo's Acrobot-v1 settings (VecNormalize as the zoo wraps it).
  pendulum  Pendulum-v1, ≥ −200 over 10 episodes, eval every 1,000 steps; pgrad sac (preset, 20k) vs SB3 SAC
            (zoo: lr 1e-3, 20k) and SB3 PPO (zoo without gSDE, 200k); the ratio against the faster SB3 one.

Each finished run is appended at once to benchmarks/results/time_to_solve_runs.jsonl; a run already there is
skipped, so an interrupted benchmark resumes. `--report-only` rebuilds the report from that file. `--quick`
runs the first seed with tiny budgets into a temporary folder (a smoke test of the whole pipeline).
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

# Only the standard library at the top: a worker process's start-up is part of what is measured, and each
# worker imports only its own library.

RESULTS = Path(__file__).parent / "results"
RUNS_FILE = "time_to_solve_runs.jsonl"

# rl-baselines3-zoo's hyperparams/ppo.yml and sac.yml, in the zoo's own form: "lin_X" is a schedule falling
# linearly from X to 0 over the budget; `normalize` wraps the training env in VecNormalize (observations and
# rewards, with the algorithm's γ) and the evaluation env in VecNormalize(training=False, norm_reward=False),
# whose observation statistics EvalCallback copies from the training env before each evaluation.
SB3_ZOO: dict[str, dict[str, Any]] = {
    "ppo-cartpole": dict(
        n_envs=8,
        normalize=False,
        hyperparams=dict(
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate="lin_0.001",
            clip_range="lin_0.2",
        ),
    ),
    "ppo-acrobot": dict(
        n_envs=16,
        normalize=True,
        hyperparams=dict(n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0),
    ),
    "sac-pendulum": dict(n_envs=1, normalize=False, hyperparams=dict(learning_rate=1e-3)),
    # The zoo's Pendulum PPO also sets use_sde=True, sde_sample_freq=4; left out (pgrad has no gSDE).
    "ppo-pendulum": dict(
        n_envs=4,
        normalize=True,
        hyperparams=dict(
            n_steps=1024,
            gae_lambda=0.95,
            gamma=0.9,
            n_epochs=10,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
        ),
    ),
}

# Per row: the env, the solve criterion and the runs (library, algorithm, env-step budget, SB3_ZOO key; pgrad
# runs use pgrad's preset for the algorithm and env). `quick`: the smoke-test budgets and evaluations.
ROWS: dict[str, dict[str, Any]] = {
    "cartpole": dict(
        env="CartPole-v1",
        threshold=475.0,
        eval_every=5_000,
        eval_episodes=20,
        runs=[("pgrad", "ppo", 200_000, None), ("sb3", "PPO", 200_000, "ppo-cartpole")],
        quick=dict(eval_every=1_024, eval_episodes=2, budgets=[2_048, 2_048]),
    ),
    "acrobot": dict(
        env="Acrobot-v1",
        threshold=-100.0,
        eval_every=10_000,
        eval_episodes=20,
        runs=[("pgrad", "ppo", 500_000, None), ("sb3", "PPO", 500_000, "ppo-acrobot")],
        quick=dict(eval_every=4_096, eval_episodes=2, budgets=[8_192, 8_192]),
    ),
    "pendulum": dict(
        env="Pendulum-v1",
        threshold=-200.0,
        eval_every=1_000,
        eval_episodes=10,
        runs=[
            ("pgrad", "sac", 20_000, None),
            ("sb3", "SAC", 20_000, "sac-pendulum"),
            ("sb3", "PPO", 200_000, "ppo-pendulum"),
        ],
        quick=dict(eval_every=500, eval_episodes=2, budgets=[1_000, 1_000, 4_096]),
    ),
}

# The issue's targets (CartPole): pgrad's median time to solve ≤ this fraction of SB3's.
TARGETS = {"cartpole": {"whole-process": 1 / 5, "in-process": 1 / 10}}
COLORS = {"pgrad": "C0", "sb3": "C1"}


def run_specs(name: str, quick: bool) -> list[dict[str, Any]]:
    """The runs of a row as worker specs (everything a worker needs, JSON-serialisable)."""
    from pgrad.algorithms.presets import preset

    row = ROWS[name]
    q = row["quick"] if quick else {}
    specs = []
    for i, (lib, algo, budget, zoo) in enumerate(row["runs"]):
        # What the library trains with: a changed preset (or zoo entry) makes its earlier runs stale.
        settings = preset(algo, row["env"]) if lib == "pgrad" else SB3_ZOO[zoo]
        specs.append(
            dict(
                row=name,
                lib=lib,
                algo=algo,
                env=row["env"],
                threshold=row["threshold"],
                eval_every=q.get("eval_every", row["eval_every"]),
                eval_episodes=q.get("eval_episodes", row["eval_episodes"]),
                budget=q["budgets"][i] if quick else budget,
                sb3=SB3_ZOO[zoo] if zoo else None,
                settings=json.loads(json.dumps(settings)),  # as stored in the runs file (tuples as lists)
            )
        )
    return specs


def run_key(r: dict[str, Any]) -> tuple[Any, ...]:
    fields = ("row", "lib", "algo", "seed", "budget", "eval_every", "eval_episodes")
    return (*(r[f] for f in fields), json.dumps(r.get("settings"), sort_keys=True))


def label(r: dict[str, Any]) -> str:
    return f"pgrad {r['algo']}" if r["lib"] == "pgrad" else f"SB3 {r['algo']}"


# -- workers (each run in its own process) -------------------------------------------------------------


def pgrad_argv(spec: dict[str, Any], seed: int, run_dir: str) -> list[str]:
    """The `pgrad train` command line of a run: the user's command plus seed, budget, one thread, a folder."""
    return [
        "train", spec["algo"], "--env", spec["env"], f"--target-return={spec['threshold']:g}",
        "--eval-every", str(spec["eval_every"]), "--eval-episodes", str(spec["eval_episodes"]),
        "--total-steps", str(spec["budget"]), "--seed", str(seed), "--threads", "1", "--run-dir", run_dir,
    ]  # fmt: skip


def worker_pgrad(spec: dict[str, Any], seed: int, launched: float) -> dict[str, Any]:
    """`pgrad train ...` through the CLI's own entry point, in this process."""
    import torch._dynamo  # noqa: F401 (see SB3's worker)

    import pgrad.cli
    from pgrad.algorithms import get_algorithm
    from pgrad.run.logger import MetricsLogger, read_metrics
    from pgrad.run.trainer import Trainer

    get_algorithm(spec["algo"])  # the algorithm's module and torch
    try:  # what the CLI imports lazily at the start of a run (TensorBoard is on by default)
        import rich.progress  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        pass

    t0 = time.perf_counter()
    startup = time.time() - launched
    log, evaluate = MetricsLogger.log, Trainer.evaluate
    eval_seconds: list[float] = []

    def timed(self: Trainer, *args: Any, **kwargs: Any) -> dict[str, Any]:
        start = time.perf_counter()
        result = evaluate(self, *args, **kwargs)
        eval_seconds.append(time.perf_counter() - start)
        return result

    def stamped(self: MetricsLogger, record: dict[str, Any]) -> None:
        # Logged right after the evaluation (and the best checkpoint it may write): in-process seconds.
        if "eval/mean_return" in record:
            record = {**record, "bench/seconds": time.perf_counter() - t0, "bench/eval": eval_seconds[-1]}
        log(self, record)

    Trainer.evaluate = timed  # type: ignore[method-assign]
    MetricsLogger.log = stamped  # type: ignore[method-assign]
    run_dir = tempfile.mkdtemp(prefix=f"bench-tts-{spec['row']}-pgrad-s{seed}-")
    code = pgrad.cli.main(pgrad_argv(spec, seed, run_dir))
    end = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"pgrad train exited with {code}")
    records = read_metrics(run_dir)
    evals = [
        (r["global_step"], r["bench/seconds"], r["eval/mean_return"], r["bench/eval"])
        for r in records
        if "bench/seconds" in r
    ]
    solving = next(
        (r for r in records if r.get("eval/mean_return", -float("inf")) >= spec["threshold"]), None
    )
    clocked = [r for r in records if "time" in r]
    out = {
        "startup_seconds": startup,
        "end_seconds": end,
        "last_step": records[-1]["global_step"],
        "evals": evals,
        # pgrad's own clock: seconds in training iterations only (no set-up, evaluations or checkpoints)
        "train_only_seconds": (solving or clocked[-1])["time"],
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def worker_sb3(spec: dict[str, Any], seed: int, launched: float) -> dict[str, Any]:
    """SB3 with rl-baselines3-zoo's settings, an EvalCallback and StopTrainingOnRewardThreshold."""
    import stable_baselines3 as sb3
    import torch
    import torch._dynamo  # the first torch.optim optimizer imports it (~2 s here): an import, not timed
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    startup = time.time() - launched
    zoo = spec["sb3"]
    hyper = dict(zoo["hyperparams"])
    for key, value in hyper.items():
        if isinstance(value, str) and value.startswith("lin_"):  # the zoo's linear schedule

            def schedule(progress_remaining: float, start: float = float(value[4:])) -> float:
                return progress_remaining * start

            hyper[key] = schedule
    n_envs = zoo["n_envs"]
    env = make_vec_env(spec["env"], n_envs=n_envs, seed=seed)
    eval_env = make_vec_env(spec["env"], n_envs=1, seed=10_000 + seed)
    if zoo["normalize"]:
        gamma = hyper.get("gamma", 0.99)
        env = VecNormalize(env, gamma=gamma)
        eval_env = VecNormalize(eval_env, gamma=gamma, training=False, norm_reward=False)
    model = getattr(sb3, spec["algo"])("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **hyper)

    evals: list[tuple[int, float, float, float]] = []  # (steps, seconds, mean return, eval seconds)

    class TimedEval(EvalCallback):
        """EvalCallback that stamps every evaluation. (callback_after_eval would miss the solving one: SB3
        calls it as `continue_training and callback()`, skipped once the stop callback has said stop.)"""

        def _on_step(self) -> bool:
            start = time.perf_counter()
            go_on = super()._on_step()
            if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
                now = time.perf_counter()
                evals.append((self.num_timesteps, now - t0, self.last_mean_reward, now - start))
            return go_on

    evaluate = TimedEval(
        eval_env,
        callback_on_new_best=StopTrainingOnRewardThreshold(reward_threshold=spec["threshold"]),
        n_eval_episodes=spec["eval_episodes"],
        eval_freq=max(spec["eval_every"] // n_envs, 1),  # counted in vector steps of n_envs env steps
        deterministic=True,
        verbose=0,
    )
    model.learn(spec["budget"], callback=evaluate)
    end = time.perf_counter() - t0
    return {
        "startup_seconds": startup,
        "end_seconds": end,
        "last_step": model.num_timesteps,
        "evals": evals,
        "train_only_seconds": None,
    }


def worker(spec: dict[str, Any], seed: int, launched: float) -> dict[str, Any]:
    out = (worker_pgrad if spec["lib"] == "pgrad" else worker_sb3)(spec, seed, launched)
    solving = next((e for e in out["evals"] if e[2] >= spec["threshold"]), None)
    out["solved"] = solving is not None
    out["steps"] = solving[0] if solving else out["last_step"]
    out["in_process_seconds"] = solving[1] if solving else out["end_seconds"]
    out["final_eval"] = out["evals"][-1][2] if out["evals"] else None
    upto = out["evals"][: out["evals"].index(solving) + 1] if solving else out["evals"]
    out["eval_seconds"] = sum(e[3] for e in upto)  # of the in-process time, spent evaluating
    return out


def run_in_process(spec: dict[str, Any], seed: int) -> dict[str, Any]:
    """One run in a fresh interpreter, timed from the outside."""
    launched, start = time.time(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec), str(seed), repr(launched)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{spec['row']} {spec['lib']} {spec['algo']} seed {seed} failed:\n{proc.stderr[-3000:]}"
        )
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_seconds": wall}


# -- driver ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Args:
    rows: tuple[str, ...] = tuple(ROWS)
    """Rows (tasks) to run and report: cartpole, acrobot, pendulum."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Seeds per row and library."""
    quick: bool = False
    """Smoke test: the first seed, tiny budgets and evaluations, results into a temporary folder."""
    report_only: bool = False
    """Rebuild the tables and plot from the saved runs without training."""


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        spec, seed, launched = json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        print(json.dumps(worker(spec, seed, launched)), flush=True)
        if spec["lib"] == "pgrad":  # as the `pgrad` command leaves (pgrad.cli.entry: no interpreter teardown)
            os._exit(0)
        return
    import tyro

    args = tyro.cli(Args)
    unknown = sorted(set(args.rows) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows: {', '.join(unknown)} (rows: {', '.join(ROWS)})")
    results = Path(tempfile.mkdtemp(prefix="time-to-solve-quick-")) if args.quick else RESULTS
    seeds = args.seeds[:1] if args.quick else args.seeds
    results.mkdir(parents=True, exist_ok=True)
    runs_file = results / RUNS_FILE
    done = {run_key(r) for r in _read(runs_file)}
    failed = []
    for name in () if args.report_only else args.rows:
        specs = run_specs(name, args.quick)
        for i, seed in enumerate(seeds):
            for spec in specs if i % 2 == 0 else specs[::-1]:  # alternate, and flip the order every seed
                if run_key({**spec, "seed": seed}) in done:
                    continue
                try:
                    out = {**{k: v for k, v in spec.items() if k != "sb3"}, "seed": seed}
                    out.update(run_in_process(spec, seed))
                except RuntimeError as exc:  # keep going; the run is retried next time
                    print(exc, file=sys.stderr, flush=True)
                    failed.append((name, spec["lib"], spec["algo"], seed))
                    continue
                with open(runs_file, "a") as f:
                    f.write(json.dumps(out) + "\n")
                print(json.dumps({k: v for k, v in out.items() if k != "evals"}), flush=True)
    wanted = {
        run_key({**s, "seed": seed})
        for name in args.rows
        for s in run_specs(name, args.quick)
        for seed in seeds
    }
    latest = {run_key(r): r for r in _read(runs_file) if run_key(r) in wanted}
    if latest:
        _write(list(latest.values()), results, args)
    else:
        print(f"no saved runs for these rows and seeds in {runs_file}")
    if args.quick:
        print(f"quick run: results in {results}")
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {failed}")


# -- report ----------------------------------------------------------------------------------------------


def _seconds(x: float) -> str:
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def _ratio(r: float) -> str:
    return f"{r:.3f} ({1 / r:.1f}× faster)" if r <= 1 else f"{r:.3f} ({r:.1f}× slower)"


def _config_lines() -> list[str]:
    """How each library is configured, per row, from ROWS, SB3_ZOO and pgrad's presets."""
    from pgrad.algorithms import get_algorithm
    from pgrad.algorithms.presets import preset
    from pgrad.envs.make import resolve_backend

    lines = ["## Configurations", ""]
    for name, row in ROWS.items():
        lines.append(
            f"- **{name}** (`{row['env']}`): solved at the first {row['eval_episodes']}-episode "
            f"deterministic evaluation with mean ≥ {row['threshold']:g}, evaluating every "
            f"{row['eval_every']:,} env steps."
        )
        for (lib, algo, budget, zoo), spec in zip(row["runs"], run_specs(name, False), strict=True):
            if lib == "pgrad":
                command = " ".join(pgrad_argv(spec, 0, "DIR")).replace("--seed 0", "--seed S")
                options = preset(algo, row["env"])
                num_envs = options.get("num_envs", get_algorithm(algo).Config().num_envs)
                backend = resolve_backend(row["env"], num_envs, "auto")
                lines.append(
                    f"  - pgrad {algo}, budget {budget:,}: `pgrad {command}`; preset: "
                    f"{', '.join(f'{k}={v}' for k, v in options.items())} (training envs: {backend})"
                )
            else:
                z = SB3_ZOO[zoo]
                hyper = ", ".join(f"{k}={v}" for k, v in z["hyperparams"].items())
                gamma = z["hyperparams"].get("gamma", 0.99)
                norm = (
                    f", VecNormalize(gamma={gamma:g}; eval env: training=False, norm_reward=False)"
                    if z["normalize"]
                    else ""
                )
                gsde = " (the zoo's gSDE left out)" if zoo == "ppo-pendulum" else ""
                lines.append(
                    f"  - SB3 {algo}, budget {budget:,} (rl-baselines3-zoo): n_envs={z['n_envs']}{norm}, "
                    f"{hyper}{gsde}; "
                    f"EvalCallback(eval_freq={max(row['eval_every'] // z['n_envs'], 1)} vector steps, "
                    f"n_eval_episodes={row['eval_episodes']}, deterministic) + "
                    f"StopTrainingOnRewardThreshold({row['threshold']:g})"
                )
    lines += [
        "",
        "SB3's EvalCallback evaluates on one env (the zoo's n_eval_envs=1), one episode after another;",
        "pgrad's evaluation steps up to 32 episodes together. pgrad evaluates after the iteration that",
        "crosses each multiple of the evaluation interval (CartPole: at 5,120, 10,240, 15,104, … env steps),",
        "SB3 at the exact multiple (its eval_freq counts vector steps: interval // n_envs).",
        "",
    ]
    return lines


def _write(runs: list[dict[str, Any]], results: Path, args: Args) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flags = " --quick" if args.quick else ""
    lines = [
        "# Time to solve: pgrad vs Stable-Baselines3",
        "",
        f"`python benchmarks/time_to_solve.py{flags}`: every run a separate process, one torch thread,",
        "the libraries alternating (order flipped every seed), a shared 2-core CPU machine. Medians over",
        "seeds. *whole-process*: launching the interpreter to the process's exit, timed from outside",
        "(start-up, imports, training, evaluations, and whatever runs after the solving evaluation).",
        "*in-process*: just before the envs and model are built (imports done) to the end of the solving",
        "evaluation (wall clock, evaluations included). *start-up*: launch to that point (interpreter and",
        "imports). *training-only* (pgrad): its own clock, training iterations alone. *after solving*: the",
        "rest of whole-process (final checkpoint and plot, interpreter exit, process spawn). An unsolved",
        "run (†) counts with its full time and its budget.",
        "",
        "Targets (CartPole): pgrad's whole-process time to solve ≤ 1/5 of SB3's, in-process ≤ 1/10.",
        "",
        *_config_lines(),
    ]
    names = [n for n in ROWS if any(r["row"] == n for r in runs)]
    fig, axes = plt.subplots(1, len(names), figsize=(max(5.2 * len(names), 7.5), 4.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rs = [r for r in runs if r["row"] == name]
        groups: dict[str, list[dict[str, Any]]] = {}
        order = [(lib, algo) for lib, algo, _, _ in ROWS[name]["runs"]]
        for r in sorted(rs, key=lambda r: (order.index((r["lib"], r["algo"])), r["seed"])):
            groups.setdefault(label(r), []).append(r)
        medians = {}
        lines += [
            f"## {name}: `{ROWS[name]['env']}` (≥ {ROWS[name]['threshold']:g})",
            "",
            "| library / algorithm | budget | solved | median steps to solve | median in-process (s) | "
            "median whole-process (s) | median start-up (s) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for key, g in groups.items():
            inproc = float(np.median([r["in_process_seconds"] for r in g]))
            whole = float(np.median([r["process_seconds"] for r in g]))
            medians[key] = {"in-process": inproc, "whole-process": whole}
            solved = sum(r["solved"] for r in g)
            lines.append(
                f"| {key} | {g[0]['budget']:,} | {solved}/{len(g)} | "
                f"{np.median([r['steps'] for r in g]):,.0f} | {_seconds(inproc)} | {_seconds(whole)} | "
                f"{np.median([r['startup_seconds'] for r in g]):.1f} |"
            )
        lines += ["", "pgrad / SB3 ratios of the median times (< 1: pgrad is faster):", ""]
        lines += ["| pgrad / SB3 | in-process | whole-process | target met |", "| --- | --- | --- | --- |"]
        pgrad_keys = [k for k in groups if k.startswith("pgrad")]
        sb3_keys = [k for k in groups if k.startswith("SB3")]
        for p in pgrad_keys:
            for s in sb3_keys:
                ratio = {m: medians[p][m] / medians[s][m] for m in ("in-process", "whole-process")}
                target = TARGETS.get(name)
                met = (
                    ", ".join(f"{m} ≤ {t:.2g}: {'yes' if ratio[m] <= t else 'no'}" for m, t in target.items())
                    if target
                    else "–"
                )
                cells = [_ratio(ratio[m]) for m in ("in-process", "whole-process")]
                lines.append(f"| {p} / {s} | {cells[0]} | {cells[1]} | {met} |")
            if len(sb3_keys) > 1:  # against the faster SB3 variant, per measure
                cells = []
                for m in ("in-process", "whole-process"):
                    s = min(sb3_keys, key=lambda k, m=m: medians[k][m])
                    ratio = medians[p][m] / medians[s][m]
                    cells.append(f"{_ratio(ratio)}, vs {s}")
                lines.append(f"| {p} / faster SB3 | {cells[0]} | {cells[1]} | – |")
        lines += [
            "",
            "<details><summary>per seed</summary>",
            "",
            "| run | seed | solved | steps | in-process (s) | of which evaluating (s) | training-only (s) | "
            "whole-process (s) | start-up (s) | after solving (s) | last eval |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for key, g in groups.items():
            for r in g:
                train, final = r.get("train_only_seconds"), r.get("final_eval")
                after = r["process_seconds"] - r["startup_seconds"] - r["in_process_seconds"]
                lines.append(
                    f"| {key} | {r['seed']} | {'yes' if r['solved'] else '† no'} | {r['steps']:,} | "
                    f"{_seconds(r['in_process_seconds'])} | {_seconds(r['eval_seconds'])} | "
                    f"{'–' if train is None else _seconds(train)} | {_seconds(r['process_seconds'])} | "
                    f"{r['startup_seconds']:.1f} | {after:.1f} | {'–' if final is None else f'{final:.1f}'} |"
                )
        lines += ["", "</details>", ""]
        # the plot: per run, whole-process (filled) and in-process (open) per seed, a bar at the median
        for i, (key, g) in enumerate(groups.items()):
            color = COLORS["pgrad" if key.startswith("pgrad") else "sb3"]
            for dx, field, filled in ((-0.17, "process_seconds", True), (0.17, "in_process_seconds", False)):
                ys = [r[field] for r in g]
                xs = i + dx + np.linspace(-0.06, 0.06, len(g))
                median = float(np.median(ys))
                ax.bar(
                    i + dx, median, width=0.3, color=color if filled else "none", alpha=0.3 if filled else 1,
                    edgecolor=color, hatch=None if filled else "//",
                )  # fmt: skip
                ax.annotate(
                    _seconds(median), (i + dx, median), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=8,
                )  # fmt: skip
                for x, y, r in zip(xs, ys, g, strict=True):
                    marker = "o" if r["solved"] else "X"
                    ax.scatter(
                        x, y, marker=marker, s=30 if r["solved"] else 60, color=color if filled else "none",
                        edgecolors="red" if not r["solved"] else color, zorder=3,
                    )  # fmt: skip
        ax.set_xticks(range(len(groups)), list(groups), fontsize=9)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # room for the labels
        ax.set_ylabel("seconds")
        ax.set_title(f"{name}: time to solve (≥ {ROWS[name]['threshold']:g})", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color="grey", label="whole-process"),
        plt.Line2D(
            [], [], marker="o", linestyle="", color="grey", markerfacecolor="none", label="in-process"
        ),
        plt.Line2D([], [], marker="X", linestyle="", color="grey", markeredgecolor="red", label="unsolved"),
    ]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=3)
    fig.suptitle("per seed; bars at the median (filled: whole-process, hatched: in-process)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(results / "time_to_solve.png", dpi=90)
    plt.close(fig)
    text = "\n".join([*lines, "![time to solve](time_to_solve.png)"]) + "\n"
    (results / "time_to_solve.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
