"""Networks: MLP builder, stochastic/deterministic policies, value and action-value functions.

``Policy``: obs → optional `RunningNormalizer` → MLP trunk → policy head (`pgrad.policies.distributions`).
``ValueNetwork``: obs → optional `RunningNormalizer` → MLP → scalar. Both have ``spec()`` (JSON) and
``from_spec(spec)``; ``from_spec(m.spec())`` followed by ``load_state_dict(m.state_dict())`` reproduces ``m``
exactly (normaliser statistics included: they are buffers in the state_dict).

Observations are cast to the module's floating dtype and must be flat vectors ``[..., obs_dim]``.
The normaliser is never updated implicitly: call ``module.normalizer.update(obs)`` when appropriate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Distribution

from pgrad.errors import ConfigError
from pgrad.policies.distributions import PolicyHead, head_from_spec, make_head
from pgrad.policies.normalizers import RunningNormalizer

__all__ = ["ACTIVATIONS", "ActorCritic", "Policy", "QNetwork", "ValueNetwork", "mlp"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


def _check_sizes(hidden_sizes: Sequence[int], what: str) -> tuple[int, ...]:
    if isinstance(hidden_sizes, (str, bytes)) or not isinstance(hidden_sizes, Sequence):
        raise ConfigError(f"{what}: hidden_sizes must be a sequence of ints, got {hidden_sizes!r}")
    sizes = tuple(hidden_sizes)
    if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in sizes):
        raise ConfigError(f"{what}: hidden_sizes must be positive ints, got {list(sizes)}")
    return sizes


def mlp(
    in_features: int,
    hidden_sizes: Sequence[int],
    out_features: int | None = None,
    activation: str = "tanh",
    layer_norm: bool = False,
    *,
    hidden_gain: float = math.sqrt(2.0),
    output_gain: float = 1.0,
) -> nn.Sequential:
    r"""Multi-layer perceptron ``[Linear → (LayerNorm) → act] × len(hidden_sizes) → (Linear)``.

    Hidden layers: orthogonal weights with gain ``hidden_gain`` (√2, the usual PG choice), zero biases.
    The output Linear (only when ``out_features`` is given) uses gain ``output_gain``. With no hidden
    layers and no output the result is an empty Sequential (identity).

    Args:
        activation: ``"tanh"``, ``"relu"``, ``"elu"`` or ``"silu"``.
        layer_norm: insert ``LayerNorm`` after each hidden Linear (before the activation).
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"mlp: unknown activation {activation!r} (choose from {', '.join(ACTIVATIONS)})")
    sizes = _check_sizes(hidden_sizes, "mlp")
    if int(in_features) < 1:
        raise ConfigError(f"mlp: in_features must be >= 1, got {in_features}")
    layers: list[nn.Module] = []
    last = int(in_features)
    for h in sizes:
        linear = nn.Linear(last, h)
        nn.init.orthogonal_(linear.weight, gain=hidden_gain)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(ACTIVATIONS[activation]())
        last = h
    if out_features is not None:
        if int(out_features) < 1:
            raise ConfigError(f"mlp: out_features must be >= 1, got {out_features}")
        linear = nn.Linear(last, int(out_features))
        nn.init.orthogonal_(linear.weight, gain=output_gain)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
    return nn.Sequential(*layers)


def _float_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _require(spec: Mapping[str, Any], key: str, what: str) -> Any:
    if not isinstance(spec, Mapping) or key not in spec:
        raise ConfigError(f"{what} spec is missing {key!r}")
    return spec[key]


class Policy(nn.Module):
    """Policy network: obs ``[B, obs_dim]`` → (normaliser) → MLP trunk → head → action distribution.

    Args:
        obs_dim: length of the flat observation vector.
        action_space: gymnasium ``Discrete`` or 1-D ``Box``; may be None when ``head`` is a head spec.
        hidden_sizes: trunk widths; ``()`` feeds the (normalised) observation straight to the head.
        activation: trunk activation (see `mlp`).
        head: a head kind for `make_head` (``"auto"``, ``"categorical"``, ``"diag_gaussian"``,
            ``"tanh_gaussian"``, ``"deterministic"``, ``"discretised"``) or a head spec dict
            (from ``PolicyHead.spec()``).
        normalize_obs: put a `RunningNormalizer` (``self.normalizer``) before the trunk; None otherwise.
        layer_norm: LayerNorm in the trunk's hidden layers.
        **head_options: forwarded to `make_head` (e.g. ``init_std``, ``bins``, ``state_dependent_std``).

    Trunk: orthogonal init gain √2; head output layer: orthogonal gain 0.01 (head option ``output_gain``).
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: spaces.Space | None,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        head: str | Mapping[str, Any] = "auto",
        normalize_obs: bool = False,
        layer_norm: bool = False,
        **head_options: Any,
    ) -> None:
        super().__init__()
        if isinstance(obs_dim, bool) or int(obs_dim) != obs_dim or obs_dim < 1:
            raise ConfigError(f"Policy: obs_dim must be an int >= 1, got {obs_dim!r}")
        self.obs_dim = int(obs_dim)
        self.hidden_sizes = _check_sizes(hidden_sizes, "Policy")
        self.activation = activation
        self.layer_norm = bool(layer_norm)
        self.normalizer = RunningNormalizer(self.obs_dim) if normalize_obs else None
        self.trunk = mlp(self.obs_dim, self.hidden_sizes, None, activation, self.layer_norm)
        features = self.hidden_sizes[-1] if self.hidden_sizes else self.obs_dim
        if isinstance(head, Mapping):
            if head_options:
                raise ConfigError(
                    f"Policy: head options {sorted(head_options)} given together with a head spec"
                )
            self.head: PolicyHead = head_from_spec(head, features)
        else:
            if action_space is None:
                raise ConfigError("Policy: action_space is required unless head is a head spec")
            self.head = make_head(action_space, features, head, **head_options)

    def features(self, obs: Tensor) -> Tensor:
        """Trunk output for observations ``[..., obs_dim]`` (cast to the module's dtype, normalised)."""
        obs = obs.to(_float_dtype(self))
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        return self.trunk(obs)

    def distribution(self, obs: Tensor) -> Distribution:
        """Action distribution π(·|obs) with batch shape ``obs.shape[:-1]``."""
        return self.head(self.features(obs))

    def forward(self, obs: Tensor) -> Distribution:
        return self.distribution(obs)

    def to_env_action(self, sample: Tensor) -> Tensor:
        """Env action of a sample (see the head's ``to_env_action``)."""
        return self.head.to_env_action(sample)

    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Env actions for ``obs``: ``to_env_action`` of the mode if ``deterministic``, else of a sample.

        Does not change grad mode (wrap in ``torch.inference_mode()``/``no_grad()`` as needed). Use
        ``distribution(obs).sample()`` instead when the sample itself must be stored for ``log_prob``.
        """
        dist = self.distribution(obs)
        sample = dist.mode if deterministic else dist.sample()
        return self.head.to_env_action(sample)

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable architecture description for `Policy.from_spec`."""
        return {
            "type": "policy",
            "obs_dim": self.obs_dim,
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "layer_norm": self.layer_norm,
            "normalize_obs": self.normalizer is not None,
            "head": self.head.spec(),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Policy:
        """An identically-shaped (freshly initialised) Policy; load the state_dict to restore weights."""
        return cls(
            _require(spec, "obs_dim", "policy"),
            None,
            hidden_sizes=_require(spec, "hidden_sizes", "policy"),
            activation=_require(spec, "activation", "policy"),
            head=_require(spec, "head", "policy"),
            normalize_obs=_require(spec, "normalize_obs", "policy"),
            layer_norm=spec.get("layer_norm", False),
        )


class ValueNetwork(nn.Module):
    """State-value function V(obs): obs ``[..., obs_dim]`` → (normaliser) → MLP → scalar ``[...]``.

    Hidden layers orthogonal gain √2, output layer orthogonal gain ``output_gain`` (default 1.0).
    """

    def __init__(
        self,
        obs_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        normalize_obs: bool = False,
        layer_norm: bool = False,
        output_gain: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(obs_dim, bool) or int(obs_dim) != obs_dim or obs_dim < 1:
            raise ConfigError(f"ValueNetwork: obs_dim must be an int >= 1, got {obs_dim!r}")
        self.obs_dim = int(obs_dim)
        self.hidden_sizes = _check_sizes(hidden_sizes, "ValueNetwork")
        self.activation = activation
        self.layer_norm = bool(layer_norm)
        self.output_gain = float(output_gain)
        self.normalizer = RunningNormalizer(self.obs_dim) if normalize_obs else None
        self.net = mlp(
            self.obs_dim, self.hidden_sizes, 1, activation, self.layer_norm, output_gain=output_gain
        )

    def forward(self, obs: Tensor) -> Tensor:
        obs = obs.to(_float_dtype(self))
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        return self.net(obs).squeeze(-1)

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable architecture description for `ValueNetwork.from_spec`."""
        return {
            "type": "value",
            "obs_dim": self.obs_dim,
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "layer_norm": self.layer_norm,
            "normalize_obs": self.normalizer is not None,
            "output_gain": self.output_gain,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ValueNetwork:
        """An identically-shaped (freshly initialised) network; load the state_dict to restore weights."""
        return cls(
            _require(spec, "obs_dim", "value network"),
            hidden_sizes=_require(spec, "hidden_sizes", "value network"),
            activation=_require(spec, "activation", "value network"),
            normalize_obs=_require(spec, "normalize_obs", "value network"),
            layer_norm=spec.get("layer_norm", False),
            output_gain=spec.get("output_gain", 1.0),
        )


class QNetwork(nn.Module):
    """Action-value critic: obs → Q(s, ·) over |A| discrete actions (``outputs`` = |A|, ``action_dim`` = 0),
    or concat(obs, a) → Q(s, a) for Box actions (``outputs`` = 1, ``action_dim`` = dim A). Output ``[...]``
    for one output, ``[..., outputs]`` otherwise."""

    def __init__(
        self,
        obs_dim: int,
        hidden_sizes: Sequence[int],
        activation: str,
        normalize_obs: bool,
        outputs: int,
        action_dim: int,
    ) -> None:
        super().__init__()
        self.outputs, self.action_dim = outputs, action_dim
        self.normalizer = RunningNormalizer(obs_dim) if normalize_obs else None
        self.net = mlp(obs_dim + action_dim, hidden_sizes, outputs, activation)

    def forward(self, obs: Tensor, actions: Tensor | None = None) -> Tensor:
        obs = obs.to(self.net[0].weight.dtype)
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        if self.action_dim:
            obs = torch.cat([obs, actions.to(obs.dtype)], dim=-1)
        out = self.net(obs)
        return out.squeeze(-1) if self.outputs == 1 else out


class ActorCritic(nn.Module):
    """Shared-body actor-critic: a `Policy` (normaliser → trunk → policy head) and a critic head on its trunk.

        features = policy.features(obs)                    (shared by actor and critic)
        π(·|obs)  = policy.head(features)
        critic    = Linear(features)              → [..., value_outputs]   V(s) (1), or Q(s, ·) (|A|)
                  = Linear(concat(features, a))   → [...]                  Q(s, a) when action_dim > 0

    A single critic output is squeezed (shape ``[...]``). ``self.policy`` is an ordinary `Policy`: an
    algorithm hands it to the harness as its policy, and ``Policy.from_spec(policy.spec())`` with
    ``policy.state_dict()`` rebuild the actor alone (how ``pgrad.load`` restores it); the critic head is the
    only extra part.
    ``ActorCritic.from_spec(spec())`` + ``load_state_dict`` rebuild the whole module.

    Args:
        obs_dim, action_space, hidden_sizes, activation, head, normalize_obs, layer_norm, **head_options:
            as for `Policy`.
        value_outputs: critic outputs per observation (1 for V or Q(s, a); |A| for Q(s, ·)).
        action_dim: length of the action vector concatenated to the features (0: the critic reads features
            only). Pass actions as floats in the env's action space.
        value_gain: orthogonal-init gain of the critic head (1.0, as for `ValueNetwork`).
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: spaces.Space | None,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        head: str | Mapping[str, Any] = "auto",
        normalize_obs: bool = False,
        layer_norm: bool = False,
        value_outputs: int = 1,
        action_dim: int = 0,
        value_gain: float = 1.0,
        **head_options: Any,
    ) -> None:
        super().__init__()
        for name, value, low in (("value_outputs", value_outputs, 1), ("action_dim", action_dim, 0)):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ConfigError(f"ActorCritic: {name} must be an int >= {low}, got {value!r}")
        self.policy = Policy(
            obs_dim,
            action_space,
            hidden_sizes=hidden_sizes,
            activation=activation,
            head=head,
            normalize_obs=normalize_obs,
            layer_norm=layer_norm,
            **head_options,
        )
        self.value_outputs, self.action_dim = int(value_outputs), int(action_dim)
        self.value_gain = float(value_gain)
        features = self.policy.hidden_sizes[-1] if self.policy.hidden_sizes else self.policy.obs_dim
        self.value_head = nn.Linear(features + self.action_dim, self.value_outputs)
        nn.init.orthogonal_(self.value_head.weight, gain=self.value_gain)
        nn.init.zeros_(self.value_head.bias)

    @property
    def head(self) -> PolicyHead:
        return self.policy.head

    @property
    def normalizer(self) -> RunningNormalizer | None:
        return self.policy.normalizer

    def features(self, obs: Tensor) -> Tensor:
        """Shared trunk output (see `Policy.features`)."""
        return self.policy.features(obs)

    def distribution(self, obs: Tensor) -> Distribution:
        """Action distribution π(·|obs)."""
        return self.policy.distribution(obs)

    def critic(self, features: Tensor, actions: Tensor | None = None) -> Tensor:
        """Critic head on trunk features ``[..., F]`` (and actions ``[..., action_dim]`` if action_dim)."""
        if self.action_dim:
            if actions is None or actions.shape[-1:] != (self.action_dim,):
                got = None if actions is None else tuple(actions.shape)
                raise ConfigError(f"ActorCritic.critic: needs actions [..., {self.action_dim}], got {got}")
            features = torch.cat([features, actions.to(features.dtype)], dim=-1)
        elif actions is not None:
            raise ConfigError("ActorCritic.critic: this critic does not read actions (action_dim = 0)")
        out = self.value_head(features)
        return out.squeeze(-1) if self.value_outputs == 1 else out

    def value(self, obs: Tensor, actions: Tensor | None = None) -> Tensor:
        """Critic output for observations (one trunk pass)."""
        return self.critic(self.features(obs), actions)

    def forward(self, obs: Tensor, actions: Tensor | None = None) -> tuple[Distribution, Tensor]:
        """(π(·|obs), critic output), sharing one trunk pass."""
        features = self.features(obs)
        return self.policy.head(features), self.critic(features, actions)

    def to_env_action(self, sample: Tensor) -> Tensor:
        return self.policy.to_env_action(sample)

    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        return self.policy.act(obs, deterministic)

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable architecture description for `ActorCritic.from_spec`."""
        return {
            "type": "actor_critic",
            "policy": self.policy.spec(),
            "value_outputs": self.value_outputs,
            "action_dim": self.action_dim,
            "value_gain": self.value_gain,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ActorCritic:
        """An identically-shaped (freshly initialised) module; load the state_dict to restore weights."""
        policy = _require(spec, "policy", "actor-critic")
        return cls(
            _require(policy, "obs_dim", "actor-critic policy"),
            None,
            hidden_sizes=_require(policy, "hidden_sizes", "actor-critic policy"),
            activation=_require(policy, "activation", "actor-critic policy"),
            head=_require(policy, "head", "actor-critic policy"),
            normalize_obs=_require(policy, "normalize_obs", "actor-critic policy"),
            layer_norm=policy.get("layer_norm", False),
            value_outputs=_require(spec, "value_outputs", "actor-critic"),
            action_dim=spec.get("action_dim", 0),
            value_gain=spec.get("value_gain", 1.0),
        )


__all__ += ["ActorCritic"]
