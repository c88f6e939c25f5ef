"""`make demo`: REINFORCE with a learned value baseline on CartPole-v1, evaluated and plotted.

Run with `python -m pgrad.demo [--total-steps N] [--seed S] [--run-dir DIR]`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys

import tyro

import pgrad


@dataclasses.dataclass
class DemoArgs:
    total_steps: int = 150_000
    """Env steps to train for."""
    seed: int = 0
    """Run seed."""
    run_dir: str = "runs/demo"
    """Run folder (replaced if it exists)."""


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(DemoArgs, args=argv)
    shutil.rmtree(args.run_dir, ignore_errors=True)
    print(
        f"Training REINFORCE (learned value baseline) on CartPole-v1 for {args.total_steps:,} env steps ..."
    )
    summary = pgrad.train(
        "reinforce",
        "CartPole-v1",
        total_steps=args.total_steps,
        seed=args.seed,
        run_dir=args.run_dir,
        baseline="value",
        eval_every=25_000,
        eval_episodes=10,
    )
    result = pgrad.evaluate(args.run_dir, episodes=20, deterministic=True, seed=12345)
    print(
        f"trained {summary['global_step']:,} steps in {summary['wall_time']:.1f} s; "
        f"evaluation over 20 deterministic episodes: {result['mean_return']:.1f} ± {result['std_return']:.1f}"
    )
    print(f"learning curve: {args.run_dir}/learning_curve.png   metrics: {args.run_dir}/metrics.jsonl")
    print(json.dumps({k: result[k] for k in ("mean_return", "std_return", "episodes")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
