r"""GRPO, Dr. GRPO and RLOO on token sequences: a group of G completions per prompt, scored by a verifier.

Estimator. Each iteration draws B prompts x and samples G completions o_1..o_G ~ π_θold(·|x) of each
(KV-cached generation, which also returns the old per-token log-probs). The task's verifier gives each
completion one reward R_i; its advantage is relative to its group and is shared by all its tokens:

    Â_i = (R_i − mean_j R_j) / (std_j R_j + ε)             advantage="grpo"     (Shao et al. 2024)
    Â_i = R_i − mean_j R_j                                  advantage="dr_grpo"  (Liu et al. 2025)
    Â_i = R_i − 1/(G−1) Σ_{j≠i} R_j                         advantage="rloo"     (Ahmadian et al. 2024)

The policy ascends, for `update_epochs` passes over minibatches of completions, the clipped per-token
objective with a k3 KL penalty to a frozen reference π_ref (β = `beta`; samples from π_θ):

    J(θ) = 1/N Σ_i 1/Z_i Σ_{t ≤ |o_i|} [ min(ρ_it Â_i, clip(ρ_it, 1−ε, 1+ε) Â_i) − β D_it ]
    ρ_it = π_θ(o_it | x, o_i,<t) / π_θold(o_it | x, o_i,<t)
    D_it = π_ref/π_θ − log(π_ref/π_θ) − 1          (k3: unbiased for KL(π_θ‖π_ref), ≥ 0)

with N the completions of the minibatch and Z_i the length normaliser: Z_i = |o_i| (GRPO's per-sequence
mean) or Z_i = L, the constant generation budget (Dr. GRPO: dropping 1/|o_i| removes the bias towards long
wrong answers, and dropping the std removes the up-weighting of nearly-solved and nearly-failed groups;
RLOO sums the sequence's log-probability, as REINFORCE on whole sequences does, scaled by 1/L). Tokens
after EOS are padding: masked out of every sum. At θ = θ_old and β = 0 the gradient is the score-function
estimate ∇J ≈ 1/N Σ_i Â_i/Z_i Σ_t ∇ log π_θ(o_it | x, o_i,<t).

The objective is `pgrad.estimators.clipped_surrogate` (a token mean) with each token's advantage scaled by
n_tokens · w_it, w_it = 1/(N·Z_i): a positive weight commutes with min and clip, so the token mean of the
scaled terms is Σ_it w_it · min(...). The advantages are `group_relative_advantages` /
`leave_one_out_advantages` and the KL is `kl_k3`: the same functions the episode GRPO and RLOO use.

Imitative prior: ``init_from=DIR`` starts from a BC (or GRPO) run's policy, which is then also the default
reference (``reference="initial"``): β·KL(π_θ‖π_prior) keeps the policy close to the demonstrations.

Entry point: `train_sequences` writes a run folder (run.json, metrics.jsonl, safetensors checkpoints) and
evaluates the greedy policy's exact-match rate on a fixed prompt set every `eval_every` iterations.

Shapes: B prompts, G group size, N = B·G completions, P prompt width, L completion width.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from pgrad.algorithms.common import accumulate, clip_and_step, mean_metrics
from pgrad.algorithms.sequences.common import (
    ModelConfig,
    RunFolder,
    eval_prompts,
    exact_match,
    fresh_policy,
    load_token_policy,
    make_task,
)
from pgrad.envs.sequences import SequenceTask
from pgrad.errors import ConfigError
from pgrad.estimators import clipped_surrogate, group_relative_advantages, kl_k3, leave_one_out_advantages
from pgrad.optim import make_optimizer
from pgrad.policies.transformer import TransformerPolicy
from pgrad.run.config import use_threads
from pgrad.run.seeding import derive_seed, seed_everything

ADVANTAGES = ("grpo", "dr_grpo", "rloo")


@dataclass
class Config(ModelConfig):
    """Options of `pgrad seq train` / `train_sequences` (the model fields first, then the algorithm's)."""

    task: str = "add1"
    """Sequence task: add1, add2, add1le, add2le (answer least-significant digit first), sort4, digitsum."""
    advantage: Literal["grpo", "dr_grpo", "rloo"] = "grpo"
    """Group advantage: grpo (mean/std), dr_grpo (mean only, constant length norm), rloo (leave-one-out)."""
    length_norm: Literal["auto", "sequence", "constant"] = "auto"
    """Z_i dividing a completion's token sum: sequence (|o_i|), constant (the budget L); auto: sequence for
    grpo, constant for dr_grpo and rloo."""
    format_reward: float = 0.1
    """Reward of a well-formed but wrong completion (digits then EOS); the success metrics ignore it."""
    partial_reward: float = 0.0
    """Partial credit: a well-formed wrong completion also earns partial_reward × the share of the answer's
    digits it has in place, aligned by significance (`SequenceTask.credit`); format_reward + partial_reward
    must be < 1, and digitsum (many correct answers) refuses it. The success metrics ignore it."""
    iterations: int = 200
    """Training iterations (each samples prompts_per_iter · group_size completions)."""
    prompts_per_iter: int = 32
    """Prompts B per iteration."""
    group_size: int = 16
    """Completions G per prompt (>= 2)."""
    temperature: float = 1.0
    """Sampling temperature (1: the policy itself; the old log-probs are always the raw policy's)."""
    update_epochs: int = 2
    """Passes over each batch of completions."""
    num_minibatches: int = 2
    """Minibatches of completions per pass."""
    clip_coef: float = 0.2
    """Clip range ε of the per-token ratio."""
    beta: float = 0.04
    """Weight of the k3 KL to the reference (DeepSeekMath: 0.04); 0 disables it and the reference pass."""
    reference: str = "initial"
    """Reference policy: 'initial' (the starting policy, i.e. the prior with init_from) or 'run:DIR'."""
    init_from: str | None = None
    """Start from the policy of this sequence run folder (BC or GRPO); its architecture wins. Use a small lr
    (1e-4): Adam's first steps move every weight by ~lr, and at 1e-3 the k3 KL to a sharp prior explodes."""
    lr: float = 1e-3
    """Adam learning rate."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip (0: none)."""
    ent_coef: float = 0.0
    """Entropy bonus: adds ent_coef · Σ_it w_it H_it to J (same token weights as the surrogate)."""
    drop_uniform_groups: bool = False
    """Leave groups whose rewards are all equal out of the update (DAPO's dynamic-sampling filter, without its
    re-sampling): their Â is 0, so they add nothing to the policy gradient, only entropy-bonus and KL terms,
    and they cost a forward and backward pass each. N is then the minibatch's informative completions (and
    the update's metrics, entropy included, describe those); an iteration of uniform groups makes no
    update."""
    eval_every: int = 10
    """Greedy exact-match evaluation every this many iterations (and at the end)."""
    eval_prompts: int = 200
    """Size of the fixed evaluation prompt set."""
    checkpoint_every: int = 50
    """Checkpoint every this many iterations (and at the end)."""
    target: float | None = None
    """Stop once the greedy exact-match rate reaches this (e.g. 0.9); None: run all iterations."""
    time_limit: float | None = None
    """Stop after this many seconds of training (checked after each iteration)."""
    run_dir: str = "runs/seq"
    """Run folder (new or empty)."""
    seed: int = 0
    """Root seed of every random stream (model init, prompts, sampling, minibatches)."""
    threads: int = 1
    """torch CPU threads."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to run_dir/tb."""


def check_config(config: Config) -> None:
    """One-line errors for invalid option values, naming the option."""
    if config.advantage not in ADVANTAGES:
        raise ConfigError(f"advantage must be one of {', '.join(ADVANTAGES)}, got {config.advantage!r}")
    if config.length_norm not in ("auto", "sequence", "constant"):
        raise ConfigError(f"length_norm must be auto, sequence or constant, got {config.length_norm!r}")
    for name in ("iterations", "prompts_per_iter", "update_epochs", "num_minibatches", "eval_every",
                 "eval_prompts", "checkpoint_every"):  # fmt: skip
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
    if not isinstance(config.group_size, int) or config.group_size < 2:
        raise ConfigError(f"group_size must be >= 2 (advantages compare a group), got {config.group_size!r}")
    if config.num_minibatches > config.prompts_per_iter * config.group_size:
        raise ConfigError("num_minibatches must not exceed prompts_per_iter · group_size")
    for name in ("clip_coef", "lr"):
        if not getattr(config, name) > 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(config, name)!r}")
    for name in ("beta", "max_grad_norm", "temperature", "ent_coef"):
        if not getattr(config, name) >= 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(config, name)!r}")
    if config.reference != "initial" and not config.reference.startswith("run:"):
        raise ConfigError(f"reference must be 'initial' or 'run:DIR', got {config.reference!r}")


# -- the estimator ------------------------------------------------------------------------------------------
def group_advantages(rewards_BG: Tensor, advantage: str) -> Tensor:
    """Per-completion advantages [B, G] from the rewards [B, G] (one group per row)."""
    if advantage == "rloo":
        return leave_one_out_advantages(rewards_BG)
    return group_relative_advantages(rewards_BG, scale=advantage == "grpo")


def uses_sequence_length(config: Config) -> bool:
    """Z_i = |o_i| (True) or the constant budget L (False)."""
    if config.length_norm == "auto":
        return config.advantage == "grpo"
    return config.length_norm == "sequence"


def sequence_loss(
    log_prob_NL: Tensor,
    old_log_prob_NL: Tensor,
    advantages_N: Tensor,
    mask_NL: Tensor,
    norm_N: Tensor,
    clip_coef: float,
    ref_log_prob_NL: Tensor | None = None,
    beta: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """−J(θ) of the module docstring for one minibatch of N completions (a loss to minimise).

        loss = −Σ_it w_it min(ρ_it Â_i, clip(ρ_it, 1−ε, 1+ε) Â_i) + β Σ_it w_it D_it,   w_it = m_it / (N·Z_i)

    Args:
        log_prob_NL: log π_θ of each completion token, with grad (anything where the mask is False).
        old_log_prob_NL: log π_θold of the same tokens (detached inside).
        advantages_N: Â_i per completion, broadcast to its tokens.
        mask_NL: bool, True on real completion tokens (up to and including EOS).
        norm_N: Z_i > 0 per completion (|o_i| or the constant L).
        clip_coef: ε.
        ref_log_prob_NL: log π_ref of the tokens (None or beta = 0: no KL term).
        beta: KL weight β.

    Returns:
        (loss, info) with ``policy_loss``, ``approx_kl`` (k3 of KL(π_old‖π_θ), token mean), ``clip_fraction``
        (token share outside 1 ± ε), ``ratio_mean`` and, with a reference, ``kl_ref`` (token mean of D_it) and
        ``kl_loss`` (Σ w·D).
    """
    N = log_prob_NL.shape[0]
    mask_NL = mask_NL.bool()
    weight_NL = mask_NL.to(log_prob_NL.dtype) / (N * norm_N.to(log_prob_NL.dtype)[:, None])
    n_tokens = mask_NL.sum().clamp(min=1)
    # clipped_surrogate averages over the masked tokens: scale by n_tokens·w so the mean is Σ w·(...)
    scaled_adv_NL = advantages_N.detach()[:, None] * weight_NL * n_tokens
    policy_loss, info = clipped_surrogate(
        log_prob_NL, old_log_prob_NL, scaled_adv_NL, clip_coef, mask=mask_NL
    )
    out = {"policy_loss": policy_loss.detach(), **info}
    loss = policy_loss
    if ref_log_prob_NL is not None and beta > 0:
        # k3 with samples from π_θ: q = π_θ, p = π_ref; the gradient flows through π_θ only
        kl_NL = kl_k3(log_q=log_prob_NL, log_p=ref_log_prob_NL.detach())
        kl_NL = torch.where(mask_NL, kl_NL, torch.zeros_like(kl_NL))
        kl_loss = (kl_NL * weight_NL).sum()
        loss = loss + beta * kl_loss
        out["kl_loss"] = kl_loss.detach()
        out["kl_ref"] = kl_NL.detach().sum() / n_tokens
    return loss, out


# -- the trainer --------------------------------------------------------------------------------------------
class SequenceGRPO:
    """Policy, reference, optimiser and one `iteration` of sampling + update (no I/O)."""

    def __init__(self, config: Config, task: SequenceTask):
        check_config(config)
        self.config, self.task = config, task
        seed_everything(derive_seed(config.seed, "init"))
        if config.init_from is not None:
            self.policy = load_token_policy(config.init_from, "init_from", task)
        else:
            self.policy = fresh_policy(task, config)
        self.reference: TransformerPolicy | None = None
        if config.beta > 0:
            if config.reference == "initial":
                self.reference = copy.deepcopy(self.policy)
            else:
                self.reference = load_token_policy(config.reference[4:], "reference", task)
            self.reference.requires_grad_(False).eval()
        self.optimizer = make_optimizer("adam", self.policy.named_parameters(), config.lr)
        self.generator = torch.Generator().manual_seed(derive_seed(config.seed, "sampling"))
        self.length_constant = float(task.max_new_tokens)

    def sample(self) -> dict[str, Tensor]:
        """B prompts × G completions with their rewards, old log-probs and (β > 0) reference log-probs."""
        config, task, tok = self.config, self.task, self.task.tokenizer
        prompts = task.prompts(config.prompts_per_iter, self.generator).repeat(config.group_size)
        out = self.policy.generate(
            prompts.tokens,
            prompts.mask,
            task.max_new_tokens,
            temperature=config.temperature,
            eos_id=tok.eos_id,
            pad_id=tok.pad_id,
            generator=self.generator,
        )
        batch = {
            "prompt": prompts.tokens,
            "prompt_mask": prompts.mask,
            "tokens": out.tokens,
            "mask": out.mask,
            "old_log_prob": out.log_probs,
            "reward": task.rewards(prompts.meta, out.tokens, out.mask),
            "success": task.success(prompts.meta, out.tokens, out.mask).float(),
        }
        if self.reference is not None:
            with torch.no_grad():
                ref = self.reference.completion_log_probs(prompts.tokens, prompts.mask, out.tokens, out.mask)
            batch["ref_log_prob"] = ref.log_probs
        return batch

    def estimate(self, batch: dict[str, Tensor]) -> None:
        """Add each completion's advantage Â_i and length normaliser Z_i to a sampled batch."""
        config = self.config
        # `Prompts.repeat` puts a prompt's G completions on consecutive rows: row b·G + g is (b, g)
        rewards_BG = batch["reward"].view(config.prompts_per_iter, config.group_size)
        batch["advantage"] = group_advantages(rewards_BG, config.advantage).reshape(-1)
        if uses_sequence_length(config):
            batch["norm"] = batch["mask"].sum(1).clamp(min=1).float()
        else:
            batch["norm"] = torch.full_like(batch["reward"], self.length_constant)

    def iteration(self) -> dict[str, float]:
        """Sample one batch, update for `update_epochs` passes; the iteration's metrics."""
        config = self.config
        batch = self.sample()
        self.estimate(batch)
        rewards_BG = batch["reward"].view(config.prompts_per_iter, config.group_size)
        uniform_B = (rewards_BG == rewards_BG[:, :1]).all(1)
        metrics = {
            "charts/success_rate": float(batch["success"].mean()),
            "charts/reward_mean": float(batch["reward"].mean()),
            "stats/completion_length": float(batch["mask"].sum(1).float().mean()),
            "stats/zero_advantage_groups": float(uniform_B.float().mean()),
        }
        if config.drop_uniform_groups:
            informative_N = (~uniform_B).repeat_interleave(config.group_size)
            batch = {k: v[informative_N] for k, v in batch.items()}
        sums: dict[str, Any] = {}
        count = 0
        N = batch["tokens"].shape[0]
        for _ in range(config.update_epochs if N else 0):
            order = torch.randperm(N, generator=self.generator)
            for rows in order.chunk(config.num_minibatches):
                accumulate(sums, self._step({k: v[rows] for k, v in batch.items()}))
                count += 1
        return {**mean_metrics(sums, count), **metrics}

    def _step(self, mb: dict[str, Tensor]) -> dict[str, Tensor]:
        config = self.config
        new = self.policy.completion_log_probs(mb["prompt"], mb["prompt_mask"], mb["tokens"], mb["mask"])
        loss, info = sequence_loss(
            new.log_probs,
            mb["old_log_prob"],
            mb["advantage"],
            mb["mask"],
            mb["norm"],
            config.clip_coef,
            mb.get("ref_log_prob"),
            config.beta,
        )
        mask = mb["mask"]
        if config.ent_coef > 0:  # entropy bonus with the surrogate's token weights w_it = 1/(N·Z_i)
            weight = mask / (mask.shape[0] * mb["norm"][:, None])
            loss = loss - config.ent_coef * (new.entropy * weight).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_and_step(self.optimizer, self.policy.parameters(), config.max_grad_norm)
        metrics = {
            "loss/policy": info["policy_loss"],
            "stats/approx_kl": info["approx_kl"],
            "stats/clip_fraction": info["clip_fraction"],
            "stats/ratio_mean": info["ratio_mean"],
            "stats/entropy": (new.entropy.detach() * mask).sum() / mask.sum().clamp(min=1),
            "stats/grad_norm": grad_norm,
        }
        if "kl_ref" in info:
            metrics["stats/kl_ref"] = info["kl_ref"]
            metrics["loss/kl_ref"] = info["kl_loss"]
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Policy, optimiser and reference weights (a checkpoint's content)."""
        state: dict[str, Any] = {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.reference is not None:
            state["reference"] = self.reference.state_dict()
        return state


def train_sequences(task: str = "add1", algorithm: str = "grpo", **options: Any) -> dict[str, Any]:
    """Train a token policy on a verifiable-reward task with GRPO, Dr. GRPO or RLOO (``algorithm``), writing a
    run folder; returns a summary (final and best greedy exact match, samples, seconds, run_dir).

    ``algorithm="bc"`` fits the policy to demonstrations instead (`pgrad.algorithms.sequences.bc.train_bc`).
    Other keyword arguments are `Config` fields (`bc.Config` fields for bc).
    """
    if algorithm == "bc":
        from pgrad.algorithms.sequences.bc import train_bc

        return train_bc(task=task, **options)
    if algorithm not in ADVANTAGES:
        raise ConfigError(
            f"unknown sequence algorithm {algorithm!r} (choose from {', '.join(ADVANTAGES)}, bc)"
        )
    known = set(Config.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"train_sequences: unknown option(s) {', '.join(unknown)}")
    return run(Config(task=task, advantage=options.pop("advantage", algorithm), **options))


def run(config: Config) -> dict[str, Any]:
    """The training loop of `train_sequences` for a full `Config`."""
    use_threads(config.threads)
    check_config(config)
    task = make_task(config.task, config.format_reward, config.partial_reward)
    algo = SequenceGRPO(config, task)
    held_out = eval_prompts(task, config.eval_prompts, config.seed)
    per_iter = config.prompts_per_iter * config.group_size
    info = {"algorithm": "seq_grpo", "task": task.name, "model": algo.policy.spec(), "seed": config.seed}
    info["config"] = asdict(config)
    best, score, samples, it = 0.0, 0.0, 0, 0
    reached: int | None = None
    start = time.perf_counter()
    with RunFolder(config.run_dir, info, config.tensorboard) as folder:
        for it in range(1, config.iterations + 1):
            t0 = time.perf_counter()
            metrics = algo.iteration()
            samples += per_iter
            record = {"global_step": samples, "iteration": it, **metrics}
            record["charts/sps"] = per_iter / (time.perf_counter() - t0)
            last = it == config.iterations
            out_of_time = config.time_limit is not None and time.perf_counter() - start >= config.time_limit
            if it % config.eval_every == 0 or last or out_of_time:
                score = exact_match(algo.policy, task, held_out)
                best = max(best, score)
                record["eval/exact_match"] = score
                if reached is None and config.target is not None and score >= config.target:
                    reached = samples
            record["time/seconds"] = time.perf_counter() - start
            folder.log(record)
            done = last or out_of_time or reached is not None
            if it % config.checkpoint_every == 0 or done:
                folder.checkpoint(samples, algo.state_dict())
            if done:
                break
    return {
        "run_dir": str(folder.path),
        "task": task.name,
        "advantage": config.advantage,
        "iterations": it,
        "samples": samples,
        "exact_match": score,
        "best_exact_match": best,
        "samples_to_target": reached,
        "seconds": time.perf_counter() - start,
    }
