"""Action-value critics as stacked ensembles: E MLPs evaluated as one batched computation.

A twin critic (TD3, SAC) is two MLPs that always see the same inputs. Stacking their weights into [E, in, out]
tensors turns 2·L matrix products into L batched ones (`torch.baddbmm`), halving the kernel launches that
dominate small networks on a CPU, and lets one optimiser step update both (one fused kernel per tensor). The
members stay independent: their parameters never mix, and `member(e)` rebuilds member e as a plain
`nn.Sequential` whose outputs equal the ensemble's member e up to the BLAS's summation order (a batched and a
single matrix product may add in different orders: about 1 ulp; bit for bit where the arithmetic is exact).

    QEnsemble(obs_dim, action_dim, ...)(obs, actions) → [E, B]          Box actions: Q(s, a) from concat(s, a)
    QEnsemble(obs_dim, 0, outputs=|A|, ...)(obs)       → [E, B, |A|]     discrete: Q(s, ·) for every action

`batch_norm=True` (CrossQ, Bhatt et al. 2024) puts a batch normalisation before each hidden activation, with
statistics per member; in training mode it normalises with the batch's statistics, so CrossQ evaluates
(s, a) and (s′, a′) in one forward pass and both see the same statistics.

`ValueEnsemble` is the state-value counterpart for the differentiable-simulator family (AHAC, SAPO): E
`ValueNetwork`s (LayerNorm allowed) behind one running observation normaliser, V(s) [E, ...]. Those critics
are small and see a few thousand states per window, so they stay plain modules rather than stacked ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pgrad.errors import ConfigError
from pgrad.policies.networks import ACTIVATIONS, ValueNetwork
from pgrad.policies.normalizers import RunningNormalizer

__all__ = ["EnsembleBatchNorm", "EnsembleLinear", "EnsembleMLP", "QEnsemble", "ValueEnsemble"]


class EnsembleLinear(nn.Module):
    """E independent Linear layers: x [E, B, in] (or [B, in], shared) → [E, B, out] by one `baddbmm`.

    Each member is initialised as `nn.Linear` initialises itself (uniform ±1/√in for weights and biases),
    drawn member by member, so an ensemble of E has the parameters of E separately built layers.
    """

    def __init__(self, members: int, in_features: int, out_features: int):
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 2:
            x = x.expand(self.members, *x.shape)
        if self.out_features == 1:
            # A Q head: batched GEMM with one output column (and its outer-product backward) runs ~5x slower
            # than this broadcast multiply-and-sum on a CPU.
            return (x * self.weight.transpose(1, 2)).sum(-1, keepdim=True) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"members={self.members}, in_features={self.in_features}, out_features={self.out_features}"


class EnsembleBatchNorm(nn.Module):
    """Batch normalisation of [E, B, F] over B, with affine parameters and running statistics per member.

    Training mode: (x − mean_B) / √(var_B + ε) with the biased batch variance, and running statistics updated
    with `momentum` (torch's convention: new = (1 − m)·old + m·batch, unbiased variance). Eval mode: the
    running statistics.
    """

    def __init__(self, members: int, features: int, momentum: float = 0.01, eps: float = 1e-3):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(members, 1, features))
        self.bias = nn.Parameter(torch.zeros(members, 1, features))
        self.register_buffer("running_mean", torch.zeros(members, 1, features))
        self.register_buffer("running_var", torch.ones(members, 1, features))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
            with torch.no_grad():
                n = x.shape[1]
                unbiased = var * (n / max(n - 1, 1))
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class EnsembleMLP(nn.Module):
    """E MLPs in_dim → hidden… → out_dim, stacked (see the module docstring). Input [B, in] or [E, B, in]."""

    def __init__(
        self,
        members: int,
        in_dim: int,
        hidden_sizes: Sequence[int],
        out_dim: int,
        activation: str = "relu",
        batch_norm: bool = False,
        bn_momentum: float = 0.01,
    ):
        super().__init__()
        if members < 1:
            raise ConfigError(f"an ensemble needs at least one member, got {members}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation '{activation}' (known: {', '.join(ACTIVATIONS)})")
        self.members, self.activation, self.batch_norm = members, activation, batch_norm
        sizes = [in_dim, *hidden_sizes, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in itertools.pairwise(sizes))
        self.norms = nn.ModuleList(
            EnsembleBatchNorm(members, width, bn_momentum)
            for width in ([in_dim, *hidden_sizes] if batch_norm else [])
        )
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        if self.batch_norm:  # CrossQ: normalise the input and every hidden pre-activation
            x = self.norms[0](x if x.ndim == 3 else x.expand(self.members, *x.shape))
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                if self.batch_norm:
                    x = self.norms[i + 1](x)
                x = self.act(x)
        return x

    def member(self, e: int) -> nn.Sequential:
        """Member e as a plain `nn.Sequential` of `nn.Linear` (and activation) with copies of its weights
        (no batch norm); its outputs equal the ensemble's member e up to summation order."""
        if self.batch_norm:
            raise ConfigError("member() rebuilds plain MLPs; a batch-normalised ensemble has no such twin")
        modules: list[nn.Module] = []
        for i, layer in enumerate(self.layers):
            like = {"device": layer.weight.device, "dtype": layer.weight.dtype}  # a float64 ensemble stays so
            linear = nn.Linear(layer.in_features, layer.out_features, **like)
            with torch.no_grad():
                linear.weight.copy_(layer.weight[e].T)
                linear.bias.copy_(layer.bias[e, 0])
            modules.append(linear)
            if i < len(self.layers) - 1:
                modules.append(ACTIVATIONS[self.activation]())
        return nn.Sequential(*modules)


class QEnsemble(nn.Module):
    """E action-value critics. Box actions (`action_dim` > 0): Q(s, a) [E, B]. Discrete (`action_dim` = 0,
    `outputs` = |A|): Q(s, ·) [E, B, |A|]. Inputs may also carry the ensemble dim: [E, B, D]."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        members: int = 2,
        outputs: int = 1,
        batch_norm: bool = False,
        bn_momentum: float = 0.01,
    ):
        super().__init__()
        self.obs_dim, self.action_dim, self.outputs = obs_dim, action_dim, outputs
        self.net = EnsembleMLP(
            members, obs_dim + action_dim, hidden_sizes, outputs, activation, batch_norm, bn_momentum
        )

    def forward(self, obs: Tensor, actions: Tensor | None = None) -> Tensor:
        x = obs if self.action_dim == 0 else torch.cat([obs, actions.to(obs.dtype)], dim=-1)
        out = self.net(x)
        return out.squeeze(-1) if self.outputs == 1 else out


class ValueEnsemble(nn.Module):
    """E state-value critics V(obs) → [E, ...] behind one observation normaliser (module docstring)."""

    def __init__(
        self,
        obs_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "elu",
        members: int = 2,
        layer_norm: bool = True,
        normalize_obs: bool = True,
    ):
        super().__init__()
        if members < 1:
            raise ConfigError(f"an ensemble needs at least one member, got {members}")
        self.normalizer = RunningNormalizer(obs_dim) if normalize_obs else None
        self.members = nn.ModuleList(
            ValueNetwork(obs_dim, hidden_sizes, activation, layer_norm=layer_norm) for _ in range(members)
        )

    def forward(self, obs: Tensor) -> Tensor:
        obs = obs.to(self.members[0].net[0].weight.dtype)
        if self.normalizer is not None:
            obs = self.normalizer(obs)
        return torch.stack([member(obs) for member in self.members])
