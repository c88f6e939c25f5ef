"""Tests of the policy heads and their distributions (pgrad.policies.distributions)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.distributions import (
    AffineTransform,
    Categorical,
    Independent,
    Normal,
    TanhTransform,
    TransformedDistribution,
)

from pgrad.errors import ConfigError
from pgrad.policies.distributions import (
    CategoricalHead,
    Deterministic,
    DeterministicHead,
    DiagGaussianHead,
    DiscretisedHead,
    PolicyHead,
    TanhGaussian,
    TanhGaussianHead,
    bounded_log_std,
    head_from_spec,
    log1m_tanh_sq,
    make_head,
)

LOW = [-2.0, 0.0, 5.0]
HIGH = [2.0, 1.0, 10.0]
BOX = spaces.Box(low=np.array(LOW, np.float32), high=np.array(HIGH, np.float32))
F_IN = 6
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
BOX_KINDS = ["diag_gaussian", "tanh_gaussian", "deterministic", "discretised"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def features(b: int = 32, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(b, F_IN, dtype=dtype)


def bounds(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(LOW, dtype=dtype), torch.tensor(HIGH, dtype=dtype)


def set_mean_bias(head: PolicyHead, value: float) -> None:
    """Make the mean/action pre-activation equal to `value` whatever the features."""
    layer = {"diag_gaussian": "mean_layer", "tanh_gaussian": "mean_layer", "deterministic": "action_layer"}
    lin = getattr(head, layer[head.kind])
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.fill_(value)


# ---------------------------------------------------------------------------------------------------------
# log-probs against references


@pytest.mark.parametrize("dtype", DTYPES)
def test_categorical_log_prob_matches_log_softmax_gather(dtype):
    head = CategoricalHead(F_IN, 5, start=3).to(dtype)
    with torch.no_grad():
        head.logits.weight.normal_()  # non-trivial logits
    x = features(dtype=dtype)
    dist = head(x)
    a = dist.sample()
    assert a.dtype == torch.int64 and a.shape == (32,)
    logits = head.logits(x)
    ref = torch.log_softmax(logits, -1).gather(-1, a[:, None]).squeeze(-1)
    torch.testing.assert_close(dist.log_prob(a), ref, atol=TOL[dtype], rtol=0)
    torch.testing.assert_close(dist.entropy(), Categorical(logits=logits).entropy(), atol=TOL[dtype], rtol=0)
    assert torch.equal(dist.mode, logits.argmax(-1))
    env_a = head.to_env_action(a)
    assert torch.equal(env_a, a + 3) and int(env_a.min()) >= 3 and int(env_a.max()) <= 7


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("state_dependent", [False, True])
def test_diag_gaussian_log_prob_matches_hand_formula(dtype, state_dependent):
    head = DiagGaussianHead(F_IN, LOW, HIGH, state_dependent_std=state_dependent, init_std=0.7).to(dtype)
    with torch.no_grad():
        head.mean_layer.weight.normal_()
        if state_dependent:
            head.log_std_layer.weight.normal_(std=0.3)
        else:
            head.raw_log_std.copy_(torch.tensor([0.3, -0.5, 1.1]))
    x = features(dtype=dtype)
    dist = head(x)
    a = dist.sample()
    assert a.shape == (32, 3) and a.dtype == dtype
    mu = head.mean_layer(x)
    log_std = head.log_std(x)
    sigma = log_std.exp()
    ref = (-0.5 * ((a - mu) / sigma) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(dist.log_prob(a), ref, atol=TOL[dtype], rtol=0)
    ref_entropy = (0.5 * math.log(2 * math.pi * math.e) + log_std).sum(-1)
    torch.testing.assert_close(dist.entropy(), ref_entropy, atol=TOL[dtype], rtol=0)
    torch.testing.assert_close(dist.entropy(), Independent(Normal(mu, sigma), 1).entropy())
    assert torch.equal(dist.mode, mu)


def tanh_reference(mu, sigma, low, high):
    loc, scale = (high + low) / 2, (high - low) / 2
    base = Independent(Normal(mu, sigma), 1)
    return TransformedDistribution(
        base, [TanhTransform(cache_size=1), AffineTransform(loc, scale, event_dim=1)]
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_gaussian_log_prob_matches_transformed_distribution(dtype):
    low, high = bounds(dtype)
    mu = torch.randn(64, 3, dtype=dtype) * 0.8
    sigma = torch.rand(64, 3, dtype=dtype) * 0.6 + 0.3
    ref = tanh_reference(mu, sigma, low, high)
    a = ref.sample()
    y = (a - (high + low) / 2) / ((high - low) / 2)
    keep = (y.abs() < 0.995).all(-1)  # away from the bounds, where float32 atanh is well conditioned
    assert keep.sum() > 40
    dist = TanhGaussian(mu, sigma, low, high)
    lp = dist.log_prob(a)
    assert lp.shape == (64,)
    torch.testing.assert_close(lp[keep], ref.log_prob(a)[keep], atol=TOL[dtype], rtol=TOL[dtype])


def test_tanh_gaussian_density_integrates_to_one():
    """An independent check of the Jacobian (sign and log-scale term): ∫ π(a) da = 1 on [5, 10]."""
    low, high = torch.tensor([5.0], dtype=torch.float64), torch.tensor([10.0], dtype=torch.float64)
    dist = TanhGaussian(
        torch.tensor([[0.4]], dtype=torch.float64), torch.tensor([[0.8]], dtype=torch.float64), low, high
    )
    a = torch.linspace(5.0, 10.0, 200001, dtype=torch.float64)[:, None, None]
    density = dist.log_prob(a).exp().squeeze()
    assert torch.trapezoid(density, a.squeeze()).item() == pytest.approx(1.0, abs=1e-6)


def test_log1m_tanh_sq_stable_and_exact():
    u = torch.linspace(-5, 5, 101, dtype=torch.float64)
    torch.testing.assert_close(log1m_tanh_sq(u), torch.log(1 - torch.tanh(u) ** 2))
    big = torch.tensor([-50.0, 50.0, 1e4])
    assert torch.isfinite(log1m_tanh_sq(big)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_discretised_log_prob_is_sum_of_per_dim_categoricals(dtype):
    head = DiscretisedHead(F_IN, LOW, HIGH, bins=7).to(dtype)
    with torch.no_grad():
        head.logits.weight.normal_()
    x = features(dtype=dtype)
    dist = head(x)
    idx = dist.sample()
    assert idx.dtype == torch.int64 and idx.shape == (32, 3)
    logits = head.logits(x).reshape(32, 3, 7)
    ref = sum(Categorical(logits=logits[:, d]).log_prob(idx[:, d]) for d in range(3))
    torch.testing.assert_close(dist.log_prob(idx), ref, atol=TOL[dtype], rtol=0)
    ref_ent = sum(Categorical(logits=logits[:, d]).entropy() for d in range(3))
    torch.testing.assert_close(dist.entropy(), ref_ent, atol=TOL[dtype], rtol=0)
    assert torch.equal(dist.mode, logits.argmax(-1))


def test_discretised_bin_centres_include_both_bounds():
    head = DiscretisedHead(F_IN, LOW, HIGH, bins=5)
    idx = torch.arange(5)[:, None].expand(5, 3)
    a = head.to_env_action(idx)
    expected = torch.tensor(LOW) + (torch.tensor(HIGH) - torch.tensor(LOW)) * idx / 4
    torch.testing.assert_close(a, expected)
    assert torch.equal(a[0], torch.tensor(LOW)) and torch.equal(a[-1], torch.tensor(HIGH))
    two = DiscretisedHead(F_IN, LOW, HIGH, bins=2)
    assert torch.equal(two.to_env_action(torch.ones(1, 3, dtype=torch.long))[0], torch.tensor(HIGH))
    for bad in (1, 0, -3, 2.5):
        with pytest.raises(ConfigError, match="bins"):
            DiscretisedHead(F_IN, LOW, HIGH, bins=bad)


# ---------------------------------------------------------------------------------------------------------
# bounds


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", BOX_KINDS)
@pytest.mark.parametrize("mean", [-50.0, 0.0, 50.0])
def test_env_actions_inside_asymmetric_bounds_even_for_extreme_means(dtype, kind, mean):
    head = make_head(BOX, F_IN, kind).to(dtype)
    if kind == "discretised":
        with torch.no_grad():
            head.logits.weight.zero_()
            head.logits.bias.copy_(torch.linspace(-mean, mean, 3 * 11))
    else:
        set_mean_bias(head, mean)
    dist = head(features(256, dtype))
    samples = [dist.sample(), dist.mode]
    if dist.has_rsample:
        samples.append(dist.rsample())
    low, high = bounds(dtype)
    for s in samples:
        a = head.to_env_action(s)
        assert a.shape == (256, 3) and a.dtype == dtype
        assert torch.isfinite(a).all()
        assert (a >= low).all() and (a <= high).all()
    if kind in ("tanh_gaussian", "deterministic"):  # the sample space is the action space
        assert (samples[0] >= low).all() and (samples[0] <= high).all()
    if kind == "diag_gaussian" and mean != 0.0:  # unbounded sample space: clipped only for the env
        assert ((samples[0] < low) | (samples[0] > high)).any()


@pytest.mark.parametrize("kind", ["tanh_gaussian", "deterministic"])
def test_rounding_of_loc_plus_scale_never_leaves_the_box(kind):
    # float32 bounds for which fl((h + l)/2 + (h - l)/2) > h and fl((h + l)/2 - (h - l)/2) < l
    low, high = np.float32(-2.177314281463623), np.float32(-1.3034344911575317)
    loc, scale = (torch.tensor(high) + torch.tensor(low)) / 2, (torch.tensor(high) - torch.tensor(low)) / 2
    assert loc + scale > torch.tensor(high)
    head = make_head(spaces.Box(low, high, shape=(1,), dtype=np.float32), F_IN, kind)
    for mean in (-50.0, 50.0):
        set_mean_bias(head, mean)
        dist = head(features(8))
        for a in (dist.sample(), dist.mode, dist.rsample()):
            assert (a >= torch.tensor(low)).all() and (a <= torch.tensor(high)).all()


def test_diag_gaussian_to_env_action_keeps_infinite_bounds():
    head = DiagGaussianHead(F_IN, [-1.0, -math.inf, -math.inf], [1.0, 3.0, math.inf])
    s = torch.tensor([[5.0, 9.0, 1e6], [-5.0, -1e6, -1e6]])
    assert torch.equal(head.to_env_action(s), torch.tensor([[1.0, 3.0, 1e6], [-1.0, -1e6, -1e6]]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["tanh_gaussian", "diag_gaussian", "discretised"])
def test_log_prob_finite_at_exact_bounds_with_finite_gradients(dtype, kind):
    head = make_head(BOX, F_IN, kind).to(dtype)
    if kind != "discretised":
        set_mean_bias(head, 0.3)
    low, high = bounds(dtype)
    if kind == "discretised":
        value = torch.stack([torch.zeros(3), torch.full((3,), 10), torch.tensor([0, 10, 5])]).long()
    else:
        value = torch.stack([low, high, torch.stack([low[0], high[1], low[2]])])
    dist = head(features(3, dtype))
    lp = dist.log_prob(value)
    assert lp.shape == (3,) and lp.dtype == dtype
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    grads = [p.grad for p in head.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_gaussian_extreme_means_give_finite_log_probs_of_own_samples(dtype):
    head = TanhGaussianHead(F_IN, LOW, HIGH).to(dtype)
    for mean in (-50.0, 50.0):
        set_mean_bias(head, mean)
        dist = head(features(64, dtype))
        a = dist.sample()
        assert torch.isfinite(dist.log_prob(a)).all()
        assert torch.isfinite(dist.entropy()).all()


def test_tanh_gaussian_eps_is_dtype_machine_epsilon():
    low, high = bounds(torch.float32)
    d32 = TanhGaussian(torch.zeros(1, 3), torch.ones(1, 3), low, high)
    d64 = TanhGaussian(
        torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64), low, high
    )
    assert d32.eps == torch.finfo(torch.float32).eps and d64.eps == torch.finfo(torch.float64).eps
    u = d32.pre_tanh(high[None])
    assert torch.isfinite(u).all() and (u > 8).all()


# ---------------------------------------------------------------------------------------------------------
# standard deviation


def test_bounded_log_std_stays_in_bounds():
    raw = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4])
    out = bounded_log_std(raw, -5.0, 2.0)
    assert torch.isfinite(out).all() and (out >= -5.0).all() and (out <= 2.0).all()
    assert out[0] == -5.0 and out[-1] == 2.0 and out[2] == pytest.approx(-1.5)


@pytest.mark.parametrize("kind", ["diag_gaussian", "tanh_gaussian"])
@pytest.mark.parametrize("state_dependent", [False, True])
@pytest.mark.parametrize("push", [1e4, -1e4])
def test_sigma_bounded_when_raw_log_std_pushed_to_extremes(kind, state_dependent, push):
    head = make_head(BOX, F_IN, kind, state_dependent_std=state_dependent)
    with torch.no_grad():
        if state_dependent:
            head.log_std_layer.bias.fill_(push)
        else:
            head.raw_log_std.fill_(push)
    x = features(16)
    log_std = head.log_std(x)
    assert torch.isfinite(log_std).all() and (log_std >= -5.0).all() and (log_std <= 2.0).all()
    dist = head(x)
    a = dist.sample()
    lp = dist.log_prob(a)
    assert torch.isfinite(a).all() and torch.isfinite(lp).all() and torch.isfinite(dist.entropy()).all()
    lp.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("init_std", [0.1, 1.0, 3.0])
def test_init_std_sets_initial_sigma(init_std):
    head = DiagGaussianHead(F_IN, LOW, HIGH, init_std=init_std)
    torch.testing.assert_close(head(features(4)).base_dist.scale, torch.full((4, 3), init_std))
    sd = DiagGaussianHead(F_IN, LOW, HIGH, init_std=init_std, state_dependent_std=True)
    with torch.no_grad():
        sd.log_std_layer.weight.zero_()
    torch.testing.assert_close(sd(features(4)).base_dist.scale, torch.full((4, 3), init_std))
    for bad in (0.0, -1.0, math.exp(2.5), math.exp(-6)):
        with pytest.raises(ConfigError, match="init_std"):
            DiagGaussianHead(F_IN, LOW, HIGH, init_std=bad)


# ---------------------------------------------------------------------------------------------------------
# entropies, modes, deterministic


def test_tanh_gaussian_entropy_estimate_and_mode():
    head = TanhGaussianHead(F_IN, LOW, HIGH)
    x = features(8)
    dist = head(x)
    ent = dist.entropy()
    assert ent.shape == (8,) and torch.isfinite(ent).all() and ent.requires_grad
    low, high = bounds(torch.float32)
    mu = head.mean_layer(x)
    expected = (high + low) / 2 + (high - low) / 2 * torch.tanh(mu)
    torch.testing.assert_close(dist.mode, expected)
    # averaged estimate agrees with the analytic density: E[-log π] = entropy, checked by Monte Carlo
    ref = tanh_reference(dist.mu[:1], dist.sigma[:1], low, high)
    mc = -ref.log_prob(ref.sample((4000,))).mean()
    est = torch.stack([dist.entropy()[0] for _ in range(4000)]).mean()
    assert est.item() == pytest.approx(mc.item(), abs=0.1)


def test_tanh_gaussian_cache_uses_exact_pre_tanh_and_still_handles_other_actions():
    low, high = bounds(torch.float64)
    mu = torch.full((4, 3), 30.0, dtype=torch.float64)  # saturating: recovered atanh is clamped
    sigma = torch.full((4, 3), 0.5, dtype=torch.float64)
    cached = TanhGaussian(mu, sigma, low, high, cache_pre_tanh=True)
    a = cached.rsample()
    lp_exact = cached.log_prob(a)
    u = cached._cache[1]
    torch.testing.assert_close(lp_exact, cached._log_prob_u(u))
    uncached = TanhGaussian(mu, sigma, low, high)
    assert torch.isfinite(uncached.log_prob(a)).all()
    # any other tensor goes through atanh, same as without the cache
    b = TanhGaussian(mu * 0, sigma, low, high).sample()
    torch.testing.assert_close(cached.log_prob(b.clone()), uncached.log_prob(b))


def test_deterministic_head_distribution():
    head = DeterministicHead(F_IN, LOW, HIGH)
    x = features(5)
    dist = head(x)
    assert isinstance(dist, Deterministic)
    low, high = bounds(torch.float32)
    expected = (high + low) / 2 + (high - low) / 2 * torch.tanh(head.action_layer(x))
    torch.testing.assert_close(dist.mode, expected)
    assert torch.equal(dist.sample(), dist.mode) and not dist.sample().requires_grad
    assert dist.rsample().requires_grad
    assert torch.equal(dist.entropy(), torch.zeros(5))
    assert dist.sample((2,)).shape == (2, 5, 3)
    with pytest.raises(ConfigError, match="deterministic policy has no log-probability"):
        dist.log_prob(dist.sample())
    # infinite bounds: raw output (clamped to a one-sided bound)
    inf_head = DeterministicHead(F_IN, [-math.inf, 0.0, -1.0], [math.inf, math.inf, 1.0])
    out = inf_head(x).mode
    raw = inf_head.action_layer(x)
    torch.testing.assert_close(out[:, 0], raw[:, 0])
    torch.testing.assert_close(out[:, 1], raw[:, 1].clamp(min=0.0))
    torch.testing.assert_close(out[:, 2], torch.tanh(raw[:, 2]))


# ---------------------------------------------------------------------------------------------------------
# factory, specs, errors


def test_make_head_auto_and_kinds():
    assert isinstance(make_head(spaces.Discrete(4), F_IN), CategoricalHead)
    assert isinstance(make_head(BOX, F_IN), DiagGaussianHead)
    expected = {
        "diag_gaussian": DiagGaussianHead,
        "tanh_gaussian": TanhGaussianHead,
        "deterministic": DeterministicHead,
        "discretised": DiscretisedHead,
    }
    for kind, cls in expected.items():
        head = make_head(BOX, F_IN, kind)
        assert type(head) is cls and head.kind == kind and head.sample_shape == (3,)
    assert make_head(BOX, F_IN, "discretised", bins=3).bins == 3
    assert make_head(spaces.Discrete(4), F_IN).sample_shape == ()


def test_output_layer_has_small_gain():
    head = make_head(spaces.Discrete(4), 64)
    assert head.logits.weight.abs().max() < 0.05 and torch.all(head.logits.bias == 0)


@pytest.mark.parametrize(
    "space",
    [
        spaces.Dict({"a": spaces.Discrete(2)}),
        spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))),
        spaces.MultiBinary(3),
        spaces.MultiDiscrete([2, 3]),
        spaces.Text(5),
        spaces.Box(-1, 1, shape=(2, 2)),
        spaces.Box(-1, 1, shape=()),
    ],
)
def test_unsupported_spaces_raise_config_error_naming_space(space):
    with pytest.raises(ConfigError) as info:
        make_head(space, F_IN)
    assert str(space) in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_kinds_options_and_bounds():
    with pytest.raises(ConfigError, match="unknown policy head kind"):
        make_head(BOX, F_IN, "beta")
    with pytest.raises(ConfigError, match="Box"):
        make_head(spaces.Discrete(3), F_IN, "tanh_gaussian")
    with pytest.raises(ConfigError, match="Discrete"):
        make_head(BOX, F_IN, "categorical")
    with pytest.raises(ConfigError, match="bins"):
        make_head(BOX, F_IN, "diag_gaussian", bins=3)
    unbounded = spaces.Box(-np.inf, np.inf, shape=(2,))
    for kind in ("tanh_gaussian", "discretised"):
        with pytest.raises(ConfigError, match="finite") as info:
            make_head(unbounded, F_IN, kind)
        assert str(unbounded) in str(info.value)
    with pytest.raises(ConfigError, match="log_std"):
        make_head(BOX, F_IN, log_std_min=1.0, log_std_max=0.0)
    with pytest.raises(ConfigError, match="kind"):
        head_from_spec({"kind": "nope"}, F_IN)


@pytest.mark.parametrize(
    ("space", "kind", "options"),
    [
        (spaces.Discrete(5, start=-2), "auto", {}),
        (BOX, "diag_gaussian", {"init_std": 0.5}),
        (BOX, "diag_gaussian", {"state_dependent_std": True}),
        (spaces.Box(-np.inf, np.inf, shape=(2,)), "diag_gaussian", {}),
        (BOX, "tanh_gaussian", {"log_std_min": -10.0, "log_std_max": 1.0}),
        (BOX, "tanh_gaussian", {"state_dependent_std": False}),
        (BOX, "deterministic", {}),
        (BOX, "discretised", {"bins": 4}),
    ],
)
def test_spec_round_trip_reproduces_log_probs(space, kind, options):
    head = make_head(space, F_IN, kind, **options)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    spec = json.loads(json.dumps(head.spec(), allow_nan=False))
    rebuilt = head_from_spec(spec, F_IN)
    assert type(rebuilt) is type(head) and rebuilt.spec() == head.spec()
    rebuilt.load_state_dict(head.state_dict())
    x = features(16)
    d1, d2 = head(x), rebuilt(x)
    assert torch.equal(head.to_env_action(d1.mode), rebuilt.to_env_action(d2.mode))
    if kind != "deterministic":
        s = d1.sample()
        assert torch.equal(d1.log_prob(s), d2.log_prob(s))
    else:
        assert torch.equal(d1.mode, d2.mode)


@pytest.mark.parametrize("kind", ["categorical", *BOX_KINDS])
def test_heads_work_as_float64_modules(kind):
    space = spaces.Discrete(3) if kind == "categorical" else BOX
    head = make_head(space, F_IN, kind).double()
    dist = head(features(4, torch.float64))
    s = dist.sample()
    env = head.to_env_action(s)
    if kind in ("categorical", "discretised"):
        assert s.dtype == torch.int64
    else:
        assert s.dtype == torch.float64
    if kind != "categorical":
        assert env.dtype == torch.float64
    if kind != "deterministic":
        assert dist.log_prob(s).dtype == torch.float64
