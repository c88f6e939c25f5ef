r"""Normalisers: observations by running mean and variance (`RunningNormalizer`), rewards by the running
standard deviation of the discounted return (`RewardScaler`, as SB3's ``VecNormalize``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pgrad.errors import ConfigError

__all__ = ["RewardScaler", "RunningNormalizer"]


class RunningNormalizer(nn.Module):
    r"""Running mean/variance of observations and the normalisation using them.

    Statistics are float64 buffers ``count`` (scalar), ``mean`` and ``var`` (population variance), all in
    the state_dict. They stay float64 even under ``.float()``/``.half()``/``.to(dtype)`` of a parent
    module. Before the first update, mean = 0 and var = 1.

    ``update(x)`` merges a batch (Chan et al. parallel algorithm): with batch count m, mean
    :math:`\bar x_b`, variance :math:`v_b`, :math:`\delta = \bar x_b - \bar x`, :math:`N = n + m`:

    .. math::
        \bar x \leftarrow \bar x + \delta\,\tfrac{m}{N}, \qquad
        v \leftarrow \frac{n v + m v_b + \delta^2 \tfrac{n m}{N}}{N}

    ``forward(x)`` = :math:`\operatorname{clamp}((x - \bar x)/\sqrt{v + \epsilon}, -c, c)`, in ``x``'s
    dtype (``eps`` floors the variance: constant features map to 0, never inf/NaN).
    There is no frozen flag: the caller decides when to call ``update``.
    """

    count: Tensor
    mean: Tensor
    var: Tensor

    def __init__(self, shape: int | Sequence[int], eps: float = 1e-8, clip: float = 10.0) -> None:
        super().__init__()
        self.shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if not (eps > 0 and clip > 0):
            raise ConfigError(f"RunningNormalizer: eps and clip must be > 0, got eps={eps}, clip={clip}")
        self.eps, self.clip = float(eps), float(clip)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(self.shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(self.shape, dtype=torch.float64))

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> RunningNormalizer:
        super()._apply(fn, recurse)
        for name in ("count", "mean", "var"):  # device moves apply, dtype casts do not
            buf = self._buffers[name]
            if buf is not None and buf.dtype != torch.float64:
                self._buffers[name] = buf.to(torch.float64)
        return self

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge a batch ``x`` of shape ``[..., *shape]`` (any number of leading dims, >= 1 element)."""
        n_event = len(self.shape)
        if tuple(x.shape[x.dim() - n_event :]) != self.shape or x.dim() < n_event:
            raise ConfigError(f"RunningNormalizer.update: expected [..., {self.shape}], got {tuple(x.shape)}")
        batch = x.detach().to(device=self.mean.device, dtype=torch.float64).reshape(-1, *self.shape)
        m = batch.shape[0]
        if m == 0:
            return
        b_mean = batch.mean(0)
        b_var = batch.var(0, unbiased=False)
        n = self.count.clone()
        total = n + m
        delta = b_mean - self.mean
        new_mean = self.mean + delta * (m / total)
        m2 = self.var * n + b_var * m + delta.square() * (n * m / total)
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        mean = self.mean.to(dtype)
        std = torch.sqrt(self.var + self.eps).to(dtype)
        return torch.clamp((x.to(dtype) - mean) / std, -self.clip, self.clip)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, eps={self.eps}, clip={self.clip}"


class RewardScaler(nn.Module):
    r"""Scale rewards by the running std of each sub-env's discounted return, as SB3's ``VecNormalize``.

    State (all registered buffers, float64, saved in the state_dict and kept float64 under dtype casts):
    ``returns`` ``[N]`` — the per-sub-env accumulator :math:`R^{(i)}` — and ``stats`` (a scalar-shaped
    `RunningNormalizer`: ``stats.count``, ``stats.mean``, ``stats.var``) — the running variance of the
    :math:`R` values seen so far, pooled over sub-envs.

    ``update_and_scale(r, terminated, truncated)`` at step :math:`t`, in this order:

    1. :math:`R^{(i)} \leftarrow \gamma R^{(i)} + r^{(i)}_t` for every sub-env :math:`i`;
    2. merge the ``N`` values :math:`R^{(i)}` into the running statistics (Chan et al., population
       variance; before the first update var = 1);
    3. :math:`\tilde r^{(i)}_t = \operatorname{clip}(r^{(i)}_t / \sqrt{\operatorname{var}(R) + \epsilon},
       -c, c)` with the *updated* variance;
    4. :math:`R^{(i)} \leftarrow 0` where ``terminated | truncated`` — after the update, so the last
       reward of an episode still counts in its return and the next episode starts from 0.

    The mean of :math:`R` is not subtracted (rewards keep their sign). ``scale(r)`` (= ``forward``) applies
    step 3 with the current statistics and changes nothing. With a single sub-env the first update gives
    var = 0, so the first reward is scaled by :math:`1/\sqrt\epsilon` and clipped (as in SB3); constant zero
    rewards give var = 0 and output 0.

    Args:
        num_envs: N, the number of sub-environments.
        gamma: discount in [0, 1] (use the algorithm's γ).
        eps: added to the variance, > 0.
        clip: output bound, > 0.
    """

    returns: Tensor

    def __init__(self, num_envs: int, gamma: float, eps: float = 1e-8, clip: float = 10.0) -> None:
        super().__init__()
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"RewardScaler: num_envs must be an int >= 1, got {num_envs!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
            raise ConfigError(f"RewardScaler: gamma must be in [0, 1], got {gamma!r}")
        if not (eps > 0 and clip > 0):
            raise ConfigError(f"RewardScaler: eps and clip must be > 0, got eps={eps}, clip={clip}")
        self.num_envs = int(num_envs)
        self.gamma = float(gamma)
        self.eps, self.clip = float(eps), float(clip)
        self.stats = RunningNormalizer((), eps=self.eps, clip=self.clip)
        self.register_buffer("returns", torch.zeros(self.num_envs, dtype=torch.float64))

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> RewardScaler:
        super()._apply(fn, recurse)
        buf = self._buffers["returns"]
        if buf is not None and buf.dtype != torch.float64:  # device moves apply, dtype casts do not
            self._buffers["returns"] = buf.to(torch.float64)
        return self

    def _vector(self, x: Any, what: str, boolean: bool = False) -> Tensor:
        t = torch.as_tensor(x, device=self.returns.device)
        if tuple(t.shape) != (self.num_envs,):
            raise ConfigError(f"RewardScaler: {what} must have shape [{self.num_envs}], got {tuple(t.shape)}")
        if boolean:
            return t.to(torch.bool)
        return t

    @property
    def std(self) -> Tensor:
        """Current divisor :math:`\\sqrt{\\operatorname{var}(R) + \\epsilon}` (float64 scalar)."""
        return torch.sqrt(self.stats.var + self.eps)

    def scale(self, rewards: Any) -> Tensor:
        """Scaled rewards ``[N]`` with the current statistics; no buffer changes (evaluation / after loading).

        Returns ``rewards``' dtype if floating, else the default dtype.
        """
        r = self._vector(rewards, "rewards")
        dtype = r.dtype if r.is_floating_point() else torch.get_default_dtype()
        out = torch.clamp(r.to(torch.float64) / self.std, -self.clip, self.clip)
        return out.to(dtype)

    def forward(self, rewards: Any) -> Tensor:
        return self.scale(rewards)

    @torch.no_grad()
    def update_and_scale(self, rewards: Any, terminated: Any, truncated: Any) -> Tensor:
        """Update the returns and statistics with one vector step, then scale (order in the class doc)."""
        r = self._vector(rewards, "rewards")
        done = self._vector(terminated, "terminated", True) | self._vector(truncated, "truncated", True)
        self.returns.mul_(self.gamma).add_(r.to(torch.float64))
        self.stats.update(self.returns)
        out = self.scale(r)
        self.returns.masked_fill_(done, 0.0)
        return out

    @torch.no_grad()
    def reset_returns(self, mask: Any = None) -> None:
        """Zero the return accumulator of every sub-env (``mask=None``) or of those where ``mask`` is True."""
        if mask is None:
            self.returns.zero_()
        else:
            self.returns.masked_fill_(self._vector(mask, "mask", True), 0.0)

    def extra_repr(self) -> str:
        return f"num_envs={self.num_envs}, gamma={self.gamma}, eps={self.eps}, clip={self.clip}"
