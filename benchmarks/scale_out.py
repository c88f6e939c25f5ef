"""Distributed rollouts on Ray, measured side by side: PPO on CartPole-v1 (pgrad's preset) sampled locally,
by 1 Ray worker and by 2 Ray workers (`--workers K`, docs/scale_out.md).

    python benchmarks/scale_out.py [--seeds 0 1 2] [--report-only]

Each run is its own process, exactly

    pgrad train ppo --env CartPole-v1 --target-return 475 --eval-every 5000 --eval-episodes 20 \
        --threads 1 [--workers K] --seed S

(OMP_NUM_THREADS=1), timed by the parent around subprocess.run (whole-process wall: interpreter start,
imports, a local Ray's start for K ≥ 1, the actors' start, training, evaluations, exit). Steps/s is the
training speed once running: env steps over the iterations' wall time (evaluations excluded) from the first
metrics record on (the first interval holds the actors' start), from the run's metrics.jsonl. The modes
alternate within each seed (the order rotates every seed) so that noise from the shared machine hits all;
`uptime`'s load is recorded before each run.

Every finished run is appended to benchmarks/results/scale_out_runs.jsonl (a run already there is skipped);
the report is benchmarks/results/scale_out.md. Also measured once: the bytes that cross per iteration (the
policy's weights out, each worker's rollout back) for PPO's default network on CartPole.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
RUNS_FILE = RESULTS / "scale_out_runs.jsonl"
MODES = {"local": 0, "1 worker": 1, "2 workers": 2}
TARGET = 475
BUDGET = 150_000


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def run_one(mode: str, seed: int, folder: Path) -> dict:
    run_dir = folder / f"{mode.replace(' ', '_')}-s{seed}"
    cmd = [
        sys.executable,
        "-m",
        "pgrad",
        "train",
        "ppo",
        "--env",
        "CartPole-v1",
        "--total-steps",
        str(BUDGET),
    ]
    cmd += ["--target-return", str(TARGET), "--eval-every", "5000", "--eval-episodes", "20", "--threads", "1"]
    cmd += ["--log-every", "1024", "--seed", str(seed), "--run-dir", str(run_dir)]
    cmd += ["--no-progress", "--no-tensorboard"]
    if MODES[mode]:
        cmd += ["--workers", str(MODES[mode])]
    before = load()
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{mode} seed {seed} failed:\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "iteration" in r]
    evals = [r for r in records if "eval/mean_return" in r]
    solved = [r["global_step"] for r in evals if r["eval/mean_return"] >= TARGET]
    first, last = train[0], train[-1]
    sps = (last["global_step"] - first["global_step"]) / max(last["time"] - first["time"], 1e-9)
    return {
        "mode": mode,
        "workers": MODES[mode],
        "seed": seed,
        "solved": bool(solved),
        "steps": solved[0] if solved else last["global_step"],
        "wall": round(wall, 2),
        "train_time": last["time"],
        "sps": round(sps, 1),
        "load_before": before,
        "restarts": last.get("stats/worker_restarts", 0),
    }


def traffic() -> dict:
    """Bytes per iteration for PPO's default network on CartPole (8 envs × 32 steps): the weights sent once
    (ray.put, shared by every worker) and the rollout fields that come back (raw tensor bytes and pickled)."""
    import torch
    from gymnasium import spaces

    from pgrad.policies.networks import Policy

    policy = Policy(4, spaces.Discrete(2))
    weights = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    T, N, D = 32, 8, 4
    rollout = {
        "obs": torch.zeros(T, N, D),
        "next_obs": torch.zeros(T, N, D),
        "actions": torch.zeros(T, N, dtype=torch.long),
        "log_probs": torch.zeros(T, N),
        "rewards": torch.zeros(T, N),
        "terminated": torch.zeros(T, N, dtype=torch.bool),
        "truncated": torch.zeros(T, N, dtype=torch.bool),
        "mask": torch.zeros(T, N, dtype=torch.bool),
    }
    return {
        "weights_raw": sum(t.numel() * t.element_size() for t in weights.values()),
        "weights_pickled": len(pickle.dumps(weights)),
        "rollout_raw": sum(t.numel() * t.element_size() for t in rollout.values()),
        "rollout_pickled": len(pickle.dumps(rollout)),
        "module_pickled": len(pickle.dumps(policy)),
    }


def report(runs: list[dict], sizes: dict) -> str:
    lines = [
        "# Scale-out: PPO on CartPole-v1 sampled locally and by Ray workers",
        "",
        "`python benchmarks/scale_out.py` (docs/scale_out.md). pgrad's CartPole PPO preset "
        "(8 envs × 32 steps, 20 epochs of one 256-sample minibatch); solved = first 20-episode "
        "evaluation ≥ 475 (every 5,000 "
        f"steps, budget {BUDGET:,}). One process per run, one torch thread; K workers = K Ray actors "
        "(`--workers K`) on a local Ray started by the run. Whole-process wall: launching the interpreter "
        "to its exit (Ray's and the actors' start included). Steps/s: training speed after the first "
        "metrics record (evaluations excluded). Medians over seeds.",
        "",
        "| mode | seeds solved | steps to solve (median) | steps/s (median) | whole-process wall to solve, s "
        "(median) | per seed: steps / wall s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mode in MODES:
        rows = [r for r in runs if r["mode"] == mode]
        if not rows:
            continue
        per_seed = ", ".join(f"s{r['seed']}: {r['steps']:,} / {r['wall']:.1f}" for r in rows)
        lines.append(
            f"| {mode} | {sum(r['solved'] for r in rows)}/{len(rows)} | "
            f"{statistics.median(r['steps'] for r in rows):,.0f} | "
            f"{statistics.median(r['sps'] for r in rows):,.0f} | "
            f"{statistics.median(r['wall'] for r in rows):.1f} | {per_seed} |"
        )
    loads = ", ".join(sorted({r["load_before"] for r in runs}, key=float))
    lines += [
        "",
        f"Machine: 2 cores shared with other jobs; 1-minute load average before the runs: {loads}.",
        "",
        "Bytes per iteration (PPO's default 64×64 policy on CartPole, 8 envs × 32 steps):",
        "",
        f"- weights out, once per iteration (`ray.put` of the state_dict, shared by all workers): "
        f"{sizes['weights_raw']:,} B raw, {sizes['weights_pickled']:,} B pickled",
        f"- rollouts back, all workers together: {sizes['rollout_raw']:,} B raw, "
        f"{sizes['rollout_pickled']:,} B pickled (one dict; K workers send K pieces)",
        f"- the policy module, once per actor at its start: {sizes['module_pickled']:,} B pickled",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    runs = [json.loads(line) for line in RUNS_FILE.read_text().splitlines()] if RUNS_FILE.exists() else []
    if not args.report_only:
        with tempfile.TemporaryDirectory() as tmp:
            for i, seed in enumerate(args.seeds):
                order = list(MODES)[i % 3 :] + list(MODES)[: i % 3]
                for mode in order:
                    if any(r["mode"] == mode and r["seed"] == seed for r in runs):
                        continue
                    result = run_one(mode, seed, Path(tmp))
                    print(json.dumps(result), flush=True)
                    runs.append(result)
                    with RUNS_FILE.open("a") as f:
                        f.write(json.dumps(result) + "\n")
    text = report(runs, traffic())
    (RESULTS / "scale_out.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
