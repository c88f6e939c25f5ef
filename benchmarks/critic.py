"""pgrad vs Stable-Baselines3 side by side: the learned-critic family (SAC, CrossQ).

Every run is its own process, timed from the outside (interpreter start, imports, training, evaluation: what
a user waits for), one torch thread each, runs alternating between the libraries so that machine noise hits
both. Needs the benchmark extra (`pip install -e ".[bench]"`; `.[mujoco]` for row c).

    python benchmarks/critic.py [--rows same-settings zoo-pendulum halfcheetah] [--seeds 0 1 2]

Rows (benchmarks/results/critic.md, .png):
  same-settings  SAC with identical settings in both (256×256, batch 256, lr 1e-3, 20k steps, Pendulum-v1):
                 wall time, steps/s, final return (10 deterministic episodes), the FLOP floor of one update
                 and the fraction of it pgrad's update reaches.
  zoo-pendulum   pgrad's own Pendulum settings vs SB3 with rl-baselines3-zoo's: whole-process wall time to
                 the first evaluation (10 deterministic episodes, every 1000 steps) at or above −200.
  halfcheetah    SAC and CrossQ on HalfCheetah-v5, 100k steps, vs SB3 SAC: return and wall time.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from pgrad.algorithms.presets import PRESETS  # torch-free: the parent process stays light

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "critic_runs.jsonl"

ROWS: dict[str, dict[str, Any]] = {
    "same-settings": dict(
        env="Pendulum-v1",
        budget=20_000,
        threshold=None,
        runs=[
            ("sb3", "SAC", dict(learning_rate=1e-3, learning_starts=1000)),
            ("pgrad", "sac", dict(actor_lr=1e-3, critic_lr=1e-3, learning_starts=1000)),
        ],
    ),
    "zoo-pendulum": dict(
        env="Pendulum-v1",
        budget=20_000,
        threshold=-200.0,
        runs=[
            ("sb3", "SAC", dict(learning_rate=1e-3)),  # rl-baselines3-zoo's hyperparams/sac.yml
            ("pgrad", "sac", "PENDULUM"),
        ],
    ),
    "halfcheetah": dict(
        env="HalfCheetah-v5",
        budget=100_000,
        threshold=None,
        runs=[
            ("sb3", "SAC", dict(learning_starts=10_000)),
            ("pgrad", "sac", dict(learning_starts=10_000)),
            ("pgrad", "crossq", dict(learning_starts=5_000)),
        ],
    ),
}

# pgrad's own settings for Pendulum-v1 (row zoo-pendulum): `pgrad train sac --env Pendulum-v1`'s preset.
PENDULUM: dict[str, Any] = PRESETS["sac"]["Pendulum-v1"]


def sac_update_flops(
    obs_dim: int, act_dim: int, hidden: tuple[int, ...], batch: int, critics: int = 2
) -> int:
    """Multiply-add FLOPs (2 per MAC) of one SAC update: the matrix products only.

    Forward of an MLP = Σ in·out per sample; backward = 2× forward for the layers whose weight and input
    gradients are both needed (the first layer needs no input gradient).
    critic step: critics' forward + backward on (s, a); target: actor forward on s' + target critics'
    forward; actor step: actor forward, critics' forward, critics' input backward, actor backward.
    """

    def macs(sizes: list[int]) -> int:
        return sum(a * b for a, b in itertools.pairwise(sizes))

    critic = [obs_dim + act_dim, *hidden, 1]
    actor = [obs_dim, *hidden, 2 * act_dim]
    c, a = macs(critic) * critics, macs(actor)
    c_first, a_first = critic[0] * critic[1] * critics, actor[0] * actor[1]
    critic_step = c + (2 * c - c_first)
    target = a + c
    actor_step = a + c + (c - c_first) + (2 * a - a_first)
    return 2 * batch * (critic_step + target + actor_step)


def matmul_rate() -> float:
    """This machine's fp32 matrix-product rate on one thread (FLOP/s), 256×256×256, best of 5 (CPU time)."""
    import torch

    torch.set_num_threads(1)
    x, w = torch.randn(256, 256), torch.randn(256, 256)
    for _ in range(20):
        x @ w
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(200):
            x @ w
        best = min(best, (time.process_time() - start) / 200)
    return 2 * 256**3 / best


# -- workers (each run in its own process) -------------------------------------------------------------


def worker_pgrad(row: dict[str, Any], algo: str, options: Any, seed: int) -> dict[str, Any]:

    import pgrad
    from pgrad.run.logger import read_metrics

    options = PENDULUM if options == "PENDULUM" else options
    run_dir = tempfile.mkdtemp(prefix="bench-critic-")
    threshold = row["threshold"]
    summary = pgrad.train(
        algo, row["env"], total_steps=row["budget"], seed=seed, run_dir=run_dir, threads=1,
        eval_every=1000 if threshold is not None else 0, eval_episodes=10, target_return=threshold,
        checkpoint_every=0, checkpoint_minutes=0, progress=False, tensorboard=False, preset=False, **options,
    )  # fmt: skip
    curve = [
        (r["global_step"], r["time"], r["charts/episode_return"])
        for r in read_metrics(run_dir)
        if "charts/episode_return" in r
    ]
    out = {"steps": summary["global_step"], "train_seconds": summary["wall_time"], "curve": curve}
    out["eval"] = summary["eval"]["mean_return"]
    out["reached"] = summary["target_reached"]
    return out


def worker_floor(row: dict[str, Any], options: dict[str, Any], seed: int) -> dict[str, Any]:
    """pgrad's SAC update alone on a filled buffer (CPU time, best of 5 × 50), with its FLOP count, this
    process's matrix-product rate, the time its matrix products take inside the update (torch.profiler:
    where the update falls short of the floor), and the same update under `torch.compile`."""
    import torch
    from torch.profiler import profile

    import pgrad

    torch.set_num_threads(1)
    cls = pgrad.get_algorithm("sac")
    envs = pgrad.make_env(row["env"], 1)
    config = cls.Config(**{**options, "learning_starts": 300})
    model = cls(config, envs, seed, torch.device("cpu"), 10_000)
    for i in range(400):
        model.iteration(i)
    batch = model.buffer.sample(config.batch_size, model.generator)

    def best_of(update: Any) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for _ in range(50):
                update(batch)
            best = min(best, (time.process_time() - start) / 50)
        return best

    seconds = best_of(model.update)
    with profile() as prof:
        for _ in range(20):
            model.update(batch)
    matmuls = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
    events = prof.key_averages()
    matmul_us = sum(e.self_cpu_time_total for e in events if e.key in matmuls) / 20
    total_us = sum(e.self_cpu_time_total for e in events) / 20
    start = time.perf_counter()
    compiled = torch.compile(model.update)
    compiled(batch)
    compile_seconds = time.perf_counter() - start
    space = envs.single_action_space
    flops = sac_update_flops(envs.obs_dim, space.shape[0], config.hidden_sizes, config.batch_size)
    return {
        "update_seconds": seconds,
        "update_flops": flops,
        "matmul_rate": matmul_rate(),
        "matmul_share": matmul_us / total_us,  # of the profiled update's CPU time
        "compiled_update_seconds": best_of(compiled),
        "compile_seconds": compile_seconds,
    }


def worker_sb3(row: dict[str, Any], algo: str, options: dict[str, Any], seed: int) -> dict[str, Any]:
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback, StopTrainingOnRewardThreshold
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    env = make_vec_env(row["env"], n_envs=1, seed=seed)
    model = getattr(sb3, algo)("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **options)

    class Curve(BaseCallback):
        def _on_training_start(self) -> None:
            self.start, self.points = time.perf_counter(), []

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.points.append(
                        (self.num_timesteps, time.perf_counter() - self.start, info["episode"]["r"])
                    )
            return True

    callbacks: list[BaseCallback] = [Curve()]
    if row["threshold"] is not None:
        eval_env = make_vec_env(row["env"], n_envs=1, seed=10_000 + seed)
        stop = StopTrainingOnRewardThreshold(reward_threshold=row["threshold"])
        callbacks.append(
            EvalCallback(eval_env, callback_on_new_best=stop, n_eval_episodes=10, eval_freq=1000)
        )
    start = time.perf_counter()
    model.learn(row["budget"], callback=callbacks)
    seconds = time.perf_counter() - start
    eval_env = make_vec_env(row["env"], n_envs=1, seed=20_000 + seed)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    reached = row["threshold"] is not None and model.num_timesteps < row["budget"]
    return {
        "steps": model.num_timesteps,
        "train_seconds": seconds,
        "curve": callbacks[0].points,
        "eval": float(mean),
        "reached": bool(reached),
    }


def run_in_process(name: str, lib: str, index: int, seed: int, mode: str = "--worker") -> dict[str, Any]:
    """One run in a fresh interpreter, timed from the outside."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, mode, name, str(index), str(seed)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {lib} seed {seed} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_seconds": wall}


@dataclasses.dataclass
class Args:
    rows: tuple[str, ...] = ("same-settings", "zoo-pendulum")
    """Rows to run (halfcheetah needs `pip install -e '.[mujoco]'` and an hour)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds per row and library."""
    report_only: bool = False
    """Rebuild the table and plot from the saved runs without training."""
    floor_only: bool = False
    """Measure only the SAC update against its FLOP floor (same-settings row), no training runs."""


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--worker", "--floor"):
        name, index, seed = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        row = ROWS[name]
        lib, algo, options = row["runs"][index]
        if sys.argv[1] == "--floor":
            out = worker_floor(row, options, seed)
        else:
            out = (worker_pgrad if lib == "pgrad" else worker_sb3)(row, algo, options, seed)
        print(json.dumps(out))
        return
    args = tyro.cli(Args)
    RUNS.parent.mkdir(parents=True, exist_ok=True)
    for name in () if args.report_only else args.rows:
        for seed in args.seeds:
            runs = () if args.floor_only else ROWS[name]["runs"]
            for index, (lib, algo, _) in enumerate(runs):  # alternate libraries
                out = {
                    "row": name,
                    "lib": lib,
                    "algo": algo,
                    "seed": seed,
                    **run_in_process(name, lib, index, seed),
                }
                with open(RUNS, "a") as f:
                    f.write(json.dumps(out) + "\n")
                print(json.dumps({k: v for k, v in out.items() if k != "curve"}), flush=True)
            if name == "same-settings":  # the update alone against its FLOP floor
                floor = {"row": name, "lib": "pgrad", "algo": "update", "seed": seed}
                out = {**floor, **run_in_process(name, "pgrad", 1, seed, "--floor")}
                with open(RUNS, "a") as f:
                    f.write(json.dumps(out) + "\n")
                print(json.dumps(out), flush=True)
    latest: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for line in RUNS.read_text().splitlines() if RUNS.exists() else []:
        out = json.loads(line)
        latest[(out["row"], out["lib"], out["algo"], out["seed"])] = out
    _write([out for _, out in sorted(latest.items())])  # every row and seed measured so far


def _write(runs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        "# Learned-critic family: pgrad vs Stable-Baselines3",
        "",
        "`python benchmarks/critic.py`: every run a separate process timed from outside (imports included),",
        "one torch thread, libraries alternating, a shared 2-core CPU machine. Mean ± std over seeds.",
        "",
        "| row | run | process wall (s) | training (s) | steps | steps/s | final eval (10 det.) | reached |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = sorted({r["row"] for r in runs}, key=list(ROWS).index)
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.2 * max(len(rows), 1)), squeeze=False)
    for i, name in enumerate(rows):
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in runs:
            if r["row"] == name and "update_seconds" not in r:
                groups.setdefault((r["lib"], r["algo"]), []).append(r)
        stats = {}
        for (lib, algo), rs in groups.items():
            wall = np.array([r["process_seconds"] for r in rs])
            train = np.array([r["train_seconds"] for r in rs])
            sps = np.array([r["steps"] / r["train_seconds"] for r in rs])
            evals = np.array([r["eval"] for r in rs])
            reached = sum(bool(r.get("reached")) for r in rs)
            stats[(lib, algo)] = (wall.mean(), sps.mean())
            lines.append(
                f"| {name} | {lib} {algo} | {wall.mean():.1f} ± {wall.std():.1f} | {train.mean():.1f} | "
                f"{np.mean([r['steps'] for r in rs]):,.0f} | {sps.mean():.1f} | {evals.mean():.1f} ± "
                f"{evals.std():.1f} | {reached}/{len(rs)} |"
            )
            for r in rs:
                if r["curve"]:
                    steps, secs, rets = zip(*r["curve"], strict=True)
                    color = "C0" if lib == "pgrad" else "C1"
                    label = f"{lib} {algo}" if r is rs[0] else None
                    axes[i, 0].plot(steps, rets, color=color, alpha=0.6, label=label)
                    axes[i, 1].plot(secs, rets, color=color, alpha=0.6, label=label)
        sb3 = stats.get(("sb3", "SAC"))
        for (lib, algo), (wall, sps) in stats.items():
            if lib == "pgrad" and sb3:
                lines.append(
                    f"| {name} | **pgrad {algo} / SB3 SAC** | **{sb3[0] / wall:.2f}× faster** | | | "
                    f"**{sps / sb3[1]:.2f}×** | | |"
                )
        floor = [r for r in runs if r["row"] == name and "update_seconds" in r]
        if floor:
            flops, rate = floor[0]["update_flops"], np.mean([r["matmul_rate"] for r in floor])
            seconds = np.mean([r["update_seconds"] for r in floor])
            share = np.mean([r["matmul_share"] for r in floor])
            compiled = np.mean([r["compiled_update_seconds"] for r in floor])
            lines.append(
                f"| {name} | pgrad SAC update alone | {seconds * 1e3:.2f} ms | "
                f"floor {flops / rate * 1e3:.2f} ms "
                f"({flops / 1e6:.0f} MFLOP at {rate / 1e9:.0f} GFLOP/s) | | **{flops / rate / seconds:.0%} "
                "of the floor** | | |"
            )
            lines.append(
                f"| {name} | where it goes | matrix products {share * seconds * 1e3:.2f} ms "
                f"({flops / rate / (share * seconds):.0%} of the square-GEMM rate) | other ops "
                f"{(1 - share) * seconds * 1e3:.2f} ms | | | | |"
            )
            lines.append(
                f"| {name} | torch.compile(update) | {compiled * 1e3:.2f} ms "
                f"({seconds / compiled:.2f}× eager) | compiling "
                f"{np.mean([r['compile_seconds'] for r in floor]):.0f} s | | | | |"
            )
        for j, xlabel in enumerate(("env steps", "training wall time (s)")):
            axes[i, j].set_title(f"{name}: training return vs {xlabel}")
            axes[i, j].set_xlabel(xlabel)
            axes[i, j].legend()
            axes[i, j].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "critic.png", dpi=90)
    (RESULTS / "critic.md").write_text("\n".join(lines) + "\n\n![curves](critic.png)\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
