"""The learned-critic family (DDPG, TD3, SAC, discrete SAC, CrossQ).

- One `update` of each algorithm on a fixed batch of 8 transitions against the estimator written out from
  its docstring: plain per-critic MLPs, the TD target, the critic and actor losses, plain SGD steps
  (θ − lr·∇), Polyak targets and the temperature's first Adam step — in float64, to 1e-10.
- Truncation: reward 1 every step and episodes that only ever hit the time limit give Q = 1/(1 − γ) for
  every algorithm; the same training with the time-limit ends stored as terminals gives Q far below.
- Resume: N steps + `pgrad.resume` to 2N equals 2N straight, tensor for tensor (buffer, optimisers,
  temperature, OU noise, generators).
- One-line configuration errors, and `pgrad list`.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import AffineTransform, Independent, Normal, TanhTransform, TransformedDistribution

import pgrad
from pgrad.algorithms import get_algorithm
from pgrad.cli import main
from pgrad.envs.gym import GymVecEnv
from pgrad.errors import ConfigError, EnvError
from pgrad.run import trainer
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint
from pgrad.run.replay import ReplayBatch

F64 = torch.float64
CPU = torch.device("cpu")
QUIET = {"progress": False, "tensorboard": False}
ALGORITHMS = ("ddpg", "td3", "sac", "sac_discrete", "crossq")
LOW, HIGH = [-1.0, 0.0], [3.0, 0.5]  # asymmetric: centre (1, 0.25), half-width (2, 0.25)
CENTRE = torch.tensor([1.0, 0.25], dtype=F64)
HALF = torch.tensor([2.0, 0.25], dtype=F64)
B, GAMMA = 8, 0.9
TOL = {"rtol": 1e-10, "atol": 1e-12}


class SpacesEnv(gym.Env):
    """An env that only provides spaces (the update tests feed their batches by hand)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)

    def __init__(self, action_space):
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}


def box_env():
    return SpacesEnv(gym.spaces.Box(np.array(LOW, np.float32), np.array(HIGH, np.float32)))


def discrete_env():
    return SpacesEnv(gym.spaces.Discrete(3, start=-1))


def build(name, env, **options):
    """The algorithm with (8, 8) networks and plain SGD, converted to float64 after it is built."""
    cls = get_algorithm(name)
    defaults = dict(hidden_sizes=(8, 8), optimizer="sgd", actor_lr=0.1, critic_lr=0.05, gamma=GAMMA, tau=0.3)
    config = cls.Config(**{**defaults, **options})
    algo = cls(config, GymVecEnv(env, 1, algorithm=name), seed=0, device=CPU, total_steps=1000)
    for attr in ("policy", "policy_target", "critic", "critic_target"):
        if getattr(algo, attr, None) is not None:
            getattr(algo, attr).double()
    for attr in ("half_width", "low", "high"):
        if hasattr(algo, attr):
            setattr(algo, attr, getattr(algo, attr).double())
    if hasattr(algo, "log_alpha"):
        algo.log_alpha.data = algo.log_alpha.data.double()
    targets = [getattr(algo, attr, None) for attr in ("policy_target", "critic_target")]
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():  # targets unlike their online networks, so mixing them up shows
        for p in (p for target in targets if target is not None for p in target.parameters()):
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=F64))
    assert all(p.dtype == F64 for group in algo.critic_optimizer.param_groups for p in group["params"])
    return algo


def fixed_batch(discrete=False, seed=0):
    """8 transitions: two terminals, and 1-, 2- and 3-step sums (discount γᵏ)."""
    g = torch.Generator().manual_seed(seed)
    obs, next_obs = torch.randn(B, 3, generator=g, dtype=F64), torch.randn(B, 3, generator=g, dtype=F64)
    if discrete:
        actions = torch.randint(-1, 2, (B,), generator=g)  # env actions of Discrete(3, start=-1)
    else:
        actions = CENTRE + HALF * (2 * torch.rand(B, 2, generator=g, dtype=F64) - 1)
    rewards = torch.randn(B, generator=g, dtype=F64)
    terminated = torch.tensor([False, True, False, False, True, False, False, False])
    discount = GAMMA ** torch.tensor([1, 1, 2, 1, 3, 1, 2, 1], dtype=F64)
    return ReplayBatch(obs, actions, rewards, next_obs, terminated, discount)


# -- the reference, written out -----------------------------------------------------------------------------


def layers_of(critic, grad=False):
    """[(W [E, in, out], b [E, 1, out]) per layer] of a QEnsemble: copies (leaves with grad if asked)."""
    return [
        (lyr.weight.detach().clone().requires_grad_(grad), lyr.bias.detach().clone().requires_grad_(grad))
        for lyr in critic.net.layers
    ]


def flat(pairs):
    return [t for pair in pairs for t in pair]


def plain_q(layers, j, x):
    """Critic j as its own MLP: Linear → ReLU → … → Linear."""
    for i, (w, b) in enumerate(layers):
        x = x @ w[j] + b[j, 0]
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x.squeeze(-1) if x.shape[-1] == 1 else x


def sgd(params, loss, lr):
    """θ − lr·∇θ loss, for leaves `params`."""
    grads = torch.autograd.grad(loss, params)
    return [(p - lr * g).detach() for p, g in zip(params, grads, strict=True)]


def regroup(tensors):
    return list(zip(tensors[::2], tensors[1::2], strict=True))


def polyak(old, new, tau):
    return [(1 - tau) * o.detach() + tau * n.detach() for o, n in zip(old, new, strict=True)]


def deterministic_action(policy, obs):
    """μθ(s) = c + h ⊙ tanh(fθ(s))."""
    assert policy.normalizer is None
    return CENTRE + HALF * torch.tanh(policy.head.action_layer(policy.trunk(obs)))


def squashed_gaussian(policy, obs, eps):
    """a = c + h ⊙ tanh(μ + σ ⊙ ε) and its log-density from torch's TransformedDistribution."""
    features = policy.trunk(obs)
    mean, std = policy.head.mean_layer(features), policy.head.log_std(features).exp()
    actions = CENTRE + HALF * torch.tanh(mean + std * eps)
    reference = TransformedDistribution(
        Independent(Normal(mean, std), 1), [TanhTransform(), AffineTransform(CENTRE, HALF, event_dim=1)]
    )
    return actions, reference.log_prob(actions)


def twin_min(q1, q2):
    """min(Q₁, Q₂), checking that neither critic is the smaller everywhere (else using one for the other, or
    the max, would go unnoticed)."""
    assert (q1 < q2).any() and (q1 > q2).any()
    return torch.minimum(q1, q2)


def centre_second_critic(critic, obs, actions):
    """Shift critic 2's output bias so that its mean on these inputs is critic 1's (for `twin_min`); batch
    statistics left as they were."""
    buffers = [b.clone() for b in critic.buffers()]
    with torch.no_grad():
        q = critic(obs, actions)
        critic.net.layers[-1].bias[1] += (q[0] - q[1]).mean()
        for b, saved in zip(critic.buffers(), buffers, strict=True):
            b.copy_(saved)


def adam_first_step(value, grad, lr):
    """Adam's first step from zero moments: m̂ = g, v̂ = g², θ − lr·g/(|g| + 1e-8)."""
    return value - lr * grad / (grad.abs() + 1e-8)


def cat(obs, actions):
    return torch.cat([obs, actions], -1)


def not_done(batch):
    return 1.0 - batch.terminated.double()


def assert_params(actual, expected):
    actual = list(actual)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a.detach(), e.detach(), **TOL)


def snapshot(*modules):
    return [copy.deepcopy(m) for m in modules]


def state_of(module):
    return [p.detach().clone() for p in module.parameters()]


# -- one update against the reference ------------------------------------------------------------------------


def test_ddpg_update_equals_the_plain_deterministic_policy_gradient():
    algo = build("ddpg", box_env)
    batch = fixed_batch()
    policy, policy_target = snapshot(algo.policy, algo.policy_target)
    critic, critic_target = layers_of(algo.critic, grad=True), layers_of(algo.critic_target)
    tau, config = algo.config.tau, algo.config
    metrics = algo.update(batch)

    # critic: y = R + γᵏ (1 − terminated) Q̄(s', μ̄(s'))
    with torch.no_grad():
        next_q = plain_q(
            critic_target, 0, cat(batch.next_obs, deterministic_action(policy_target, batch.next_obs))
        )
        y = batch.rewards + batch.discount * not_done(batch) * next_q
    critic_loss = 0.5 * (plain_q(critic, 0, cat(batch.obs, batch.actions)) - y).square().mean()
    new_critic = sgd(flat(critic), critic_loss, config.critic_lr)
    # actor: −mean Q(s, μθ(s)) through the critic just updated
    q = plain_q(regroup(new_critic), 0, cat(batch.obs, deterministic_action(policy, batch.obs)))
    actor_loss = -q.mean()
    new_actor = sgd(list(policy.parameters()), actor_loss, config.actor_lr)

    assert_params(algo.critic.parameters(), new_critic)
    assert_params(algo.policy.parameters(), new_actor)
    assert_params(algo.policy_target.parameters(), polyak(list(policy_target.parameters()), new_actor, tau))
    assert_params(algo.critic_target.parameters(), polyak(flat(critic_target), new_critic, tau))
    torch.testing.assert_close(metrics["loss/critic"], critic_loss.detach(), **TOL)
    torch.testing.assert_close(metrics["loss/actor"], actor_loss.detach(), **TOL)


def td3_reference(algo, batch, seed, actor_step):
    """Reference of one TD3 update from the algorithm's current state (run before it)."""
    config = algo.config
    policy, policy_target = snapshot(algo.policy, algo.policy_target)
    critic, critic_target = layers_of(algo.critic, grad=True), layers_of(algo.critic_target)
    torch.manual_seed(seed)
    eps = torch.randn(B, 2, dtype=F64)
    with torch.no_grad():
        # target smoothing: a' = clip(μ̄(s') + clip(σ̃ε, −c̃, c̃)·h, low, high)
        noise = torch.clamp(config.target_noise * eps, -config.target_noise_clip, config.target_noise_clip)
        unclipped = deterministic_action(policy_target, batch.next_obs) + noise * HALF
        next_actions = torch.maximum(torch.minimum(unclipped, CENTRE + HALF), CENTRE - HALF)
        inside = (unclipped == next_actions) & (noise != config.target_noise * eps)  # the noise clip counts
        exercised = inside.any() and (unclipped != next_actions).any()  # and so does the box
        x_next = cat(batch.next_obs, next_actions)
        next_q = twin_min(plain_q(critic_target, 0, x_next), plain_q(critic_target, 1, x_next))
        y = batch.rewards + batch.discount * not_done(batch) * next_q
    x = cat(batch.obs, batch.actions)
    critic_loss = sum(0.5 * (plain_q(critic, j, x) - y).square().mean() for j in range(2))
    new_critic = sgd(flat(critic), critic_loss, config.critic_lr)
    expected = {"critic": new_critic, "loss/critic": critic_loss.detach(), "exercised": exercised}
    if actor_step:  # through Q₁ only
        a = deterministic_action(policy, batch.obs)
        actor_loss = -plain_q(regroup(new_critic), 0, cat(batch.obs, a)).mean()
        twin_min(*(plain_q(regroup(new_critic), j, cat(batch.obs, a)) for j in range(2)))  # asserts Q₁ ≠ min
        new_actor = sgd(list(policy.parameters()), actor_loss, config.actor_lr)
        expected["actor"] = new_actor
        expected["policy_target"] = polyak(list(policy_target.parameters()), new_actor, config.tau)
        expected["critic_target"] = polyak(flat(critic_target), new_critic, config.tau)
        expected["loss/actor"] = actor_loss.detach()
    else:
        expected["actor"] = list(policy.parameters())
        expected["policy_target"] = list(policy_target.parameters())
        expected["critic_target"] = flat(critic_target)
    return expected


def test_td3_update_smooths_the_target_clips_double_q_and_delays_the_actor():
    # σ̃ = 1.0 clipped at c̃ = 0.5, μ̄ near the upper bound of the first dimension: some noise is clipped
    # inside the box, and μ̄ + noise·h leaves the box on some rows
    algo = build("td3", box_env, target_noise=1.0, target_noise_clip=0.5, policy_delay=2)
    batch = fixed_batch(seed=1)
    with torch.no_grad():
        algo.policy_target.head.action_layer.bias[0] = 1.5
        # Q₂ centred on Q₁ where the actor and the target read them (see twin_min)
        centre_second_critic(algo.critic, batch.obs, algo.policy.distribution(batch.obs).mode)
        next_actions = algo.policy_target.distribution(batch.next_obs).mode
        centre_second_critic(algo.critic_target, batch.next_obs, next_actions)
    for update, actor_step in ((0, False), (1, True)):
        algo.updates = update
        expected = td3_reference(algo, batch, seed=10 + update, actor_step=actor_step)
        before = [p for m in (algo.policy, algo.policy_target, algo.critic_target) for p in state_of(m)]
        torch.manual_seed(10 + update)
        metrics = algo.update(batch)
        assert_params(algo.critic.parameters(), expected["critic"])
        assert_params(algo.policy.parameters(), expected["actor"])
        assert_params(algo.policy_target.parameters(), expected["policy_target"])
        assert_params(algo.critic_target.parameters(), expected["critic_target"])
        torch.testing.assert_close(metrics["loss/critic"], expected["loss/critic"], **TOL)
        if actor_step:
            torch.testing.assert_close(metrics["loss/actor"], expected["loss/actor"], **TOL)
        else:  # the first of every policy_delay updates: actor and targets do not move at all
            assert "loss/actor" not in metrics
            after = [p for m in (algo.policy, algo.policy_target, algo.critic_target) for p in state_of(m)]
            assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
        assert expected["exercised"]  # some noise clipped inside the box, some actions clamped to it


def test_sac_update_equals_the_plain_reparameterised_estimator_and_temperature_step():
    algo = build("sac", box_env, init_alpha=0.5, alpha_lr=0.01)
    batch = fixed_batch(seed=2)
    config, tau = algo.config, algo.config.tau
    torch.manual_seed(20)
    eps_next, eps = torch.randn(B, 2, dtype=F64), torch.randn(B, 2, dtype=F64)
    with torch.no_grad():
        centre_second_critic(
            algo.critic_target, batch.next_obs, squashed_gaussian(algo.policy, batch.next_obs, eps_next)[0]
        )
        centre_second_critic(algo.critic, batch.obs, squashed_gaussian(algo.policy, batch.obs, eps)[0])
    policy = copy.deepcopy(algo.policy)
    critic, critic_target = layers_of(algo.critic, grad=True), layers_of(algo.critic_target)
    log_alpha = algo.log_alpha.detach().clone()
    torch.manual_seed(20)  # the update draws ε' then ε, as above
    metrics = algo.update(batch)

    alpha = log_alpha.exp()
    # critics: y = R + γᵏ (1 − terminated) [min_j Q̄_j(s', a') − α log π(a'|s')]
    with torch.no_grad():
        next_actions, next_log_prob = squashed_gaussian(policy, batch.next_obs, eps_next)
        x_next = cat(batch.next_obs, next_actions)
        next_q = twin_min(plain_q(critic_target, 0, x_next), plain_q(critic_target, 1, x_next))
        y = batch.rewards + batch.discount * not_done(batch) * (next_q - alpha * next_log_prob)
    x = cat(batch.obs, batch.actions)
    critic_loss = sum(0.5 * (plain_q(critic, j, x) - y).square().mean() for j in range(2))
    new_critic = sgd(flat(critic), critic_loss, config.critic_lr)
    # actor: mean[α log π(aθ|s) − min_j Q_j(s, aθ)] through the updated critics
    actions, log_prob = squashed_gaussian(policy, batch.obs, eps)
    x_pi = cat(batch.obs, actions)
    q_pi = twin_min(plain_q(regroup(new_critic), 0, x_pi), plain_q(regroup(new_critic), 1, x_pi))
    actor_loss = (alpha * log_prob - q_pi).mean()
    new_actor = sgd(list(policy.parameters()), actor_loss, config.actor_lr)
    # temperature: −log α · mean(log π + H̄), H̄ = −|A| = −2; one Adam step
    alpha_grad = -(log_prob.detach() - 2.0).mean()

    assert_params(algo.critic.parameters(), new_critic)
    assert_params(algo.policy.parameters(), new_actor)
    assert_params(algo.critic_target.parameters(), polyak(flat(critic_target), new_critic, tau))
    torch.testing.assert_close(algo.log_alpha.detach(), adam_first_step(log_alpha, alpha_grad, 0.01), **TOL)
    torch.testing.assert_close(metrics["loss/critic"], critic_loss.detach(), **TOL)
    torch.testing.assert_close(metrics["loss/actor"], actor_loss.detach(), **TOL)
    torch.testing.assert_close(metrics["stats/entropy"], -log_prob.detach().mean(), **TOL)


def test_discrete_sac_update_takes_the_exact_expectation_over_actions():
    algo = build("sac_discrete", discrete_env, alpha=None, init_alpha=0.7, alpha_lr=0.02, n_step=1)
    batch = fixed_batch(discrete=True, seed=3)
    config, tau = algo.config, algo.config.tau
    policy = copy.deepcopy(algo.policy)
    critic, critic_target = layers_of(algo.critic, grad=True), layers_of(algo.critic_target)
    log_alpha = algo.log_alpha.detach().clone()
    metrics = algo.update(batch)

    def log_pi(obs):
        return torch.log_softmax(policy.head.logits(policy.trunk(obs)), -1)

    alpha = log_alpha.exp()
    # y = R + γᵏ (1 − terminated) Σ_a π(a|s') [min_j Q̄_j(s', a) − α log π(a|s')]
    with torch.no_grad():
        next_log_pi = log_pi(batch.next_obs)
        next_q = twin_min(*(plain_q(critic_target, j, batch.next_obs) for j in range(2)))
        next_v = torch.zeros(B, dtype=F64)
        for a in range(3):
            next_v += next_log_pi[:, a].exp() * (next_q[:, a] - alpha * next_log_pi[:, a])
        y = batch.rewards + batch.discount * not_done(batch) * next_v
    index = (torch.arange(B), batch.actions + 1)  # Discrete(3, start=−1): env action −1 is index 0
    critic_loss = sum(0.5 * (plain_q(critic, j, batch.obs)[index] - y).square().mean() for j in range(2))
    new_critic = sgd(flat(critic), critic_loss, config.critic_lr)
    # actor: mean_i Σ_a π(a|s_i) [α log π(a|s_i) − min_j Q_j(s_i, a)], the (updated) critics as constants
    with torch.no_grad():
        q_all = twin_min(*(plain_q(regroup(new_critic), j, batch.obs) for j in range(2)))
    lp = log_pi(batch.obs)
    actor_loss = sum(lp[:, a].exp() * (alpha * lp[:, a] - q_all[:, a]) for a in range(3)).mean()
    new_actor = sgd(list(policy.parameters()), actor_loss, config.actor_lr)
    # temperature on the exact expected log-probability, H̄ = 0.5 log 3
    expected_log_prob = (lp.exp() * lp).sum(-1).detach()
    alpha_grad = -(expected_log_prob + 0.5 * math.log(3)).mean()

    assert_params(algo.critic.parameters(), new_critic)
    assert_params(algo.policy.parameters(), new_actor)
    assert_params(algo.critic_target.parameters(), polyak(flat(critic_target), new_critic, tau))
    torch.testing.assert_close(algo.log_alpha.detach(), adam_first_step(log_alpha, alpha_grad, 0.02), **TOL)
    torch.testing.assert_close(metrics["loss/critic"], critic_loss.detach(), **TOL)
    torch.testing.assert_close(metrics["loss/actor"], actor_loss.detach(), **TOL)


def bn_critic_params(critic, grad=False):
    """Linear (W, b) pairs then batch-norm (γ, β) pairs of a batch-normalised QEnsemble, as copies."""
    norms = [
        (n.weight.detach().clone().requires_grad_(grad), n.bias.detach().clone().requires_grad_(grad))
        for n in critic.net.norms
    ]
    return layers_of(critic, grad), norms


def plain_bn_q(layers, norms, j, x, running=None, seen=None):
    """Critic j: BN → [Linear → BN → ReLU]… → Linear. BN with the batch's statistics (biased variance), or
    `running` [(mean, var)] per norm; `seen` collects each norm's (batch mean, unbiased variance)."""

    def norm(h, k):
        if running is None:
            mean, var = h.mean(0), h.var(0, correction=0)
            seen.append((mean.detach(), h.var(0, correction=1).detach()))
        else:
            mean, var = running[k][0][j, 0], running[k][1][j, 0]
        return (h - mean) / torch.sqrt(var + 1e-3) * norms[k][0][j, 0] + norms[k][1][j, 0]

    h = norm(x, 0)
    for i, (w, b) in enumerate(layers):
        h = h @ w[j] + b[j, 0]
        if i < len(layers) - 1:
            h = torch.relu(norm(h, i + 1))
    return h.squeeze(-1)


def test_crossq_update_joint_forward_without_targets_and_eval_mode_actor():
    options = dict(critic_hidden_sizes=(8, 8), bn_momentum=0.3, init_alpha=0.5, alpha_lr=0.01)
    algo = build("crossq", box_env, **options)
    assert algo.critic_target is None
    batch = fixed_batch(seed=4)
    # an update that is not a policy_delay-th one moves the critics only
    policy_before, log_alpha_before = state_of(algo.policy), algo.log_alpha.detach().clone()
    algo.updates = 0
    torch.manual_seed(29)
    assert "loss/actor" not in algo.update(fixed_batch(seed=5))
    assert all(torch.equal(a, b) for a, b in zip(state_of(algo.policy), policy_before, strict=True))
    assert torch.equal(algo.log_alpha.detach(), log_alpha_before)

    config, m = algo.config, algo.config.bn_momentum
    algo.updates = config.policy_delay - 1  # this update steps the actor and the temperature too
    torch.manual_seed(30)
    eps_next, eps = torch.randn(B, 2, dtype=F64), torch.randn(B, 2, dtype=F64)
    with torch.no_grad():
        algo.critic.eval()  # centred where the actor reads the critics
        centre_second_critic(algo.critic, batch.obs, squashed_gaussian(algo.policy, batch.obs, eps)[0])
        algo.critic.train()
    policy = copy.deepcopy(algo.policy)
    layers, norms = bn_critic_params(algo.critic, grad=True)
    running = [(n.running_mean.clone(), n.running_var.clone()) for n in algo.critic.net.norms]
    log_alpha = algo.log_alpha.detach().clone()
    torch.manual_seed(30)  # the update draws ε' then ε, as above
    metrics = algo.update(batch)

    alpha = log_alpha.exp()
    with torch.no_grad():
        next_actions, next_log_prob = squashed_gaussian(policy, batch.next_obs, eps_next)
    # [Q(s, a); Q(s', a')] = Q([s; s'], [a; a']): one forward with the joint batch's statistics
    x = torch.cat([cat(batch.obs, batch.actions), cat(batch.next_obs, next_actions)])
    seen = [[], []]
    q_all = [plain_bn_q(layers, norms, j, x, seen=seen[j]) for j in range(2)]
    next_q = twin_min(q_all[0][B:], q_all[1][B:]).detach()
    y = batch.rewards + batch.discount * not_done(batch) * (next_q - alpha * next_log_prob)
    critic_loss = sum(0.5 * (q_all[j][:B] - y).square().mean() for j in range(2))
    params = [*flat(layers), *flat(norms)]
    new = sgd(params, critic_loss, config.critic_lr)
    new_layers, new_norms = regroup(new[: 2 * len(layers)]), regroup(new[2 * len(layers) :])
    # running statistics: (1 − m)·old + m·batch, per member and per norm
    new_running = []
    for k, (mean, var) in enumerate(running):
        batch_mean = torch.stack([seen[j][k][0] for j in range(2)])[:, None]
        batch_var = torch.stack([seen[j][k][1] for j in range(2)])[:, None]
        new_running.append(((1 - m) * mean + m * batch_mean, (1 - m) * var + m * batch_var))
    # actor through the updated critics in evaluation mode (running statistics)
    actions, log_prob = squashed_gaussian(policy, batch.obs, eps)
    x_pi = cat(batch.obs, actions)
    q_pi = twin_min(*(plain_bn_q(new_layers, new_norms, j, x_pi, running=new_running) for j in range(2)))
    actor_loss = (alpha * log_prob - q_pi).mean()
    new_actor = sgd(list(policy.parameters()), actor_loss, config.actor_lr)
    alpha_grad = -(log_prob.detach() - 2.0).mean()

    assert_params([p for lyr in algo.critic.net.layers for p in (lyr.weight, lyr.bias)], flat(new_layers))
    assert_params([p for n in algo.critic.net.norms for p in (n.weight, n.bias)], flat(new_norms))
    for n, (mean, var) in zip(algo.critic.net.norms, new_running, strict=True):
        torch.testing.assert_close(n.running_mean, mean, **TOL)
        torch.testing.assert_close(n.running_var, var, **TOL)
    assert_params(algo.policy.parameters(), new_actor)
    torch.testing.assert_close(algo.log_alpha.detach(), adam_first_step(log_alpha, alpha_grad, 0.01), **TOL)
    torch.testing.assert_close(metrics["loss/critic"], critic_loss.detach(), **TOL)
    torch.testing.assert_close(metrics["loss/actor"], actor_loss.detach(), **TOL)
    assert algo.critic.training  # back in training mode for the next critic update


# -- truncation is not termination ---------------------------------------------------------------------------


class Constant(gym.Env):
    """The same observation forever, reward 1 every step, never terminal: with a TimeLimit every episode
    ends truncated, and Q(s, a) = Σ γᵗ = 1/(1 − γ) for every action."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, discrete):
        box = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2) if discrete else box

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([0.5, -0.25], np.float32), {}

    def step(self, action):
        return np.array([0.5, -0.25], np.float32), 1.0, False, False, {}


TRUNCATION = {  # quick settings: τ 0.2, Adam 1e-2, 4 updates per step; n-step sums cut at the time limit
    "ddpg": {"n_step": 1},
    "td3": {"n_step": 3},
    "sac": {"n_step": 1, "alpha": 0.0},
    "sac_discrete": {"n_step": 3, "alpha": 0.0},
    "crossq": {"n_step": 5, "alpha": 0.0, "batch_size": 64, "learning_starts": 64, "bn_momentum": 0.1},
}


def mean_q(algo):
    """Mean Q over all sampleable transitions (every member; CrossQ's critics with running statistics, as
    its actor reads them)."""
    batch = algo.buffer.sample(algo.buffer.num_valid(), torch.Generator().manual_seed(0))
    algo.critic.eval()
    with torch.no_grad():
        q = algo.critic(batch.obs) if algo.name == "sac_discrete" else algo.critic(batch.obs, batch.actions)
    algo.critic.train()
    return q.mean().item()


def q_after_training(name, store_ends_as_terminal=False):
    """Q averaged over the last iterations of a short training run (CrossQ's target-free critics
    fluctuate by a few percent from update to update)."""
    cls = get_algorithm(name)
    options = dict(hidden_sizes=(16, 16), batch_size=32, learning_starts=40, gamma=0.9, tau=0.2)
    options.update(critic_lr=1e-2, gradient_steps=4, buffer_size=1000, **TRUNCATION[name])
    if name == "crossq":
        options["critic_hidden_sizes"] = (16, 16)
    discrete = name == "sac_discrete"
    envs = GymVecEnv(lambda: gym.wrappers.TimeLimit(Constant(discrete), 5), 1, algorithm=name)
    torch.manual_seed(0)
    algo = cls(cls.Config(**options), envs, seed=0, device=CPU, total_steps=10_000)
    if store_ends_as_terminal:  # the bug this test exists for: a time-limit end stored as a terminal
        add = algo.buffer.add
        algo.buffer.add = lambda obs, a, r, term, trunc, nxt: add(obs, a, r, term | trunc, trunc, nxt)
    iterations, window = (100, 10) if name != "crossq" else (160, 30)
    q = []
    for i in range(iterations):
        algo.iteration(i)
        if i >= iterations - window:
            q.append(mean_q(algo))
    assert algo.buffer.truncated.sum() == iterations // 5  # every episode ended at the time limit
    assert algo.buffer.terminated.any() == store_ends_as_terminal
    return float(np.mean(q))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_time_limit_ends_bootstrap_so_q_reaches_one_over_one_minus_gamma(name):
    assert q_after_training(name) == pytest.approx(1 / (1 - 0.9), rel=0.05)
    # the same training with the time-limit ends stored as terminals: Q ≈ 2.6–3.7, far below
    assert q_after_training(name, store_ends_as_terminal=True) < 8


# -- resume --------------------------------------------------------------------------------------------------


def tensors_of(tree, prefix=""):
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from tensors_of(v, f"{prefix}/{k}")
    elif isinstance(tree, list | tuple):
        for i, v in enumerate(tree):
            yield from tensors_of(v, f"{prefix}/{i}")


RESUME = [
    ("ddpg", "Pendulum-v1", {"noise": "ou"}),
    ("td3", "Pendulum-v1", {}),
    ("sac", "Pendulum-v1", {}),
    ("sac_discrete", "CartPole-v1", {"alpha": None}),
    ("crossq", "Pendulum-v1", {"critic_hidden_sizes": (16, 16)}),
]


@pytest.mark.parametrize(("name", "env", "options"), RESUME, ids=[r[0] for r in RESUME])
def test_resume_is_bitwise_identical_to_a_straight_run(tmp_path, monkeypatch, name, env, options):
    """500 steps (2 sub-envs: each mid-episode on Pendulum's 200-step episodes) + resume to 1000 equals
    1000 straight."""
    monkeypatch.setattr(trainer, "plot_learning_curve", lambda run_dir: None)  # ~1 s a run, not under test
    common = dict(seed=4, eval_every=0, eval_episodes=0, checkpoint_every=0, num_envs=2, **QUIET)
    common["preset"] = False  # the small settings below, not a preset, under test
    common.update(hidden_sizes=(16, 16), learning_starts=200, batch_size=32, train_freq=2, **options)
    pgrad.train(name, env, total_steps=1000, run_dir=str(tmp_path / "straight"), **common)
    pgrad.train(name, env, total_steps=500, run_dir=str(tmp_path / "split"), **common)
    pgrad.resume(tmp_path / "split", total_steps=1000, progress=False)
    straight, step_a = load_checkpoint(latest_checkpoint(Path(tmp_path / "straight") / "checkpoints"))
    split, step_b = load_checkpoint(latest_checkpoint(Path(tmp_path / "split") / "checkpoints"))
    assert step_a == step_b == 1000 and split["envs"] is not None
    a, b = dict(tensors_of(straight["algorithm"])), dict(tensors_of(split["algorithm"]))
    assert a.keys() == b.keys()
    for part in ("buffer", "collector", "generator", "actor_optimizer", "critic_optimizer"):
        assert any(k.startswith(f"/{part}") for k in a), part
    if name != "ddpg" and name != "td3":
        assert "/temperature/log_alpha" in a and any(k.startswith("/alpha_optimizer") for k in a)
    if name == "ddpg":
        assert a["/noise/ou_state"].abs().sum() > 0
    assert straight["algorithm"]["updates"] == split["algorithm"]["updates"] == (1000 - 200) // 4 + 1
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


# -- errors and the list -------------------------------------------------------------------------------------


def unbounded():
    return SpacesEnv(gym.spaces.Box(-np.inf, np.inf, (1,), np.float32))


@pytest.mark.parametrize(
    ("name", "env", "options", "error", "message"),
    [
        ("ddpg", unbounded, {}, ConfigError, "ddpg squashes actions into the Box bounds"),
        ("td3", unbounded, {}, ConfigError, "td3 squashes actions into the Box bounds"),
        ("sac", unbounded, {}, ConfigError, "sac squashes actions into the Box bounds"),
        ("crossq", unbounded, {}, ConfigError, "crossq squashes actions into the Box bounds"),
        ("sac_discrete", "Pendulum-v1", {}, EnvError, "is not supported by sac_discrete"),
        ("ddpg", "Pendulum-v1", {"noise_std": -0.1}, ConfigError, "noise_std must be >= 0"),
        ("td3", "Pendulum-v1", {"noise_std": -0.1}, ConfigError, "noise_std must be >= 0"),
        ("td3", "Pendulum-v1", {"policy_delay": 0}, ConfigError, "policy_delay must be >= 1"),
        ("crossq", "Pendulum-v1", {"bn_momentum": 0.0}, ConfigError, "bn_momentum in (0, 1]"),
        ("crossq", "Pendulum-v1", {"bn_momentum": 1.5}, ConfigError, "bn_momentum in (0, 1]"),
        ("sac", "Pendulum-v1", {"alpha": -1.0}, ConfigError, "alpha must be >= 0"),
        ("sac", "Pendulum-v1", {"tau": 1.5}, ConfigError, "tau"),
        # a batch the buffer can never hold would mean no update ever, silently
        (
            "sac",
            "Pendulum-v1",
            {"buffer_size": 100, "batch_size": 100, "n_step": 3},
            ConfigError,
            "batch_size (100) is more than the replay buffer can ever sample (98",
        ),
        ("td3", "Pendulum-v1", {"buffer_size": 64, "batch_size": 65}, ConfigError, "can ever sample (64"),
    ],
)
@pytest.mark.filterwarnings("ignore:env 'unbounded' has no time limit")
def test_bad_configurations_are_one_line_errors(tmp_path, name, env, options, error, message):
    with pytest.raises(error) as info:
        pgrad.train(name, env, total_steps=10, run_dir=str(tmp_path / "run"), **options, **QUIET)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_list_shows_the_five_under_learned_critic(capsys):
    assert main(["list"]) == 0
    family, families = "", {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 5:
            family = cells[1] or family
            if cells[2]:
                families[cells[2]] = family
    assert {n for n, f in families.items() if f == "learned critic"} == set(ALGORITHMS)
