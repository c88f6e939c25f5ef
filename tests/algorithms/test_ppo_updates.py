"""PPO's whole update, past the first epoch, held against a plain re-implementation written from the paper:
epochs of (shuffled) minibatches with the clip active, per-minibatch advantage standardisation, value
clipping, gradient-norm clipping, early stopping on the KL, the KL-penalty loss with its adaptive β, reward
scaling and the annealed learning rate and clip range."""

import copy

import gymnasium as gym
import pytest
import torch

from pgrad.algorithms.score_function.ppo import PPO, Config
from pgrad.envs.gym import GymVecEnv
from pgrad.estimators import gae
from pgrad.policies.normalizers import RewardScaler
from pgrad.run.seeding import seed_everything

NUM_ENVS, NUM_STEPS, TOTAL = 3, 20, 10_000


def make_algo(**options):
    seed_everything(0)
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=12), num_envs=NUM_ENVS)
    base = {"optimizer": "sgd", "lr": 0.5, "anneal_lr": False, "max_grad_norm": 0.0}
    config = Config(num_envs=NUM_ENVS, num_steps=NUM_STEPS, hidden_sizes=(8,), **{**base, **options})
    algo = PPO(config, envs, seed=0, device=torch.device("cpu"), total_steps=TOTAL)
    with torch.no_grad():  # a value function far from zero: advantages with both signs, large returns
        for p in algo.value.parameters():
            p.add_(torch.randn_like(p))
    return algo


def fixed_rollout(algo, monkeypatch):
    """One rollout, handed to every later `collect` (so the algorithm and the reference see the same data)."""
    rollout = algo.collector.collect(algo.policy, NUM_STEPS)
    assert rollout.terminated.any() and rollout.truncated.any()
    # rewards of both signs (CartPole's are all 1): advantages of both signs, so both sides of the clip act
    rollout.rewards = 2 * torch.randn(rollout.rewards.shape, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(algo.collector, "collect", lambda *a, **k: rollout)
    return rollout


def flat(*modules):
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


def reference_update(algo, rollout, seed, *, lr=None, clip=None, beta=None, epochs=None, scaler=None):
    """The PPO update, plainly: SGD on −mean min(ρÂ, clip(ρ)Â) (or −mean ρÂ + β·k3) + c_v·½(V−R)² − c_e·H."""
    cfg = algo.config
    lr = cfg.lr if lr is None else lr
    clip = cfg.clip_coef if clip is None else clip
    beta = cfg.kl_beta if beta is None else beta
    epochs = cfg.update_epochs if epochs is None else epochs
    policy, value = copy.deepcopy(algo.policy), copy.deepcopy(algo.value)
    params = [*policy.parameters(), *value.parameters()]
    rewards = rollout.rewards
    if scaler is not None:  # SB3's VecNormalize: scale each step by the running std of the discounted return
        rewards = torch.stack(
            [
                scaler.update_and_scale(rewards[t], rollout.terminated[t], rollout.truncated[t])
                for t in range(NUM_STEPS)
            ]
        )
    with torch.no_grad():
        v, v_next = value(rollout.obs), value(rollout.next_obs)
    adv, ret = gae(rewards, v, v_next, rollout.terminated, rollout.truncated, cfg.gamma, cfg.gae_lambda)
    obs, actions = rollout.obs.flatten(0, 1), rollout.actions.flatten(0, 1)
    old_logp, adv, ret, v_old = rollout.log_probs.flatten(), adv.flatten(), ret.flatten(), v.flatten()
    size = len(obs)
    mb = size // cfg.num_minibatches
    torch.manual_seed(seed)
    epochs_run = 0
    for _ in range(epochs):
        epochs_run += 1
        order = torch.randperm(size) if cfg.num_minibatches > 1 else torch.arange(size)
        epoch_kl = 0.0
        for i in range(cfg.num_minibatches):
            rows = order[i * mb : (i + 1) * mb]
            dist = policy.distribution(obs[rows])
            ratio = torch.exp(dist.log_prob(actions[rows]) - old_logp[rows])
            a = adv[rows]
            if cfg.normalize_advantages:
                a = (a - a.mean()) / (a.std(correction=0) + 1e-8)
            if cfg.loss == "clip":
                policy_loss = -torch.min(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a).mean()
            else:
                policy_loss = -(ratio * a).mean() + beta * ((ratio - 1) - torch.log(ratio)).mean()
            v_new = value(obs[rows])
            err = (v_new - ret[rows]) ** 2
            if cfg.clip_vloss:
                v_clipped = v_old[rows] + (v_new - v_old[rows]).clamp(-clip, clip)
                err = torch.max(err, (v_clipped - ret[rows]) ** 2)
            loss = policy_loss + cfg.vf_coef * 0.5 * err.mean() - cfg.ent_coef * dist.entropy().mean()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
            if cfg.max_grad_norm > 0:
                norm = torch.sqrt(sum((g**2).sum() for g in grads))
                grads = [g * min(1.0, cfg.max_grad_norm / (float(norm) + 1e-6)) for g in grads]
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p -= lr * g
                epoch_kl += float(((ratio - 1) - torch.log(ratio)).mean()) / cfg.num_minibatches
        if cfg.target_kl is not None and epoch_kl > cfg.target_kl:
            break
    return flat(policy, value), epochs_run


def assert_same_update(algo, rollout, **reference_options):
    expected, epochs = reference_update(algo, rollout, seed=5, **reference_options)
    torch.manual_seed(5)
    metrics = algo.iteration(0).metrics
    torch.testing.assert_close(flat(algo.policy, algo.value), expected, rtol=1e-4, atol=1e-5)
    assert metrics["stats/epochs"] == epochs
    return metrics


@pytest.mark.parametrize(
    "options",
    [
        {"update_epochs": 4, "num_minibatches": 1},  # full batch: standardised once, no shuffle
        {"update_epochs": 3, "num_minibatches": 3, "ent_coef": 0.05},  # shuffled, standardised per minibatch
        {"update_epochs": 3, "num_minibatches": 2, "normalize_advantages": False, "max_grad_norm": 0.5},
        {"update_epochs": 3, "num_minibatches": 2, "clip_vloss": True, "clip_coef": 0.1},
    ],
)
def test_epochs_past_the_first_follow_the_clipped_surrogate(monkeypatch, options):
    algo = make_algo(**options)
    rollout = fixed_rollout(algo, monkeypatch)
    metrics = assert_same_update(algo, rollout)
    assert metrics["stats/clip_fraction"] > 0.05  # the clip is active in the later epochs
    # ...and it matters: without it the same data gives another update
    unclipped, _ = reference_update(make_algo(**options), rollout, seed=5, clip=1e6)
    assert not torch.allclose(unclipped, flat(algo.policy, algo.value), rtol=1e-3, atol=1e-4)


def test_clipped_samples_stop_pushing_the_ratio(monkeypatch):
    """With every ratio above 1 + ε, a sample with Â > 0 has no gradient (clipped) and a sample with Â < 0
    is pulled back in: the step is the gradient of −mean ρÂ·[Â < 0] alone."""
    algo = make_algo(update_epochs=1, num_minibatches=1, vf_coef=0.0, normalize_advantages=False)
    rollout = fixed_rollout(algo, monkeypatch)
    rollout.log_probs -= 1.0  # the behaviour policy gave every action e⁻¹ of its probability: ρ = e > 1 + ε
    with torch.no_grad():
        v, v_next = algo.value(rollout.obs), algo.value(rollout.next_obs)
    adv = gae(rollout.rewards, v, v_next, rollout.terminated, rollout.truncated, 0.99, 0.95)[0].flatten()
    assert (adv > 0).any() and (adv < 0).any()
    params = list(algo.policy.parameters())
    logp = algo.policy.distribution(rollout.obs.flatten(0, 1)).log_prob(rollout.actions.flatten(0, 1))
    ratio = torch.exp(logp - rollout.log_probs.flatten())
    grads = torch.autograd.grad(-(ratio * adv * (adv < 0)).mean(), params)
    expected = flat(algo.policy) - 0.5 * torch.cat([g.flatten() for g in grads])
    metrics = algo.iteration(0).metrics
    assert metrics["stats/clip_fraction"] == 1.0
    torch.testing.assert_close(flat(algo.policy), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("kl_target", "change"),
    [(1e-9, 2.0), (1e3, 0.5)],
)
def test_kl_penalty_loss_and_its_adaptive_beta(monkeypatch, kl_target, change):
    algo = make_algo(loss="kl", kl_beta=0.7, kl_target=kl_target, update_epochs=3, num_minibatches=2)
    rollout = fixed_rollout(algo, monkeypatch)
    metrics = assert_same_update(algo, rollout, beta=0.7)
    assert metrics["stats/approx_kl"] > 0
    # β doubles when the measured KL is above 1.5·target, halves below target/1.5; the next update uses it
    assert algo.kl_beta == pytest.approx(0.7 * change) and metrics["stats/kl_beta"] == algo.kl_beta
    assert_same_update(algo, rollout, beta=0.7 * change)
    assert algo.kl_beta == pytest.approx(0.7 * change * change)
    assert algo.state_dict()["kl_beta"] == algo.kl_beta


def test_early_stop_on_the_kl_of_an_epoch(monkeypatch):
    algo = make_algo(update_epochs=5, num_minibatches=2, target_kl=0.02)
    rollout = fixed_rollout(algo, monkeypatch)
    expected, epochs = reference_update(algo, rollout, seed=5)
    assert 1 < epochs < 5  # the KL of an epoch is measured while it runs, so epoch 1 never stops it
    torch.manual_seed(5)
    metrics = algo.iteration(0).metrics
    assert metrics["stats/epochs"] == epochs
    torch.testing.assert_close(flat(algo.policy, algo.value), expected, rtol=1e-4, atol=1e-5)


def test_reward_scaling_scales_the_rewards_before_gae(monkeypatch):
    algo = make_algo(normalize_reward=True, update_epochs=2, num_minibatches=2)
    rollout = fixed_rollout(algo, monkeypatch)
    scaler = RewardScaler(NUM_ENVS, algo.config.gamma)
    expected, _ = reference_update(algo, rollout, seed=5, scaler=scaler)
    torch.manual_seed(5)
    algo.iteration(0)
    torch.testing.assert_close(flat(algo.policy, algo.value), expected, rtol=1e-4, atol=1e-5)
    # the scaler's running statistics moved and are saved with the algorithm
    state = algo.state_dict()["reward_scaler"]
    for key, value in scaler.state_dict().items():
        torch.testing.assert_close(state[key], value)
    assert float(scaler.stats.count) == NUM_STEPS * NUM_ENVS
    # without scaling (CartPole rewards are all 1, returns ≫ their std) the update is another one
    plain, _ = reference_update(make_algo(update_epochs=2, num_minibatches=2), rollout, seed=5)
    assert not torch.allclose(plain, flat(algo.policy, algo.value), rtol=1e-3, atol=1e-4)


def test_annealed_learning_rate_and_clip_follow_the_step_budget(monkeypatch):
    algo = make_algo(anneal_lr=True, anneal_clip=True, update_epochs=2, num_minibatches=2)
    rollout = fixed_rollout(algo, monkeypatch)
    algo.envs.global_step = TOTAL // 4  # a quarter of the budget spent: lr and ε at 3/4 of their start
    metrics = assert_same_update(algo, rollout, lr=0.5 * 0.75, clip=0.2 * 0.75)
    assert metrics["stats/lr"] == pytest.approx(0.375) and metrics["stats/clip_coef"] == pytest.approx(0.15)
    algo.envs.global_step = TOTAL  # spent: lr 0 (no step), ε floored at a tiny positive value
    before = flat(algo.policy, algo.value)
    metrics = algo.iteration(1).metrics
    assert metrics["stats/lr"] == 0.0 and 0 < metrics["stats/clip_coef"] < 1e-6
    torch.testing.assert_close(flat(algo.policy, algo.value), before, rtol=0, atol=0)


def kl_after_update(policy, rollout):
    """d = mean over the batch of KL(π_old ‖ π_θ) after the update, k3 estimate with the collected actions."""
    with torch.no_grad():
        logp = policy.distribution(rollout.obs).log_prob(rollout.actions)
        ratio = torch.exp(logp - rollout.log_probs)
        return float(((ratio - 1) - torch.log(ratio)).mean())


@pytest.mark.parametrize(("epochs", "minibatches"), [(1, 1), (3, 2)])
@pytest.mark.parametrize(("target_over_d", "change"), [(1.0, 1.0), (2.0, 0.5), (0.5, 2.0), (1.4, 1.0)])
def test_adaptive_beta_compares_the_kl_after_the_update_with_the_target(
    monkeypatch, epochs, minibatches, target_over_d, change
):
    """PPO paper, section 4: after the epochs, d = E[KL(π_old ‖ π_θ)]; β ÷ 2 if d < target/1.5, × 2 if
    d > 1.5·target. (A KL measured before each step is 0 on the first one: with one epoch of one minibatch
    β would halve whatever the update did.)"""
    options = {"loss": "kl", "kl_beta": 0.7, "update_epochs": epochs, "num_minibatches": minibatches}
    probe = make_algo(**options)
    rollout = fixed_rollout(probe, monkeypatch)
    torch.manual_seed(5)
    probe.iteration(0)
    d = kl_after_update(probe.policy, rollout)
    assert d > 1e-4
    algo = make_algo(**options, kl_target=target_over_d * d)
    monkeypatch.setattr(algo.collector, "collect", lambda *a, **k: rollout)
    torch.manual_seed(5)
    algo.iteration(0)
    assert algo.kl_beta == pytest.approx(0.7 * change)
