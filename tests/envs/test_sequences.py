"""Tests of the verifiable-reward sequence tasks (pgrad.envs.sequences): the tokenizer, prompts,
demonstrations and each task's batched verifier, held against a plain verifier written here on strings."""

from __future__ import annotations

import random

import pytest
import torch

from pgrad.envs.sequences import (
    TOKENIZER,
    Addition,
    CharTokenizer,
    DigitSum,
    SequenceTask,
    Sorting,
    list_sequence_tasks,
    make_sequence_task,
)
from pgrad.errors import ConfigError

TOK = TOKENIZER
PAD, BOS, EOS = TOK.pad_id, TOK.bos_id, TOK.eos_id
TASKS = ["add1", "add2", "sort4", "digitsum"]


def completions(rows: list[list[int]], width: int | None = None, masks: list[list[bool]] | None = None):
    """(tokens, mask) from explicit id lists, right-padded; mask True on each list unless given."""
    width = width or max(len(r) for r in rows)
    tokens = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    if masks is None:
        masks = [[True] * len(r) + [False] * (width - len(r)) for r in rows]
    return tokens, torch.tensor(masks)


def ids(text: str, eos: bool = True) -> list[int]:
    return TOK.encode(text, eos=eos)


def reference(task: SequenceTask, meta: list[int], tokens: list[int], mask: list[bool]) -> tuple[bool, bool]:
    """(well formed, correct) the plain way: read the real tokens as text and check it with Python ints."""
    n_real = sum(mask)
    if mask != [True] * n_real + [False] * (len(mask) - n_real):
        return False, False
    real = tokens[:n_real]
    if n_real < 2 or real[-1] != EOS or any(not 3 <= t <= 12 for t in real[:-1]):
        return False, False
    text = TOK.decode(real[:-1])
    if isinstance(task, Addition):
        return True, text == str(meta[0] + meta[1])
    if isinstance(task, Sorting):
        return True, text == "".join(str(d) for d in sorted(meta))
    assert isinstance(task, DigitSum)
    return True, len(text) <= task.max_digits and sum(int(c) for c in text) == meta[0]


# ---------------------------------------------------------------------------------------------------------
# tokenizer


def test_tokenizer_round_trip():
    chars = TOK.chars
    rng = random.Random(0)
    for text in [
        "",
        "3+4=",
        "sort:3142=",
        "sum:13=",
        "0,1,2",
        chars,
        *("".join(rng.choices(chars, k=9)) for _ in range(50)),
    ]:
        assert TOK.decode(TOK.encode(text)) == text
        assert TOK.decode(TOK.encode(text, bos=True, eos=True)) == text
    assert TOK.vocab_size == 23 == len(set(TOK.encode(chars))) + 3
    assert [TOK.encode(str(d))[0] for d in range(10)] == list(range(TOK.digit0_id, TOK.digit0_id + 10))
    assert (
        TOK.decode([BOS, *TOK.encode("12"), EOS, *TOK.encode("9"), PAD], specials=True)
        == "<bos>12<eos>9<pad>"
    )
    assert TOK.decode([BOS, *TOK.encode("12"), EOS, *TOK.encode("9")]) == "12"  # ends at EOS


def test_tokenizer_pads_prompts_left_and_completions_right():
    tokens, mask = TOK.encode_prompts(["3+4=", "12+34="])
    assert tokens.tolist() == [[PAD, PAD, *TOK.encode("3+4=", bos=True)], TOK.encode("12+34=", bos=True)]
    assert mask.tolist() == [[False, False] + [True] * 5, [True] * 7]
    tokens, mask = TOK.encode_completions(["7", "46"], width=4)
    assert tokens.tolist() == [[*ids("7"), PAD, PAD], [*ids("46"), PAD]]
    assert mask.sum(1).tolist() == [2, 3]
    assert TOK.decode_batch(tokens, mask, specials=True) == ["7<eos>", "46<eos>"]


def test_tokenizer_refuses_what_it_cannot_encode():
    with pytest.raises(ConfigError, match="'x'"):
        TOK.encode("3x4")
    with pytest.raises(ConfigError, match="outside"):
        TOK.decode([TOK.vocab_size])
    with pytest.raises(ConfigError, match="width 3"):
        TOK.encode_completions(["123"], width=3)  # 3 digits + EOS
    with pytest.raises(ConfigError, match="digits"):
        CharTokenizer("abc")


# ---------------------------------------------------------------------------------------------------------
# verifiers: hand-written cases


CASES = {
    "add1": [
        ([3, 4], ids("7"), True, True),
        ([3, 4], ids("8"), True, False),
        ([3, 4], ids("07"), True, False),  # not the decimal of 7
        ([3, 4], ids("7", eos=False), False, False),  # cut off before EOS
        ([3, 4], ids(""), False, False),  # no digits
        ([3, 4], ids("7+"), False, False),
        ([3, 4], [*ids("7"), *ids("7", eos=False)], False, False),  # a token after EOS
        ([3, 4], [BOS, *ids("7")], False, False),
        ([0, 0], ids("0"), True, True),
        ([0, 0], ids("00"), True, False),
        ([9, 9], ids("18"), True, True),
        ([9, 9], ids("8"), True, False),
    ],
    "add2": [
        ([12, 34], ids("46"), True, True),
        ([12, 34], ids("046"), True, False),
        ([12, 34], ids("64"), True, False),
        ([99, 99], ids("198"), True, True),
        ([5, 0], ids("5"), True, True),
        ([99, 99], ids("1980"), True, False),
    ],
    "sort4": [
        ([3, 1, 4, 2], ids("1234"), True, True),
        ([3, 1, 4, 2], ids("123"), True, False),
        ([3, 1, 4, 2], ids("12344"), True, False),
        ([3, 1, 4, 2], ids("4321"), True, False),
        ([0, 0, 1, 0], ids("0001"), True, True),
        ([0, 0, 1, 0], ids("001"), True, False),
        ([0, 0, 1, 0], ids("0001", eos=False), False, False),
    ],
    "digitsum": [
        ([13], ids("94"), True, True),
        ([13], ids("49"), True, True),
        ([13], ids("373"), True, True),
        ([13], ids("0373"), True, False),  # more than max_digits=3 digits
        ([13], ids("13"), True, False),
        ([27], ids("999"), True, True),
        ([1], ids("001"), True, True),
        ([1], ids("1:"), False, False),
    ],
}


@pytest.mark.parametrize("name", TASKS)
def test_verifier_cases(name):
    task = make_sequence_task(name)
    metas, rows, formed, correct = zip(*CASES[name], strict=True)
    tokens, mask = completions(list(rows))
    meta = torch.tensor(metas)
    assert task.well_formed(tokens, mask).tolist() == list(formed)
    assert task.success(meta, tokens, mask).tolist() == list(correct)
    assert task.rewards(meta, tokens, mask).tolist() == [float(c) for c in correct]
    for m, r, f, c in CASES[name]:  # the reference verifier agrees with the table
        assert reference(task, m, r, [True] * len(r)) == (f, c), (m, TOK.decode(r, specials=True))


def test_only_real_tokens_are_read():
    task = make_sequence_task("add1")
    meta = torch.tensor([[3, 4]] * 3)
    rows = [[*ids("7"), *ids("12")], [*ids("7"), *ids("12")], [*ids("7"), *ids("12")]]
    masks = [
        [True, True, False, False, False],  # garbage after the mask: ignored
        [True, True, True, False, False],  # a digit after EOS: malformed
        [True, False, True, False, False],  # a hole: malformed
    ]
    tokens, mask = completions(rows, masks=masks)
    assert task.success(meta, tokens, mask).tolist() == [True, False, False]
    empty = torch.zeros(3, 0, dtype=torch.long)
    assert task.rewards(meta, empty, empty.bool()).tolist() == [0.0, 0.0, 0.0]


def test_format_reward_is_off_by_default_and_paid_only_for_well_formed_wrong_answers():
    meta = torch.tensor([[3, 4]] * 3)
    tokens, mask = completions([ids("7"), ids("8"), ids("8", eos=False)])
    assert make_sequence_task("add1").rewards(meta, tokens, mask).tolist() == [1.0, 0.0, 0.0]
    shaped = make_sequence_task("add1", format_reward=0.1).rewards(meta, tokens, mask)
    assert shaped.dtype == torch.float32
    assert shaped.tolist() == pytest.approx([1.0, 0.1, 0.0])


# ---------------------------------------------------------------------------------------------------------
# verifiers against the reference on many completions


def _perturbed(task: SequenceTask, meta: list[int], rng: random.Random) -> list[int]:
    """A completion near the right answer (most mistakes a policy makes are small) or random tokens."""
    answer = list(task.answer_text(meta))
    kind = rng.randrange(7)
    if kind == 0 and answer:
        answer[rng.randrange(len(answer))] = str(rng.randrange(10))
    elif kind == 1:
        answer.insert(rng.randrange(len(answer) + 1), str(rng.randrange(10)))
    elif kind == 2 and len(answer) > 1:
        answer.pop(rng.randrange(len(answer)))
    elif kind == 3:
        rng.shuffle(answer)
    elif kind == 4:
        pool = [PAD, BOS, EOS, TOK.encode("+")[0], *range(3, 13), *range(3, 13)]
        return [rng.choice(pool) for _ in range(rng.randrange(0, task.max_new_tokens + 2))]
    return TOK.encode("".join(answer), eos=rng.random() < 0.9)


@pytest.mark.parametrize("name", TASKS)
def test_batched_verifier_agrees_with_the_reference(name):
    task = make_sequence_task(name)
    rng = random.Random(0)
    prompts = task.prompts(600, torch.Generator().manual_seed(1))
    metas = prompts.meta.tolist()
    rows = [_perturbed(task, m, rng) for m in metas]
    width = max(len(r) for r in rows) + 1
    tokens, mask = completions(rows, width=width)
    formed = task.well_formed(tokens, mask).tolist()
    correct = task.success(prompts.meta, tokens, mask).tolist()
    expected = [
        reference(task, m, t, k) for m, t, k in zip(metas, tokens.tolist(), mask.tolist(), strict=True)
    ]
    assert list(zip(formed, correct, strict=True)) == expected
    assert 50 < sum(correct) < 550 and sum(formed) > sum(correct) + 50  # both outcomes well represented


# ---------------------------------------------------------------------------------------------------------
# prompts and demonstrations


@pytest.mark.parametrize("name", TASKS)
def test_demonstrations_always_verify(name):
    task = make_sequence_task(name)
    demos = task.demonstrations(500, torch.Generator().manual_seed(0))
    assert demos.tokens.shape == (500, task.max_new_tokens)
    assert task.rewards(demos.prompts.meta, demos.tokens, demos.mask).eq(1.0).all()
    for m, t, k in zip(
        demos.prompts.meta.tolist()[:50], demos.tokens.tolist(), demos.mask.tolist(), strict=False
    ):
        assert reference(task, m, t, k) == (True, True)


@pytest.mark.parametrize("name", TASKS)
def test_prompts_are_seeded_left_padded_and_state_their_problem(name):
    task = make_sequence_task(name)
    a = task.prompts(64, torch.Generator().manual_seed(3))
    b = task.prompts(64, torch.Generator().manual_seed(3))
    c = task.prompts(64, torch.Generator().manual_seed(4))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.meta, b.meta) and not torch.equal(a.meta, c.meta)
    assert a.tokens.shape == a.mask.shape == (64, task.prompt_len) and a.tokens.dtype == torch.long
    assert a.mask[:, -1].all() and (a.mask[:, 1:] >= a.mask[:, :-1]).all()  # left padding only
    first = a.mask.float().argmax(1)
    assert (a.tokens.gather(1, first[:, None]) == BOS).all() and (a.tokens[~a.mask] == PAD).all()
    assert TOK.decode_batch(a.tokens, a.mask) == [task.prompt_text(m) for m in a.meta.tolist()]
    assert task.max_len == task.prompt_len + task.max_new_tokens
    groups = a.repeat(3)  # G = 3 completions per prompt, a group's rows together
    assert torch.equal(groups.tokens[3:6], a.tokens[1:2].expand(3, -1)) and torch.equal(
        groups.meta[::3], a.meta
    )


def test_problems_cover_their_ranges():
    g = torch.Generator().manual_seed(0)
    add1 = make_sequence_task("add1").prompts(2000, g).meta
    assert len({tuple(r) for r in add1.tolist()}) == 100  # every a+b with one digit each
    add2 = make_sequence_task("add2").prompts(2000, g).meta
    assert add2.min() == 0 and add2.max() == 99
    sums = make_sequence_task("digitsum").prompts(2000, g).meta
    assert set(sums[:, 0].tolist()) == set(range(1, 28))
    digits = make_sequence_task("sort4").prompts(500, g).meta
    assert digits.shape == (500, 4) and set(digits.flatten().tolist()) == set(range(10))
    assert make_sequence_task("digitsum", max_digits=5).prompts(500, g).meta.max() == 45


def test_examples_from_the_docs():
    assert Addition(2).prompt_text([12, 34]) == "12+34=" and Addition(2).answer_text([12, 34]) == "46"
    assert (
        Sorting(4).prompt_text([3, 1, 4, 2]) == "sort:3142="
        and Sorting(4).answer_text([3, 1, 4, 2]) == "1234"
    )
    assert DigitSum().prompt_text([13]) == "sum:13=" and DigitSum().answer_text([13]) == "94"
    assert DigitSum().answer_text([18]) == "99" and DigitSum().answer_text([5]) == "5"


# ---------------------------------------------------------------------------------------------------------
# registry and errors


def test_registry():
    assert list(list_sequence_tasks()) == TASKS
    assert isinstance(make_sequence_task("add2"), Addition) and make_sequence_task("add2").digits == 2
    assert make_sequence_task("digitsum", max_digits=2).max_new_tokens == 3
    with pytest.raises(ConfigError, match=r"unknown sequence task 'add3' \(did you mean add\d\?\)"):
        make_sequence_task("add3")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) digits \(options: format_reward\)"):
        make_sequence_task("add1", digits=3)
    with pytest.raises(ConfigError, match="format_reward"):
        make_sequence_task("sort4", format_reward=1.5)
    with pytest.raises(ConfigError, match="max_digits"):
        make_sequence_task("digitsum", max_digits=0)


def test_bad_batches_are_refused():
    task = make_sequence_task("add1")
    tokens, mask = completions([ids("7"), ids("8")])
    with pytest.raises(ConfigError, match="2 completions for 3 problems"):
        task.rewards(torch.tensor([[3, 4]] * 3), tokens, mask)
    with pytest.raises(ConfigError, match="mask"):
        task.rewards(torch.tensor([[3, 4]] * 2), tokens, mask[:, :1])
    with pytest.raises(ConfigError, match="meta"):
        task.rewards(torch.tensor([3, 4]), tokens, mask)
    with pytest.raises(ConfigError, match="positive int"):
        task.prompts(0)
