"""GRPO / Dr. GRPO / RLOO on token sequences (pgrad.algorithms.sequences.grpo): the group advantages and the
masked per-token objective against plain Python references, the k3 KL gradient against autograd of the written
formula, padding, the first epoch's ratio, uniform groups, a tiny run's folder, and (slow) learning add1 from
scratch and two-digit addition from a BC prior."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from pgrad.algorithms.sequences.common import exact_match, load_token_policy
from pgrad.algorithms.sequences.grpo import (
    Config,
    SequenceGRPO,
    group_advantages,
    sequence_loss,
    train_sequences,
    uses_sequence_length,
)
from pgrad.envs.sequences import make_sequence_task
from pgrad.errors import ConfigError
from pgrad.run.logger import read_metrics

# ragged groups: 2 prompts × 3 completions, completion lengths 1..4 of L = 4 columns
REWARDS = [[1.0, 0.0, 0.1], [0.0, 0.0, 0.0]]
LENGTHS = [3, 1, 4, 2, 4, 1]
L = 4


def _mask() -> torch.Tensor:
    return torch.arange(L)[None, :] < torch.tensor(LENGTHS)[:, None]


def _reference_advantages(rewards: list[list[float]], variant: str) -> list[float]:
    """Plain Python: mean/std (sample std, ε = 1e-8; 0 for a constant group), mean only, leave-one-out."""
    out = []
    for group in rewards:
        g = len(group)
        mean = sum(group) / g
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / (g - 1))
        for r in group:
            if variant == "grpo":
                out.append(0.0 if std == 0 else (r - mean) / (std + 1e-8))
            elif variant == "dr_grpo":
                out.append(r - mean)
            else:
                out.append(r - (sum(group) - r) / (g - 1))
    return out


def _reference_token_coefficients(variant: str) -> list[list[float]]:
    """d(−loss)/d log π_it at θ = θ_old, β = 0: Â_i / (N·Z_i) on real tokens, 0 on padding."""
    adv = _reference_advantages(REWARDS, variant)
    n = len(LENGTHS)
    rows = []
    for i, length in enumerate(LENGTHS):
        z = length if variant == "grpo" else L
        rows.append([adv[i] / (n * z) if t < length else 0.0 for t in range(L)])
    return rows


@pytest.mark.parametrize("variant", ["grpo", "dr_grpo", "rloo"])
def test_group_advantages_match_a_plain_reference(variant):
    got = group_advantages(torch.tensor(REWARDS, dtype=torch.float64), variant).reshape(-1)
    assert torch.allclose(got, torch.tensor(_reference_advantages(REWARDS, variant), dtype=torch.float64))


@pytest.mark.parametrize("variant", ["grpo", "dr_grpo", "rloo"])
def test_token_gradient_at_old_policy_is_advantage_over_length_for_ragged_completions(variant):
    torch.manual_seed(0)
    mask = _mask()
    old = torch.randn(len(LENGTHS), L, dtype=torch.float64)
    log_prob = old.clone().requires_grad_(True)
    adv = group_advantages(torch.tensor(REWARDS, dtype=torch.float64), variant).reshape(-1)
    config = Config(advantage=variant)
    norm = mask.sum(1).double() if uses_sequence_length(config) else torch.full((len(LENGTHS),), float(L))
    loss, info = sequence_loss(log_prob, old, adv, mask, norm, clip_coef=0.2)
    loss.backward()
    expected = torch.tensor(_reference_token_coefficients(variant), dtype=torch.float64)
    assert torch.allclose(-log_prob.grad, expected, atol=1e-12)
    assert float(info["clip_fraction"]) == 0.0 and abs(float(info["ratio_mean"]) - 1.0) < 1e-12


def test_masked_clipped_loss_with_kl_matches_a_plain_reference():
    torch.manual_seed(1)
    mask = _mask()
    n, eps, beta = len(LENGTHS), 0.2, 0.3
    old = torch.randn(n, L, dtype=torch.float64)
    new = old + 0.4 * torch.randn(n, L, dtype=torch.float64)  # ratios well outside 1 ± ε too
    ref = old + 0.5 * torch.randn(n, L, dtype=torch.float64)
    # garbage on padding must not matter
    new_padded = torch.where(mask, new, torch.tensor(float("nan"), dtype=torch.float64))
    adv = torch.tensor([0.7, -1.2, 0.3, 0.0, 2.0, -0.5], dtype=torch.float64)
    norm = torch.tensor([3.0, 1.0, 4.0, 2.0, 4.0, 1.0], dtype=torch.float64)
    loss, info = sequence_loss(new_padded, old, adv, mask, norm, eps, ref_log_prob_NL=ref, beta=beta)
    total, clipped, tokens, kl_sum = 0.0, 0, 0, 0.0
    for i in range(n):
        for t in range(LENGTHS[i]):
            rho = math.exp(float(new[i, t] - old[i, t]))
            a = float(adv[i])
            surrogate = min(rho * a, min(max(rho, 1 - eps), 1 + eps) * a)
            r = math.exp(float(ref[i, t] - new[i, t]))
            d = r - math.log(r) - 1
            total += (-surrogate + beta * d) / (n * float(norm[i]))
            clipped += not (1 - eps <= rho <= 1 + eps)
            tokens += 1
            kl_sum += d
    assert abs(float(loss) - total) < 1e-10
    assert abs(float(info["clip_fraction"]) - clipped / tokens) < 1e-12
    assert abs(float(info["kl_ref"]) - kl_sum / tokens) < 1e-10


def test_k3_gradient_matches_autograd_of_the_written_formula():
    torch.manual_seed(2)
    mask = _mask()
    n = len(LENGTHS)
    old = torch.randn(n, L, dtype=torch.float64)
    ref = torch.randn(n, L, dtype=torch.float64)
    norm = torch.full((n,), float(L), dtype=torch.float64)
    zeros = torch.zeros(n, dtype=torch.float64)  # Â = 0: the loss is the KL term only
    a = (old + 0.3 * torch.randn(n, L, dtype=torch.float64)).requires_grad_(True)
    loss, _ = sequence_loss(a, old, zeros, mask, norm, 0.2, ref_log_prob_NL=ref, beta=0.5)
    loss.backward()
    b = a.detach().clone().requires_grad_(True)
    # β · 1/(N·L) Σ_real [π_ref/π_θ − log(π_ref/π_θ) − 1], written out
    d = torch.exp(ref - b) - (ref - b) - 1
    (0.5 * (d * mask).sum() / (n * L)).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-12)
    # the penalty pulls log π_θ towards log π_ref: its gradient step (−grad) moves towards ref
    step = -a.grad[mask]
    assert bool(((step > 0) == ((ref - a.detach())[mask] > 0)).all())


def _algo(tmp_path=None, **overrides) -> SequenceGRPO:
    options = {"prompts_per_iter": 4, "group_size": 4, "d_model": 16, "n_heads": 2, "seed": 3, **overrides}
    return SequenceGRPO(Config(**options), make_sequence_task("add1", format_reward=0.1))


def test_padding_tokens_contribute_no_gradient():
    algo = _algo(beta=0.1)
    batch = algo.sample()
    mask = batch["mask"]
    assert not bool(mask.all()), "need some completions that stopped early"
    batch["advantage"] = torch.linspace(-1, 1, mask.shape[0])
    batch["norm"] = mask.sum(1).float()

    def grads(tokens, garbage):
        algo.policy.zero_grad(set_to_none=True)
        new = algo.policy.completion_log_probs(batch["prompt"], batch["prompt_mask"], tokens, mask)
        old = torch.where(mask, batch["old_log_prob"], garbage)
        ref = torch.where(mask, batch["ref_log_prob"], garbage)
        loss, _ = sequence_loss(new.log_probs, old, batch["advantage"], mask, batch["norm"], 0.2, ref, 0.1)
        loss.backward()
        return [p.grad.clone() for p in algo.policy.parameters()]

    base = grads(batch["tokens"], torch.tensor(0.0))
    changed_tokens = torch.where(mask, batch["tokens"], 7)  # a digit where there was padding
    other = grads(changed_tokens, torch.tensor(-50.0))
    assert max(float((x - y).abs().max()) for x, y in zip(base, other, strict=True)) == 0.0
    assert max(float(g.abs().max()) for g in base) > 0


@pytest.mark.parametrize("variant", ["grpo", "dr_grpo", "rloo"])
def test_advantages_compare_the_completions_of_one_prompt(variant):
    algo = _algo(advantage=variant, format_reward=0.5, prompts_per_iter=6)
    batch = algo.sample()
    batch["reward"] = torch.rand(24, generator=torch.Generator().manual_seed(0))  # no constant group
    algo.estimate(batch)
    rows_of = {}
    for row, prompt in enumerate(batch["prompt"].tolist()):
        rows_of.setdefault(tuple(prompt), []).append(row)
    assert len(rows_of) == 6 or len(set(map(len, rows_of.values()))) > 1  # (a prompt drawn twice: merged)
    for rows in rows_of.values():
        rewards = [[float(batch["reward"][r]) for r in rows[i : i + 4]] for i in range(0, len(rows), 4)]
        expected = _reference_advantages(rewards, variant)
        got = [float(batch["advantage"][r]) for r in rows]
        assert got == pytest.approx(expected, abs=1e-6)
    lengths = batch["mask"].sum(1).float()
    expected_norm = lengths if variant == "grpo" else torch.full_like(lengths, 3.0)  # add1's budget L = 3
    assert torch.equal(batch["norm"], expected_norm)


def test_first_minibatch_of_an_iteration_has_ratio_one_and_no_clipping():
    algo = _algo(beta=0.0)
    batch = algo.sample()
    algo.estimate(batch)
    metrics = algo._step(batch)
    assert abs(float(metrics["stats/ratio_mean"]) - 1.0) < 1e-5
    assert float(metrics["stats/clip_fraction"]) == 0.0
    assert float(metrics["stats/approx_kl"]) < 1e-10


def test_tiny_run_writes_metrics_and_a_checkpoint_that_loads_back(tmp_path, capsys):
    run_dir = tmp_path / "run"
    summary = train_sequences(
        "add1",
        "dr_grpo",
        iterations=2,
        prompts_per_iter=4,
        group_size=4,
        d_model=16,
        n_heads=2,
        eval_every=1,
        eval_prompts=20,
        run_dir=str(run_dir),
        seed=1,
    )
    assert summary["iterations"] == 2 and summary["samples"] == 32
    records = read_metrics(run_dir)
    assert [r["global_step"] for r in records] == [16, 32]
    for key in (
        "charts/success_rate",
        "charts/reward_mean",
        "stats/completion_length",
        "stats/entropy",
        "stats/approx_kl",
        "stats/kl_ref",
        "stats/clip_fraction",
        "stats/zero_advantage_groups",
        "stats/grad_norm",
        "eval/exact_match",
    ):
        assert all(math.isfinite(r[key]) for r in records), key
    run = json.loads((run_dir / "run.json").read_text())
    assert run["algorithm"] == "seq_grpo" and run["config"]["advantage"] == "dr_grpo"
    assert not list(run_dir.rglob("*.pt")) and list(run_dir.rglob("state.safetensors"))
    policy = load_token_policy(run_dir)
    assert policy.config.d_model == 16
    # the loaded policy is the trained one: same greedy score on the run's evaluation prompts
    from pgrad.algorithms.sequences.common import eval_prompts, exact_match

    task = make_sequence_task("add1")
    assert exact_match(policy, task, eval_prompts(task, 20, 1)) == pytest.approx(summary["exact_match"])
    # `pgrad eval` on a sequence run: one line saying what it is, not a KeyError from inside
    from pgrad.cli import main

    assert main(["eval", str(run_dir)]) == 2
    assert "not a Gymnasium policy's checkpoint (a `pgrad seq` run?" in capsys.readouterr().err


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="group_size"):
        train_sequences("add1", "grpo", group_size=1, run_dir=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="unknown sequence algorithm"):
        train_sequences("add1", "ppo", run_dir=str(tmp_path / "b"))
    with pytest.raises(ConfigError, match="unknown option"):
        train_sequences("add1", "grpo", groupsize=4, run_dir=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="unknown sequence task"):
        train_sequences("add3", "grpo", run_dir=str(tmp_path / "d"))
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "run.json").write_text(json.dumps({"algorithm": "ppo"}))
    with pytest.raises(ConfigError, match="not a sequence run"):
        train_sequences("add1", "grpo", init_from=str(tmp_path / "e"), run_dir=str(tmp_path / "f"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_grpo_learns_add1_from_scratch_within_ten_minutes(tmp_path, seed):
    # the documented from-scratch recipe (docs/sequences.md): format reward 0.1 and an entropy bonus 0.02
    summary = train_sequences(
        "add1",
        "grpo",
        seed=seed,
        format_reward=0.1,
        ent_coef=0.02,
        iterations=100_000,
        target=0.9,
        time_limit=600,
        run_dir=str(tmp_path / "r"),
    )
    assert summary["best_exact_match"] >= 0.9, summary


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_grpo_learns_two_digit_addition_from_a_bc_prior_within_fifteen_minutes(tmp_path, seed):
    # the documented acceptance recipe (docs/sequences.md, benchmark case add2le-1layer-grpo-prior): a
    # one-layer policy fitted to 200 demonstrations, then GRPO with partial credit, an entropy bonus, uniform
    # groups left out of the update and sampling temperature 1.5 (seeds 0 and 1: ~2 minutes each)
    from pgrad.algorithms.sequences import train_bc

    start = time.perf_counter()
    train_bc("add2le", demonstrations=200, n_layers=1, seed=seed, run_dir=str(tmp_path / "bc"))
    summary = train_sequences(
        "add2le",
        "grpo",
        seed=seed,
        init_from=str(tmp_path / "bc"),
        lr=6e-4,
        beta=0.0,
        partial_reward=0.5,
        ent_coef=0.01,
        drop_uniform_groups=True,
        temperature=1.5,
        iterations=100_000,
        target=0.9,
        time_limit=900 - (time.perf_counter() - start),
        run_dir=str(tmp_path / "rl"),
    )
    assert summary["best_exact_match"] >= 0.9, summary


def test_seq_cli_trains_fits_and_names_bad_flags(tmp_path, capsys):
    from pgrad.workflow.sequences import main

    tiny = ["--d-model", "16", "--n-heads", "2", "--eval-prompts", "8"]
    bc_dir, rl_dir = str(tmp_path / "bc"), str(tmp_path / "rl")
    assert (
        main(["bc", "--task", "add1", "--demonstrations", "8", "--epochs", "1", "--run-dir", bc_dir, *tiny])
        == 0
    )
    train = [
        "train",
        "--advantage",
        "rloo",
        "--iterations",
        "1",
        "--prompts-per-iter",
        "2",
        "--group-size",
        "2",
    ]
    assert main([*train, "--init-from", bc_dir, "--run-dir", rl_dir]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["advantage"] == "rloo" and json.loads(lines[-1])["samples"] == 4
    with pytest.raises(ConfigError, match="did you mean --advantage"):
        main(["train", "--advantge", "rloo"])
    with pytest.raises(ConfigError, match="unknown `pgrad seq` command"):
        main(["fit"])


def test_entropy_bonus_raises_the_entropy_of_the_sampled_completions():
    algo = _algo(beta=0.0, ent_coef=1.0, lr=1e-2)
    batch = algo.sample()
    algo.estimate(batch)
    batch["advantage"] = torch.zeros_like(batch["advantage"])  # the bonus alone

    def entropy():
        with torch.no_grad():
            out = algo.policy.completion_log_probs(
                batch["prompt"], batch["prompt_mask"], batch["tokens"], batch["mask"]
            )
        return float(out.entropy.sum() / out.mask.sum())

    before = entropy()
    algo._step(batch)
    assert entropy() > before


def test_partial_reward_reaches_the_task_from_train_sequences_and_the_cli(tmp_path, monkeypatch):
    from pgrad.algorithms.sequences import grpo
    from pgrad.workflow.sequences import main

    built = []

    def spy(*args, **kwargs):
        built.append(grpo_make_task(*args, **kwargs))
        return built[-1]

    grpo_make_task = grpo.make_task
    monkeypatch.setattr(grpo, "make_task", spy)
    tiny = dict(iterations=1, prompts_per_iter=2, group_size=2, d_model=16, n_heads=2, eval_prompts=4)
    train_sequences("add2le", "grpo", partial_reward=0.5, run_dir=str(tmp_path / "a"), **tiny)
    assert (built[-1].name, built[-1].partial_reward, built[-1].format_reward) == ("add2le", 0.5, 0.1)
    assert json.loads((tmp_path / "a" / "run.json").read_text())["config"]["partial_reward"] == 0.5
    flags = ["--iterations", "1", "--prompts-per-iter", "2", "--group-size", "2", "--d-model", "16"]
    flags += ["--n-heads", "2", "--eval-prompts", "4", "--format-reward", "0.2"]
    assert (
        main(
            ["train", "--task", "sort4", "--partial-reward", "0.3", *flags, "--run-dir", str(tmp_path / "b")]
        )
        == 0
    )
    assert (built[-1].name, built[-1].partial_reward, built[-1].format_reward) == ("sort4", 0.3, 0.2)
    assert train_sequences("add2", "grpo", run_dir=str(tmp_path / "c"), **tiny)["samples"] == 4
    assert built[-1].partial_reward == 0.0  # off by default
    with pytest.raises(ConfigError, match="digitsum: has no unique answer"):
        train_sequences("digitsum", "grpo", partial_reward=0.2, run_dir=str(tmp_path / "d"), **tiny)
    with pytest.raises(ConfigError, match="format_reward \\+ partial_reward must be < 1"):
        train_sequences("add2", "grpo", partial_reward=0.9, run_dir=str(tmp_path / "e"), **tiny)


def _iteration_with_rewards(algo: SequenceGRPO, rewards: list[list[float]]) -> tuple[dict, list, dict]:
    """Run one iteration whose sampled rewards are `rewards` (one row per group); the batch, the minibatches
    `_step` received and the iteration's metrics."""
    sample, step, seen = algo.sample, algo._step, []
    batch = {}

    def fixed_sample():
        batch.update(sample())
        batch["reward"] = torch.tensor(rewards).reshape(-1)
        return dict(batch)

    def spy_step(mb):
        seen.append(mb)
        return step(mb)

    algo.sample, algo._step = fixed_sample, spy_step
    return batch, seen, algo.iteration()


def test_dropping_uniform_groups_updates_on_the_informative_rows_only():
    rewards = [[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.1, 0.0], [0.1, 0.1, 0.1, 0.1], [1.0, 0.0, 0.0, 0.0]]
    algo = _algo(beta=0.0, drop_uniform_groups=True, update_epochs=2, num_minibatches=2)
    batch, seen, metrics = _iteration_with_rewards(algo, rewards)
    assert len(seen) == 4 and metrics["stats/zero_advantage_groups"] == 0.5
    informative = batch["prompt"][4:8].tolist() + batch["prompt"][12:16].tolist()
    for first, second in ((seen[0], seen[1]), (seen[2], seen[3])):  # each pass: rows 4-7 and 12-15 once
        rows = torch.cat([first["reward"], second["reward"]])
        assert sorted(rows.tolist()) == pytest.approx(sorted(rewards[1] + rewards[3]))
        assert sorted(first["prompt"].tolist() + second["prompt"].tolist()) == sorted(informative)
    # without the option every row is updated on
    algo = _algo(beta=0.0, update_epochs=1, num_minibatches=1)
    _, seen, _ = _iteration_with_rewards(algo, rewards)
    assert [len(mb["reward"]) for mb in seen] == [16]


def test_uniform_groups_add_nothing_to_the_policy_gradient():
    # the policy term's gradient on the informative rows alone is the full batch's, scaled by N / N_kept
    algo = _algo(beta=0.0)
    batch = algo.sample()
    batch["reward"] = torch.tensor([1.0] * 4 + [0.0, 1.0, 0.1, 0.0] + [0.1] * 4 + [1.0, 0.0, 0.0, 0.0])
    algo.estimate(batch)
    keep = torch.tensor([False] * 4 + [True] * 4 + [False] * 4 + [True] * 4)

    def grads(rows):
        mb = {k: v[rows] for k, v in batch.items()}
        new = algo.policy.completion_log_probs(mb["prompt"], mb["prompt_mask"], mb["tokens"], mb["mask"])
        loss, _ = sequence_loss(
            new.log_probs, mb["old_log_prob"], mb["advantage"], mb["mask"], mb["norm"], 0.2
        )
        return torch.autograd.grad(loss, list(algo.policy.parameters()))

    full, kept = grads(torch.ones(16, dtype=torch.bool)), grads(keep)
    for f, k in zip(full, kept, strict=True):
        torch.testing.assert_close(k, f * 2.0, rtol=1e-5, atol=1e-7)
    assert max(float(f.abs().max()) for f in full) > 0


def test_an_iteration_of_uniform_groups_makes_no_update():
    algo = _algo(beta=0.0, drop_uniform_groups=True, ent_coef=0.1)
    before = [p.detach().clone() for p in algo.policy.parameters()]
    _, seen, metrics = _iteration_with_rewards(algo, [[1.0] * 4, [0.0] * 4, [0.1] * 4, [1.0] * 4])
    assert seen == [] and metrics["stats/zero_advantage_groups"] == 1.0
    assert "loss/policy" not in metrics and "charts/success_rate" in metrics
    assert all(torch.equal(b, p) for b, p in zip(before, algo.policy.parameters(), strict=True))


def test_exact_match_is_the_exact_share_so_180_of_200_reaches_a_target_of_0_9(tmp_path, monkeypatch):
    from pgrad.algorithms.sequences import grpo

    task = make_sequence_task("add1")
    # 90 % of any batch correct: 180 of the 200 evaluation prompts
    nine_in_ten = lambda self, meta, tokens, mask: torch.arange(len(meta)) % 10 < 9  # noqa: E731
    monkeypatch.setattr(type(task), "success", nine_in_ten)
    monkeypatch.setattr(grpo, "make_task", lambda *args, **kwargs: task)
    policy = SequenceGRPO(Config(d_model=16, n_heads=2), task).policy
    assert exact_match(policy, task, task.prompts(200, torch.Generator().manual_seed(0))) == 0.9
    tiny = dict(prompts_per_iter=2, group_size=2, d_model=16, n_heads=2, eval_prompts=200, eval_every=1)
    summary = train_sequences("add1", "grpo", iterations=5, target=0.9, run_dir=str(tmp_path / "r"), **tiny)
    assert summary["samples_to_target"] == 4 and summary["iterations"] == 1, summary
