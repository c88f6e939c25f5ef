"""What sequence-level training (GRPO on token sequences, behaviour cloning) shares: the token policy's
architecture options, a run folder (run.json, metrics.jsonl, safetensors checkpoints), loading a token
policy back from a run folder, and greedy exact-match evaluation on a fixed prompt set.

A sequence run folder holds

* ``run.json``: ``{"algorithm": "seq_grpo" | "seq_bc", "kind": "sequences", "task": ..., "model": spec,
  "config": {...}, "seed": ...}`` (``model`` is `TransformerPolicy.spec()`);
* ``metrics.jsonl``: one record per logged iteration / epoch (`pgrad.run.logger.MetricsLogger`);
* ``checkpoints/step_<samples>/``: ``{"policy": state_dict, ...}`` as safetensors + JSON
  (`pgrad.run.checkpoint.save_checkpoint`; never a pickle).

`load_token_policy(run_dir)` rebuilds the policy of either kind, so a BC run can start GRPO (``init_from``)
and be its KL reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pgrad.envs.sequences import Prompts, SequenceTask, make_sequence_task
from pgrad.errors import ConfigError
from pgrad.policies.transformer import TransformerConfig, TransformerPolicy
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from pgrad.run.folder import RunLock, check_run_dir, read_run_file, write_run_file
from pgrad.run.logger import MetricsLogger
from pgrad.run.seeding import derive_seed

KIND = "sequences"


@dataclass
class ModelConfig:
    """Architecture of a fresh token policy (ignored when the policy comes from ``init_from``)."""

    d_model: int = 64
    """Width of the transformer's residual stream."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads per block."""


def make_task(name: str, format_reward: float = 0.0, partial_reward: float = 0.0) -> SequenceTask:
    """The built-in task `name` with its format and partial-credit rewards (``digitsum`` keeps its default
    max_digits and refuses partial_reward > 0)."""
    return make_sequence_task(name, format_reward=format_reward, partial_reward=partial_reward)


def fresh_policy(task: SequenceTask, config: ModelConfig) -> TransformerPolicy:
    """A randomly initialised policy sized for `task` (draws from torch's global RNG: seed it first)."""
    return TransformerPolicy(
        TransformerConfig(
            vocab_size=task.vocab_size,
            max_len=task.max_len,
            d_model=config.d_model,
            n_layers=config.n_layers,
            n_heads=config.n_heads,
        )
    )


def load_token_policy(
    run_dir: str | Path, option: str = "run", task: SequenceTask | None = None
) -> TransformerPolicy:
    """The token policy of a sequence run folder (GRPO or BC) at its latest checkpoint, in train mode.

    `option` names the setting that asked for it (``init_from``, ``reference``) in error messages; with
    `task`, the policy must fit the task's vocabulary and lengths."""
    run = read_run_file(run_dir)
    if run.get("kind") != KIND or not isinstance(run.get("model"), dict):
        raise ConfigError(
            f"{option} '{run_dir}': not a sequence run (its run.json has algorithm "
            f"{run.get('algorithm')!r}); give the folder of a `pgrad seq train` or `pgrad seq bc` run"
        )
    policy = TransformerPolicy.from_spec(run["model"])
    state, _ = load_checkpoint(latest_checkpoint(Path(run_dir) / "checkpoints"))
    if not isinstance(state, dict) or "policy" not in state:
        raise ConfigError(f"{option} '{run_dir}': its latest checkpoint holds no 'policy'")
    try:
        policy.load_state_dict(state["policy"])
    except RuntimeError as exc:
        raise ConfigError(
            f"{option} '{run_dir}': policy weights do not fit its run.json model ({exc})"
        ) from None
    if task is not None:
        cfg = policy.config
        if cfg.vocab_size != task.vocab_size or cfg.max_len < task.max_len:
            raise ConfigError(
                f"{option} '{run_dir}': its policy (vocab {cfg.vocab_size}, max_len {cfg.max_len}) does not "
                f"fit task {task.name} (vocab {task.vocab_size}, max_len {task.max_len})"
            )
    return policy.train()


def eval_prompts(task: SequenceTask, n: int, seed: int) -> Prompts:
    """The fixed evaluation prompt set of a run: `n` problems drawn from a stream of their own, so they do not
    change with the training options. (add1 has only 100 distinct problems, so there they overlap the
    training problems; on add2 and the other tasks most are unseen.)"""
    return task.prompts(n, torch.Generator().manual_seed(derive_seed(seed, "eval_prompts")))


@torch.no_grad()
def exact_match(policy: TransformerPolicy, task: SequenceTask, prompts: Prompts) -> float:
    """Share of `prompts` whose greedy (argmax) completion the task's verifier accepts, as count / n in Python
    floats: a float32 mean makes 180 of 200 0.89999998, short of a 0.9 target."""
    tok = task.tokenizer
    out = policy.generate(
        prompts.tokens,
        prompts.mask,
        task.max_new_tokens,
        temperature=0.0,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
    )
    correct = task.success(prompts.meta, out.tokens, out.mask)
    return int(correct.sum()) / correct.numel()


class RunFolder:
    """A new sequence run folder, locked for this process: run.json, metrics and checkpoints.

    Use as a context manager; the lock and the metrics file are released on exit."""

    def __init__(self, run_dir: str | Path, run_info: dict[str, Any], tensorboard: bool = False):
        self.path = Path(run_dir)
        check_run_dir(self.path, resume=False)
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock(self.path)
        self.lock.acquire()
        try:
            write_run_file(self.path, {"kind": KIND, **run_info})
            self.logger = MetricsLogger(self.path, tensorboard=tensorboard)
        except BaseException:
            self.lock.release()
            raise

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics record (it must hold ``global_step``)."""
        self.logger.log(record)

    def checkpoint(self, step: int, state: dict[str, Any]) -> Path:
        """Save `state` (it must hold ``policy``) as checkpoint ``step``."""
        return save_checkpoint(self.path / "checkpoints", step, state)

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.logger.close(failed=exc_type is not None)
        self.lock.release()
