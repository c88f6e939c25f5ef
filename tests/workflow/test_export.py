"""`pgrad export`: the written file computes `pgrad.load(run).act(obs, deterministic=True)`, normalisation and
the head's map to env actions included, for discrete, continuous and critic-family policies."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.cli import main
from pgrad.errors import ConfigError
from pgrad.policies.networks import Policy
from pgrad.run.evaluate import Agent
from pgrad.workflow.export import description_path, export

TINY = dict(num_envs=2, eval_episodes=0, progress=False, tensorboard=False, seed=0)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str]:
    """Tiny runs: PPO on CartPole (categorical head), PPO with observation normalisation on Pendulum
    (Gaussian head), SAC (tanh-Gaussian) and TD3 (deterministic) on Pendulum."""
    root = tmp_path_factory.mktemp("export")
    specs = {
        "ppo-discrete": ("ppo", "CartPole-v1", dict(total_steps=1_000, update_epochs=2)),
        "ppo-normalised": (
            "ppo",
            "Pendulum-v1",
            dict(total_steps=1_024, normalize_obs=True, num_steps=256, num_minibatches=4, update_epochs=2),
        ),
        "sac": ("sac", "Pendulum-v1", dict(total_steps=300, learning_starts=200, num_envs=1)),
        "td3": ("td3", "Pendulum-v1", dict(total_steps=300, learning_starts=200, num_envs=1)),
    }
    for name, (algo, env, options) in specs.items():
        options = {**TINY, **options}
        pgrad.train(algo, env, run_dir=str(root / name), **options)
    return {name: str(root / name) for name in specs}


def observations(space: spaces.Space, n: int = 100, seed: int = 7) -> np.ndarray:
    """`n` observations from `space` (unbounded entries drawn from N(0, 1)), float32 for a Box."""
    space = copy.deepcopy(space)
    space.seed(seed)
    batch = np.stack([space.sample() for _ in range(n)])
    return batch if isinstance(space, spaces.Discrete) else batch.astype(np.float32)


def assert_same_actions(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    if np.issubdtype(want.dtype, np.integer):
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["ppo-discrete", "ppo-normalised", "sac"])
def test_onnx_file_matches_the_agent(runs, name):
    path = export(runs[name], format="onnx")
    assert path == Path(runs[name]) / "export" / "policy.onnx"
    agent = pgrad.load(runs[name])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == (
        "obs",
        "tensor(float)",
        ["batch", *agent.observation_space.shape],
    )
    obs = observations(agent.observation_space)
    assert_same_actions(session.run(["action"], {"obs": obs})[0], agent.act(obs, deterministic=True))
    assert_same_actions(session.run(["action"], {"obs": obs[:1]})[0], agent.act(obs[:1]))  # batch of one


@pytest.mark.parametrize("name", ["ppo-discrete", "ppo-normalised", "td3"])
def test_torchscript_file_matches_the_agent(runs, name, tmp_path):
    path = export(runs[name], format="torchscript", out=tmp_path / "policy.pt")
    agent = pgrad.load(runs[name])
    loaded = torch.jit.load(str(path))
    obs = observations(agent.observation_space)
    with torch.inference_mode():
        got = loaded(torch.as_tensor(obs)).numpy()
    assert_same_actions(got, agent.act(obs, deterministic=True))


def test_the_file_uses_the_normaliser_statistics(runs, tmp_path):
    """Statistics moved far from the run's: the file follows them (and they change the actions)."""
    agent = pgrad.load(runs["ppo-normalised"])
    obs = observations(agent.observation_space)
    before = agent.act(obs)
    with torch.no_grad():
        agent.policy.normalizer.mean.add_(torch.tensor([0.5, -0.5, 2.0], dtype=torch.float64))
        agent.policy.normalizer.var.mul_(4.0)
    after = agent.act(obs)
    assert np.abs(after - before).max() > 1e-3  # a file that skipped normalisation could not match both
    path = export(agent, format="torchscript", out=tmp_path / "moved.pt")
    with torch.inference_mode():
        assert_same_actions(torch.jit.load(str(path))(torch.as_tensor(obs)).numpy(), after)
    without = copy.deepcopy(agent.policy)
    without.normalizer = None
    with torch.inference_mode():
        raw = without.act(torch.as_tensor(obs), deterministic=True).numpy()
    assert np.abs(raw - after).max() > 1e-3


def hand_built(observation_space: spaces.Space, action_space: spaces.Space, head: str) -> Agent:
    """An agent with random weights and non-trivial normaliser statistics, for a head no tiny run trains."""
    from pgrad.envs.spaces import obs_dim

    torch.manual_seed(0)
    policy = Policy(obs_dim(observation_space), action_space, head=head, normalize_obs=True)
    policy.normalizer.update(torch.randn(64, obs_dim(observation_space)) * 3 + 1)
    return Agent(policy, observation_space, action_space, {})


@pytest.mark.parametrize(
    "observation_space, action_space, head",
    [
        (spaces.Discrete(16, start=3), spaces.Discrete(4, start=1), "categorical"),  # one-hot in, start out
        (spaces.Box(0, 255, (3, 4, 2), np.uint8), spaces.Box(-1.0, 1.0, (2,)), "discretised"),  # flattened
        (spaces.Box(-np.inf, np.inf, (5,)), spaces.Box(-np.inf, np.inf, (3,)), "diag_gaussian"),  # no clip
        (
            spaces.Box(-np.inf, np.inf, (5,)),
            spaces.Box(np.array([-1.0, -np.inf], np.float32), np.array([1.0, 5.0], np.float32)),
            "deterministic",  # squashed in one dimension, clamped above in the other
        ),
    ],
    ids=["discrete-obs", "discretised", "unbounded-gaussian", "half-bounded-deterministic"],
)
def test_every_head_and_observation_kind(tmp_path, observation_space, action_space, head):
    agent = hand_built(observation_space, action_space, head)
    path = export(agent, format="torchscript", out=tmp_path / "p.pt")
    obs = observations(observation_space)
    with torch.inference_mode():
        got = torch.jit.load(str(path))(torch.as_tensor(obs)).numpy()
    assert_same_actions(got, agent.act(obs))


def test_description_beside_the_file(runs):
    path = export(runs["ppo-normalised"], format="torchscript")
    assert path == Path(runs["ppo-normalised"]) / "export" / "policy.pt"
    text = description_path(path).read_text()
    assert description_path(path).name == "policy.pt.json"

    def refuse(constant: str):
        raise AssertionError(f"non-standard JSON constant {constant}")

    info = json.loads(text, parse_constant=refuse)
    assert info["input"] | {"what": None} == {
        "name": "obs",
        "shape": ["batch", 3],
        "dtype": "float32",
        "what": None,
    }
    assert info["output"]["name"] == "action" and info["output"]["shape"] == ["batch", 1]
    assert info["output"]["dtype"] == "float32"
    assert info["observation_normalisation"] is True and info["policy_head"] == "diag_gaussian"
    assert info["action_space"] == {
        "type": "Box",
        "low": [-2.0],
        "high": [2.0],
        "shape": [1],
        "dtype": "float32",
    }
    assert (info["algorithm"], info["env"], info["global_step"]) == ("ppo", "Pendulum-v1", 1024)
    assert info["check"]["observations"] == 64 and info["check"]["max_abs_diff"] < 1e-5
    discrete = json.loads(description_path(export(runs["ppo-discrete"], format="torchscript")).read_text())
    assert discrete["output"] | {"what": None} == {
        "name": "action",
        "shape": ["batch"],
        "dtype": "int64",
        "what": None,
    }
    assert (
        discrete["observation_space"]["high"][1] is None
    )  # CartPole's unbounded velocity: null, not Infinity


def test_cli_export_and_its_errors(runs, tmp_path, capsys):
    assert main(["export", runs["td3"], "--format", "torchscript", "--out", str(tmp_path / "td3.pt")]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'td3.pt'}: td3 policy at step 300 on Pendulum-v1" in out
    assert f"description: {tmp_path / 'td3.pt.json'}" in out
    for argv, message in [
        (["--format", "tflite"], "--format"),
        (["--format", "onnx", "--out", str(tmp_path / "p.pt")], "p.pt: --format onnx writes a .onnx file"),
    ]:
        assert main(["export", runs["td3"], *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pgrad: error:") and message in err and "\n" not in err
    with pytest.raises(ConfigError, match="--format must be one of onnx, torchscript"):
        export(runs["td3"], format="tflite")
    with pytest.raises(ConfigError, match="needs out=FILE"):
        export(hand_built(spaces.Discrete(3), spaces.Discrete(2), "categorical"), format="torchscript")


def test_a_file_that_disagrees_with_the_policy_is_refused_and_removed(tmp_path, monkeypatch):
    from pgrad.workflow.export import DeterministicAction

    agent = hand_built(spaces.Box(-1.0, 1.0, (3,)), spaces.Box(-1.0, 1.0, (2,)), "diag_gaussian")
    forward = DeterministicAction.forward
    monkeypatch.setattr(DeterministicAction, "forward", lambda self, obs: forward(self, obs) + 1e-3)
    with pytest.raises(
        ConfigError, match=r"p\.pt: the exported file's action differs from the policy's by up to"
    ):
        export(agent, format="torchscript", out=tmp_path / "p.pt")
    assert not (tmp_path / "p.pt").exists() and not (tmp_path / "p.pt.json").exists()


def test_refuses_an_unknown_head_or_policy_type(tmp_path):
    agent = hand_built(spaces.Discrete(3), spaces.Discrete(2), "categorical")
    agent.policy.head.kind = "mixture"
    with pytest.raises(ConfigError, match="head 'mixture' cannot be exported"):
        export(agent, format="torchscript", out=tmp_path / "p.pt")
    assert not (tmp_path / "p.pt").exists()
    agent.policy = torch.nn.Linear(3, 2)  # not a feed-forward pgrad Policy
    with pytest.raises(ConfigError, match="a Linear cannot be exported"):
        export(agent, format="torchscript", out=tmp_path / "p.pt")
