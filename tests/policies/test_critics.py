"""Stacked critic ensembles (pgrad.policies.critics) against separately built critics.

Exactness. `member(e)` rebuilds member e as a plain `nn.Sequential` of `nn.Linear`. Two float32 computations
of the same dot products agree bit for bit only if they add the same roundings in the same order, and on
this machine's MKL they do not: the stack runs one batched GEMM (`baddbmm` → SGEMM_BATCH) and `nn.Linear`
one GEMM per member (`addmm` → SGEMM), and the two (i) add the bias (the β·C term) at different points of
the accumulation and (ii) for a single output column (the Q head, n = 1) SGEMM takes MKL's GEMV kernel
(bitwise equal to `torch.mv`), whose summation order differs from the batched kernel's sequential one. So
the tests check exact equality where arithmetic is exact — weights and inputs on a coarse dyadic grid, where
every product and partial sum is representable and the order cannot matter — which pins the wiring (which
slice, which transpose, which bias, which activation) bit for bit; and with ordinary random weights they
bound the difference by a few units in the last place of the magnitude of the computation.

The squashed-Gaussian log-prob against `TransformedDistribution(Normal, [TanhTransform,
AffineTransform])` on asymmetric bounds is tests/policies/test_distributions.py::
test_tanh_gaussian_log_prob_matches_transformed_distribution (bounds [−2, 0, 5]…[2, 1, 10]); the SAC update
test in tests/algorithms/test_critic.py checks the algorithm's own log-probs against it on [−1, 0]…[3, 0.5].
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pgrad.errors import ConfigError
from pgrad.policies.critics import EnsembleBatchNorm, EnsembleMLP, QEnsemble

EPS32 = torch.finfo(torch.float32).eps


def dyadic_(module: nn.Module, generator: torch.Generator) -> None:
    """Every parameter to a multiple of 1/4 in [−1, 1]. With inputs on the 1/4 grid in [−2, 2], layer k's
    products and partial sums lie on the 4^-(k+1) grid and are bounded by Σ|w||h| + |b|, which for these
    small layers stays below 2^24 grid units: exact in float32, whatever the summation order (the deepest
    case here, 6 → 8 → 8 → 8 → 3, peaks below 6729 on the 1/1024 grid)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randint(-4, 5, p.shape, generator=generator) / 4)


def dyadic_inputs(*shape: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(-8, 9, shape, generator=generator) / 4


def abs_forward(mlp: EnsembleMLP, e: int, x: torch.Tensor) -> torch.Tensor:
    """Σ|w||h| + |b| layer by layer in float64: the scale of member e's rounding errors."""
    h = x.double().abs()
    for layer in mlp.layers:
        h = h @ layer.weight[e].double().abs() + layer.bias[e, 0].double().abs()
    return h


# ---------------------------------------------------------------------------------------------------------
# stacked forward against separate members


@pytest.mark.parametrize(
    ("members", "in_dim", "hidden", "out_dim", "batch"),
    [(2, 5, (8, 8), 1, 8), (2, 5, (8, 8), 1, 1), (3, 4, (16,), 4, 32), (2, 6, (8, 8, 8), 3, 64)],
)
def test_stacked_forward_equals_separate_members_exactly_in_exact_arithmetic(
    members, in_dim, hidden, out_dim, batch
):
    g = torch.Generator().manual_seed(members * 100 + batch)
    mlp = EnsembleMLP(members, in_dim, hidden, out_dim)
    dyadic_(mlp, g)
    x = dyadic_inputs(batch, in_dim, generator=g)
    out = mlp(x)
    assert out.shape == (members, batch, out_dim)
    for e in range(members):
        plain = mlp.member(e)
        assert isinstance(plain, nn.Sequential) and all(isinstance(m, nn.Linear | nn.ReLU) for m in plain)
        assert torch.equal(out[e], plain(x))
    # an input that carries the ensemble dim gives each member its own rows
    xe = dyadic_inputs(members, batch, in_dim, generator=g)
    out_e = mlp(xe)
    for e in range(members):
        assert torch.equal(out_e[e], mlp.member(e)(xe[e]))


def test_stacked_forward_with_random_weights_differs_from_separate_members_only_by_rounding():
    """Default initialisation, Gaussian inputs: what the exactness docstring of the module explains. The
    difference is not asserted to be zero (it is not, on MKL); it is bounded by 4 ulps of Σ|w||h| + |b|."""
    torch.manual_seed(0)
    worst = 0.0
    for hidden, batch in (((8, 8), 8), ((64, 64), 1), ((256, 256), 256)):
        mlp = EnsembleMLP(2, 7, hidden, 1)
        x = torch.randn(batch, 7)
        out = mlp(x)
        reference = torch.stack([mlp.member(e)(x) for e in range(2)])
        for e in range(2):
            diff = (out[e] - reference[e]).abs().double()
            scale = abs_forward(mlp, e, x)
            assert (diff <= 4 * EPS32 * scale).all(), (diff.max().item(), scale.max().item())
            worst = max(worst, diff.max().item())
    assert worst < 1e-6  # MKL 2024.2, AVX-512: up to 8.9e-8 (1–3 ulps of outputs ~0.1–0.5)


def test_member_keeps_dtype_and_weights_of_a_float64_ensemble():
    torch.manual_seed(1)
    mlp = EnsembleMLP(2, 3, (5,), 2).double()
    plain = mlp.member(1)
    assert all(p.dtype == torch.float64 for p in plain.parameters())
    assert torch.equal(plain[0].weight, mlp.layers[0].weight[1].T)  # not rounded through float32
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(plain(x), mlp(x)[1], rtol=1e-14, atol=1e-14)


def test_member_refuses_a_batch_normalised_ensemble():
    with pytest.raises(ConfigError, match="batch-normalised ensemble"):
        EnsembleMLP(2, 3, (4,), 1, batch_norm=True).member(0)


# ---------------------------------------------------------------------------------------------------------
# gradients, independence


def test_gradients_of_the_stack_equal_those_of_separate_members_exactly():
    g = torch.Generator().manual_seed(3)
    critic = QEnsemble(3, 2, (8, 8), "relu", members=2)
    dyadic_(critic, g)
    obs, actions = dyadic_inputs(8, 3, generator=g), dyadic_inputs(8, 2, generator=g)
    weights = torch.randint(-4, 5, (2, 8), generator=g) / 4  # a loss that weighs every output
    plain = [critic.net.member(e) for e in range(2)]
    (critic(obs, actions) * weights).sum().backward()
    x = torch.cat([obs, actions], -1)
    sum((plain[e](x)[:, 0] * weights[e]).sum() for e in range(2)).backward()
    for i, layer in enumerate(critic.net.layers):
        for e in range(2):
            linear = plain[e][2 * i]
            assert torch.equal(layer.weight.grad[e], linear.weight.grad.T), (i, e)
            assert torch.equal(layer.bias.grad[e, 0], linear.bias.grad), (i, e)


def test_gradients_with_random_weights_match_separate_members_to_rounding():
    torch.manual_seed(4)
    critic = QEnsemble(3, 2, (64, 64), "relu", members=2)
    obs, actions = torch.randn(32, 3), torch.randn(32, 2)
    plain = [critic.net.member(e) for e in range(2)]
    critic(obs, actions).sum().backward()
    x = torch.cat([obs, actions], -1)
    sum(plain[e](x).sum() for e in range(2)).backward()
    for i, layer in enumerate(critic.net.layers):
        for e in range(2):
            linear = plain[e][2 * i]
            torch.testing.assert_close(layer.weight.grad[e], linear.weight.grad.T, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(layer.bias.grad[e, 0], linear.bias.grad, rtol=1e-5, atol=1e-6)


def test_members_are_independent():
    torch.manual_seed(5)
    critic = QEnsemble(3, 2, (16, 16), "relu", members=2)
    obs, actions = torch.randn(10, 3), torch.randn(10, 2)
    critic(obs, actions)[0].square().mean().backward()  # a loss on member 0 only
    for p in critic.parameters():
        assert p.grad[0].abs().sum() > 0 and torch.equal(p.grad[1], torch.zeros_like(p.grad[1]))
    before = critic(obs, actions).detach()
    with torch.no_grad():  # moving member 1 leaves member 0's outputs bit for bit
        for p in critic.parameters():
            p[1].add_(1.0)
    after = critic(obs, actions).detach()
    assert torch.equal(after[0], before[0]) and not torch.equal(after[1], before[1])


def test_members_are_initialised_differently_like_separate_linear_layers():
    torch.manual_seed(6)
    mlp = EnsembleMLP(2, 16, (32,), 1)
    first = mlp.layers[0]
    assert not torch.equal(first.weight[0], first.weight[1])
    bound = 1 / 16**0.5  # nn.Linear's uniform ±1/√in
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.9 * bound


# ---------------------------------------------------------------------------------------------------------
# batch normalisation per member


def per_member_data(generator: torch.Generator) -> torch.Tensor:
    """[2, 16, 3]: member 1's features have another mean and scale, so pooled statistics would show."""
    x = torch.randn(2, 16, 3, generator=generator, dtype=torch.float64)
    return torch.stack([x[0], 10.0 * x[1] + 5.0])


def test_batch_norm_training_mode_uses_each_members_batch_statistics_and_updates_running_ones():
    g = torch.Generator().manual_seed(7)
    momentum, eps = 0.1, 1e-3
    bn = EnsembleBatchNorm(2, 3, momentum=momentum, eps=eps).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([[[1.0, 2.0, 0.5]], [[3.0, -1.0, 1.0]]]))
        bn.bias.copy_(torch.tensor([[[0.0, 1.0, -1.0]], [[2.0, 0.0, 0.5]]]))
    x1, x2 = per_member_data(g), per_member_data(g)
    out = bn(x1)
    bn(x2)
    running_mean, running_var = torch.zeros(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)
    for e in range(2):
        mean = x1[e].mean(0)
        var = ((x1[e] - mean) ** 2).mean(0)  # biased, as batch normalisation normalises
        expected = (x1[e] - mean) / torch.sqrt(var + eps) * bn.weight[e, 0] + bn.bias[e, 0]
        torch.testing.assert_close(out[e], expected, rtol=1e-12, atol=1e-12)
        torch_bn = nn.BatchNorm1d(3, eps=eps, momentum=momentum).double()  # torch's convention
        with torch.no_grad():
            torch_bn.weight.copy_(bn.weight[e, 0])
            torch_bn.bias.copy_(bn.bias[e, 0])
        torch.testing.assert_close(out[e], torch_bn(x1[e]), rtol=1e-12, atol=1e-12)
        torch_bn(x2[e])
        for x in (x1, x2):  # new = (1 − m)·old + m·batch, unbiased variance
            running_mean[e] = (1 - momentum) * running_mean[e] + momentum * x[e].mean(0)
            running_var[e] = (1 - momentum) * running_var[e] + momentum * x[e].var(0, correction=1)
        torch.testing.assert_close(bn.running_mean[e, 0], torch_bn.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bn.running_var[e, 0], torch_bn.running_var, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn.running_mean[:, 0], running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn.running_var[:, 0], running_var, rtol=1e-12, atol=1e-12)


def test_batch_norm_eval_mode_uses_running_statistics_and_leaves_them():
    g = torch.Generator().manual_seed(8)
    bn = EnsembleBatchNorm(2, 3, momentum=0.5).double()
    bn(per_member_data(g))
    bn.eval()
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    x = per_member_data(g)
    out = bn(x)
    expected = (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    # each row alone gives the same output: no batch statistics in evaluation mode
    torch.testing.assert_close(bn(x[:, :1]), out[:, :1], rtol=1e-12, atol=1e-12)


def test_batch_normalised_critic_depends_on_the_batch_in_training_mode_only():
    torch.manual_seed(9)
    critic = QEnsemble(3, 1, (16, 16), "relu", members=2, batch_norm=True, bn_momentum=0.5)
    obs, actions = torch.randn(20, 3), torch.rand(20, 1)
    critic(obs, actions)  # move the running statistics away from (0, 1)
    train_full, train_half = critic(obs, actions)[:, :10], critic(obs[:10], actions[:10])
    assert (train_full - train_half).abs().max() > 1e-3  # the batch statistics differ
    critic.eval()
    before = [b.clone() for b in critic.buffers()]
    torch.testing.assert_close(critic(obs, actions)[:, :10], critic(obs[:10], actions[:10]))
    assert all(torch.equal(a, b) for a, b in zip(critic.buffers(), before, strict=True))
    assert len(critic.net.norms) == 3  # the input and both hidden pre-activations


# ---------------------------------------------------------------------------------------------------------
# shapes


def test_shapes_of_box_and_discrete_critics():
    critic = QEnsemble(4, 2, (8,), "relu", members=2)
    assert critic(torch.randn(5, 4), torch.randn(5, 2)).shape == (2, 5)
    discrete = QEnsemble(4, 0, (8,), "relu", members=3, outputs=6)
    q = discrete(torch.randn(5, 4))
    assert q.shape == (3, 5, 6)
    g = torch.Generator().manual_seed(10)
    dyadic_(discrete, g)
    obs = dyadic_inputs(5, 4, generator=g)
    q = discrete(obs)
    for e in range(3):
        assert torch.equal(q[e], discrete.net.member(e)(obs))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EnsembleMLP(0, 3, (4,), 1), "at least one member"),
        (lambda: EnsembleMLP(2, 3, (4,), 1, activation="swish"), "unknown activation 'swish'"),
    ],
)
def test_bad_ensembles_raise_one_line_config_errors(build, message):
    with pytest.raises(ConfigError, match=message) as info:
        build()
    assert "\n" not in str(info.value)
