"""Tests of the token-sequence policy (pgrad.policies.transformer): KV-cached generation against full forward
passes, causality, padding, sampling (greedy, top-k, temperature, seeds) and the per-token log-probs."""

from __future__ import annotations

import json

import pytest
import torch

from pgrad.envs.sequences import make_sequence_task
from pgrad.errors import ConfigError
from pgrad.policies.transformer import TransformerConfig, TransformerPolicy, positions_from_mask

V, EOS, PAD = 7, 2, 0


def _model(dtype=torch.float64, seed: int = 0, scale: float = 0.5, **overrides) -> TransformerPolicy:
    """A small model with large random weights, so its distributions are far from uniform and far from
    one-hot (the default init is nearly uniform and would hide mistakes)."""
    torch.manual_seed(seed)
    cfg = {"vocab_size": V, "max_len": 24, "d_model": 16, "n_layers": 2, "n_heads": 4, **overrides}
    model = TransformerPolicy(TransformerConfig(**cfg)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model


def _prompts(lengths: list[int], width: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts of the given lengths (tokens 3..V-1, never EOS)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(3, V, (len(lengths), width), generator=g)
    mask = torch.arange(width)[None, :] >= width - torch.tensor(lengths)[:, None]
    return torch.where(mask, tokens, PAD), mask


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference (torch.testing.assert_close costs seconds on its first call)."""
    assert a.shape == b.shape
    return float((a - b).detach().abs().max())


def _full_logits(model, prompt, prompt_mask, completion, completion_mask):
    """Logits of a full forward of [prompt | completion] at the positions predicting each completion token."""
    tokens = torch.cat([prompt, completion], 1)
    logits = model(tokens, torch.cat([prompt_mask, completion_mask], 1))
    return logits[:, prompt.shape[1] - 1 : -1]


# ---------------------------------------------------------------------------------------------------------
# KV-cached generation = full forward


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 3)])
def test_cached_generation_log_probs_equal_a_full_forward(temperature, top_k):
    model = _model(seed=1)
    with torch.no_grad():  # EOS neither rare nor certain: sequences stop at many different steps
        model.head.weight[EOS] *= 0.3
    prompt, pmask = _prompts([1, 2, 3, 4, 5, 6] * 4, width=6)
    gen = torch.Generator().manual_seed(3)
    out = model.generate(prompt, pmask, 10, temperature=temperature, top_k=top_k, eos_id=EOS, generator=gen)
    lengths = out.mask.sum(1)
    stopped = out.mask.any(1) & (out.tokens.gather(1, (lengths - 1)[:, None]).squeeze(1) == EOS)
    # the case the test is about: sequences stop at different steps, some never do
    assert len(set(lengths[stopped].tolist())) >= 3 and not stopped.all()
    # completions are right-padded after their first EOS
    assert torch.equal(out.mask, torch.arange(out.mask.shape[1])[None, :] < lengths[:, None])
    assert (out.tokens[~out.mask] == PAD).all() and (out.log_probs[~out.mask] == 0).all()
    first_eos = torch.where(out.tokens == EOS, torch.arange(out.tokens.shape[1]), 99).min(1).values
    assert torch.equal(torch.where(stopped, first_eos + 1, out.mask.shape[1]), lengths)

    ref = model.completion_log_probs(prompt, pmask, out.tokens, out.mask)
    assert torch.equal(ref.mask, out.mask)
    assert (ref.log_probs - out.log_probs).abs().max() < 1e-6
    # the raw policy's log-probs (temperature 1, no top-k), whatever sampled the tokens
    raw = _full_logits(model, prompt, pmask, out.tokens, out.mask).log_softmax(-1)
    raw = raw.gather(-1, out.tokens[..., None]).squeeze(-1)
    assert (torch.where(out.mask, raw, 0.0) - out.log_probs).abs().max() < 1e-6

    # the same draws without the cache (re-running the whole sequence each step)
    again = model.generate(
        prompt, pmask, 10, temperature=temperature, top_k=top_k, eos_id=EOS,
        generator=torch.Generator().manual_seed(3), use_cache=False,
    )  # fmt: skip
    assert torch.equal(again.tokens, out.tokens) and torch.equal(again.mask, out.mask)
    assert (again.log_probs - out.log_probs).abs().max() < 1e-6


def test_cached_generation_in_float32_within_1e_5():
    model = _model(torch.float32)
    prompt, pmask = _prompts([2, 4, 6, 3], width=6)
    out = model.generate(prompt, pmask, 8, eos_id=EOS, generator=torch.Generator().manual_seed(0))
    ref = model.completion_log_probs(prompt, pmask, out.tokens, out.mask)
    assert (ref.log_probs - out.log_probs).abs().max() < 1e-5


def test_generation_stops_when_every_sequence_has_ended():
    model = _model()
    head = torch.nn.Linear(model.config.d_model, V).double()
    with torch.no_grad():  # EOS always wins: every sequence ends at its first token
        head.weight.copy_(model.head.weight)
        head.bias.zero_()
        head.bias[EOS] = 100.0
    model.head = head
    prompt, pmask = _prompts([3, 5], width=5)
    out = model.generate(prompt, pmask, 8, eos_id=EOS, generator=torch.Generator().manual_seed(0))
    assert out.tokens.tolist() == [[EOS], [EOS]] and out.mask.all()
    no_eos = model.generate(prompt, pmask, 8, eos_id=None, generator=torch.Generator().manual_seed(0))
    assert no_eos.tokens.shape == (2, 8) and no_eos.mask.all()


# ---------------------------------------------------------------------------------------------------------
# causality, padding, positions


def test_a_future_token_does_not_change_earlier_logits():
    model = _model()
    tokens = torch.randint(3, V, (3, 9), generator=torch.Generator().manual_seed(0))
    base = model(tokens)
    for t in (1, 4, 8):
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] - 3 + 1) % (V - 3) + 3
        logits = model(changed)
        assert torch.equal(logits[:, :t], base[:, :t])
        assert (logits[:, t:] - base[:, t:]).abs().amax(-1).min() > 1e-6  # and it does change the rest


def test_log_probs_against_a_prefix_by_prefix_reference():
    """log_probs[:, t] is log π(x_{t+1} | x_{≤t}), computed here from the prefix alone, one at a time."""
    model = _model()
    tokens = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(2))
    out = model.log_probs(tokens)
    assert out.log_probs.shape == out.entropy.shape == (2, 6) and out.mask.all()
    for t in range(6):
        logp = model(tokens[:, : t + 1])[:, -1].log_softmax(-1)
        assert _gap(out.log_probs[:, t], logp.gather(1, tokens[:, t + 1 : t + 2]).squeeze(1)) < 1e-12
        assert _gap(out.entropy[:, t], torch.distributions.Categorical(logits=logp).entropy()) < 1e-12


def test_logits_do_not_depend_on_left_padding():
    model = _model()
    prompt = torch.tensor([[4, 5, 3, 6, 5]])
    for pad in (1, 3, 6):
        tokens = torch.cat([torch.full((1, pad), PAD), prompt], 1)
        mask = torch.cat([torch.zeros(1, pad, dtype=torch.bool), torch.ones(1, 5, dtype=torch.bool)], 1)
        assert _gap(model(tokens, mask)[:, pad:], model(prompt)) < 1e-12
        # whatever sits in the padding is ignored too
        noisy = torch.where(mask, tokens, torch.randint(0, V, tokens.shape))
        assert _gap(model(noisy, mask)[:, pad:], model(prompt)) < 1e-12


def test_generation_does_not_depend_on_left_padding():
    """The same prompts, padded more, draw the same completions with the same log-probs."""
    model = _model()
    prompt, pmask = _prompts([3, 7, 1, 5], width=7)
    more = torch.cat([torch.full((4, 3), PAD), prompt], 1)
    more_mask = torch.cat([torch.zeros(4, 3, dtype=torch.bool), pmask], 1)
    a = model.generate(prompt, pmask, 8, eos_id=EOS, generator=torch.Generator().manual_seed(5))
    b = model.generate(more, more_mask, 8, eos_id=EOS, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask)
    assert _gap(a.log_probs, b.log_probs) < 1e-12


def test_positions_count_real_tokens_only():
    mask = torch.tensor([[False, False, True, True, True], [True, True, True, False, False]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2]]


# ---------------------------------------------------------------------------------------------------------
# sampling


def test_greedy_decoding_takes_the_argmax_and_ignores_the_generator():
    model = _model()
    prompt, pmask = _prompts([2, 5, 6, 1], width=6)
    out = model.generate(prompt, pmask, 8, temperature=0.0, generator=torch.Generator().manual_seed(0))
    logits = _full_logits(model, prompt, pmask, out.tokens, out.mask)
    assert torch.equal(out.tokens, logits.argmax(-1))
    other = model.generate(prompt, pmask, 8, temperature=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(other.tokens, out.tokens)
    top1 = model.generate(prompt, pmask, 8, top_k=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(top1.tokens, out.tokens)


def test_top_k_never_samples_outside_the_top_k():
    model = _model(scale=0.3)  # flatter distributions: outside-top-k tokens would be drawn often
    prompt, pmask = _prompts([3, 6] * 100, width=6)
    out = model.generate(
        prompt, pmask, 8, top_k=2, temperature=2.0, generator=torch.Generator().manual_seed(0)
    )
    logits = _full_logits(model, prompt, pmask, out.tokens, out.mask)
    rank = (logits > logits.gather(-1, out.tokens[..., None])).sum(-1)  # how many logits beat the sample
    assert rank.max() <= 1 and (rank == 1).any()  # inside the top 2, and not always the top 1


def test_temperature_scales_the_sampling_distribution():
    model = _model()
    n = 5_000
    prompt, pmask = _prompts([4], width=4)
    prompt, pmask = prompt.expand(n, -1), pmask.expand(n, -1)
    probs_1 = model(prompt[:1])[0, -1].softmax(-1)
    for tau in (0.5, 2.0):
        out = model.generate(prompt, pmask, 1, temperature=tau, generator=torch.Generator().manual_seed(0))
        freq = torch.bincount(out.tokens[:, 0], minlength=V).double() / n
        expected = (model(prompt[:1])[0, -1] / tau).softmax(-1)
        assert (freq - expected).abs().max() < 0.03  # ~4 standard errors
        assert (expected - probs_1).abs().max() > 0.15  # the test tells temperatures apart


def test_seeded_generation_is_reproducible():
    model = _model()
    prompt, pmask = _prompts([2, 4, 6, 5], width=6)

    def draw(seed):
        return model.generate(prompt, pmask, 8, eos_id=EOS, generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(7), draw(7), draw(8)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.log_probs, b.log_probs)
    assert not torch.equal(a.tokens, c.tokens)


# ---------------------------------------------------------------------------------------------------------
# training use


def test_gradients_flow_through_completion_log_probs_not_generation():
    model = _model(torch.float32, dropout=0.1)
    model.train()
    prompt, pmask = _prompts([3, 5], width=5)
    out = model.generate(prompt, pmask, 6, eos_id=EOS, generator=torch.Generator().manual_seed(0))
    assert model.training and not out.log_probs.requires_grad  # mode restored; no graph kept
    again = model.generate(prompt, pmask, 6, eos_id=EOS, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.tokens, out.tokens)  # no dropout while sampling
    model.eval()
    lp = model.completion_log_probs(prompt, pmask, out.tokens, out.mask)
    (lp.log_probs.sum() + lp.entropy.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_a_task_round_trip_gives_rewards():
    task = make_sequence_task("add1")
    tok = task.tokenizer
    model = TransformerPolicy(TransformerConfig(vocab_size=task.vocab_size, max_len=task.max_len))
    prompts = task.prompts(8, torch.Generator().manual_seed(0))
    out = model.generate(
        prompts.tokens, prompts.mask, task.max_new_tokens, eos_id=tok.eos_id, pad_id=tok.pad_id,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    rewards = task.rewards(prompts.meta, out.tokens, out.mask)
    assert rewards.shape == (8,) and set(rewards.tolist()) <= {0.0, 1.0}
    # a fresh model is close to uniform over the vocabulary (small untied head): near-maximal entropy
    entropy = model.completion_log_probs(prompts.tokens, prompts.mask, out.tokens, out.mask).entropy
    assert entropy[out.mask].min() > torch.log(torch.tensor(float(task.vocab_size))) - 0.05


# ---------------------------------------------------------------------------------------------------------
# specs and errors


def test_spec_round_trip_and_state_dict():
    model = _model(torch.float32)
    spec = json.loads(json.dumps(model.spec()))
    clone = TransformerPolicy.from_spec(spec)
    clone.load_state_dict(model.state_dict())
    tokens = torch.randint(0, V, (2, 5))
    assert torch.equal(clone(tokens), model(tokens))
    with pytest.raises(ConfigError, match="unknown field"):
        TransformerPolicy.from_spec({**spec, "width": 3})
    with pytest.raises(ConfigError, match="vocab_size"):
        TransformerPolicy.from_spec({"type": "transformer", "max_len": 4})


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"d_model": 10, "n_heads": 4}, "divisible"),
        ({"n_layers": 0}, "n_layers"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_configs_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        TransformerConfig(**{"vocab_size": 5, "max_len": 8, **overrides})


def test_bad_inputs_are_refused_with_one_line():
    model = _model(torch.float32)
    prompt, pmask = _prompts([2, 4], width=4)
    with pytest.raises(ConfigError, match="left-padded"):
        model.generate(prompt, pmask.flip(1), 3)  # right-padded
    with pytest.raises(ConfigError, match="outside"):
        model(torch.tensor([[1, V]]))
    with pytest.raises(ConfigError, match="max_len"):
        model.generate(prompt, pmask, 21)  # 4 + 21 > 24
    with pytest.raises(ConfigError, match="max_len"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ConfigError, match="shape"):
        model(prompt, pmask[:, :3])
    with pytest.raises(ConfigError, match="top_k"):
        model.generate(prompt, pmask, 3, top_k=0)
    with pytest.raises(ConfigError, match="temperature"):
        model.generate(prompt, pmask, 3, temperature=float("nan"))
    with pytest.raises(ConfigError, match="contiguous"):
        model.log_probs(torch.ones(1, 5, dtype=torch.long), torch.tensor([[True, False, True, True, True]]))
