"""Does `torch.compile` make PPO faster on this CPU? Eager vs compiled, for the update and for acting.

    python benchmarks/compile_ppo.py [--env CartPole-v1] [--repeats 7] [--steps 200]

Measures, at the shapes of pgrad's CartPole preset (8 envs, one 256-sample minibatch, 64×64 tanh networks,
one torch thread):

  update  one minibatch step: policy and value forward, clipped surrogate + value loss − entropy, backward,
          gradient clip, fused Adam. Eager and compiled run the same function (PPO's minibatch loss
          with its diagnostics as tensors), given to `torch.compile` for the compiled one (Inductor;
          backward through the graph AOTAutograd compiles); gradient clip and optimiser step eager.
  acting  one vector step's policy call: distribution from 8 observations and a sample
          (`pgrad.run.rollout.act`), eager vs the same function compiled.

Best of `repeats` means over `steps` calls after warm-up; compile time is the first call's wall time.
Appends a row per measurement to benchmarks/results/compile_ppo.md (rebuilt from compile_ppo_runs.jsonl).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import tyro

from pgrad.algorithms import get_algorithm
from pgrad.algorithms.common import clip_and_step
from pgrad.algorithms.presets import preset
from pgrad.envs.make import make_env
from pgrad.estimators.losses import clipped_surrogate, value_loss
from pgrad.run.config import use_threads
from pgrad.run.rollout import act

RESULTS = Path(__file__).parent / "results"


@dataclasses.dataclass
class Args:
    env: str = "CartPole-v1"
    """Env whose PPO preset sets the shapes."""
    repeats: int = 7
    """Timed repeats; the best mean counts."""
    steps: int = 200
    """Calls per repeat."""


def best_ms(fn: Callable[[], object], repeats: int, steps: int) -> float:
    for _ in range(20):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        best = min(best, (time.perf_counter() - start) / steps)
    return best * 1e3


def first_call_seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    args = tyro.cli(Args)
    use_threads(1)
    warnings.filterwarnings("ignore")
    cls = get_algorithm("ppo")
    config = dataclasses.replace(cls.Config(), **preset("ppo", args.env))
    envs = make_env(args.env, config.num_envs, backend="gymnasium")
    algo = cls(config, envs, 0, torch.device("cpu"), 200_000)
    algo.iteration(0)  # statistics and optimiser state as in a run
    rollout = algo.collector.collect(algo.policy, config.num_steps)
    size = config.num_envs * config.num_steps
    mb = {
        "obs": rollout.obs.flatten(0, 1),
        "actions": rollout.actions.flatten(0, 1),
        "log_probs": rollout.log_probs.flatten(0, 1),
        "advantages": torch.randn(size),
        "returns": torch.randn(size),
        "values": torch.randn(size),
    }
    clip = config.clip_coef  # a float: pgrad's losses validate their coefficients, a tensor would graph-break

    def loss(obs, actions, old_log_probs, advantages, returns, clip):  # PPO's minibatch loss and diagnostics
        dist = algo.policy.distribution(obs)
        policy_loss, info = clipped_surrogate(dist.log_prob(actions), old_log_probs, advantages, clip)
        v_loss, v_info = value_loss(algo.value(obs), returns)
        entropy = dist.entropy().mean()
        total = policy_loss + config.vf_coef * v_loss - config.ent_coef * entropy
        return total, {**info, **v_info, "entropy": entropy.detach()}

    compiled_loss = torch.compile(loss)
    inputs = (mb["obs"], mb["actions"], mb["log_probs"], mb["advantages"], mb["returns"], clip)

    def step(loss_fn: Callable[..., tuple[torch.Tensor, dict]]) -> dict:
        algo.optimizer.zero_grad(set_to_none=True)
        total, info = loss_fn(*inputs)
        total.backward()
        clip_and_step(algo.optimizer, algo.params, config.max_grad_norm)
        return info

    obs = envs.reset(seed=0)

    def acting() -> object:
        return act(algo.policy, obs)

    compiled_act = torch.compile(acting)
    rows = []
    compile_update = first_call_seconds(lambda: step(compiled_loss))
    compile_act = first_call_seconds(compiled_act)

    for name, eager, compiled, compile_seconds in (
        (
            "update (256-sample minibatch step)",
            lambda: step(loss),
            lambda: step(compiled_loss),
            compile_update,
        ),
        ("acting (8 observations)", acting, compiled_act, compile_act),
    ):
        eager_ms = best_ms(eager, args.repeats, args.steps)
        compiled_ms = best_ms(compiled, args.repeats, args.steps)
        rows.append(
            {
                "env": args.env,
                "what": name,
                "eager_ms": round(eager_ms, 4),
                "compiled_ms": round(compiled_ms, 4),
                "speed-up": round(eager_ms / compiled_ms, 3),
                "compile_seconds": round(compile_seconds, 1),
                "torch": torch.__version__,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs_file = RESULTS / "compile_ppo_runs.jsonl"
    with open(runs_file, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    runs = [json.loads(line) for line in runs_file.read_text().splitlines() if line.strip()]
    lines = [
        "# torch.compile and PPO on CPU",
        "",
        "`python benchmarks/compile_ppo.py`: eager vs `torch.compile` (Inductor, default mode) at the shapes",
        "of pgrad's CartPole PPO preset, one torch thread, best of repeated means (see the docstring).",
        "Every measurement is kept (a shared 2-core machine: compare within a row).",
        "",
        "| env | what | eager (ms) | compiled (ms) | speed-up | compile (s) | torch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['env']} | {r['what']} | {r['eager_ms']:.3f} | {r['compiled_ms']:.3f} | {r['speed-up']:.2f}× | "
        f"{r['compile_seconds']:.1f} | {r['torch']} |"
        for r in runs
    ]
    (RESULTS / "compile_ppo.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
