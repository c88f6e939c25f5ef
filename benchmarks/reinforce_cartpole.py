"""Acceptance run: REINFORCE with a learned value baseline on CartPole-v1, several seeds.

Each seed trains for at most 500k env steps, evaluating 20 deterministic episodes every 10k steps, and stops
once an evaluation reaches 475. Writes benchmarks/results/reinforce_cartpole.md.

    python benchmarks/reinforce_cartpole.py [--seeds 0 1 2 3 4] [--total-steps 500000]
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import tyro

import pgrad

THRESHOLD = 475.0


def run_seed(seed: int, total_steps: int = 500_000, run_dir: str | None = None, **options) -> dict:
    """Train one seed until the threshold or the budget; returns steps, wall time and final eval."""
    run_dir = run_dir or tempfile.mkdtemp(prefix=f"reinforce-s{seed}-")
    start = time.perf_counter()
    summary = pgrad.train(
        "reinforce",
        "CartPole-v1",
        total_steps=total_steps,
        seed=seed,
        run_dir=run_dir,
        baseline="value",
        eval_every=10_000,
        eval_episodes=20,
        target_return=THRESHOLD,
        checkpoint_every=0,
        progress=False,
        tensorboard=False,
        preset=False,
        **options,
    )
    return {
        "seed": seed,
        "steps": summary["global_step"],
        "train_seconds": round(summary["wall_time"], 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "eval_return": summary["eval"]["mean_return"],
        "reached": summary["eval"]["mean_return"] >= THRESHOLD,
    }


@dataclasses.dataclass
class Args:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    total_steps: int = 500_000
    out: str = "benchmarks/results/reinforce_cartpole.md"


def main() -> None:
    args = tyro.cli(Args)
    rows = []
    for seed in args.seeds:
        rows.append(run_seed(seed, args.total_steps))
        print(json.dumps(rows[-1]), flush=True)
    lines = [
        "# REINFORCE + learned value baseline, CartPole-v1",
        "",
        f"Budget {args.total_steps:,} env steps; eval = 20 deterministic episodes every 10k steps;"
        f" stop at ≥ {THRESHOLD}. Defaults of `pgrad train reinforce` otherwise",
        "(4 envs, 8 episodes per update, γ 0.99, Adam 1e-3, 64×64 tanh).",
        "",
        "| seed | env steps to ≥ 475 | training time (s) | wall time incl. evals (s) | final eval return |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        steps = f"{r['steps']:,}" if r["reached"] else f"not reached ({r['steps']:,})"
        lines.append(
            f"| {r['seed']} | {steps} | {r['train_seconds']} | {r['wall_seconds']} | {r['eval_return']:.1f} |"
        )
    lines.append("")
    lines.append(f"{sum(r['reached'] for r in rows)} of {len(rows)} seeds reached {THRESHOLD}.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
