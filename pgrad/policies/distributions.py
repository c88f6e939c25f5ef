"""Policy heads: small modules mapping a feature vector to a `torch.distributions.Distribution` over actions.

A head maps features ``[B, F]`` to a distribution whose ``sample()`` lives in the head's *sample space*:
the thing a rollout stores and later passes back to ``log_prob``. ``to_env_action(sample)`` turns a sample
into the action the environment receives. Per head:

=============  =====================================  =======================  ========================
head           distribution                           sample (dtype, shape)    to_env_action
=============  =====================================  =======================  ========================
categorical    ``Categorical(logits)``                int64 ``[B]`` in 0..n-1  ``index + start``
diag_gaussian  ``Independent(Normal(mu, sigma), 1)``  float ``[B, D]`` in R^D  clip to finite bounds
tanh_gaussian  `TanhGaussian` (squashed Gaussian)     float ``[B, D]`` in box  identity
deterministic  `Deterministic` (point mass)           float ``[B, D]`` in box  identity
discretised    ``Independent(Categorical(l), 1)``     int64 ``[B, D]`` bins    bin centre (float)
=============  =====================================  =======================  ========================

Every distribution returned by a head has ``sample()``, ``log_prob(sample)`` of shape ``[B]`` (summed over
action dimensions), ``entropy()`` of shape ``[B]`` and a ``mode`` property (the deterministic action, in
sample space). Exceptions: `TanhGaussian.entropy` is a single-sample Monte-Carlo estimate (no closed
form), and `Deterministic.log_prob` raises `ConfigError`.

Heads are device- and dtype-agnostic: their bounds are non-persistent buffers, so ``.to(device)`` and
``.double()`` move/cast them with the parameters, and they are *not* in the ``state_dict`` (they are in
``spec()``, which together with the state_dict rebuilds the head: ``head_from_spec(spec, in_features)``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal, constraints

from pgrad.errors import ConfigError

__all__ = [
    "HEAD_KINDS",
    "CategoricalHead",
    "Deterministic",
    "DeterministicHead",
    "DiagGaussianHead",
    "DiscretisedHead",
    "PolicyHead",
    "TanhGaussian",
    "TanhGaussianHead",
    "bounded_log_std",
    "head_from_spec",
    "log1m_tanh_sq",
    "make_head",
]

DEFAULT_LOG_STD_MIN = -5.0
DEFAULT_LOG_STD_MAX = 2.0
DEFAULT_OUTPUT_GAIN = 0.01

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_NO_SHAPE = torch.Size()


# ---------------------------------------------------------------------------------------------------------
# helpers


def bounded_log_std(raw: Tensor, log_std_min: float, log_std_max: float) -> Tensor:
    r"""Softly bound an unconstrained value into ``[log_std_min, log_std_max]``.

    .. math:: \log\sigma = l + \tfrac12 (h - l)(\tanh(x) + 1)

    Smooth, monotone, and saturating: for any finite (even huge, e.g. ±1e4) ``x`` the result stays in
    ``[l, h]``, so σ can neither collapse to 0 nor overflow.
    """
    return log_std_min + 0.5 * (log_std_max - log_std_min) * (torch.tanh(raw) + 1.0)


def _raw_for_log_std(log_std: float, log_std_min: float, log_std_max: float) -> float:
    """Inverse of `bounded_log_std`: the raw value x with bounded_log_std(x) == log_std."""
    return math.atanh(2.0 * (log_std - log_std_min) / (log_std_max - log_std_min) - 1.0)


def log1m_tanh_sq(u: Tensor) -> Tensor:
    r"""Numerically stable :math:`\log(1 - \tanh^2 u) = 2(\log 2 - u - \operatorname{softplus}(-2u))`.

    Finite for every finite ``u`` (unlike ``log(1 - tanh(u)**2)``, which is ``-inf`` once
    ``tanh(u)`` rounds to ±1, i.e. ``|u| ≳ 9`` in float32).
    """
    return 2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))


def _init_linear(layer: nn.Linear, gain: float, bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def _as_bounds(low: Any, high: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate low/high into two float64 1-D arrays of equal length D >= 1 (None in a list = unbounded)."""

    def conv(x: Any, default: float) -> np.ndarray:
        if isinstance(x, Tensor):
            x = x.detach().cpu().numpy()
        if isinstance(x, (list, tuple)):
            x = [default if v is None else v for v in x]
        return np.asarray(x, dtype=np.float64)

    lo, hi = conv(low, -math.inf), conv(high, math.inf)
    if lo.ndim != 1 or hi.ndim != 1 or lo.shape != hi.shape or lo.shape[0] < 1:
        raise ConfigError(
            f"{what}: low/high must be 1-D of equal length >= 1, got shapes {lo.shape}, {hi.shape}"
        )
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise ConfigError(f"{what}: low/high contain NaN")
    if (lo > hi).any():
        raise ConfigError(f"{what}: low > high in dims {np.nonzero(lo > hi)[0].tolist()}")
    return lo, hi


def _require_finite(lo: np.ndarray, hi: np.ndarray, what: str) -> None:
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ConfigError(f"{what}: needs finite action bounds, got low={lo.tolist()} high={hi.tolist()}")
    if not (hi > lo).all():
        raise ConfigError(f"{what}: needs high > low in every dim, got low={lo.tolist()} high={hi.tolist()}")


def _bounds_to_json(x: np.ndarray) -> list[float | None]:
    """JSON-safe bounds: infinite entries become None (low None = -inf, high None = +inf)."""
    return [float(v) if math.isfinite(v) else None for v in x.tolist()]


def _check_log_std_options(what: str, log_std_min: float, log_std_max: float, init_std: float) -> None:
    if not (math.isfinite(log_std_min) and math.isfinite(log_std_max) and log_std_min < log_std_max):
        raise ConfigError(f"{what}: need finite log_std_min < log_std_max, got {log_std_min}, {log_std_max}")
    if not (init_std > 0 and log_std_min < math.log(init_std) < log_std_max):
        raise ConfigError(
            f"{what}: init_std={init_std} must satisfy exp(log_std_min) < init_std < exp(log_std_max) "
            f"= ({math.exp(log_std_min):.4g}, {math.exp(log_std_max):.4g})"
        )


# ---------------------------------------------------------------------------------------------------------
# distributions


class TanhGaussian(Distribution):
    r"""Squashed Gaussian on the box ``[low, high]^D`` (the SAC policy distribution).

    .. math::
        u \sim \mathcal N(\mu, \operatorname{diag}\sigma^2), \qquad a = c + s \odot \tanh(u),
        \qquad c = \tfrac{high + low}{2},\ s = \tfrac{high - low}{2}

    .. math::
        \log\pi(a) = \log\mathcal N(u;\mu,\sigma)
            - \sum_d \big[\log(1 - \tanh^2 u_d) + \log s_d\big],
        \qquad u = \operatorname{atanh}\big(\operatorname{clamp}(\tfrac{a - c}{s},\,
            -1+\epsilon,\, 1-\epsilon)\big)

    with :math:`\log(1-\tanh^2 u)` evaluated as ``2(log 2 − u − softplus(−2u))`` (`log1m_tanh_sq`).

    **eps**: ``torch.finfo(dtype).eps`` of the sample dtype (float32: 2**-23 ≈ 1.19e-7, float64: 2**-52 ≈
    2.2e-16). ``1 − eps`` is exactly representable and < 1 in that dtype, so samples lying exactly on a bound
    recover a finite ``u`` (≈ 8.3 in float32, ≈ 18.4 in float64) and get a finite log-prob with finite
    gradients; the price is that log-probs of samples within ~eps of a bound are evaluated at the clamped u.

    Batch shape ``mu.shape[:-1]``, event shape ``mu.shape[-1:]``; ``log_prob`` sums over the event dim.
    Samples are additionally clamped into ``[low, high]`` so floating rounding of ``c + s·tanh(u)`` can never
    leave the box.

    ``cache_pre_tanh=True`` stores the pre-tanh ``u`` of the last ``rsample``/``sample`` and uses it when
    ``log_prob`` is given *that same tensor object* (exact even for saturated samples). Off by default:
    with the cache, a saturated sample's log-prob computed now differs from the one recomputed later from the
    stored action (u clamped), which biases PPO-style ratios; without it, ``log_prob(a)`` is a function of
    ``a`` only. Any other ``a`` always goes through the atanh path.

    ``entropy()`` has no closed form: it returns the single-sample, reparameterised estimate
    :math:`-\log\pi(\tilde a)`, :math:`\tilde a` from ``rsample`` (unbiased, differentiable, noisy).
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "mu": constraints.real,
        "sigma": constraints.positive,
    }
    has_rsample = True

    def __init__(
        self,
        mu: Tensor,
        sigma: Tensor,
        low: Tensor,
        high: Tensor,
        cache_pre_tanh: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        if mu.dim() < 1:
            raise ConfigError("TanhGaussian: mu must have an event dimension [..., D]")
        self.mu, self.sigma = torch.broadcast_tensors(mu, sigma)
        self.low = low.to(self.mu)
        self.high = high.to(self.mu)
        self.loc = (self.high + self.low) / 2
        self.scale = (self.high - self.low) / 2
        self.cache_pre_tanh = cache_pre_tanh
        self._cache: tuple[Tensor, Tensor] | None = None
        super().__init__(self.mu.shape[:-1], self.mu.shape[-1:], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    @property
    def eps(self) -> float:
        """Clamp margin of (a − c)/s inside (−1, 1): ``torch.finfo(dtype).eps``."""
        return torch.finfo(self.mu.dtype).eps

    def _squash(self, u: Tensor) -> Tensor:
        return torch.clamp(self.loc + self.scale * torch.tanh(u), min=self.low, max=self.high)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = _NO_SHAPE) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        noise = torch.randn(shape, dtype=self.mu.dtype, device=self.mu.device)
        u = self.mu + self.sigma * noise
        a = self._squash(u)
        if self.cache_pre_tanh:
            self._cache = (a, u)
        return a

    def sample(self, sample_shape: torch.Size | Sequence[int] = _NO_SHAPE) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def sample_with(self, noise: Tensor) -> Tensor:
        """The action c + s·tanh(μ + σ·noise) for given standard-normal `noise` (e.g. colored exploration
        noise instead of independent draws); differentiable like `rsample`."""
        return self._squash(self.mu + self.sigma * noise.to(self.mu))

    def pre_tanh(self, value: Tensor) -> Tensor:
        """The pre-squash ``u`` of an action: the cached one for the last sample, else clamped atanh."""
        if self._cache is not None and value is self._cache[0]:
            return self._cache[1]
        eps = torch.finfo(value.dtype).eps if value.is_floating_point() else self.eps
        y = ((value - self.loc) / self.scale).clamp(-1.0 + eps, 1.0 - eps)
        return torch.atanh(y)

    def _log_prob_u(self, u: Tensor) -> Tensor:
        z = (u - self.mu) / self.sigma
        log_normal = -0.5 * z * z - torch.log(self.sigma) - _HALF_LOG_2PI
        log_det = log1m_tanh_sq(u) + torch.log(self.scale)
        return (log_normal - log_det).sum(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        return self._log_prob_u(self.pre_tanh(value))

    def entropy(self) -> Tensor:
        """Single-sample estimate ``-log π(ã)``, ``ã ~ rsample()`` (no closed form); shape = batch shape."""
        noise = torch.randn(self.mu.shape, dtype=self.mu.dtype, device=self.mu.device)
        return -self._log_prob_u(self.mu + self.sigma * noise)

    @property
    def mode(self) -> Tensor:
        """Deterministic action ``c + s·tanh(μ)`` (the squashed Gaussian mode's usual surrogate)."""
        return self._squash(self.mu)

    def __repr__(self) -> str:
        return f"TanhGaussian(batch_shape={tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)})"


class Deterministic(Distribution):
    """Point mass at ``action`` (``[..., D]``): sample/rsample/mode/mean return it, entropy is 0.

    ``log_prob`` raises `ConfigError`: a deterministic policy has no density, so score-function (REINFORCE,
    PPO, …) estimators cannot use it. ``rsample`` keeps the graph (for DDPG/TD3 actor updates).
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    has_rsample = True

    def __init__(self, action: Tensor, validate_args: bool | None = None) -> None:
        if action.dim() < 1:
            raise ConfigError("Deterministic: action must have an event dimension [..., D]")
        self.action = action
        super().__init__(action.shape[:-1], action.shape[-1:], validate_args=validate_args)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = _NO_SHAPE) -> Tensor:
        return self.action.expand(self._extended_shape(torch.Size(sample_shape)))

    def sample(self, sample_shape: torch.Size | Sequence[int] = _NO_SHAPE) -> Tensor:
        return self.rsample(sample_shape).detach()

    def log_prob(self, value: Tensor) -> Tensor:
        raise ConfigError(
            "deterministic policy has no log-probability; use a stochastic head for score-function methods"
        )

    def entropy(self) -> Tensor:
        return torch.zeros(self.batch_shape, dtype=self.action.dtype, device=self.action.device)

    @property
    def mode(self) -> Tensor:
        return self.action

    @property
    def mean(self) -> Tensor:
        return self.action

    @property
    def variance(self) -> Tensor:
        return torch.zeros_like(self.action)

    def __repr__(self) -> str:
        return f"Deterministic(batch_shape={tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)})"


# ---------------------------------------------------------------------------------------------------------
# heads


class PolicyHead(nn.Module):
    """Base class of policy heads: features ``[B, F]`` → action distribution.

    Attributes:
        kind: the head's name in `make_head` / specs.
        in_features: F.
        sample_shape: per-observation shape of a sample (``()`` for categorical, ``(D,)`` otherwise).
        discrete: whether samples are int64 indices (categorical, discretised) rather than floats in the
            module's dtype.
    """

    kind: ClassVar[str] = ""
    in_features: int
    sample_shape: tuple[int, ...]
    discrete: bool

    def forward(self, features: Tensor) -> Distribution:  # pragma: no cover - abstract
        """The action distribution for features ``[B, F]`` (batch shape ``[B]``)."""
        raise NotImplementedError

    def to_env_action(self, sample: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Map a sample (as stored in a rollout / passed to log_prob) to the action the env receives."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """JSON-serialisable description; ``head_from_spec(spec, in_features)`` rebuilds the same head."""
        raise NotImplementedError

    @classmethod
    def _from_spec(cls, spec: Mapping[str, Any], in_features: int) -> PolicyHead:
        args = {k: v for k, v in spec.items() if k != "kind"}
        return cls(in_features, **args)


class CategoricalHead(PolicyHead):
    r"""Head for ``Discrete(n, start)``: :math:`\pi = \mathrm{softmax}(\text{logits})`, logits = Linear(x).

    Sample: int64 index in ``0..n-1`` of shape ``[B]``; ``to_env_action`` adds ``start``; mode = argmax.
    """

    kind = "categorical"

    def __init__(self, in_features: int, n: int, start: int = 0, *, output_gain: float = DEFAULT_OUTPUT_GAIN):
        super().__init__()
        if int(n) < 1:
            raise ConfigError(f"CategoricalHead: n must be >= 1, got {n}")
        self.in_features, self.n, self.start = int(in_features), int(n), int(start)
        self.output_gain = float(output_gain)
        self.sample_shape, self.discrete = (), True
        self.logits = _init_linear(nn.Linear(self.in_features, self.n), self.output_gain)

    def forward(self, features: Tensor) -> Categorical:
        return Categorical(logits=self.logits(features), validate_args=False)

    def to_env_action(self, sample: Tensor) -> Tensor:
        return sample.long() + self.start

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "start": self.start, "output_gain": self.output_gain}


class _BoxHead(PolicyHead):
    """Shared bookkeeping of the Box heads: bounds as non-persistent buffers ``low``/``high`` [D]."""

    def _setup_bounds(self, in_features: int, low: Any, high: Any) -> None:
        lo, hi = _as_bounds(low, high, type(self).__name__)
        self.in_features = int(in_features)
        self.action_dim = int(lo.shape[0])
        self._low_np, self._high_np = lo, hi
        dtype = torch.get_default_dtype()
        self.register_buffer("low", torch.as_tensor(lo, dtype=dtype), persistent=False)
        self.register_buffer("high", torch.as_tensor(hi, dtype=dtype), persistent=False)

    def _bounds_spec(self) -> dict[str, Any]:
        return {"low": _bounds_to_json(self._low_np), "high": _bounds_to_json(self._high_np)}


class _GaussianHead(_BoxHead):
    """Mean Linear plus bounded log-std (state-independent parameter or state-dependent Linear)."""

    def __init__(
        self,
        in_features: int,
        low: Any,
        high: Any,
        *,
        state_dependent_std: bool,
        init_std: float,
        log_std_min: float,
        log_std_max: float,
        output_gain: float,
    ):
        super().__init__()
        self._setup_bounds(in_features, low, high)
        _check_log_std_options(type(self).__name__, log_std_min, log_std_max, init_std)
        self.state_dependent_std = bool(state_dependent_std)
        self.init_std, self.log_std_min, self.log_std_max = (
            float(init_std),
            float(log_std_min),
            float(log_std_max),
        )
        self.output_gain = float(output_gain)
        self.sample_shape, self.discrete = (self.action_dim,), False
        self.mean_layer = _init_linear(nn.Linear(self.in_features, self.action_dim), self.output_gain)
        raw = _raw_for_log_std(math.log(self.init_std), self.log_std_min, self.log_std_max)
        if self.state_dependent_std:
            self.log_std_layer = _init_linear(
                nn.Linear(self.in_features, self.action_dim), self.output_gain, raw
            )
        else:
            self.raw_log_std = nn.Parameter(torch.full((self.action_dim,), raw))

    def log_std(self, features: Tensor) -> Tensor:
        """Bounded log σ in ``[log_std_min, log_std_max]``, shape [B, D] (broadcast if state-independent)."""
        raw = self.log_std_layer(features) if self.state_dependent_std else self.raw_log_std
        log_std = bounded_log_std(raw, self.log_std_min, self.log_std_max)
        return log_std.expand(*features.shape[:-1], self.action_dim)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **self._bounds_spec(),
            "state_dependent_std": self.state_dependent_std,
            "init_std": self.init_std,
            "log_std_min": self.log_std_min,
            "log_std_max": self.log_std_max,
            "output_gain": self.output_gain,
        }


class DiagGaussianHead(_GaussianHead):
    r"""Diagonal Gaussian for Box actions: :math:`\pi(\cdot|x) = \mathcal N(\mu(x), \mathrm{diag}\,\sigma^2)`.

    :math:`\mu` = Linear(features) (``mean_layer``). :math:`\log\sigma` = `bounded_log_std` of either a
    state-independent parameter ``raw_log_std`` [D] (``state_dependent_std=False``, default) or a second
    Linear ``log_std_layer``; it always lies in ``[log_std_min, log_std_max]``. Initially σ = ``init_std``
    (exactly for the parameter; through the bias, up to the small weight init, for the layer).

    Distribution: ``Independent(Normal(mu, sigma), 1)``; sample space = unbounded R^D (float [B, D]);
    ``to_env_action`` clips to the Box where bounds are finite; mode = μ. Bounds may be infinite.
    """

    kind = "diag_gaussian"

    def __init__(
        self,
        in_features: int,
        low: Any,
        high: Any,
        *,
        state_dependent_std: bool = False,
        init_std: float = 1.0,
        log_std_min: float = DEFAULT_LOG_STD_MIN,
        log_std_max: float = DEFAULT_LOG_STD_MAX,
        output_gain: float = DEFAULT_OUTPUT_GAIN,
    ):
        super().__init__(
            in_features,
            low,
            high,
            state_dependent_std=state_dependent_std,
            init_std=init_std,
            log_std_min=log_std_min,
            log_std_max=log_std_max,
            output_gain=output_gain,
        )

    def forward(self, features: Tensor) -> Independent:
        mean = self.mean_layer(features)
        return Independent(
            Normal(mean, self.log_std(features).exp(), validate_args=False), 1, validate_args=False
        )

    def to_env_action(self, sample: Tensor) -> Tensor:
        return torch.clamp(sample, min=self.low.to(sample), max=self.high.to(sample))


class TanhGaussianHead(_GaussianHead):
    r"""Squashed Gaussian for a Box with finite bounds: `TanhGaussian` with :math:`\mu` and bounded σ as in
    `DiagGaussianHead`. ``state_dependent_std`` defaults to True here (SAC convention).

    Sample space = the env action space (float [B, D] inside ``[low, high]``); ``to_env_action`` is the
    identity; mode = ``c + s·tanh(μ)``. ``cache_pre_tanh`` is passed to `TanhGaussian` (default off).
    """

    kind = "tanh_gaussian"

    def __init__(
        self,
        in_features: int,
        low: Any,
        high: Any,
        *,
        state_dependent_std: bool = True,
        init_std: float = 1.0,
        log_std_min: float = DEFAULT_LOG_STD_MIN,
        log_std_max: float = DEFAULT_LOG_STD_MAX,
        output_gain: float = DEFAULT_OUTPUT_GAIN,
        cache_pre_tanh: bool = False,
    ):
        lo, hi = _as_bounds(low, high, type(self).__name__)
        _require_finite(lo, hi, type(self).__name__)
        super().__init__(
            in_features,
            lo,
            hi,
            state_dependent_std=state_dependent_std,
            init_std=init_std,
            log_std_min=log_std_min,
            log_std_max=log_std_max,
            output_gain=output_gain,
        )
        self.cache_pre_tanh = bool(cache_pre_tanh)

    def forward(self, features: Tensor) -> TanhGaussian:
        mean = self.mean_layer(features)
        std = self.log_std(features).exp()
        # validate_args=False like the other heads: σ > 0 by construction, and the check costs a host sync
        return TanhGaussian(
            mean, std, self.low, self.high, cache_pre_tanh=self.cache_pre_tanh, validate_args=False
        )

    def to_env_action(self, sample: Tensor) -> Tensor:
        return sample

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "cache_pre_tanh": self.cache_pre_tanh}


class DeterministicHead(_BoxHead):
    r"""Deterministic Box policy (DDPG/TD3): :math:`a = c + s\tanh(\text{Linear}(x))` per dim with finite
    bounds, the raw Linear output (clamped to a one-sided bound if any) otherwise.

    Returns a `Deterministic` distribution (no log-prob, entropy 0). Sample space = env action space;
    ``to_env_action`` is the identity.
    """

    kind = "deterministic"

    def __init__(self, in_features: int, low: Any, high: Any, *, output_gain: float = DEFAULT_OUTPUT_GAIN):
        super().__init__()
        self._setup_bounds(in_features, low, high)
        self.output_gain = float(output_gain)
        self.sample_shape, self.discrete = (self.action_dim,), False
        self.action_layer = _init_linear(nn.Linear(self.in_features, self.action_dim), self.output_gain)
        finite = np.isfinite(self._low_np) & np.isfinite(self._high_np)
        self.register_buffer("squashed", torch.as_tensor(finite), persistent=False)

    def forward(self, features: Tensor) -> Deterministic:
        raw = self.action_layer(features)
        loc = torch.where(self.squashed, (self.high + self.low) / 2, 0.0)
        scale = torch.where(self.squashed, (self.high - self.low) / 2, 1.0)
        squashed = loc + scale * torch.tanh(raw)
        action = torch.where(self.squashed, squashed, raw)
        return Deterministic(torch.clamp(action, min=self.low, max=self.high), validate_args=False)

    def to_env_action(self, sample: Tensor) -> Tensor:
        return sample

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._bounds_spec(), "output_gain": self.output_gain}


class DiscretisedHead(_BoxHead):
    r"""Box actions discretised into K bins per dimension, factorised over dimensions:
    :math:`\pi(i|x) = \prod_d \mathrm{softmax}(\text{logits}_d(x))_{i_d}`.

    Linear → logits ``[B, D, K]``; ``Independent(Categorical(logits), 1)``. Sample = int64 bin indices
    ``[B, D]``; ``to_env_action`` = bin centre ``low + (high − low)·i/(K − 1)`` (bins include both bounds,
    computed as ``low·(1 − t) + high·t`` so the end bins are exactly the bounds); mode = per-dim argmax.
    Requires finite bounds and ``bins >= 2``.
    """

    kind = "discretised"

    def __init__(
        self,
        in_features: int,
        low: Any,
        high: Any,
        *,
        bins: int = 11,
        output_gain: float = DEFAULT_OUTPUT_GAIN,
    ):
        super().__init__()
        self._setup_bounds(in_features, low, high)
        _require_finite(self._low_np, self._high_np, type(self).__name__)
        if isinstance(bins, bool) or int(bins) != bins or bins < 2:
            raise ConfigError(f"DiscretisedHead: bins must be an integer >= 2, got {bins!r}")
        self.bins = int(bins)
        self.output_gain = float(output_gain)
        self.sample_shape, self.discrete = (self.action_dim,), True
        self.logits = _init_linear(nn.Linear(self.in_features, self.action_dim * self.bins), self.output_gain)

    def forward(self, features: Tensor) -> Independent:
        logits = self.logits(features).unflatten(-1, (self.action_dim, self.bins))
        return Independent(Categorical(logits=logits, validate_args=False), 1, validate_args=False)

    def to_env_action(self, sample: Tensor) -> Tensor:
        t = sample.to(self.low.dtype) / (self.bins - 1)
        return torch.clamp(self.low * (1.0 - t) + self.high * t, min=self.low, max=self.high)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._bounds_spec(), "bins": self.bins, "output_gain": self.output_gain}


# ---------------------------------------------------------------------------------------------------------
# factory

HEAD_KINDS: dict[str, type[PolicyHead]] = {
    cls.kind: cls
    for cls in (CategoricalHead, DiagGaussianHead, TanhGaussianHead, DeterministicHead, DiscretisedHead)
}
_BOX_KINDS = ("diag_gaussian", "tanh_gaussian", "deterministic", "discretised")


def _options_of(cls: type[PolicyHead]) -> set[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def make_head(action_space: spaces.Space, in_features: int, kind: str = "auto", **options: Any) -> PolicyHead:
    """Build the policy head for a gymnasium action space.

    Args:
        action_space: ``Discrete(n, start)`` or a 1-D ``Box``; anything else raises `ConfigError`.
        in_features: size F of the feature vector the head receives.
        kind: ``"auto"`` (Discrete → categorical, Box → diag_gaussian), ``"categorical"``,
            ``"diag_gaussian"``, ``"tanh_gaussian"``, ``"deterministic"`` or ``"discretised"``.
        **options: keyword options of the head class (e.g. ``init_std``, ``state_dependent_std``,
            ``log_std_min``, ``log_std_max``, ``bins``, ``output_gain``, ``cache_pre_tanh``); unknown options
            raise `ConfigError`.
    """
    if kind != "auto" and kind not in HEAD_KINDS:
        raise ConfigError(f"unknown policy head kind {kind!r} (choose from auto, {', '.join(HEAD_KINDS)})")
    if isinstance(action_space, spaces.Discrete):
        kind = "categorical" if kind == "auto" else kind
        if kind != "categorical":
            raise ConfigError(f"policy head {kind!r} needs a Box action space, got {action_space}")
        args: dict[str, Any] = {"n": int(action_space.n), "start": int(action_space.start)}
    elif isinstance(action_space, spaces.Box):
        if len(action_space.shape) != 1 or action_space.shape[0] < 1:
            raise ConfigError(
                f"unsupported action space {action_space} for a policy head (Box actions must be 1-D vectors)"
            )
        kind = "diag_gaussian" if kind == "auto" else kind
        if kind not in _BOX_KINDS:
            raise ConfigError(f"policy head {kind!r} needs a Discrete action space, got {action_space}")
        args = {"low": action_space.low, "high": action_space.high}
    else:
        raise ConfigError(
            f"unsupported action space {action_space} for a policy head (supported: Discrete, 1-D Box)"
        )
    cls = HEAD_KINDS[kind]
    unknown = sorted(set(options) - _options_of(cls))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for policy head {kind!r} "
            f"(allowed: {', '.join(sorted(_options_of(cls)))})"
        )
    try:
        return cls(int(in_features), **args, **options)
    except ConfigError as e:
        raise ConfigError(f"{e} (action space {action_space})") from None


def head_from_spec(spec: Mapping[str, Any], in_features: int) -> PolicyHead:
    """Rebuild a head from ``head.spec()`` (then ``load_state_dict`` restores its weights)."""
    kind = spec.get("kind") if isinstance(spec, Mapping) else None
    if kind not in HEAD_KINDS:
        raise ConfigError(f"policy head spec has unknown kind {kind!r} (choose from {', '.join(HEAD_KINDS)})")
    cls = HEAD_KINDS[kind]
    try:
        return cls._from_spec(spec, int(in_features))
    except TypeError as e:
        raise ConfigError(f"invalid policy head spec for {kind!r}: {e}") from None
