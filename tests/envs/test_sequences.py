"""Tests of the verifiable-reward sequence tasks (pgrad.envs.sequences): the tokenizer, prompts,
demonstrations, each task's batched verifier and partial credit, held against plain references written here
on strings."""

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
TASKS = ["add1", "add2", "add1le", "add2le", "sort4", "digitsum"]
UNIQUE = [t for t in TASKS if t != "digitsum"]  # the tasks with partial credit


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
        decimal = str(meta[0] + meta[1])
        return True, text == (decimal[::-1] if task.little_endian else decimal)
    if isinstance(task, Sorting):
        return True, text == "".join(str(d) for d in sorted(meta))
    assert isinstance(task, DigitSum)
    return True, len(text) <= task.max_digits and sum(int(c) for c in text) == meta[0]


def reference_credit(task: SequenceTask, meta: list[int], tokens: list[int], mask: list[bool]) -> float:
    """Partial credit the plain way: the answer's and the completion's digit strings, read units first
    (big-endian numbers reversed), compared place by place over the longer of the two."""
    if not reference(task, meta, tokens, mask)[0]:
        return 0.0
    text, answer = TOK.decode(tokens[: sum(mask) - 1]), task.answer_text(meta)
    if isinstance(task, Addition) and not task.little_endian:
        text, answer = text[::-1], answer[::-1]
    return sum(a == b for a, b in zip(text, answer, strict=False)) / max(len(text), len(answer))


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
    "add1le": [
        ([3, 9], ids("21"), True, True),  # 12, units first
        ([3, 9], ids("12"), True, False),  # big-endian is wrong here
        ([3, 4], ids("7"), True, True),
        ([3, 4], ids("70"), True, False),  # a trailing zero: a leading zero of 07
        ([0, 0], ids("0"), True, True),
        ([0, 0], ids("00"), True, False),
        ([5, 5], ids("01"), True, True),  # 10
        ([5, 5], ids("1"), True, False),
        ([9, 9], ids("81"), True, True),
        ([9, 9], ids("81", eos=False), False, False),
    ],
    "add2le": [
        ([12, 39], ids("15"), True, True),
        ([12, 39], ids("51"), True, False),
        ([12, 39], ids("150"), True, False),
        ([50, 50], ids("001"), True, True),
        ([50, 50], ids("0010"), True, False),
        ([50, 50], ids("100"), True, False),
        ([99, 99], ids("891"), True, True),
        ([0, 7], ids("7"), True, True),
        ([0, 0], ids("0"), True, True),
        ([40, 60], ids("001+"), False, False),
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
    le = Addition(2, little_endian=True)
    assert le.prompt_text([12, 39]) == "12+39=" and le.answer_text([12, 39]) == "15"
    assert le.answer_text([50, 50]) == "001" and le.answer_text([0, 0]) == "0"


# ---------------------------------------------------------------------------------------------------------
# registry and errors


def test_registry():
    assert list(list_sequence_tasks()) == TASKS
    assert isinstance(make_sequence_task("add2"), Addition) and make_sequence_task("add2").digits == 2
    assert make_sequence_task("digitsum", max_digits=2).max_new_tokens == 3
    with pytest.raises(ConfigError, match=r"unknown sequence task 'add3' \(did you mean add\d\?\)"):
        make_sequence_task("add3")
    with pytest.raises(
        ConfigError, match=r"unknown option\(s\) digits \(options: format_reward, partial_reward\)"
    ):
        make_sequence_task("add1", digits=3)
    le = make_sequence_task("add2le")
    assert isinstance(le, Addition) and le.little_endian and le.digits == 2 and le.name == "add2le"
    assert (le.prompt_len, le.max_new_tokens) == (make_sequence_task("add2").prompt_len, 4)
    assert "least-significant digit first: 12+39= → 15" in list_sequence_tasks()["add2le"]
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


# ---------------------------------------------------------------------------------------------------------
# little-endian addition: every add2le problem


def test_little_endian_verifier_on_every_add2le_problem():
    """All 10,000 problems × the canonical answer and five corruptions, against the string reference."""
    task = make_sequence_task("add2le")
    a, b = torch.meshgrid(torch.arange(100), torch.arange(100), indexing="ij")
    metas = torch.stack([a.flatten(), b.flatten()], 1).tolist()
    texts = []
    for m in metas:
        le, be = task.answer_text(m), str(m[0] + m[1])
        wrong_units = str((int(le[0]) + 1) % 10) + le[1:]
        texts += [le, le + "0", "0" + le, be, wrong_units, le[:-1] or "5"]  # a trailing zero; big-endian; ...
    tokens, mask = TOK.encode_completions(texts, width=task.max_new_tokens + 1)
    meta = torch.tensor(metas).repeat_interleave(6, 0)
    correct = task.success(meta, tokens, mask).tolist()
    # every text is well formed, so the reference verifier reduces to comparing strings
    expected = [text == str(m[0] + m[1])[::-1] for text, m in zip(texts, meta.tolist(), strict=True)]
    assert correct == expected
    assert correct[::6] == [True] * 10_000 and not any(correct[1::6])  # "510" is not 15 reversed
    palindromes = sum(str(x + y) == str(x + y)[::-1] for x, y in metas)
    assert sum(correct[3::6]) == palindromes  # big-endian is right only where it reads the same


def test_answer_digits_are_the_answer_text_batched():
    for name in UNIQUE:
        task = make_sequence_task(name)
        meta = task.prompts(2000, torch.Generator().manual_seed(5)).meta
        digits, n_digits = task.answer_digits(meta)
        got = ["".join(map(str, row[:n])) for row, n in zip(digits.tolist(), n_digits.tolist(), strict=True)]
        assert got == [task.answer_text(m) for m in meta.tolist()], name
        assert digits.shape[1] == task.max_new_tokens - 1


# ---------------------------------------------------------------------------------------------------------
# partial credit

CREDIT_CASES = [  # task, meta, completion, credit
    ("add2", [12, 34], ids("46"), 1.0),
    ("add2", [12, 34], ids("47"), 0.5),  # tens right, units wrong
    ("add2", [12, 34], ids("16"), 0.5),
    ("add2", [12, 34], ids("146"), 2 / 3),  # right-aligned: units with units, over the longer
    ("add2", [12, 34], ids("046"), 2 / 3),  # correct value, leading zero: not the answer
    ("add2", [12, 34], ids("6"), 0.5),  # too short: the units only
    ("add2", [12, 34], ids("4"), 0.0),  # left-aligned it would score
    ("add2", [12, 34], ids("64"), 0.0),
    ("add2", [99, 99], ids("98"), 2 / 3),
    ("add2", [12, 34], ids("46", eos=False), 0.0),  # not well formed
    ("add2", [12, 34], ids("4+6"), 0.0),
    ("add2le", [12, 39], ids("15"), 1.0),
    ("add2le", [12, 39], ids("14"), 0.5),
    ("add2le", [12, 39], ids("1"), 0.5),  # left-aligned: units first
    ("add2le", [12, 39], ids("51"), 0.0),
    ("add2le", [12, 39], ids("150"), 2 / 3),
    ("add2le", [50, 50], ids("001"), 1.0),
    ("add2le", [50, 50], ids("01"), 1 / 3),
    ("add2le", [50, 50], ids("0010"), 0.75),
    ("add1", [3, 4], ids("7"), 1.0),
    ("add1", [3, 4], ids("17"), 0.5),
    ("sort4", [3, 1, 4, 2], ids("1243"), 0.5),
    ("sort4", [3, 1, 4, 2], ids("123"), 0.75),  # left-aligned
    ("sort4", [3, 1, 4, 2], ids("12345"), 0.8),
    ("sort4", [3, 1, 4, 2], ids("234"), 0.0),
    ("sort4", [3, 1, 4, 2], [*ids("1234"), PAD], 0.0),  # a PAD inside the real tokens
]


def test_credit_by_hand():
    for name, meta, row, expected in CREDIT_CASES:
        task = make_sequence_task(name, partial_reward=0.5)
        tokens, mask = completions([row], width=8)
        got = float(task.credit(torch.tensor([meta]), tokens, mask)[0])
        assert got == pytest.approx(expected), (name, meta, TOK.decode(row, specials=True))
        assert reference_credit(task, meta, tokens[0].tolist(), mask[0].tolist()) == pytest.approx(expected)


@pytest.mark.parametrize("name", UNIQUE)
def test_credit_and_rewards_agree_with_the_reference(name):
    """Batched credit against the string reference, and the reward rule: 1 > format + partial·credit > 0."""
    fmt, part = 0.1, 0.6
    task = make_sequence_task(name, format_reward=fmt, partial_reward=part)
    rng = random.Random(2)
    prompts = task.prompts(600, torch.Generator().manual_seed(3))
    metas = prompts.meta.tolist()
    rows = [_perturbed(task, m, rng) for m in metas]
    tokens, mask = completions(rows, width=max(len(r) for r in rows) + 1)
    credit = task.credit(prompts.meta, tokens, mask)
    rewards = task.rewards(prompts.meta, tokens, mask)
    assert credit.dtype == rewards.dtype == torch.float32
    for i, (m, t, k) in enumerate(zip(metas, tokens.tolist(), mask.tolist(), strict=True)):
        formed, correct = reference(task, m, t, k)
        want = reference_credit(task, m, t, k)
        assert float(credit[i]) == pytest.approx(want, abs=1e-6), (m, TOK.decode(t, specials=True))
        if correct:
            assert want == 1.0 and float(rewards[i]) == 1.0
        elif formed:
            assert want < 1.0 and float(rewards[i]) == pytest.approx(fmt + part * want, abs=1e-6)
        else:
            assert float(rewards[i]) == 0.0
    wrong = ~task.success(prompts.meta, tokens, mask)
    assert rewards[wrong].max() < 1.0 and (rewards >= 0).all()
    formed_wrong = wrong & task.well_formed(tokens, mask)
    assert len(set(credit[formed_wrong].tolist())) > 3  # a spread of partial answers, not just 0 and 1


def test_partial_reward_is_off_by_default_and_paid_only_to_well_formed_wrong_answers():
    meta = torch.tensor([[12, 34]] * 5)
    tokens, mask = completions([ids("46"), ids("47"), ids("47", eos=False), ids("4+7"), ids("99")], width=5)
    assert make_sequence_task("add2").rewards(meta, tokens, mask).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert make_sequence_task("add2", format_reward=0.1).rewards(
        meta, tokens, mask
    ).tolist() == pytest.approx([1.0, 0.1, 0.0, 0.0, 0.1])
    shaped = make_sequence_task("add2", format_reward=0.1, partial_reward=0.8).rewards(meta, tokens, mask)
    assert shaped.tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.1])
    near_miss = make_sequence_task("add2", format_reward=0.49, partial_reward=0.5)  # 1/2·0.5 + 0.49 < 1
    assert near_miss.rewards(meta[:2], tokens[:2], mask[:2]).tolist() == pytest.approx([1.0, 0.74])
    # success ignores partial credit
    assert make_sequence_task("add2", partial_reward=0.5).success(meta, tokens, mask).tolist() == [
        True,
        False,
        False,
        False,
        False,
    ]


def test_partial_credit_refusals_are_one_line():
    with pytest.raises(ConfigError, match=r"digitsum: has no unique answer.*partial_reward must be 0"):
        make_sequence_task("digitsum", partial_reward=0.2)
    make_sequence_task("digitsum", partial_reward=0.0)  # 0 is fine
    with pytest.raises(ConfigError, match="no unique answer"):
        make_sequence_task("digitsum").credit(torch.tensor([[13]]), *completions([ids("94")]))
    msg = r"add2le: format_reward \+ partial_reward must be < 1 .*format_reward=0.5 \+ partial_reward=0.5"
    with pytest.raises(ConfigError, match=msg):
        make_sequence_task("add2le", format_reward=0.5, partial_reward=0.5)
    with pytest.raises(ConfigError, match=r"sort4: format_reward.*partial_reward=1\.2"):
        make_sequence_task("sort4", partial_reward=1.2)
    with pytest.raises(ConfigError, match="add1: partial_reward must be >= 0"):
        make_sequence_task("add1", partial_reward=-0.1)
    for bad in (float("nan"),):
        with pytest.raises(ConfigError, match="partial_reward"):
            make_sequence_task("add1", partial_reward=bad)
    with pytest.raises(ConfigError) as info:
        make_sequence_task("add2", format_reward=0.3, partial_reward=0.9)
    assert "\n" not in str(info.value)
