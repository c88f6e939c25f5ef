r"""Token-sequence policy: a tiny decoder-only causal transformer with KV-cached generation.

The policy over a vocabulary of ``V`` tokens is autoregressive,

.. math::

    \pi_\theta(y_{1:L} \mid x) = \prod_{t=1}^{L} \pi_\theta(y_t \mid x, y_{<t}),

so a completion ``y`` of a prompt ``x`` is an episode whose actions are tokens, and
``log π(y|x) = Σ_t log π(y_t | x, y_<t)`` is a sum of per-token terms (the quantity GRPO's per-token ratio
and KL use). Architecture (GPT-2 style, pre-LayerNorm):

``token embedding + learned position embedding → n_layers × [x + Attn(LN(x)); x + MLP(LN(x))] → LN → head``

with multi-head causal self-attention through ``torch.nn.functional.scaled_dot_product_attention`` and an
MLP ``D → 4D → D`` (GELU).

Padding. Prompts of different lengths share a batch by **left padding**; completions end at EOS and are
**right padded**. A boolean ``attention_mask`` (True on real tokens) handles both: a token's position id is
the number of real tokens before it (``cumsum(mask) - 1``), so padding takes no positions and a prompt's
logits do not depend on how much padding it has; padded keys are masked out of attention. A padded *query*
attends to itself only: its output is never used, but a query with no key at all gives NaN in some torch
versions, which the next layer would spread through the padded values (0 · NaN = NaN).

Untied output head. The vocabulary is tiny (tens of tokens), so tying the head to the token embedding would
save only ``V·D`` parameters; untied, the head starts small (std 0.02) so a fresh policy is close to uniform
over tokens (broad exploration for RL from scratch) without shrinking the input embedding, and a token's
role as input (a digit in the prompt) and as output (a digit to emit) may differ.

Shapes: B batch, T tokens (prompt P + completion L), V vocabulary, H heads, D = d_model, Dh = D / H.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgrad.errors import ConfigError

__all__ = [
    "Completion",
    "KVCache",
    "TokenLogProbs",
    "TransformerConfig",
    "TransformerPolicy",
    "positions_from_mask",
]


@dataclass
class TransformerConfig:
    """Architecture of a `TransformerPolicy`."""

    vocab_size: int
    """Number of token ids (0 .. vocab_size-1), e.g. ``task.tokenizer.vocab_size``."""
    max_len: int
    """Most real tokens one sequence may hold (prompt without its padding + completion): the size of the
    position table, e.g. ``task.max_len``."""
    d_model: int = 64
    """Width D of the residual stream (embedding size); divisible by n_heads."""
    n_layers: int = 2
    """Number of transformer blocks (attention + MLP)."""
    n_heads: int = 4
    """Attention heads per block; each has D / n_heads dimensions."""
    dropout: float = 0.0
    """Dropout on attention weights and on each residual branch in training mode. Keep 0 for RL, where
    the sampling policy and the trained policy must be the same function. Generation never uses dropout."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "d_model", "n_layers", "n_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TransformerConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"TransformerConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout!r}")


class TokenLogProbs(NamedTuple):
    """Per-token log-probabilities, entropies and the mask of the entries that mean something."""

    log_probs: Tensor
    """[B, N] log π(token | prefix) of each target token (0 where mask is False)."""
    entropy: Tensor
    """[B, N] entropy of π(· | prefix) at each target (0 where mask is False)."""
    mask: Tensor
    """[B, N] bool: the target token and its prefix's last token are both real tokens."""


class Completion(NamedTuple):
    """What `TransformerPolicy.generate` returns: completions right-padded after their EOS."""

    tokens: Tensor
    """[B, L] int64 sampled tokens; EOS included; ``pad_id`` after it."""
    mask: Tensor
    """[B, L] bool: True up to and including each sequence's EOS (or on every column if it never stopped)."""
    log_probs: Tensor
    """[B, L] log π_θ(y_t | x, y_<t) of the sampled tokens under the *raw policy* (temperature 1, no top-k),
    0 where mask is False: GRPO's old log-probs."""


def positions_from_mask(mask_BT: Tensor) -> Tensor:
    """Position id of each token: the number of real tokens before it (padding takes no positions).

    ``[pad, pad, a, b, c] → [0, 0, 0, 1, 2]``; right padding repeats the last position (never used)."""
    return (mask_BT.long().cumsum(1) - 1).clamp(min=0)


def _attention_mask(key_mask_BS: Tensor, n_queries: int) -> Tensor:
    """[B, 1, Tq, S] bool for the last ``n_queries`` of S positions: query i sees key j iff j ≤ i and key j
    is real, or j == i (so a padded query's softmax row is never empty)."""
    S = key_mask_BS.shape[1]
    q_idx = torch.arange(S - n_queries, S, device=key_mask_BS.device)[:, None]
    k_idx = torch.arange(S, device=key_mask_BS.device)[None, :]
    allowed = (k_idx <= q_idx) & (key_mask_BS[:, None, :] | (k_idx == q_idx))
    return allowed[:, None]


class KVCache:
    """Keys and values of every layer for the tokens seen so far, so a decoding step computes only the new
    token's query, key and value.

    Buffers ``[B, H, capacity, Dh]`` per layer are allocated once and filled left to right (no reallocation
    per step); ``length`` tokens are written. `TransformerPolicy` writes a step's keys at
    ``[length, length + T)`` in every layer, then advances ``length`` by T.
    """

    def __init__(self, n_layers: int, batch: int, n_heads: int, capacity: int, head_dim: int, like: Tensor):
        shape = (batch, n_heads, capacity, head_dim)
        self.keys = [like.new_empty(shape) for _ in range(n_layers)]
        self.values = [like.new_empty(shape) for _ in range(n_layers)]
        self.capacity = capacity
        self.length = 0

    def write(self, layer: int, k_BHTd: Tensor, v_BHTd: Tensor) -> tuple[Tensor, Tensor]:
        """Store a step's keys/values for `layer` after the cached ones; return all ``[B, H, S, Dh]``."""
        end = self.length + k_BHTd.shape[2]
        if end > self.capacity:
            raise ConfigError(f"KVCache: {end} tokens exceed its capacity of {self.capacity}")
        self.keys[layer][:, :, self.length : end] = k_BHTd
        self.values[layer][:, :, self.length : end] = v_BHTd
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class _SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x_BTD: Tensor, mask: Tensor | None, cache: KVCache | None, layer: int) -> Tensor:
        B, T, D = x_BTD.shape
        q, k, v = self.qkv(x_BTD).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.write(layer, k, v)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=mask is None,  # no mask: a full, unpadded sequence
        )
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, D)))


class _Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = _SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x_BTD: Tensor, mask: Tensor | None, cache: KVCache | None, layer: int) -> Tensor:
        x_BTD = x_BTD + self.attn(self.ln1(x_BTD), mask, cache, layer)
        return x_BTD + self.mlp(self.ln2(x_BTD))


class TransformerPolicy(nn.Module):
    """A tiny decoder-only causal transformer over token sequences (see the module docstring).

    ``forward`` gives logits for full sequences; `log_probs` / `completion_log_probs` give the per-token
    log-probabilities and entropies a policy-gradient loss needs; `generate` samples completions with a
    KV cache. ``spec()`` (JSON) and ``from_spec`` rebuild the architecture; load the ``state_dict`` after.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise ConfigError(f"TransformerPolicy needs a TransformerConfig, got {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2's init: N(0, 0.02) weights, zero biases; the projections that write into the residual stream
        # scaled by 1/sqrt(2·n_layers) so its variance does not grow with depth (Radford et al. 2019).
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for linear in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(linear.weight, std=0.02 / math.sqrt(2 * self.config.n_layers))

    # ------------------------------------------------------------------------------------------ checks

    def _check_tokens(self, tokens: Tensor, what: str) -> Tensor:
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
            got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ConfigError(f"TransformerPolicy: {what} must be an integer tensor [B, T], got {got}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.vocab_size):
            raise ConfigError(
                f"TransformerPolicy: {what} holds ids outside 0..{self.config.vocab_size - 1} "
                f"(min {int(tokens.min())}, max {int(tokens.max())})"
            )
        return tokens.long()

    @staticmethod
    def _check_mask(mask: Tensor, shape: torch.Size, what: str) -> Tensor:
        if not isinstance(mask, Tensor) or mask.shape != shape:
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ConfigError(
                f"TransformerPolicy: {what} must have the tokens' shape {tuple(shape)}, got {got}"
            )
        return mask.bool()

    def _check_positions(self, positions_BT: Tensor) -> None:
        if positions_BT.numel() and int(positions_BT.max()) >= self.config.max_len:
            raise ConfigError(
                f"TransformerPolicy: a sequence has {int(positions_BT.max()) + 1} real tokens, more than "
                f"max_len={self.config.max_len}"
            )

    # ----------------------------------------------------------------------------------------- forward

    def _run(
        self, tokens_BT: Tensor, positions_BT: Tensor, mask: Tensor | None, cache: KVCache | None
    ) -> Tensor:
        x = self.emb_dropout(self.tok_emb(tokens_BT) + self.pos_emb(positions_BT))
        for i, block in enumerate(self.blocks):
            x = block(x, mask, cache, i)
        if cache is not None:
            cache.length += tokens_BT.shape[1]
        return self.head(self.ln_f(x))

    def forward(self, tokens: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Logits ``[B, T, V]``: ``logits[:, t]`` scores the token at t+1 given the tokens ≤ t.

        Args:
            tokens: ``[B, T]`` integer token ids.
            attention_mask: ``[B, T]`` bool (or 0/1), True on real tokens; None means every token is real.
                Padding may be anywhere (left for prompts, right after EOS); logits at padded positions are
                meaningless.
        """
        tokens = self._check_tokens(tokens, "tokens")
        if attention_mask is None:
            positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
            mask = None
        else:
            key_mask = self._check_mask(attention_mask, tokens.shape, "attention_mask")
            positions = positions_from_mask(key_mask)
            mask = _attention_mask(key_mask, tokens.shape[1])
        self._check_positions(positions)
        return self._run(tokens, positions, mask, None)

    def log_probs(self, tokens: Tensor, attention_mask: Tensor | None = None) -> TokenLogProbs:
        r"""Per-token log-probabilities of each next token and the policy's entropy there, ``[B, T-1]``.

        Column t holds :math:`\log\pi_\theta(x_{t+1} \mid x_{\le t})` and
        :math:`H_t = -\sum_v \pi_\theta(v \mid x_{\le t}) \log\pi_\theta(v \mid x_{\le t})`. The real tokens
        of each row must be one contiguous run (left and/or right padding); ``mask`` is True where both
        x_t and x_{t+1} are real, and the other entries are 0.
        """
        tokens = self._check_tokens(tokens, "tokens")
        if attention_mask is None:
            real = torch.ones_like(tokens, dtype=torch.bool)
        else:
            real = self._check_mask(attention_mask, tokens.shape, "attention_mask")
            starts = real & ~F.pad(real, (1, 0), value=False)[:, :-1]
            if bool((starts.sum(1) > 1).any()):
                raise ConfigError(
                    "TransformerPolicy.log_probs: attention_mask must mark one contiguous run of real tokens "
                    "per row (left padding before, right padding after)"
                )
        logp_all = self(tokens, attention_mask).log_softmax(-1)[:, :-1]  # [B, T-1, V]
        logp = logp_all.gather(-1, tokens[:, 1:, None]).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        valid = real[:, 1:] & real[:, :-1]
        zero = logp.new_zeros(())
        return TokenLogProbs(torch.where(valid, logp, zero), torch.where(valid, entropy, zero), valid)

    def completion_log_probs(
        self, prompt_tokens: Tensor, prompt_mask: Tensor, completion_tokens: Tensor, completion_mask: Tensor
    ) -> TokenLogProbs:
        r"""Log-probabilities ``[B, L]`` of each completion token given the prompt and the completion before
        it, :math:`\log\pi_\theta(y_t \mid x, y_{<t})`, with the entropy of π there and the completion mask.

        One full forward of ``[prompt | completion]``: the differentiable counterpart of `generate`'s
        ``log_probs`` (equal to them at temperature 1 for the same weights). Prompts left-padded, completions
        right-padded, as `generate` makes them.
        """
        prompt_tokens = self._check_tokens(prompt_tokens, "prompt_tokens")
        prompt_mask = self._check_mask(prompt_mask, prompt_tokens.shape, "prompt_mask")
        completion_tokens = self._check_tokens(completion_tokens, "completion_tokens")
        completion_mask = self._check_mask(completion_mask, completion_tokens.shape, "completion_mask")
        if completion_tokens.shape[0] != prompt_tokens.shape[0]:
            raise ConfigError(
                f"TransformerPolicy: {completion_tokens.shape[0]} completions for "
                f"{prompt_tokens.shape[0]} prompts"
            )
        self._check_left_padded(prompt_mask)
        P = prompt_tokens.shape[1]
        out = self.log_probs(
            torch.cat([prompt_tokens, completion_tokens], 1), torch.cat([prompt_mask, completion_mask], 1)
        )
        # column t of `out` scores token t+1, so completion token j (at P + j) is column P - 1 + j
        return TokenLogProbs(out.log_probs[:, P - 1 :], out.entropy[:, P - 1 :], out.mask[:, P - 1 :])

    @staticmethod
    def _check_left_padded(prompt_mask: Tensor) -> None:
        if prompt_mask.shape[1] == 0 or not bool(prompt_mask[:, -1].all()):
            raise ConfigError(
                "TransformerPolicy: prompts must be left-padded with at least one real token "
                "(prompt_mask[:, -1] all True)"
            )
        if not bool((prompt_mask[:, 1:] >= prompt_mask[:, :-1]).all()):
            raise ConfigError("TransformerPolicy: prompt_mask must be left padding only (False… then True…)")

    # -------------------------------------------------------------------------------------- generation

    @torch.no_grad()
    def generate(
        self,
        prompt_tokens: Tensor,
        prompt_mask: Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        eos_id: int | None = None,
        pad_id: int = 0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> Completion:
        r"""Sample completions of a batch of left-padded prompts, one position at a time for the whole batch.

        Each step samples :math:`y_t \sim \text{softmax}(z_t / \tau)` restricted to the ``top_k`` largest
        logits :math:`z_t` (greedy argmax when ``temperature == 0``). A sequence stops at its first
        ``eos_id`` (kept, mask True); its later columns hold ``pad_id`` with mask False. Generation ends when
        every sequence has stopped or after ``max_new_tokens``, so ``L ≤ max_new_tokens``.

        The returned ``log_probs`` are the **raw policy's** :math:`\log\text{softmax}(z_t)[y_t]` (temperature
        1, no top-k), whatever ``temperature`` / ``top_k`` sampled the tokens: GRPO's ratio
        π_θ/π_θ_old needs the policy's own log-probs, which `completion_log_probs` recomputes with gradients.
        With the defaults (temperature 1, no top-k) they are exactly the sampling distribution's.

        With ``use_cache`` (default) the prompt is encoded once and each step runs the new token only,
        attending to the cached keys/values; ``use_cache=False`` re-runs the whole sequence every step (same
        result; for checking and timing). Runs under ``torch.no_grad()`` in eval mode (no dropout); the
        module's training mode is restored after. Seed sampling with ``generator`` (a ``torch.Generator`` on
        the model's device).

        Returns:
            `Completion` ``(tokens [B, L], mask [B, L], log_probs [B, L])``.
        """
        prompt_tokens = self._check_tokens(prompt_tokens, "prompt_tokens")
        prompt_mask = self._check_mask(prompt_mask, prompt_tokens.shape, "prompt_mask")
        self._check_left_padded(prompt_mask)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"generate: max_new_tokens must be a positive int, got {max_new_tokens!r}")
        if not float(temperature) >= 0.0:  # also refuses NaN
            raise ConfigError(f"generate: temperature must be >= 0, got {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ConfigError(f"generate: top_k must be None or a positive int, got {top_k!r}")
        for name, value in (("eos_id", eos_id), ("pad_id", pad_id)):
            if value is not None and not 0 <= value < self.config.vocab_size:
                raise ConfigError(f"generate: {name}={value} is outside 0..{self.config.vocab_size - 1}")
        n_prompt_B = prompt_mask.sum(1)
        if int(n_prompt_B.max()) + max_new_tokens > self.config.max_len:
            raise ConfigError(
                f"generate: a prompt of {int(n_prompt_B.max())} tokens + max_new_tokens={max_new_tokens} "
                f"exceeds max_len={self.config.max_len}"
            )
        was_training = self.training
        self.eval()
        try:
            sampling = (float(temperature), top_k, generator)
            return self._generate(
                prompt_tokens, prompt_mask, max_new_tokens, *sampling, eos_id, pad_id, use_cache
            )
        finally:
            self.train(was_training)

    def _generate(
        self,
        prompt_BP: Tensor,
        prompt_mask_BP: Tensor,
        L: int,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator | None,
        eos_id: int | None,
        pad_id: int,
        use_cache: bool,
    ) -> Completion:
        B, P = prompt_BP.shape
        device, dtype = prompt_BP.device, self.head.weight.dtype
        # every generated token is a real key (those after EOS feed only sequences already finished)
        key_mask_BS = torch.cat([prompt_mask_BP, torch.ones(B, L, dtype=torch.bool, device=device)], 1)
        n_prompt_B = prompt_mask_BP.sum(1)
        tokens_BL = torch.full((B, L), pad_id, dtype=torch.long, device=device)
        mask_BL = torch.zeros(B, L, dtype=torch.bool, device=device)
        logp_BL = torch.zeros(B, L, dtype=dtype, device=device)
        done_B = torch.zeros(B, dtype=torch.bool, device=device)
        cache = None
        if use_cache:
            cfg = self.config
            cache = KVCache(cfg.n_layers, B, cfg.n_heads, P + L, cfg.d_model // cfg.n_heads, self.head.weight)
            positions = positions_from_mask(prompt_mask_BP)
            logits_BV = self._run(prompt_BP, positions, _attention_mask(prompt_mask_BP, P), cache)[:, -1]
        for t in range(L):
            if not use_cache:
                seq_BT = torch.cat([prompt_BP, tokens_BL[:, :t]], 1)
                key_mask = key_mask_BS[:, : P + t]
                logits_BV = self._run(
                    seq_BT, positions_from_mask(key_mask), _attention_mask(key_mask, P + t), None
                )
                logits_BV = logits_BV[:, -1]
            token_B = _sample(logits_BV, temperature, top_k, generator)
            logp_B = logits_BV.log_softmax(-1).gather(1, token_B[:, None]).squeeze(1)
            alive_B = ~done_B
            tokens_BL[:, t] = torch.where(alive_B, token_B, pad_id)
            logp_BL[:, t] = torch.where(alive_B, logp_B, 0.0)
            mask_BL[:, t] = alive_B
            if eos_id is not None:
                done_B = done_B | (token_B == eos_id)
            if t == L - 1 or bool(done_B.all()):
                break
            if use_cache:
                positions = (n_prompt_B + t)[:, None]  # the new token follows n_prompt + t real tokens
                step_mask = key_mask_BS[:, None, None, : P + t + 1]
                logits_BV = self._run(tokens_BL[:, t : t + 1], positions, step_mask, cache)[:, -1]
        width = t + 1
        return Completion(tokens_BL[:, :width], mask_BL[:, :width], logp_BL[:, :width])

    # ------------------------------------------------------------------------------------------- specs

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable architecture description for `TransformerPolicy.from_spec`."""
        return {"type": "transformer", **asdict(self.config)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TransformerPolicy:
        """An identically-shaped (freshly initialised) policy; load the state_dict to restore weights."""
        if spec.get("type") != "transformer":
            raise ConfigError(
                f"TransformerPolicy.from_spec: spec type is {spec.get('type')!r}, not 'transformer'"
            )
        known = {f.name for f in fields(TransformerConfig)}
        unknown = sorted(set(spec) - known - {"type"})
        if unknown:
            raise ConfigError(f"TransformerPolicy.from_spec: unknown field(s) {', '.join(unknown)}")
        try:
            config = TransformerConfig(**{k: v for k, v in spec.items() if k in known})
        except TypeError as exc:  # a required field is missing
            raise ConfigError(f"TransformerPolicy.from_spec: {exc}") from None
        return cls(config)


def _sample(
    logits_BV: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> Tensor:
    """Token ids [B] drawn from softmax(logits / temperature) over the top_k logits; argmax when temperature
    is 0. Ties at the k-th largest logit keep every tied token."""
    if temperature == 0.0:
        return logits_BV.argmax(-1)
    scaled = logits_BV / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return torch.multinomial(scaled.softmax(-1), 1, generator=generator).squeeze(1)
