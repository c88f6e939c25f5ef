"""Tests of the optimiser factory (pgrad.optim): every name learns, resumes bitwise, has plain state_dicts."""

from __future__ import annotations

import copy
import json
import math
import warnings

import pytest
import torch
from gymnasium import spaces
from torch import nn

from pgrad.errors import ConfigError
from pgrad.optim import OPTIMIZERS, CombinedOptimizer, make_optimizer, split_muon_params
from pgrad.policies.networks import Policy, ValueNetwork, mlp

LR = {"sgd": 0.1, "adam": 1e-2, "adamw": 1e-2, "rmsprop": 3e-3, "muon": 1e-2, "laprop": 1e-2}


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny matrices: thread start-up dominates and the machine's cores are shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and the outputs of a fixed random teacher network (learnable by the student MLP)."""
    g = torch.Generator().manual_seed(123)
    x = torch.randn(64, 4, generator=g)
    a, b = torch.randn(4, 8, generator=g), torch.randn(8, 3, generator=g) / math.sqrt(8)
    return x, torch.tanh(x @ a) @ b


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    opt.zero_grad()
    loss = (model(x) - y).square().mean()
    loss.backward()
    opt.step()
    return loss.item()


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_optimizer_names():
    assert OPTIMIZERS == ("sgd", "adam", "adamw", "rmsprop", "muon", "laprop")


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_decreases_regression_loss(name):
    model = _model()
    x, y = _data()
    opt = make_optimizer(name, model.named_parameters(), LR[name])
    assert isinstance(opt, torch.optim.Optimizer)
    first = _step(model, opt, x, y)
    for _ in range(99):
        last = _step(model, opt, x, y)
    assert math.isfinite(last) and last < 0.25 * first, (name, first, last)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_resume_is_bitwise_identical(name):
    x, y = _data()
    options = {"momentum": 0.9} if name in ("sgd", "rmsprop") else {}
    model = _model()
    opt = make_optimizer(name, model.named_parameters(), LR[name], weight_decay=1e-3, **options)
    for _ in range(5):
        _step(model, opt, x, y)
    saved_params = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    for _ in range(5):
        _step(model, opt, x, y)
    expected = _params(model)

    resumed = _model(seed=1)  # different init: everything must come from the saved state
    resumed.load_state_dict(saved_params)
    opt2 = make_optimizer(name, resumed.named_parameters(), LR[name], weight_decay=1e-3, **options)
    opt2.load_state_dict(saved_opt)
    for _ in range(5):
        _step(resumed, opt2, x, y)
    for a, b in zip(expected, _params(resumed), strict=True):
        assert torch.equal(a, b), name


def _walk_plain(obj, path="state_dict"):
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, str)):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _walk_plain(v, f"{path}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, (str, int)), f"{path}: key {k!r}"
            _walk_plain(v, f"{path}[{k!r}]")
        return
    raise AssertionError(f"{path}: {type(obj).__name__} is not a plain value")


def _strip_tensors(obj):
    if isinstance(obj, torch.Tensor):
        return "tensor"
    if isinstance(obj, (list, tuple)):
        return [_strip_tensors(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _strip_tensors(v) for k, v in obj.items()}
    return obj


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_is_made_of_plain_values(name):
    model = _model()
    x, y = _data()
    opt = make_optimizer(name, model.named_parameters(), LR[name])
    for _ in range(3):
        _step(model, opt, x, y)
    sd = opt.state_dict()
    _walk_plain(sd)
    json.dumps(_strip_tensors(sd))  # the non-tensor part is JSON-serialisable
    groups = (
        sd["muon"]["param_groups"] + sd["adamw"]["param_groups"] if name == "muon" else sd["param_groups"]
    )
    assert all(g["initial_lr"] == LR[name] for g in groups)


def test_muon_gets_only_hidden_matrices_of_a_three_layer_mlp():
    model = _model()
    opt = make_optimizer("muon", model.named_parameters(), 1e-3)
    assert isinstance(opt, CombinedOptimizer)
    assert opt.param_names == {
        "muon": ["2.weight"],
        "adamw": ["0.weight", "0.bias", "2.bias", "4.weight", "4.bias"],
    }
    assert isinstance(opt.parts["muon"], torch.optim.Muon)
    assert isinstance(opt.parts["adamw"], torch.optim.AdamW)
    muon_params = [p for g in opt.parts["muon"].param_groups for p in g["params"]]
    assert len(muon_params) == 1 and muon_params[0] is model[2].weight
    assert opt.parts["muon"].param_groups[0]["adjust_lr_fn"] == "match_rms_adamw"
    # plain parameters: the same split, by shape and order
    plain = make_optimizer("muon", model.parameters(), 1e-3)
    assert plain.param_names["muon"] == ["2"]
    assert next(p for g in plain.parts["muon"].param_groups for p in g["params"]) is model[2].weight
    # all parameters are covered exactly once
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())


def test_muon_split_with_log_std_parameter_and_policy_networks():
    class Gaussian(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = mlp(5, (32, 32, 32), 2)
            self.log_std = nn.Parameter(torch.zeros(2))

    muon, adamw = split_muon_params(Gaussian().named_parameters())
    assert [n for n, _ in muon] == ["body.2.weight", "body.4.weight"]
    assert "log_std" in [n for n, _ in adamw]

    policy = Policy(5, spaces.Box(-1, 1, (3,)), hidden_sizes=(64, 64))
    assert [n for n, _ in split_muon_params(policy.named_parameters())[0]] == ["trunk.2.weight"]
    sds = Policy(5, spaces.Box(-1, 1, (3,)), hidden_sizes=(64, 64), state_dependent_std=True)
    assert [n for n, _ in split_muon_params(sds.named_parameters())[0]] == ["trunk.2.weight"]
    value = ValueNetwork(5, hidden_sizes=(64, 64))
    assert [n for n, _ in split_muon_params(value.named_parameters())[0]] == ["net.2.weight"]
    # a shared actor-critic: trunk, then a policy head and a value head reading the same features
    ac = nn.ModuleDict({"trunk": mlp(5, (64, 64)), "pi": nn.Linear(64, 3), "v": nn.Linear(64, 1)})
    assert [n for n, _ in split_muon_params(ac.named_parameters())[0]] == ["trunk.2.weight"]
    # twin critics passed one after the other: same names, split by position
    q1, q2 = ValueNetwork(5, (32, 32)), ValueNetwork(5, (32, 32))
    muon, _ = split_muon_params([*q1.named_parameters(), *q2.named_parameters()])
    assert [p for _, p in muon] == [q1.net[2].weight, q2.net[2].weight]
    with pytest.raises(ConfigError, match="ambiguous"):
        split_muon_params([*q1.named_parameters(), *q2.named_parameters()], muon_params=["net.2.weight"])


def test_muon_explicit_override_and_no_hidden_matrix():
    model = _model()
    opt = make_optimizer("muon", model.named_parameters(), 1e-3, muon_params=["0.weight", "2.weight"])
    assert opt.param_names["muon"] == ["0.weight", "2.weight"]
    opt = make_optimizer("muon", model.parameters(), 1e-3, muon_params=[model[4].weight])
    assert opt.param_names["muon"] == ["4"]
    with pytest.raises(ConfigError, match="2-D"):
        make_optimizer("muon", model.named_parameters(), 1e-3, muon_params=["0.bias"])
    with pytest.raises(ConfigError, match="nope"):
        make_optimizer("muon", model.named_parameters(), 1e-3, muon_params=["nope"])
    shallow = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    with pytest.warns(UserWarning, match="no hidden"):
        opt = make_optimizer("muon", shallow.named_parameters(), 1e-3)
    assert list(opt.parts) == ["adamw"] and set(opt.state_dict()) == {"adamw"}


def test_muon_state_dict_nesting_and_adamw_lr():
    model = _model()
    opt = make_optimizer("muon", model.named_parameters(), 1e-2, adamw_lr=1e-3, momentum=0.9, ns_steps=3)
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 1e-3]
    assert [g["initial_lr"] for g in opt.param_groups] == [1e-2, 1e-3]
    assert opt.parts["muon"].param_groups[0]["momentum"] == 0.9
    assert set(opt.state_dict()) == {"muon", "adamw"}
    with pytest.raises(ConfigError, match="expected parts"):
        opt.load_state_dict({"adamw": opt.state_dict()["adamw"]})
    # param_groups stays in sync with the parts after load_state_dict (which replaces the group dicts)
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt.param_groups[0] is opt.parts["muon"].param_groups[0]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_param_group_lr_writes_take_effect(name):
    x, y = _data()
    ref = _model()
    ref_opt = make_optimizer(name, ref.named_parameters(), LR[name] / 2)
    model = _model()
    opt = make_optimizer(name, model.named_parameters(), LR[name])
    for group in opt.param_groups:
        assert group["initial_lr"] == LR[name]
        group["lr"] = group["initial_lr"] * 0.5
    for _ in range(3):
        _step(ref, ref_opt, x, y)
        _step(model, opt, x, y)
    for a, b in zip(_params(ref), _params(model), strict=True):
        assert torch.equal(a, b), name
    # lr 0 from the start: nothing moves
    frozen = _model()
    opt = make_optimizer(name, frozen.named_parameters(), LR[name])
    for group in opt.param_groups:
        group["lr"] = 0.0
    before = _params(frozen)
    _step(frozen, opt, x, y)
    assert all(torch.equal(a, b) for a, b in zip(before, _params(frozen), strict=True)), name


def test_lr_scheduler_accepts_combined_optimizer():
    model = _model()
    opt = make_optimizer("muon", model.named_parameters(), 1e-2, adamw_lr=4e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5**epoch)
    x, y = _data()
    _step(model, opt, x, y)
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [5e-3, 2e-3]


def test_combined_optimizer_closure_deepcopy_and_state_view():
    model = _model()
    opt = make_optimizer("muon", model.named_parameters(), 1e-2)
    x, y = _data()

    def closure():
        opt.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss)
    assert len(opt.state) == len(list(model.parameters()))
    clone = copy.deepcopy(opt)
    assert clone.param_groups[0] is clone.parts["muon"].param_groups[0]
    assert clone.param_groups[0]["params"][0] is not opt.param_groups[0]["params"][0]
    with pytest.raises(AttributeError):
        opt.param_groups = []


def test_existing_callers_and_options():
    model = _model()
    assert type(make_optimizer("adam", model.parameters(), 1e-3)) is torch.optim.Adam
    assert type(make_optimizer("ADAMW", model.parameters(), 1e-3, 0.01)) is torch.optim.AdamW
    sgd = make_optimizer("sgd", model.parameters(), 0.1, momentum=0.9, nesterov=True)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["nesterov"]
    rms = make_optimizer("rmsprop", model.parameters(), 1e-3)
    assert rms.param_groups[0]["eps"] == 1e-8 and rms.param_groups[0]["alpha"] == 0.99  # torch defaults
    rms = make_optimizer("rmsprop", model.parameters(), 1e-3, alpha=0.9, eps=1e-5, momentum=0.5)
    assert (rms.param_groups[0]["alpha"], rms.param_groups[0]["eps"], rms.param_groups[0]["momentum"]) == (
        0.9,
        1e-5,
        0.5,
    )
    from pytorch_optimizer import LaProp

    assert isinstance(make_optimizer("laprop", model.parameters(), 1e-3), LaProp)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "lion"}, "unknown optimizer 'lion' \\(known: sgd, adam, adamw, rmsprop, muon, laprop\\)"),
        ({"lr": 0.0}, "learning rate must be > 0, got 0.0"),
        ({"lr": -1e-3}, "learning rate must be > 0"),
        ({"lr": float("nan")}, "learning rate must be > 0"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"nesterov": True}, "unknown option\\(s\\) nesterov"),
        ({"name": "sgd", "nesterov": True}, "optimizer 'sgd'"),  # torch: nesterov needs momentum
        ({"name": "muon", "adjust_lr_fn": "bogus"}, "bogus"),
        ({"name": "muon", "adamw_lr": 0}, "adamw_lr"),
    ],
)
def test_config_errors(kwargs, match):
    model = _model()
    args = {"name": "adam", "params": model.named_parameters(), "lr": 1e-3, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match=match):
            make_optimizer(**args)


def test_bad_params_raise_config_error():
    model = _model()
    with pytest.raises(ConfigError, match="empty"):
        make_optimizer("adam", [], 1e-3)
    with pytest.raises(ConfigError, match="single tensor"):
        make_optimizer("adam", model[0].weight, 1e-3)
    with pytest.raises(ConfigError, match="mixes"):
        make_optimizer("adam", [model[0].weight, ("b", model[0].bias)], 1e-3)
    with pytest.raises(ConfigError, match="more than once"):
        make_optimizer("adam", [model[0].weight, model[0].weight], 1e-3)
