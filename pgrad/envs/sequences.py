r"""Verifiable-reward sequence tasks: a character tokenizer, seeded prompt generators and exact verifiers.

A *sequence task* is a one-step episodic environment for a token policy: the prompt ``x`` is the observation,
the completion ``y`` (tokens until EOS) is the episode, and a verifier scores it at the end,

.. math::

    r(x, y) = \begin{cases} 1 & y \text{ answers } x \text{ correctly} \\
    r_\text{format} + r_\text{partial} \cdot \mathrm{credit}(x, y) & y \text{ is well formed (digits, then
    EOS) but wrong} \\
    0 & \text{otherwise,} \end{cases}

with :math:`r_\text{format} = r_\text{partial} = 0` by default and :math:`r_\text{format} + r_\text{partial}
< 1`, so a correct answer is strictly best. *Well formed* means: the real tokens of the completion are one or
more digits followed by EOS, and nothing else (a completion cut off before EOS is not). The *partial credit*
of a well-formed completion with digits :math:`y_1 \dots y_m` against the canonical answer :math:`a_1 \dots
a_k` is the share of answer digits it has in place, aligned by significance,

.. math::

    \mathrm{credit}(x, y) = \frac{\#\{i < \min(m, k) : y_{(i)} = a_{(i)}\}}{\max(m, k)},

where :math:`(i)` counts from the units digit: from the right for big-endian answers (``46``: units with
units, so ``146`` earns 2/3), from the left for little-endian answers and for sorting (whose digits line up
from the first). Tasks without a unique answer (digitsum) have no partial credit.

=========  =============  ==========================================================  ================
name       prompt         correct completion                                          meta columns
=========  =============  ==========================================================  ================
add1       ``3+4=``       ``7``: the sum in decimal, no leading zeros                  a, b
add2       ``12+34=``     ``46``                                                       a, b
add1le     ``3+9=``       ``21``: the sum's decimal digits least-significant first     a, b
add2le     ``12+39=``     ``15``: 51 reversed (``50+50=`` → ``001``; 0 → ``0``)        a, b
sort4      ``sort:3142=`` ``1234``: the prompt's digits in ascending order             the 4 digits
digitsum   ``sum:13=``    any 1..max_digits digits whose sum is 13 (``94``, ``373``)   target
=========  =============  ==========================================================  ================

The little-endian ("reversed") additions write the answer units digit first, so each output digit depends
only on digits already seen plus one carry (Lee et al. 2023, "Teaching Arithmetic to Small Transformers"):
a small transformer learns them more easily than the usual order.

Prompts start with BOS and are **left-padded** to the task's fixed width ``prompt_len``; completions are
right-padded after EOS. ``meta`` is an int64 tensor ``[n, K]`` stating each problem: keep it with its prompts
(``prompts.repeat(G)`` for G completions per prompt repeats all three) and pass it to `rewards`.
The verifier works on whole batches of tensors (no Python loop over completions); prompt text is built per
prompt in Python (a few microseconds each).

Shapes: n prompts, P prompt width, L completion width, D answer width.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from pgrad.errors import ConfigError, did_you_mean

__all__ = [
    "SEQUENCE_TASKS",
    "TOKENIZER",
    "Addition",
    "CharTokenizer",
    "Demonstrations",
    "DigitSum",
    "Prompts",
    "SequenceTask",
    "Sorting",
    "list_sequence_tasks",
    "make_sequence_task",
]


class CharTokenizer:
    """Character-level tokenizer: ids 0, 1, 2 are PAD, BOS, EOS; then one id per character of `chars`.

    The default alphabet is the digits (``'0'`` → 3 … ``'9'`` → 12), ``+ = : ,`` and the letters of the task
    markers ``sort`` and ``sum``: 23 tokens in all.
    """

    SPECIALS = ("<pad>", "<bos>", "<eos>")

    def __init__(self, chars: str = "0123456789+=:,mortsu"):
        if len(set(chars)) != len(chars) or not chars.startswith("0123456789"):
            raise ConfigError(
                f"CharTokenizer: chars must start with the ten digits and not repeat, got {chars!r}"
            )
        self.chars = chars
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self.digit0_id = len(self.SPECIALS)  # id of '0'; digit d is digit0_id + d
        self._ids = {c: i + len(self.SPECIALS) for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        """Number of token ids (specials included)."""
        return len(self.SPECIALS) + len(self.chars)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of `text`, with BOS before and/or EOS after when asked."""
        try:
            ids = [self._ids[c] for c in text]
        except KeyError as exc:
            raise ConfigError(
                f"CharTokenizer: {text!r} holds {exc.args[0]!r}, not in {self.chars!r}"
            ) from None
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def decode(self, ids: Sequence[int] | Tensor, *, specials: bool = False) -> str:
        """Text of `ids`. PAD and BOS are dropped and the text ends at the first EOS, unless ``specials``:
        then every id is shown, specials as ``<pad>``, ``<bos>``, ``<eos>``."""
        out = []
        for i in ids.tolist() if isinstance(ids, Tensor) else ids:
            if not 0 <= i < self.vocab_size:
                raise ConfigError(f"CharTokenizer: id {i} is outside 0..{self.vocab_size - 1}")
            if i >= len(self.SPECIALS):
                out.append(self.chars[i - len(self.SPECIALS)])
            elif specials:
                out.append(self.SPECIALS[i])
            elif i == self.eos_id:
                break
        return "".join(out)

    def encode_prompts(self, texts: Sequence[str], width: int | None = None) -> tuple[Tensor, Tensor]:
        """``BOS + text`` for each text, left-padded to `width` (default: the longest): ``(tokens, mask)``,
        both ``[n, width]``, mask True on real tokens."""
        rows = [self.encode(t, bos=True) for t in texts]
        return self._pad(rows, width, left=True)

    def encode_completions(
        self, texts: Sequence[str], width: int | None = None, eos: bool = True
    ) -> tuple[Tensor, Tensor]:
        """``text + EOS`` (``eos=True``) for each text, right-padded to `width` (default: the longest):
        ``(tokens, mask)``, both ``[n, width]``."""
        rows = [self.encode(t, eos=eos) for t in texts]
        return self._pad(rows, width, left=False)

    def decode_batch(
        self, tokens: Tensor, mask: Tensor | None = None, *, specials: bool = False
    ) -> list[str]:
        """`decode` of each row's real tokens (``mask`` True; all when None)."""
        if mask is None:
            return [self.decode(row, specials=specials) for row in tokens.tolist()]
        return [
            self.decode([i for i, m in zip(row, keep, strict=True) if m], specials=specials)
            for row, keep in zip(tokens.tolist(), mask.bool().tolist(), strict=True)
        ]

    def _pad(self, rows: list[list[int]], width: int | None, left: bool) -> tuple[Tensor, Tensor]:
        longest = max((len(r) for r in rows), default=0)
        width = longest if width is None else width
        if longest > width:
            raise ConfigError(f"CharTokenizer: a sequence of {longest} tokens does not fit width {width}")
        # padded as Python lists, then one tensor: a per-row tensor copy costs ~20 µs a row
        pad, pads = [self.pad_id], [width - len(r) for r in rows]
        if left:
            padded = [pad * k + r for r, k in zip(rows, pads, strict=True)]
        else:
            padded = [r + pad * k for r, k in zip(rows, pads, strict=True)]
        tokens = torch.tensor(padded, dtype=torch.long).reshape(len(rows), width)
        real = torch.tensor([len(r) for r in rows], dtype=torch.long)
        col = torch.arange(width)
        mask = col >= width - real[:, None] if left else col < real[:, None]
        return tokens, mask


TOKENIZER = CharTokenizer()
"""The tokenizer every built-in task uses."""


class Prompts(NamedTuple):
    """A batch of prompts: what a task's `prompts` returns."""

    tokens: Tensor
    """[n, P] int64: BOS + prompt text, left-padded with PAD to the task's prompt_len."""
    mask: Tensor
    """[n, P] bool: True on real tokens."""
    meta: Tensor
    """[n, K] int64: the problem each prompt states (the task's meta columns); `rewards` takes it."""

    def repeat(self, times: int) -> Prompts:
        """Each prompt `times` times in a row (``[n·times, ...]``): the layout of G completions per prompt,
        group g being rows ``g·times … g·times + times - 1``."""
        return Prompts(*(t.repeat_interleave(times, 0) for t in self))


class Demonstrations(NamedTuple):
    """Correct prompt/completion pairs, for behaviour cloning."""

    prompts: Prompts
    tokens: Tensor
    """[n, L] int64 completion: answer digits then EOS, right-padded with PAD."""
    mask: Tensor
    """[n, L] bool: True on the answer digits and EOS."""


class SequenceTask:
    r"""A batched verifiable-reward task. Subclasses draw problems (`sample_meta`), state them
    (`prompt_text`), give a canonical answer (`answer_text`, and batched as `answer_digits` for partial
    credit) and check a well-formed answer (`_correct`).

    Rewards (`rewards`): 1 for a correct completion; ``format_reward + partial_reward · credit`` for a
    well-formed wrong one (`credit` ∈ [0, 1]: the share of the canonical answer's digits it has in place);
    0 otherwise. ``format_reward + partial_reward < 1`` keeps a correct answer strictly best; the success
    metrics (`success`) ignore both.

    Attributes:
        name: the task's registry name.
        tokenizer: the `CharTokenizer` of prompts and completions.
        prompt_len: width P of every prompt batch (the longest prompt, BOS included).
        max_new_tokens: length of the longest correct completion, EOS included (a generation budget).
        format_reward: reward of a well-formed but wrong completion (0 by default).
        partial_reward: extra reward of a well-formed wrong completion per unit of `credit` (0 by default).
        alignment: how `credit` lines answers up: ``"right"`` (units digit last: big-endian numbers) or
            ``"left"`` (units digit first: little-endian numbers; sorted digits).
        unique_answer: whether the canonical answer is the only correct one (partial credit needs it).
    """

    name: str = "task"
    prompt_len: int
    max_new_tokens: int
    alignment: str = "left"
    unique_answer: bool = True

    def __init__(
        self, format_reward: float = 0.0, partial_reward: float = 0.0, tokenizer: CharTokenizer = TOKENIZER
    ):
        if not 0.0 <= float(format_reward) < 1.0:
            raise ConfigError(f"{self.name}: format_reward must be in [0, 1), got {format_reward!r}")
        if not float(partial_reward) >= 0.0:
            raise ConfigError(f"{self.name}: partial_reward must be >= 0, got {partial_reward!r}")
        if not float(format_reward) + float(partial_reward) < 1.0:
            raise ConfigError(
                f"{self.name}: format_reward + partial_reward must be < 1 so a correct answer stays best, "
                f"got format_reward={format_reward!r} + partial_reward={partial_reward!r}"
            )
        if float(partial_reward) > 0 and not self.unique_answer:
            raise ConfigError(
                f"{self.name}: has no unique answer to give partial credit against, "
                f"so partial_reward must be 0 (got {partial_reward!r})"
            )
        self.format_reward = float(format_reward)
        self.partial_reward = float(partial_reward)
        self.tokenizer = tokenizer

    # what a task defines -------------------------------------------------------------------------------

    def sample_meta(self, n: int, generator: torch.Generator | None) -> Tensor:
        """[n, K] int64: n problems drawn with `generator`."""
        raise NotImplementedError

    def prompt_text(self, meta_row: list[int]) -> str:
        """The prompt stating one problem (without BOS)."""
        raise NotImplementedError

    def answer_text(self, meta_row: list[int]) -> str:
        """A correct answer to one problem (without EOS): the canonical one when several are correct."""
        raise NotImplementedError

    def answer_digits(self, meta_nK: Tensor) -> tuple[Tensor, Tensor]:
        """The canonical answers of problems `meta` [n, K], batched: ``(digits [n, D], n_digits [n])``, the
        digits in written order, left-aligned, 0 after n_digits (the digits of `answer_text`)."""
        raise NotImplementedError

    def _correct(self, meta_nK: Tensor, digits_nL: Tensor, n_digits_n: Tensor) -> Tensor:
        """[n] bool for well-formed completions, given their answer digits [n, L] (values 0-9, left-aligned,
        0 after n_digits) and n_digits [n]."""
        raise NotImplementedError

    # the batched layer -----------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size (a policy's output size)."""
        return self.tokenizer.vocab_size

    @property
    def max_len(self) -> int:
        """Most real tokens of a prompt plus a completion: a policy's ``max_len``."""
        return self.prompt_len + self.max_new_tokens

    def prompts(self, n: int, generator: torch.Generator | None = None) -> Prompts:
        """n prompts of problems drawn with `generator` (torch's global RNG when None)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{self.name}: the number of prompts must be a positive int, got {n!r}")
        meta = self.sample_meta(n, generator)
        return self.encode(meta)

    def encode(self, meta: Tensor) -> Prompts:
        """The prompts stating the problems `meta` [n, K]."""
        meta = self._check_meta(meta)
        tokens, mask = self.tokenizer.encode_prompts(
            [self.prompt_text(r) for r in meta.tolist()], self.prompt_len
        )
        return Prompts(tokens, mask, meta)

    def demonstrations(self, n: int, generator: torch.Generator | None = None) -> Demonstrations:
        """n prompts with a correct completion each (width `max_new_tokens`)."""
        prompts = self.prompts(n, generator)
        answers = [self.answer_text(r) for r in prompts.meta.tolist()]
        tokens, mask = self.tokenizer.encode_completions(answers, self.max_new_tokens)
        return Demonstrations(prompts, tokens, mask)

    def well_formed(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """[n] bool: the completion's real tokens are a prefix of its row and read one or more digits, then
        EOS."""
        tokens, mask = self._check_completions(tokens, mask)
        n, L = tokens.shape
        if L == 0:
            return torch.zeros(n, dtype=torch.bool, device=tokens.device)
        col = torch.arange(L, device=tokens.device)
        length = mask.sum(1)
        prefix = (mask == (col < length[:, None])).all(1)
        last = tokens.gather(1, (length - 1).clamp(min=0)[:, None]).squeeze(1)
        is_digit = (tokens >= self.tokenizer.digit0_id) & (tokens <= self.tokenizer.digit0_id + 9)
        body_digits = (is_digit | (col >= (length - 1)[:, None])).all(1)
        return prefix & (length >= 2) & (last == self.tokenizer.eos_id) & body_digits

    def success(self, meta: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        """[n] bool: the completion is well formed and answers its problem correctly."""
        meta, tokens, mask = self._check_batch(meta, tokens, mask)
        ok = self.well_formed(tokens, mask)
        if tokens.shape[1] == 0:
            return ok
        digits, n_digits = self._completion_digits(tokens, mask)
        return ok & self._correct(meta, digits, n_digits)

    def credit(self, meta: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        r"""[n] float32: the share of the canonical answer's digits a well-formed completion has in place,

            credit = #{i < min(m, k) : y_(i) = a_(i)} / max(m, k)

        for completion digits y (m of them) and answer digits a (k), position (i) counted from the right
        (``alignment == "right"``: units with units, so ``146`` against 46 earns 2/3) or from the left
        (``"left"``). 0 for a completion that is not well formed; 1 exactly for the canonical answer."""
        if not self.unique_answer:
            raise ConfigError(f"{self.name}: has no unique answer, so no partial credit")
        meta, tokens, mask = self._check_batch(meta, tokens, mask)
        formed = self.well_formed(tokens, mask)
        if tokens.shape[1] == 0:
            return formed.float()
        digits, m = self._completion_digits(tokens, mask)
        answer, k = self.answer_digits(meta)
        width = max(digits.shape[1], answer.shape[1])
        i = torch.arange(width, device=tokens.device)[None, :]
        if self.alignment == "right":
            at_y, at_a = (m[:, None] - 1 - i).clamp(min=0), (k[:, None] - 1 - i).clamp(min=0)
        else:
            at_y, at_a = i.expand(len(m), width), i.expand(len(m), width)
        at_y, at_a = at_y.clamp(max=digits.shape[1] - 1), at_a.clamp(max=answer.shape[1] - 1)
        both = (i < m[:, None]) & (i < k[:, None])  # the overlap: i < min(m, k)
        matches = ((digits.gather(1, at_y) == answer.gather(1, at_a)) & both).sum(1)
        share = matches / torch.maximum(m, k).clamp(min=1)
        return torch.where(formed, share, 0.0).float()

    def rewards(self, meta: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
        """[n] float32: 1 for a correct completion, ``format_reward + partial_reward · credit`` for a
        well-formed wrong one, else 0 (see `credit`)."""
        correct = self.success(meta, tokens, mask)
        formed = self.well_formed(tokens, mask)
        fallback = torch.where(formed, self.format_reward, 0.0)
        if self.partial_reward > 0:  # credit is 0 unless well formed
            fallback = fallback + self.partial_reward * self.credit(meta, tokens, mask)
        return torch.where(correct, 1.0, fallback).float()

    def _completion_digits(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(digits [n, L], n_digits [n]) of completions: the values 0-9 of the real tokens before the last
        one, 0 elsewhere (meaningful for well-formed completions only)."""
        n_digits = (mask.sum(1) - 1).clamp(min=0)
        in_answer = torch.arange(tokens.shape[1], device=tokens.device) < n_digits[:, None]
        digits = torch.where(in_answer, tokens - self.tokenizer.digit0_id, 0).clamp(0, 9)
        return digits, n_digits

    def _check_batch(self, meta: Tensor, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        meta = self._check_meta(meta)
        tokens, mask = self._check_completions(tokens, mask)
        if meta.shape[0] != tokens.shape[0]:
            raise ConfigError(
                f"{self.name}: {tokens.shape[0]} completions for {meta.shape[0]} problems (meta)"
            )
        return meta, tokens, mask

    def _check_meta(self, meta: Tensor) -> Tensor:
        if not isinstance(meta, Tensor) or meta.dim() != 2 or meta.dtype.is_floating_point:
            got = tuple(meta.shape) if isinstance(meta, Tensor) else type(meta).__name__
            raise ConfigError(f"{self.name}: meta must be an integer tensor [n, K] (Prompts.meta), got {got}")
        return meta.long()

    def _check_completions(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ConfigError(f"{self.name}: completion tokens must be an integer tensor [n, L], got {got}")
        if not isinstance(mask, Tensor) or mask.shape != tokens.shape:
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ConfigError(
                f"{self.name}: completion mask must have the tokens' shape {tuple(tokens.shape)}, got {got}"
            )
        return tokens.long(), mask.bool()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, format_reward={self.format_reward}, "
            f"partial_reward={self.partial_reward})"
        )


def _value(digits_nL: Tensor, n_digits_n: Tensor, max_digits: int, little_endian: bool = False) -> Tensor:
    """[n] int64: the decimal number the first n_digits digits spell, most significant first (or last with
    `little_endian`); 0 when n_digits > max_digits ≤ 18."""
    col = torch.arange(digits_nL.shape[1], device=digits_nL.device)
    place = col[None, :] if little_endian else n_digits_n[:, None] - 1 - col
    exponent = place.clamp(0, max_digits)  # clamped: no int64 overflow
    value = (digits_nL * 10**exponent * (col < n_digits_n[:, None])).sum(1)
    return torch.where(n_digits_n <= max_digits, value, 0)


def _decimal_digits(value_n: Tensor, width: int, little_endian: bool) -> tuple[Tensor, Tensor]:
    """(digits [n, width], n_digits [n]) of non-negative ints < 10^width: the decimal without leading zeros
    ("0" for 0), most significant first (or least significant first with `little_endian`), left-aligned."""
    n_digits = torch.ones_like(value_n)
    for e in range(1, width):
        n_digits += (value_n >= 10**e).long()
    col = torch.arange(width, device=value_n.device)
    place = col[None, :] if little_endian else n_digits[:, None] - 1 - col
    digits = (value_n[:, None] // 10 ** place.clamp(min=0)) % 10
    return torch.where(col < n_digits[:, None], digits, 0), n_digits


class Addition(SequenceTask):
    """``a+b=`` → the decimal sum, with a, b uniform in 0 .. 10^digits - 1 (meta columns a, b).

    With `little_endian` the sum is written least-significant digit first (``12+39=`` → ``15`` for 51,
    ``50+50=`` → ``001``, ``0+0=`` → ``0``): exactly the reverse of the decimal, so its last digit is not 0
    unless the answer is ``0``. Partial credit aligns units with units either way."""

    def __init__(
        self,
        digits: int = 1,
        format_reward: float = 0.0,
        partial_reward: float = 0.0,
        tokenizer: CharTokenizer = TOKENIZER,
        little_endian: bool = False,
    ):
        if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 9:
            raise ConfigError(f"addition: digits must be an int in 1..9, got {digits!r}")
        self.digits = digits
        self.little_endian = bool(little_endian)
        self.name = f"add{digits}le" if self.little_endian else f"add{digits}"
        self.alignment = "left" if self.little_endian else "right"
        super().__init__(format_reward, partial_reward, tokenizer)
        self.prompt_len = 1 + 2 * digits + 2  # BOS a + b =
        self.max_new_tokens = digits + 2  # at most digits + 1 answer digits, then EOS

    def sample_meta(self, n: int, generator: torch.Generator | None) -> Tensor:
        return torch.randint(0, 10**self.digits, (n, 2), generator=generator)

    def prompt_text(self, meta_row: list[int]) -> str:
        return f"{meta_row[0]}+{meta_row[1]}="

    def answer_text(self, meta_row: list[int]) -> str:
        text = str(meta_row[0] + meta_row[1])
        return text[::-1] if self.little_endian else text

    def answer_digits(self, meta_nK: Tensor) -> tuple[Tensor, Tensor]:
        return _decimal_digits(meta_nK[:, 0] + meta_nK[:, 1], self.digits + 1, self.little_endian)

    def _correct(self, meta_nK: Tensor, digits_nL: Tensor, n_digits_n: Tensor) -> Tensor:
        # the decimal of s is the one digit string of value s without a leading zero ("0" itself excepted);
        # little-endian, that zero would be the last digit written
        if self.little_endian:
            top = digits_nL.gather(1, (n_digits_n - 1).clamp(min=0)[:, None]).squeeze(1)
        else:
            top = digits_nL[:, 0]
        no_leading_zero = (top != 0) | (n_digits_n == 1)
        value = _value(digits_nL, n_digits_n, self.digits + 1, self.little_endian)
        return no_leading_zero & (n_digits_n <= self.digits + 1) & (value == meta_nK[:, 0] + meta_nK[:, 1])


class Sorting(SequenceTask):
    """``sort:3142=`` → ``1234``: `length` digits drawn uniformly (repeats allowed), sorted ascending."""

    alignment = "left"  # the sorted digits line up from the first

    def __init__(
        self,
        length: int = 4,
        format_reward: float = 0.0,
        partial_reward: float = 0.0,
        tokenizer: CharTokenizer = TOKENIZER,
    ):
        if isinstance(length, bool) or not isinstance(length, int) or not 2 <= length <= 16:
            raise ConfigError(f"sorting: length must be an int in 2..16, got {length!r}")
        self.length = length
        self.name = f"sort{length}"
        super().__init__(format_reward, partial_reward, tokenizer)
        self.prompt_len = 1 + len("sort:") + length + 1
        self.max_new_tokens = length + 1

    def sample_meta(self, n: int, generator: torch.Generator | None) -> Tensor:
        return torch.randint(0, 10, (n, self.length), generator=generator)

    def prompt_text(self, meta_row: list[int]) -> str:
        return "sort:" + "".join(map(str, meta_row)) + "="

    def answer_text(self, meta_row: list[int]) -> str:
        return "".join(map(str, sorted(meta_row)))

    def answer_digits(self, meta_nK: Tensor) -> tuple[Tensor, Tensor]:
        return meta_nK.sort(1).values, torch.full_like(meta_nK[:, 0], self.length)

    def _correct(self, meta_nK: Tensor, digits_nL: Tensor, n_digits_n: Tensor) -> Tensor:
        if digits_nL.shape[1] < self.length:  # too narrow to hold an answer
            return torch.zeros(meta_nK.shape[0], dtype=torch.bool, device=meta_nK.device)
        target = meta_nK.sort(1).values
        return (n_digits_n == self.length) & (digits_nL[:, : self.length] == target).all(1)


class DigitSum(SequenceTask):
    """``sum:13=`` → any 1..max_digits digits summing to the target (``94``, ``490``, ``058``…), the target
    uniform in 1..9·max_digits. Demonstrations give the shortest answer, largest digits first (``94``).
    Many answers are correct, so there is no partial credit (``partial_reward`` must be 0)."""

    unique_answer = False

    def __init__(
        self,
        max_digits: int = 3,
        format_reward: float = 0.0,
        partial_reward: float = 0.0,
        tokenizer: CharTokenizer = TOKENIZER,
    ):
        if isinstance(max_digits, bool) or not isinstance(max_digits, int) or not 1 <= max_digits <= 16:
            raise ConfigError(f"digitsum: max_digits must be an int in 1..16, got {max_digits!r}")
        self.max_digits = max_digits
        self.name = "digitsum"
        super().__init__(format_reward, partial_reward, tokenizer)
        self.prompt_len = 1 + len("sum:") + len(str(9 * max_digits)) + 1
        self.max_new_tokens = max_digits + 1

    def sample_meta(self, n: int, generator: torch.Generator | None) -> Tensor:
        return torch.randint(1, 9 * self.max_digits + 1, (n, 1), generator=generator)

    def prompt_text(self, meta_row: list[int]) -> str:
        return f"sum:{meta_row[0]}="

    def answer_text(self, meta_row: list[int]) -> str:
        nines, rest = divmod(meta_row[0], 9)
        return "9" * nines + (str(rest) if rest else "")

    def _correct(self, meta_nK: Tensor, digits_nL: Tensor, n_digits_n: Tensor) -> Tensor:
        return (n_digits_n <= self.max_digits) & (digits_nL.sum(1) == meta_nK[:, 0])


SEQUENCE_TASKS: dict[str, tuple[Callable[..., SequenceTask], str]] = {
    "add1": (
        lambda format_reward=0.0, partial_reward=0.0: Addition(1, format_reward, partial_reward),
        "single-digit addition: 3+4= → 7",
    ),
    "add2": (
        lambda format_reward=0.0, partial_reward=0.0: Addition(2, format_reward, partial_reward),
        "two-digit addition: 12+34= → 46",
    ),
    "add1le": (
        lambda format_reward=0.0, partial_reward=0.0: Addition(
            1, format_reward, partial_reward, little_endian=True
        ),
        "single-digit addition, answer least-significant digit first: 3+9= → 21",
    ),
    "add2le": (
        lambda format_reward=0.0, partial_reward=0.0: Addition(
            2, format_reward, partial_reward, little_endian=True
        ),
        "two-digit addition, answer least-significant digit first: 12+39= → 15",
    ),
    "sort4": (
        lambda format_reward=0.0, partial_reward=0.0: Sorting(4, format_reward, partial_reward),
        "sort 4 digits: sort:3142= → 1234",
    ),
    "digitsum": (
        lambda max_digits=3, format_reward=0.0, partial_reward=0.0: DigitSum(
            max_digits, format_reward, partial_reward
        ),
        "digits summing to a target: sum:13= → 94 (any of ≤ max_digits digits)",
    ),
}
"""Registry of the built-in tasks: name → (factory, one-line description)."""


def list_sequence_tasks() -> dict[str, str]:
    """The built-in task names with a one-line description each."""
    return {name: about for name, (_, about) in SEQUENCE_TASKS.items()}


def make_sequence_task(name: str, **options: object) -> SequenceTask:
    """The built-in task `name` (``add1``, ``add2``, ``add1le``, ``add2le``, ``sort4``, ``digitsum``) with its
    `options` (``format_reward`` and ``partial_reward`` for all, the latter 0 for digitsum; ``max_digits`` for
    digitsum)."""
    if name not in SEQUENCE_TASKS:
        raise ConfigError(
            f"unknown sequence task {name!r}{did_you_mean(str(name), SEQUENCE_TASKS)} "
            f"(choose from {', '.join(SEQUENCE_TASKS)})"
        )
    factory = SEQUENCE_TASKS[name][0]
    allowed = list(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"sequence task {name!r}: unknown option(s) {', '.join(unknown)} (options: {', '.join(allowed)})"
        )
    return factory(**options)
