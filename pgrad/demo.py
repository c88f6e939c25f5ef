"""`make demo`: REINFORCE with a learned value baseline on CartPole-v1, evaluated, plotted and filmed.

Run with `python -m pgrad.demo [--total-steps N] [--seed S] [--run-dir DIR]`. After training it writes
RUN_DIR/cartpole.gif, one deterministic episode (every 2nd frame, shrunk 2×: real-time playback at 25 fps),
when imageio is installed (`pip install 'pgrad[video]'`); without it, it says so and carries on.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
from pathlib import Path

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
    gif(args.run_dir)
    print(json.dumps({k: result[k] for k in ("mean_return", "std_return", "episodes")}))
    return 0


def gif(run_dir: str) -> Path | None:
    """RUN_DIR/cartpole.gif of one deterministic episode, small (every 2nd frame, shrunk 2×), or one line
    saying how to get it when imageio is missing."""
    out = Path(run_dir) / "cartpole.gif"
    if importlib.util.find_spec("imageio") is None:
        print(f"no GIF of the policy: pip install 'pgrad[video]' to get {out}")
        return None
    from pgrad.workflow.record import record

    try:
        # every 2nd of CartPole's 50 frames a second, played at 25 fps: real time
        video = record(run_dir, out=out, seed=12345, every=2, downscale=2)
    except Exception as exc:  # the GIF is a bonus: a machine that cannot render still gets the demo
        print(f"no GIF of the policy ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        return None
    size = out.stat().st_size / 1e3
    episode = f"{video['frames']} frames, {size:.0f} kB, return {video['returns'][0]:.0f}"
    print(f"GIF of one deterministic episode: {out} ({episode})")
    return out


if __name__ == "__main__":
    sys.exit(main())
