"""The imitative prior of the score-function algorithms: --init-from, --prior-kl β, --prior-from.

The KL term against the written formulas (value and gradient), the exact start from the prior's weights, a
frozen prior that survives a resume without its folder (bitwise), refusals, and (slow) the CartPole
acceptance: PPO from a BC prior of 10 expert episodes against PPO from scratch.
"""

from __future__ import annotations

import math
import shutil

import gymnasium as gym
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

import pgrad
from pgrad.algorithms import get_algorithm
from pgrad.algorithms.common import ImitativePrior, policy_kl
from pgrad.envs.gym import GymVecEnv
from pgrad.errors import ConfigError
from pgrad.policies.distributions import TanhGaussian
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint
from pgrad.run.seeding import seed_everything

QUIET = dict(progress=False, tensorboard=False)
CPU = torch.device("cpu")


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


# -- the KL term against its formula -----------------------------------------------------------------------
def categorical_kl(logits_p, logits_q):
    """KL(p ‖ q) = Σ_a p(a) (log p(a) − log q(a)), written out."""
    log_p, log_q = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def gaussian_kl(mu_p, std_p, mu_q, std_q):
    """KL(N(μp, σp²) ‖ N(μq, σq²)) summed over dimensions: log(σq/σp) + (σp² + (μp − μq)²)/(2σq²) − ½."""
    terms = torch.log(std_q / std_p) + (std_p**2 + (mu_p - mu_q) ** 2) / (2 * std_q**2) - 0.5
    return terms.sum(-1)


def test_categorical_kl_and_its_gradient_match_the_formula():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    prior = torch.randn(6, 4, dtype=torch.float64)
    kl = policy_kl(Categorical(logits=logits), Categorical(logits=prior))
    expected = categorical_kl(logits, prior)
    torch.testing.assert_close(kl, expected, rtol=1e-12, atol=1e-12)
    # KL is not symmetric: the direction matters (πθ first)
    assert not torch.allclose(kl, categorical_kl(prior, logits))
    (grad,) = torch.autograd.grad(kl.mean(), logits)
    (want,) = torch.autograd.grad(expected.mean(), logits)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-12)
    # the gradient written by hand: ∂KL/∂z_a = p_a (log p_a − log q_a − KL)
    p = logits.detach().softmax(-1)
    by_hand = p * (p.log() - prior.log_softmax(-1) - expected.detach()[:, None]) / 6
    torch.testing.assert_close(grad, by_hand, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("squashed", [False, True])
def test_gaussian_kl_and_its_gradient_match_the_formula(squashed):
    torch.manual_seed(1)
    mu = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    log_std = (0.3 * torch.randn(5, 3, dtype=torch.float64)).requires_grad_()
    mu_q, std_q = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64) + 0.5
    if squashed:  # tanh-Gaussian: the KL of the Gaussians before the (bijective) squash
        low, high = -torch.ones(3, dtype=torch.float64), 2 * torch.ones(3, dtype=torch.float64)
        p, q = TanhGaussian(mu, log_std.exp(), low, high), TanhGaussian(mu_q, std_q, low, high)
    else:
        p, q = Independent(Normal(mu, log_std.exp()), 1), Independent(Normal(mu_q, std_q), 1)
    kl = policy_kl(p, q)
    expected = gaussian_kl(mu, log_std.exp(), mu_q, std_q)
    torch.testing.assert_close(kl, expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(kl, gaussian_kl(mu_q, std_q, mu, log_std.exp()))
    grads = torch.autograd.grad(kl.mean(), (mu, log_std))
    wants = torch.autograd.grad(expected.mean(), (mu, log_std))
    for grad, want in zip(grads, wants, strict=True):
        torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-12)


class _FixedPrior(ImitativePrior):
    """An ImitativePrior around a given prior policy (no run folder)."""

    def __init__(self, prior, beta):
        self.beta, self.prior, self.missing = beta, prior, []


def test_the_penalty_is_beta_times_the_masked_mean_kl_to_a_frozen_prior():
    torch.manual_seed(2)
    from pgrad.policies.networks import Policy

    space = gym.spaces.Discrete(3)
    policy, prior = Policy(4, space, hidden_sizes=(8,)), Policy(4, space, hidden_sizes=(8,))
    with torch.no_grad():  # heads far from uniform, so the per-state KLs are O(1) and differ
        policy.head.logits.weight.normal_(0, 2)
        prior.head.logits.weight.normal_(0, 2)
    prior.requires_grad_(False)
    before = flat(prior)
    term = _FixedPrior(prior, beta=0.3)
    obs = torch.randn(10, 4)
    mask = torch.tensor([1, 1, 0, 1, 0, 0, 1, 1, 1, 0], dtype=torch.bool)
    penalty, mean_kl = term.penalty(obs, policy.distribution(obs), mask)
    with torch.no_grad():
        per_state = categorical_kl(policy.distribution(obs).logits, prior.distribution(obs).logits)
    assert float(per_state.min()) > 1e-3 and float(per_state[mask].mean()) != float(per_state.mean())
    torch.testing.assert_close(mean_kl, per_state[mask].mean())
    torch.testing.assert_close(penalty, 0.3 * per_state[mask].mean())
    unmasked, _ = term.penalty(obs, policy.distribution(obs))
    torch.testing.assert_close(unmasked, 0.3 * per_state.mean())
    penalty.backward()
    assert all(p.grad is None for p in prior.parameters())
    assert torch.equal(flat(prior), before)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


# -- every score-function algorithm, on a real prior run -----------------------------------------------------
SMALL = {
    "reinforce": dict(num_envs=2, episodes_per_update=2),
    "vpg": dict(num_envs=2, steps_per_epoch=64, value_iters=1),
    "a2c": dict(num_envs=2, num_steps=16),
    "npg": dict(num_envs=2, num_steps=32, value_epochs=1),
    "trpo": dict(num_envs=2, num_steps=32, value_epochs=1),
    "ppo": dict(num_envs=2, num_steps=32, update_epochs=2, num_minibatches=2),
    "grpo": dict(num_groups=1, group_size=2, update_epochs=1, num_minibatches=1),
    "rloo": dict(num_groups=1, group_size=2, update_epochs=1, num_minibatches=1),
    "is_pg": dict(num_envs=2, episodes_per_update=2),
}


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory):
    """A short PPO run on CartPole (64×64 tanh, the defaults): the prior and the initialisation."""
    folder = tmp_path_factory.mktemp("prior") / "ppo"
    pgrad.train(
        "ppo",
        "CartPole-v1",
        total_steps=512,
        run_dir=str(folder),
        eval_episodes=0,
        preset=False,
        num_envs=2,
        num_steps=128,
        **QUIET,
    )
    return folder


@pytest.fixture(scope="module")
def other_run(tmp_path_factory):
    """A PPO run on another env (Acrobot: obs_dim 6, 3 actions)."""
    folder = tmp_path_factory.mktemp("other") / "ppo"
    options = dict(eval_episodes=0, preset=False, num_envs=1, num_steps=32, **QUIET)
    pgrad.train("ppo", "Acrobot-v1", total_steps=32, run_dir=str(folder), **options)
    return folder


def make_algo(name, seed=0, **options):
    cls = get_algorithm(name)
    config = cls.Config(**{"hidden_sizes": (64, 64), **SMALL[name], **options})
    seed_everything(seed)
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=40), num_envs=config.num_envs)
    return cls(config, envs, seed=seed, device=CPU, total_steps=10_000)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_init_from_starts_at_the_prior_and_the_kl_starts_at_zero(prior_run, name):
    prior = pgrad.load(prior_run).policy
    algo = make_algo(name, init_from=str(prior_run), prior_kl=0.5)
    assert torch.equal(flat(algo.policy), flat(prior))  # exactly the prior's weights
    assert torch.equal(flat(algo.prior.prior), flat(prior))
    assert all(p.requires_grad for p in algo.policy.parameters())
    assert not any(p.requires_grad for p in algo.prior.prior.parameters())
    obs = torch.randn(16, 4)
    penalty, kl = algo.prior.penalty(obs, algo.policy.distribution(obs))
    assert float(kl) == 0.0
    penalty.backward()
    assert all(p.grad is None or float(p.grad.abs().max()) < 1e-7 for p in algo.policy.parameters())
    metrics = algo.iteration(0).metrics
    assert "stats/prior_kl" in metrics and math.isfinite(float(metrics["stats/prior_kl"]))
    assert torch.equal(flat(algo.prior.prior), flat(prior))  # frozen through the update
    assert "prior" in algo.state_dict()


@pytest.mark.parametrize("name", ["reinforce", "is_pg", "grpo"])
def test_the_kl_counts_the_steps_of_the_episodes_only(prior_run, name, monkeypatch):
    """Episode rollouts are padded after each episode's end: the KL averages over the real steps only."""
    seen = []
    penalty = ImitativePrior.penalty

    def spy(self, obs, dist, mask=None):
        seen.append(len(obs) if mask is None else int(mask.sum()))
        return penalty(self, obs, dist, mask)

    monkeypatch.setattr(ImitativePrior, "penalty", spy)
    algo = make_algo(name, init_from=str(prior_run), prior_kl=0.5)
    result = algo.iteration(0)
    steps = int(result.episode_lengths.sum())
    assert steps < 40 * len(result.episode_lengths) or name != "reinforce"  # some episodes ended early
    assert seen and all(n == steps for n in seen)  # full-batch steps: every real step, no padding


def test_init_from_copies_a_compatible_value_network(prior_run):
    state, _ = load_checkpoint(latest_checkpoint(prior_run / "checkpoints"))
    value = {k[6:]: v for k, v in state["algorithm"]["model"].items() if k.startswith("value.")}
    algo = make_algo("ppo", init_from=str(prior_run))
    assert all(torch.equal(algo.value.state_dict()[k], v) for k, v in value.items())
    assert algo.prior.prior is None and "prior" not in algo.state_dict()  # no KL term without β


def test_the_prior_pulls_a_training_policy_back(prior_run):
    """Same seed, same data stream: with β the policy ends closer to the prior than without."""
    obs = torch.randn(256, 4)

    def kl_after(beta):
        algo = make_algo("vpg", init_from=str(prior_run), prior_kl=beta, lr=0.05, seed=3)
        for i in range(3):
            algo.iteration(i)
        prior = pgrad.load(prior_run).policy
        with torch.no_grad():
            return float(policy_kl(algo.policy.distribution(obs), prior.distribution(obs)).mean())

    assert kl_after(0.0) > 0.0
    assert kl_after(10.0) < 0.5 * kl_after(0.0)


def test_a_different_prior_from_gives_a_positive_kl(prior_run, tmp_path):
    algo = make_algo("ppo", init_from=str(prior_run), prior_kl=1.0, prior_from=str(prior_run))
    obs = torch.randn(8, 4)
    assert float(algo.prior.penalty(obs, algo.policy.distribution(obs))[1]) == 0.0
    fresh = make_algo("ppo", prior_kl=1.0, prior_from=str(prior_run))  # from scratch, towards the run
    assert not torch.equal(flat(fresh.policy), flat(fresh.prior.prior))
    assert float(fresh.prior.penalty(obs, fresh.policy.distribution(obs))[1]) > 0.0


# -- refusals ------------------------------------------------------------------------------------------------
def test_incompatible_priors_are_refused_naming_the_folders(prior_run, other_run):
    with pytest.raises(
        ConfigError, match=rf"init_from '{other_run}'.*obs_dim 6 / Discrete\(3\).*has 4 / Discrete\(2\)"
    ):
        make_algo("ppo", init_from=str(other_run))
    with pytest.raises(ConfigError, match=rf"prior_from '{other_run}'.*obs_dim 6"):
        make_algo("ppo", init_from=str(prior_run), prior_kl=0.1, prior_from=str(other_run))
    with pytest.raises(ConfigError, match=rf"init_from '{prior_run}'.*hidden_sizes \(64, 64\).*\(32,\)"):
        make_algo("ppo", init_from=str(prior_run), hidden_sizes=(32,))
    with pytest.raises(ConfigError, match="prior_kl > 0 needs a prior"):
        make_algo("ppo", prior_kl=0.1)
    with pytest.raises(ConfigError, match="prior_kl must be >= 0"):
        make_algo("ppo", init_from=str(prior_run), prior_kl=-1.0)
    with pytest.raises(ConfigError, match="only used with --prior-kl"):
        make_algo("ppo", prior_from=str(prior_run))


def test_a_missing_prior_folder_is_refused_before_training(tmp_path):
    algo = make_algo("ppo", init_from=str(tmp_path / "nowhere"), prior_kl=0.1)
    with pytest.raises(ConfigError, match=r"init_from '.*nowhere': no such run folder"):
        algo.iteration(0)


# -- resume --------------------------------------------------------------------------------------------------
def test_resume_keeps_the_prior_without_its_folder_bitwise(prior_run, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(prior_run, source)
    options = dict(
        init_from=str(source),
        prior_kl=0.2,
        seed=4,
        eval_episodes=0,
        checkpoint_every=0,
        preset=False,
        num_envs=2,
        num_steps=64,
        update_epochs=2,
        num_minibatches=2,
        anneal_lr=False,  # the split run's budget changes at the resume: no schedule over it
        **QUIET,
    )
    pgrad.train("ppo", "CartPole-v1", total_steps=512, run_dir=str(tmp_path / "straight"), **options)
    pgrad.train("ppo", "CartPole-v1", total_steps=256, run_dir=str(tmp_path / "split"), **options)
    shutil.rmtree(source)  # the resumed run must not need it
    pgrad.resume(tmp_path / "split", total_steps=512, progress=False)
    states = [
        load_checkpoint(latest_checkpoint(tmp_path / r / "checkpoints"))[0] for r in ("straight", "split")
    ]
    a, b = (s["algorithm"] for s in states)
    prior = pgrad.load(prior_run).policy.state_dict()
    assert all(torch.equal(b["prior"]["weights"][k], v) for k, v in prior.items())
    for key in ("model", "prior"):
        left, right = (
            a[key] if key == "model" else a[key]["weights"],
            b[key] if key == "model" else b[key]["weights"],
        )
        assert left.keys() == right.keys()
        assert [k for k in left if not torch.equal(left[k], right[k])] == [], key


# -- acceptance (slow) ---------------------------------------------------------------------------------------
def steps_to_solve(run_dir) -> int | None:
    """The env step of the first 20-episode evaluation with mean return >= 475 (None: never)."""
    from pgrad.run.logger import read_metrics

    for record in read_metrics(run_dir):
        if record.get("eval/mean_return", -1) >= 475:
            return int(record["global_step"])
    return None


@pytest.mark.slow
def test_ppo_from_a_bc_prior_solves_cartpole_in_a_third_of_the_steps(tmp_path):
    from pgrad.workflow.bc import bc

    pgrad.train("ppo", "CartPole-v1", total_steps=20_000, seed=0, run_dir=str(tmp_path / "expert"), **QUIET)
    # evaluate after every PPO update (8 envs × 32 steps = 256 env steps with the CartPole preset)
    watch = dict(eval_every=256, eval_episodes=20, target_return=475.0, checkpoint_every=0, **QUIET)
    scratch, prior = {}, {}
    for seed in range(5):
        fitted = bc(from_run=tmp_path / "expert", episodes=10, run_dir=tmp_path / f"bc{seed}", seed=seed)
        options = dict(total_steps=60_000, seed=seed, **watch)
        pgrad.train("ppo", "CartPole-v1", run_dir=str(tmp_path / f"scratch{seed}"), **options)
        pgrad.train(
            "ppo",
            "CartPole-v1",
            run_dir=str(tmp_path / f"prior{seed}"),
            init_from=fitted["run_dir"],
            prior_kl=0.1,
            **options,
        )
        scratch[seed] = steps_to_solve(tmp_path / f"scratch{seed}")
        prior[seed] = steps_to_solve(tmp_path / f"prior{seed}")
        print(
            f"seed {seed}: BC val acc {fitted['val_accuracy']:.3f}, BC eval {fitted['eval_mean_return']}, "
            f"scratch {scratch[seed]}, from BC prior {prior[seed]}"
        )
    wins = sum(prior[s] is not None and (scratch[s] is None or 3 * prior[s] <= scratch[s]) for s in range(5))
    assert wins >= 4, (scratch, prior)
