"""Tests of ActorCritic (pgrad.policies.networks): shared trunk, critic heads, spec round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

from pgrad.errors import ConfigError
from pgrad.policies.networks import ActorCritic, Policy

BOX = spaces.Box(low=np.array([-2, 0], np.float32), high=np.array([2, 1], np.float32))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def perturbed(module):
    """Random weights everywhere (fresh heads start near zero and would hide mistakes)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))
    return module


def test_value_critic_shares_the_policy_trunk():
    ac = perturbed(ActorCritic(4, spaces.Discrete(3), hidden_sizes=(16, 8)))
    obs = torch.randn(5, 4)
    dist, values = ac(obs)
    assert values.shape == (5,) and dist.logits.shape == (5, 3)
    torch.testing.assert_close(values, ac.value(obs))
    torch.testing.assert_close(values, ac.value_head(ac.policy.features(obs)).squeeze(-1))
    torch.testing.assert_close(dist.logits, ac.distribution(obs).logits)
    # The critic's gradient reaches the shared trunk; the policy head is not touched by it.
    values.sum().backward()
    assert ac.policy.trunk[0].weight.grad.abs().sum() > 0
    assert ac.policy.head.logits.weight.grad is None
    assert ac.head is ac.policy.head


def test_discrete_q_head_and_box_q_head():
    q = ActorCritic(4, spaces.Discrete(3), hidden_sizes=(8,), value_outputs=3)
    assert q.value(torch.randn(5, 4)).shape == (5, 3)
    qa = perturbed(ActorCritic(3, BOX, hidden_sizes=(8,), action_dim=2))
    obs, a = torch.randn(5, 3), torch.randn(5, 2)
    out = qa.value(obs, a)
    assert out.shape == (5,)
    features = qa.features(obs)
    torch.testing.assert_close(out, qa.value_head(torch.cat([features, a], -1)).squeeze(-1))
    assert not torch.allclose(out, qa.value(obs, a + 1.0))  # Q depends on the action
    with pytest.raises(ConfigError, match="actions"):
        qa.value(obs)
    with pytest.raises(ConfigError, match="action_dim"):
        q.value(torch.randn(5, 4), torch.randn(5, 2))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"action_space": spaces.Discrete(3), "normalize_obs": True},
        {"action_space": spaces.Discrete(3), "value_outputs": 3, "layer_norm": True},
        {"action_space": BOX, "action_dim": 2, "head": "tanh_gaussian", "hidden_sizes": (8, 8)},
        {"action_space": BOX, "head": "discretised", "bins": 5, "value_gain": 0.5},
    ],
)
def test_spec_round_trip_rebuilds_the_module_and_the_policy_alone(kwargs):
    ac = perturbed(ActorCritic(3, **kwargs))
    if ac.normalizer is not None:
        ac.normalizer.update(torch.randn(50, 3) * 4 + 1)
    spec = json.loads(json.dumps(ac.spec()))  # JSON-serialisable
    twin = ActorCritic.from_spec(spec)
    twin.load_state_dict(ac.state_dict())
    obs = torch.randn(6, 3)
    actions = torch.randn(6, ac.action_dim) if ac.action_dim else None
    torch.testing.assert_close(twin.value(obs, actions), ac.value(obs, actions))
    sample = ac.distribution(obs).sample()
    torch.testing.assert_close(twin.distribution(obs).log_prob(sample), ac.distribution(obs).log_prob(sample))
    # What pgrad.load does with algo.policy: rebuild the actor alone from its own spec and weights.
    policy = Policy.from_spec(json.loads(json.dumps(ac.policy.spec())))
    policy.load_state_dict(ac.policy.state_dict())
    torch.testing.assert_close(
        policy.distribution(obs).log_prob(sample), ac.distribution(obs).log_prob(sample)
    )
    torch.testing.assert_close(policy.act(obs, deterministic=True), ac.act(obs, deterministic=True))


def test_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="value_outputs"):
        ActorCritic(3, spaces.Discrete(2), value_outputs=0)
    with pytest.raises(ConfigError, match="action_dim"):
        ActorCritic(3, spaces.Discrete(2), action_dim=-1)
    with pytest.raises(ConfigError, match="value_outputs"):
        ActorCritic.from_spec({"policy": ActorCritic(3, spaces.Discrete(2)).policy.spec()})
