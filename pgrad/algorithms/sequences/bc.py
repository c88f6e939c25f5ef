r"""Behaviour cloning of a token policy: maximum likelihood of demonstrated completions given their prompts.

    L(θ) = −1/|M| Σ_{(i,t) ∈ M} log π_θ(y_it | x_i, y_i,<t)      M = the real completion tokens (EOS included)

Cross-entropy on completion tokens only: the prompt is conditioned on, never predicted, and padding is masked
out. The demonstrations are the task's own (``demonstrations=n``: n correct prompt/completion pairs drawn
with the run's seed) or a JSONL file with one ``{"prompt": "12+34=", "completion": "46"}`` per line
(``dataset=PATH``; the prompt without BOS, the completion without EOS, both in the task's alphabet).

The run folder (run.json, metrics.jsonl, a checkpoint holding ``policy``) is what GRPO's ``init_from`` and
``reference="run:DIR"`` read: the fitted policy is the imitative prior π_prior of β·KL(π_θ‖π_prior).

Shapes: n demonstrations, P prompt width, L completion width.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pgrad.algorithms.common import clip_and_step
from pgrad.algorithms.sequences.common import (
    ModelConfig,
    RunFolder,
    eval_prompts,
    exact_match,
    fresh_policy,
    make_task,
)
from pgrad.envs.sequences import Demonstrations, Prompts, SequenceTask
from pgrad.errors import ConfigError
from pgrad.optim import make_optimizer
from pgrad.policies.transformer import TransformerPolicy
from pgrad.run.config import use_threads
from pgrad.run.seeding import derive_seed, seed_everything


@dataclass
class Config(ModelConfig):
    """Options of `pgrad seq bc` / `train_bc`."""

    task: str = "add1"
    """Sequence task: add1, add2, add1le, add2le, sort4, digitsum (its tokenizer, lengths and evaluation
    verifier)."""
    demonstrations: int = 200
    """Number of the task's own demonstrations to fit (ignored with dataset)."""
    dataset: str | None = None
    """JSONL file of {"prompt": ..., "completion": ...} lines to fit instead of the task's demonstrations."""
    epochs: int = 200
    """Passes over the demonstrations."""
    batch_size: int = 64
    """Demonstrations per gradient step."""
    lr: float = 3e-3
    """Adam learning rate."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip (0: none)."""
    eval_every: int = 20
    """Greedy exact-match evaluation every this many epochs (and at the end)."""
    eval_prompts: int = 200
    """Size of the fixed evaluation prompt set (the same set GRPO runs of this seed use)."""
    run_dir: str = "runs/seq_bc"
    """Run folder (new or empty)."""
    seed: int = 0
    """Root seed (model init, demonstrations, minibatch order)."""
    threads: int = 1
    """torch CPU threads."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to run_dir/tb."""


def read_dataset(path: str | Path, task: SequenceTask) -> Demonstrations:
    """Demonstrations from a JSONL file of {"prompt", "completion"} objects; one-line errors name the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"dataset {path}: cannot be read ({exc.strerror or exc})") from None
    prompts, completions = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"dataset {path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("prompt", "completion")
        ):
            raise ConfigError(f'dataset {path}:{number}: expected {{"prompt": str, "completion": str}}')
        prompts.append(row["prompt"])
        completions.append(row["completion"])
    if not prompts:
        raise ConfigError(f"dataset {path}: no demonstrations")
    tok = task.tokenizer
    try:
        tokens, mask = tok.encode_prompts(prompts, task.prompt_len)
        c_tokens, c_mask = tok.encode_completions(completions, task.max_new_tokens)
    except ConfigError as exc:
        raise ConfigError(f"dataset {path}: {exc} (task {task.name})") from None
    meta = torch.zeros(len(prompts), 0, dtype=torch.long)  # unknown problems: only the text is needed
    return Demonstrations(Prompts(tokens, mask, meta), c_tokens, c_mask)


def bc_loss(policy: TransformerPolicy, demos: Demonstrations) -> Tensor:
    """Mean negative log-likelihood of the demonstrated completion tokens (mask: real tokens only)."""
    out = policy.completion_log_probs(demos.prompts.tokens, demos.prompts.mask, demos.tokens, demos.mask)
    mask = demos.mask
    return -(out.log_probs * mask).sum() / mask.sum().clamp(min=1)


def _rows(demos: Demonstrations, rows: Tensor) -> Demonstrations:
    p = demos.prompts
    return Demonstrations(
        Prompts(p.tokens[rows], p.mask[rows], p.meta[rows]), demos.tokens[rows], demos.mask[rows]
    )


def train_bc(task: str = "add1", **options: Any) -> dict[str, Any]:
    """Fit a fresh token policy to demonstrations and write a run folder GRPO can start from; returns a
    summary (final loss, greedy exact match on the fixed evaluation prompts, run_dir). Options are `Config`
    fields."""
    unknown = sorted(set(options) - set(Config.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"train_bc: unknown option(s) {', '.join(unknown)}")
    return run(Config(task=task, **options))


def run(config: Config) -> dict[str, Any]:
    """The fitting loop of `train_bc` for a full `Config`."""
    use_threads(config.threads)
    for name in ("demonstrations", "epochs", "batch_size", "eval_every", "eval_prompts"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
    if not config.lr > 0 or not config.max_grad_norm >= 0:
        raise ConfigError("lr must be > 0 and max_grad_norm >= 0")
    task = make_task(config.task)
    if config.dataset is not None:
        demos = read_dataset(config.dataset, task)
    else:
        demos = task.demonstrations(
            config.demonstrations, torch.Generator().manual_seed(derive_seed(config.seed, "demos"))
        )
    seed_everything(derive_seed(config.seed, "init"))
    policy = fresh_policy(task, config)
    optimizer = make_optimizer("adam", policy.named_parameters(), config.lr)
    generator = torch.Generator().manual_seed(derive_seed(config.seed, "minibatches"))
    held_out = eval_prompts(task, config.eval_prompts, config.seed)
    n = demos.tokens.shape[0]
    info = {"algorithm": "seq_bc", "task": task.name, "model": policy.spec(), "seed": config.seed}
    info["config"] = asdict(config)
    info["demonstrations"] = n
    start = time.perf_counter()
    loss_value, score, steps = float("nan"), 0.0, 0
    with RunFolder(config.run_dir, info, config.tensorboard) as folder:
        for epoch in range(1, config.epochs + 1):
            total = 0.0
            for rows in torch.randperm(n, generator=generator).split(config.batch_size):
                loss = bc_loss(policy, _rows(demos, rows))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip_and_step(optimizer, policy.parameters(), config.max_grad_norm)
                total += float(loss.detach()) * len(rows)
                steps += 1
            loss_value = total / n
            record = {"global_step": epoch * n, "epoch": epoch, "loss/bc": loss_value}
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                score = exact_match(policy, task, held_out)
                record["eval/exact_match"] = score
            record["time/seconds"] = time.perf_counter() - start
            folder.log(record)
        folder.checkpoint(
            config.epochs * n, {"policy": policy.state_dict(), "optimizer": optimizer.state_dict()}
        )
    return {
        "run_dir": str(folder.path),
        "task": task.name,
        "demonstrations": n,
        "epochs": config.epochs,
        "loss": loss_value,
        "exact_match": score,
        "seconds": time.perf_counter() - start,
    }
