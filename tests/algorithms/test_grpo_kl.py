"""GRPO's KL term moves the parameters as it should: its gradient is the derivative of β·mean w·D written out
by hand, it vanishes at the reference, and it pulls the policy back towards the reference."""

import copy
import itertools

import gymnasium as gym
import pytest
import torch

from pgrad.algorithms.score_function.grpo import GRPO, Config
from pgrad.envs.gym import GymVecEnv
from pgrad.run.seeding import seed_everything

CPU = torch.device("cpu")


def make_algo(**options):
    config = Config(
        **{"num_groups": 2, "group_size": 3, "hidden_sizes": (8,), "max_grad_norm": 0.0, **options}
    )
    seed_everything(0)
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=15), num_envs=config.num_envs)
    return GRPO(config, envs, seed=0, device=CPU, total_steps=10_000)


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def kl_batch(algo, advantages=0.0):
    rollout = algo.collect(0)
    mask = rollout.mask
    obs, actions = rollout.obs[mask], rollout.actions[mask]
    with torch.no_grad():
        ref = algo.reference.distribution(obs).log_prob(actions)
    return {
        "obs": obs,
        "actions": actions,
        "log_probs": rollout.log_probs[mask],
        "advantages": torch.full((len(obs),), float(advantages)),
        "weights": torch.linspace(0.5, 1.5, len(obs)),
        "ref_log_probs": ref,
    }


def perturb(policy, scale=0.3):
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("beta", [0.25, 1.0])
def test_the_kl_step_is_minus_beta_times_the_hand_derived_gradient(beta):
    algo = make_algo(beta=beta, optimizer="sgd", lr=1.0)
    batch = kl_batch(algo)  # zero advantages: only the KL term has a gradient
    perturb(algo.policy)
    params = list(algo.policy.parameters())
    logp = algo.policy.distribution(batch["obs"]).log_prob(batch["actions"])
    # D = π_ref/π − log(π_ref/π) − 1, so ∂D/∂θ = (1 − π_ref/π) ∂ log π/∂θ
    coefficient = batch["weights"] * (1 - torch.exp(batch["ref_log_probs"] - logp)).detach()
    grads = torch.autograd.grad((coefficient * logp).mean(), params)
    expected = flat(algo.policy) - beta * torch.cat([g.flatten() for g in grads])
    info = algo._minibatch_step(batch)
    torch.testing.assert_close(flat(algo.policy), expected, rtol=1e-5, atol=1e-7)
    assert info["loss/kl_ref"] > 0


def test_beta_changes_the_update_only_once_the_policy_has_left_the_reference():
    def update(beta, epochs):
        algo = make_algo(beta=beta, update_epochs=epochs, num_minibatches=2, optimizer="sgd", lr=0.5)
        torch.manual_seed(3)
        algo.iteration(0)
        return flat(algo.policy)

    # first minibatch: θ = θ_ref, a zero KL gradient; the second one sees the moved policy
    assert not torch.allclose(update(0.0, 2), update(2.0, 2), rtol=1e-4, atol=1e-6)
    algo = make_algo(beta=2.0, update_epochs=1, num_minibatches=1, optimizer="sgd", lr=0.5)
    plain = make_algo(beta=0.0, update_epochs=1, num_minibatches=1, optimizer="sgd", lr=0.5)
    for a in (algo, plain):
        torch.manual_seed(3)
        a.iteration(0)
    torch.testing.assert_close(flat(algo.policy), flat(plain.policy), rtol=1e-6, atol=1e-7)
    assert plain.reference is None  # β = 0: no reference, no reference pass


def test_the_kl_term_pulls_the_policy_back_to_the_reference():
    algo = make_algo(beta=1.0, optimizer="sgd", lr=0.5)
    batch = kl_batch(algo)
    perturb(algo.policy, 0.5)
    kls = [float(algo._minibatch_step(batch)["stats/kl_ref"]) for _ in range(20)]
    assert kls[-1] < 0.5 * kls[0]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(kls))


def test_the_reference_is_frozen_and_saved():
    algo = make_algo(beta=0.5, optimizer="sgd", lr=0.5)
    ref = copy.deepcopy(flat(algo.reference))
    torch.testing.assert_close(ref, flat(algo.policy), rtol=0, atol=0)  # 'initial': the starting policy
    batch = kl_batch(algo, advantages=1.0)
    for _ in range(3):
        algo._minibatch_step(batch)
    assert not torch.equal(flat(algo.policy), ref)
    torch.testing.assert_close(flat(algo.reference), ref, rtol=0, atol=0)
    saved = algo.state_dict()["reference"]
    torch.testing.assert_close(torch.cat([v.flatten() for v in saved.values()]), ref, rtol=0, atol=0)
