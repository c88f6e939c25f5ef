"""Tests of mlp, RunningNormalizer, Policy and ValueNetwork (pgrad.policies.networks)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from pgrad.errors import ConfigError
from pgrad.policies.distributions import CategoricalHead, DiscretisedHead, TanhGaussianHead
from pgrad.policies.networks import Policy, ValueNetwork, mlp
from pgrad.policies.normalizers import RunningNormalizer

BOX = spaces.Box(low=np.array([-2, 0, 5], np.float32), high=np.array([2, 1, 10], np.float32))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------------------------------------------------
# mlp


def test_mlp_structure_and_orthogonal_init():
    net = mlp(4, [32, 16], 3, activation="relu", output_gain=0.5)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    w0 = net[0].weight  # [32, 4]: orthonormal columns scaled by sqrt(2)
    torch.testing.assert_close(w0.T @ w0, 2.0 * torch.eye(4), atol=1e-5, rtol=0)
    w1 = net[2].weight  # [16, 32]: orthonormal rows
    torch.testing.assert_close(w1 @ w1.T, 2.0 * torch.eye(16), atol=1e-5, rtol=0)
    w2 = net[4].weight  # [3, 16]
    torch.testing.assert_close(w2 @ w2.T, 0.25 * torch.eye(3), atol=1e-5, rtol=0)
    assert all(torch.all(m.bias == 0) for m in net if isinstance(m, nn.Linear))
    assert net(torch.randn(5, 4)).shape == (5, 3)


@pytest.mark.parametrize(
    ("name", "cls"), [("tanh", nn.Tanh), ("relu", nn.ReLU), ("elu", nn.ELU), ("silu", nn.SiLU)]
)
def test_mlp_activations_and_layer_norm(name, cls):
    net = mlp(3, (8,), None, activation=name, layer_norm=True)
    assert [type(m) for m in net] == [nn.Linear, nn.LayerNorm, cls]
    assert net(torch.randn(2, 3)).shape == (2, 8)
    assert len(mlp(3, (), None)) == 0


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="activation"):
        mlp(3, (8,), activation="gelu")
    with pytest.raises(ConfigError, match="hidden_sizes"):
        mlp(3, (8, 0))
    with pytest.raises(ConfigError, match="hidden_sizes"):
        mlp(3, 64)


# ---------------------------------------------------------------------------------------------------------
# RunningNormalizer


def test_running_normalizer_matches_numpy_on_concatenated_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) * [1, 10, 0.1, 1] for n in (1, 7, 1, 50, 3)]
    norm = RunningNormalizer(4)
    for b in batches:
        norm.update(torch.as_tensor(b))
    data = np.concatenate(batches)
    assert norm.count.item() == len(data)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=0, atol=1e-10)
    x = torch.as_tensor(data[:5])
    expected = np.clip((data[:5] - data.mean(0)) / np.sqrt(data.var(0) + 1e-8), -10, 10)
    np.testing.assert_allclose(norm(x).numpy(), expected, rtol=0, atol=1e-10)


def test_running_normalizer_float32_input_and_leading_dims():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(3, 5, 2)).astype(np.float32)
    norm = RunningNormalizer(2)
    norm.update(torch.as_tensor(data))  # [T, N, D]
    flat = data.reshape(-1, 2).astype(np.float64)
    np.testing.assert_allclose(norm.mean.numpy(), flat.mean(0), atol=1e-10, rtol=0)
    np.testing.assert_allclose(norm.var.numpy(), flat.var(0), atol=1e-10, rtol=0)
    out = norm(torch.as_tensor(data))
    assert out.dtype == torch.float32 and out.shape == (3, 5, 2)
    with pytest.raises(ConfigError):
        norm.update(torch.zeros(4, 3))


def test_running_normalizer_single_element_batches_and_constant_features():
    norm = RunningNormalizer(2, clip=5.0)
    assert torch.equal(
        norm(torch.tensor([[1.0, 2.0]])), torch.tensor([[1.0, 2.0]])
    )  # identity before updates
    for v in (1.0, 2.0, 3.0):
        norm.update(torch.tensor([[v, 7.0]]))  # second feature constant
    torch.testing.assert_close(norm.mean, torch.tensor([2.0, 7.0], dtype=torch.float64))
    torch.testing.assert_close(norm.var, torch.tensor([2.0 / 3.0, 0.0], dtype=torch.float64))
    out = norm(torch.tensor([[2.0, 7.0], [100.0, 8.0]]))
    assert torch.isfinite(out).all()
    assert out[0, 1] == 0.0 and out[1, 0] == 5.0 and out[1, 1] == 5.0  # clipped
    norm.update(torch.tensor([4.0, 7.0]))  # a single unbatched observation
    assert norm.count.item() == 4


def test_running_normalizer_buffers_state_dict_float64_and_inference_mode():
    norm = RunningNormalizer(3)
    with torch.inference_mode():
        norm.update(torch.randn(10, 3))
    assert set(norm.state_dict()) == {"count", "mean", "var"}
    norm.float()
    assert norm.mean.dtype == torch.float64 and norm.var.dtype == torch.float64
    assert norm.count.dtype == torch.float64
    other = RunningNormalizer(3)
    other.load_state_dict(norm.state_dict())
    assert torch.equal(other.mean, norm.mean) and other.count.item() == 10
    x = torch.randn(4, 3, requires_grad=True)
    norm(x).sum().backward()  # buffers updated under inference_mode are usable with autograd
    assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------------------------------------
# Policy


def test_policy_discrete_act_and_distribution():
    policy = Policy(4, spaces.Discrete(3, start=1), hidden_sizes=(16,))
    assert isinstance(policy.head, CategoricalHead)
    obs = torch.randn(8, 4)
    dist = policy.distribution(obs)
    s = dist.sample()
    assert s.shape == (8,) and dist.log_prob(s).shape == (8,)
    a = policy.act(obs)
    assert a.dtype == torch.int64 and a.min() >= 1 and a.max() <= 3
    torch.testing.assert_close(policy.act(obs, deterministic=True), dist.mode + 1)


@pytest.mark.parametrize("head", ["auto", "tanh_gaussian", "deterministic", "discretised"])
def test_policy_box_act_in_bounds_under_inference_mode(head):
    policy = Policy(5, BOX, hidden_sizes=(16, 16), activation="relu", head=head)
    obs = torch.randn(64, 5) * 100
    with torch.inference_mode():
        for det in (False, True):
            a = policy.act(obs, deterministic=det)
            assert a.shape == (64, 3) and torch.isfinite(a).all()
            assert (a >= torch.tensor(BOX.low)).all() and (a <= torch.tensor(BOX.high)).all()
    det_a = policy.act(obs, deterministic=True)
    assert torch.equal(det_a, policy.act(obs, deterministic=True))


def test_policy_head_options_and_output_gain():
    policy = Policy(3, BOX, head="discretised", bins=4)
    assert isinstance(policy.head, DiscretisedHead) and policy.head.bins == 4
    assert policy.head.logits.weight.abs().max() < 0.05  # orthogonal gain 0.01
    tanh = Policy(3, BOX, head="tanh_gaussian", init_std=0.5, state_dependent_std=False)
    assert isinstance(tanh.head, TanhGaussianHead)
    torch.testing.assert_close(tanh.head.log_std(torch.zeros(1, 64)).exp(), torch.full((1, 3), 0.5))
    with pytest.raises(ConfigError, match="bins"):
        Policy(3, BOX, head="diag_gaussian", bins=3)
    with pytest.raises(ConfigError, match="MultiBinary"):
        Policy(3, spaces.MultiBinary(2))


@pytest.mark.parametrize(
    ("space", "head", "normalize"),
    [
        (spaces.Discrete(4), "auto", True),
        (BOX, "diag_gaussian", True),
        (BOX, "tanh_gaussian", False),
        (BOX, "discretised", True),
    ],
)
def test_policy_spec_round_trip_reproduces_log_probs(space, head, normalize):
    policy = Policy(6, space, hidden_sizes=(32, 8), activation="elu", head=head, normalize_obs=normalize)
    obs = torch.randn(20, 6) * 3 + 1
    if normalize:
        policy.normalizer.update(obs)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    spec = json.loads(json.dumps(policy.spec(), allow_nan=False))
    assert spec["obs_dim"] == 6 and spec["hidden_sizes"] == [32, 8] and spec["normalize_obs"] is normalize
    rebuilt = Policy.from_spec(spec)
    rebuilt.load_state_dict(policy.state_dict())
    assert rebuilt.spec() == policy.spec()
    d1, d2 = policy.distribution(obs), rebuilt.distribution(obs)
    s = d1.sample()
    assert torch.equal(d1.log_prob(s), d2.log_prob(s))
    if normalize:  # the normaliser statistics travel in the state_dict and matter
        fresh = Policy.from_spec(spec)
        fresh.load_state_dict(
            {k: v for k, v in policy.state_dict().items() if "normalizer" not in k}, strict=False
        )
        assert not torch.equal(fresh.distribution(obs).log_prob(s), d1.log_prob(s))


def test_policy_float64_accepts_float32_obs():
    policy = Policy(4, BOX, hidden_sizes=(8,), normalize_obs=True).double()
    dist = policy.distribution(torch.randn(3, 4))
    s = dist.sample()
    assert s.dtype == torch.float64 and dist.log_prob(s).dtype == torch.float64
    assert policy.normalizer.mean.dtype == torch.float64
    assert Policy(4, BOX, hidden_sizes=()).distribution(torch.randn(2, 4)).sample().shape == (2, 3)


def test_policy_from_spec_rejects_incomplete_spec():
    with pytest.raises(ConfigError, match="head"):
        Policy.from_spec({"obs_dim": 3, "hidden_sizes": [4], "activation": "tanh", "normalize_obs": False})


# ---------------------------------------------------------------------------------------------------------
# ValueNetwork


def test_value_network_shape_and_round_trip():
    v = ValueNetwork(5, hidden_sizes=(16, 16), normalize_obs=True)
    obs = torch.randn(12, 5)
    v.normalizer.update(obs)
    out = v(obs)
    assert out.shape == (12,)
    w = v.net[-1].weight
    torch.testing.assert_close(w @ w.T, torch.ones(1, 1), atol=1e-5, rtol=0)  # output gain 1
    spec = json.loads(json.dumps(v.spec(), allow_nan=False))
    rebuilt = ValueNetwork.from_spec(spec)
    rebuilt.load_state_dict(v.state_dict())
    assert torch.equal(rebuilt(obs), out)
    assert v.double()(obs).dtype == torch.float64
    assert math.isfinite(ValueNetwork(2, hidden_sizes=(4,), layer_norm=True)(torch.zeros(1, 2)).item())
