"""Behaviour cloning of token policies (pgrad.algorithms.sequences.bc): the loss counts completion tokens
only, fitting memorises add1 demonstrations, JSONL datasets, and a BC run as GRPO's start and KL reference."""

from __future__ import annotations

import json

import pytest
import torch

from pgrad.algorithms.sequences.bc import bc_loss, read_dataset, train_bc
from pgrad.algorithms.sequences.common import ModelConfig, exact_match, fresh_policy, load_token_policy
from pgrad.algorithms.sequences.grpo import Config, SequenceGRPO
from pgrad.envs.sequences import Demonstrations, make_sequence_task
from pgrad.errors import ConfigError
from pgrad.run.logger import read_metrics
from pgrad.run.seeding import derive_seed


def test_bc_loss_is_the_mean_nll_of_completion_tokens_only():
    task = make_sequence_task("add2")
    torch.manual_seed(0)
    policy = fresh_policy(task, ModelConfig(d_model=16, n_heads=2))
    demos = task.demonstrations(5, torch.Generator().manual_seed(1))
    loss = bc_loss(policy, demos)
    # plain reference: one forward per demonstration on its real tokens, summing the completion's NLL
    nll, count = 0.0, 0
    for i in range(5):
        prompt = demos.prompts.tokens[i][demos.prompts.mask[i]]
        completion = demos.tokens[i][demos.mask[i]]
        seq = torch.cat([prompt, completion])[None]
        logp = policy(seq).log_softmax(-1)[0]
        for j, token in enumerate(completion.tolist()):
            nll -= float(logp[len(prompt) - 1 + j, token].detach())
            count += 1
    assert float(loss.detach()) == pytest.approx(nll / count, rel=1e-5)
    # padding after EOS is not a target: changing it changes nothing
    padded = torch.where(demos.mask, demos.tokens, 5)
    changed = bc_loss(policy, Demonstrations(demos.prompts, padded, demos.mask))
    assert float(changed.detach()) == pytest.approx(float(loss.detach()))


def test_bc_fits_add1_and_grpo_starts_from_it_with_it_as_reference(tmp_path):
    # a tiny subset, fitted until it is memorised: exact match on the demonstrated prompts
    summary = train_bc(
        "add1", demonstrations=40, epochs=80, batch_size=40, eval_every=80, eval_prompts=20, seed=4,
        run_dir=str(tmp_path / "bc"),
    )  # fmt: skip
    losses = [r["loss/bc"] for r in read_metrics(tmp_path / "bc")]
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])
    prior = load_token_policy(tmp_path / "bc")
    demos = make_sequence_task("add1").demonstrations(
        40, torch.Generator().manual_seed(derive_seed(4, "demos"))
    )
    assert exact_match(prior, make_sequence_task("add1"), demos.prompts) >= 0.9, summary
    task = make_sequence_task("add1", format_reward=0.1)
    algo = SequenceGRPO(Config(init_from=str(tmp_path / "bc"), prompts_per_iter=4, group_size=4), task)
    for p, q, r in zip(
        algo.policy.parameters(), prior.parameters(), algo.reference.parameters(), strict=True
    ):
        assert torch.equal(p, q) and torch.equal(r, q)
    assert not any(p.requires_grad for p in algo.reference.parameters())
    ref_run = Config(
        reference=f"run:{tmp_path / 'bc'}", d_model=16, n_heads=2, prompts_per_iter=4, group_size=4
    )
    algo = SequenceGRPO(ref_run, task)  # a fresh policy kept close to the BC prior
    assert all(
        torch.equal(r, q) for r, q in zip(algo.reference.parameters(), prior.parameters(), strict=True)
    )


def test_jsonl_dataset_is_read_and_bad_lines_are_named(tmp_path):
    task = make_sequence_task("add2")
    good = tmp_path / "demos.jsonl"
    good.write_text('{"prompt": "12+34=", "completion": "46"}\n\n{"prompt": "9+9=", "completion": "18"}\n')
    demos = read_dataset(good, task)
    assert task.tokenizer.decode_batch(demos.tokens, demos.mask) == ["46", "18"]
    summary = train_bc(
        "add2", dataset=str(good), epochs=2, run_dir=str(tmp_path / "r"), d_model=16, n_heads=2
    )
    assert summary["demonstrations"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1=", "completion": "2"}\n{"prompt": "1+1="}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2"):
        read_dataset(bad, task)
    bad.write_text('{"prompt": "1*1=", "completion": "1"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl.*'\*'"):
        read_dataset(bad, task)
    bad.write_text("not json\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: not JSON"):
        read_dataset(bad, task)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_dataset(tmp_path / "missing.jsonl", task)


def test_a_bc_run_refuses_a_task_it_does_not_fit(tmp_path):
    train_bc("add1", demonstrations=8, epochs=1, run_dir=str(tmp_path / "bc"), d_model=16, n_heads=2)
    run = json.loads((tmp_path / "bc" / "run.json").read_text())
    assert run["algorithm"] == "seq_bc" and run["kind"] == "sequences"
    with pytest.raises(ConfigError, match="does not fit task add2"):
        SequenceGRPO(Config(task="add2", init_from=str(tmp_path / "bc")), make_sequence_task("add2"))
