"""A2C: one update is the plain actor-critic estimate with correctly bootstrapped targets; options work."""

import copy
import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.algorithms.score_function import a2c as a2c_module
from pgrad.algorithms.score_function.a2c import A2C, Config
from pgrad.envs.gym import GymVecEnv
from pgrad.errors import ConfigError
from pgrad.policies.networks import ActorCritic
from pgrad.run.checkpoint import latest_checkpoint, load_checkpoint
from pgrad.run.seeding import seed_everything

QUIET = {"progress": False, "tensorboard": False}
PLAIN_SGD = {"optimizer": "sgd", "lr": 1.0, "max_grad_norm": 0.0, "normalize_advantages": False}


def make_algo(env="CartPole-v1", seed=0, num_steps=30, **options):
    seed_everything(seed)
    # A short time limit so a 30-step rollout holds terminations, truncations and a cut last row.
    envs = GymVecEnv(lambda: gym.make(env, max_episode_steps=15), num_envs=3)
    config = Config(**{"num_envs": 3, "num_steps": num_steps, "hidden_sizes": (8,), **options})
    algo = A2C(config, envs, seed=seed, device=torch.device("cpu"), total_steps=10_000)
    with torch.no_grad():  # a critic far from zero, so bootstrapping errors show
        for name, p in algo.model.named_parameters():
            if not name.startswith("policy"):
                p.add_(torch.randn_like(p))
    return algo


def fixed_rollout(algo, monkeypatch, terminations=True):
    rollout = algo.collector.collect(algo.policy, algo.config.num_steps)
    assert rollout.truncated.any() and (rollout.terminated.any() or not terminations)
    assert not (rollout.terminated[-1] | rollout.truncated[-1]).all()  # some episode cut by the rollout end
    monkeypatch.setattr(algo.collector, "collect", lambda *a, **k: rollout)
    return rollout


def fix_next_actions(algo, monkeypatch, rollout):
    """The Q critic bootstraps from Q(s', a'), a' ~ π(·|s'): fix a' so the reference can use it."""
    with torch.no_grad():
        a_next = algo.policy.distribution(rollout.next_obs).sample()
    monkeypatch.setattr(algo, "_sample_next_actions", lambda dist: a_next)
    return a_next


def critic(algo, obs, sample=None):
    """C(s) or C(s, a) for ONE observation, from the networks directly: V(s), Q(s, ·) or Q(s, a)."""
    box_action = None
    if algo.q_box:
        box_action = algo.policy.to_env_action(sample[None]).float()
    if algo.shared:
        out = algo.model.value(obs[None], box_action)
    else:
        out = algo.critic(obs[None]) if box_action is None else algo.critic(obs[None], box_action)
    out = out[0]
    return out[sample] if algo.q_discrete else out


def plain_targets(algo, rollout, a_next):
    """G[t][n] by loops: n-step sums cut at episode/rollout ends, λ-returns as a mixture of n-step returns."""
    config = algo.config
    T, N = rollout.rewards.shape
    gamma, lam = config.gamma, config.gae_lambda
    with torch.no_grad():
        boot = [
            [critic(algo, rollout.next_obs[t, n], None if a_next is None else a_next[t, n]) for n in range(N)]
            for t in range(T)
        ]

    def n_step(t, n, steps):
        """Σ_k γ^k r_{t+k} over at most `steps` steps, + γ^m C(s_{t+m}) unless the episode terminated."""
        total, discount = 0.0, 1.0
        for k in range(t, T):
            total += discount * rollout.rewards[k, n].item()
            discount *= gamma
            if rollout.terminated[k, n]:
                return total, k
            if rollout.truncated[k, n] or k == T - 1 or k - t + 1 == steps:
                return total + discount * float(boot[k][n]), k
        raise AssertionError

    G = torch.zeros(T, N)
    for t, n in itertools.product(range(T), range(N)):
        if config.target == "td0":
            G[t, n] = n_step(t, n, 1)[0]
        elif config.target == "nstep":
            G[t, n] = n_step(t, n, T)[0]
        else:  # G^λ = (1 − λ) Σ_{k<m} λ^{k−1} G^(k) + λ^{m−1} G^(m), m = steps left in the episode/rollout
            m = n_step(t, n, T)[1] - t + 1
            mixture = sum((1 - lam) * lam ** (k - 1) * n_step(t, n, k)[0] for k in range(1, m))
            G[t, n] = mixture + lam ** (m - 1) * n_step(t, n, m)[0]
    return G


def flat(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def reference_step(algo, rollout, a_next):
    """−∇ of L = 1/B Σ_t [−log π(a_t|s_t) Ψ_t + c_v ½ (C_t − G_t)² − c_e H_t], Ψ and G from plain loops."""
    config = algo.config
    G = plain_targets(algo, rollout, a_next)
    T, N = G.shape
    loss = 0.0
    for t, n in itertools.product(range(T), range(N)):
        obs, action = rollout.obs[t, n], rollout.actions[t, n]
        dist = algo.policy.distribution(obs[None])
        c = critic(algo, obs, action)
        if config.critic == "value":
            psi = G[t, n].item() - c.item()
        else:
            psi = c.item()
            if config.q_baseline:
                probs = dist.probs[0].detach()
                psi -= sum(probs[a].item() * critic(algo, obs, torch.tensor(a)).item() for a in range(2))
        loss = loss - dist.log_prob(action[None])[0] * psi
        loss = loss + config.vf_coef * 0.5 * (c - G[t, n].item()) ** 2
        loss = loss - config.ent_coef * dist.entropy()[0]
    loss = loss / (T * N)
    params = list(algo.model.parameters())
    return -torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


COMBOS = [
    (target, architecture, critic_kind, q_baseline)
    for target, architecture, critic_kind, q_baseline in itertools.product(
        ["td0", "nstep", "gae"], ["shared", "separate"], ["value", "q"], [False, True]
    )
    if critic_kind == "q" or not q_baseline
]


@pytest.mark.parametrize("target, architecture, critic_kind, q_baseline", COMBOS)
def test_update_equals_the_plain_estimator(monkeypatch, target, architecture, critic_kind, q_baseline):
    algo = make_algo(
        target=target,
        architecture=architecture,
        critic=critic_kind,
        q_baseline=q_baseline,
        gae_lambda=0.8,
        ent_coef=0.05,
        **PLAIN_SGD,
    )
    rollout = fixed_rollout(algo, monkeypatch)
    a_next = fix_next_actions(algo, monkeypatch, rollout) if critic_kind == "q" else None
    expected = reference_step(algo, rollout, a_next)
    before = flat(algo.model)
    algo.iteration(0)
    # SGD with lr 1 (actor and critic): the parameters move by exactly −∇L.
    torch.testing.assert_close(flat(algo.model) - before, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("architecture", ["shared", "separate"])
def test_box_q_critic_update_equals_the_plain_estimator(monkeypatch, architecture):
    """Q(s, a) from concat(s, a) on Pendulum (truncations only; the time limit cuts every episode)."""
    algo = make_algo(
        "Pendulum-v1", num_steps=20, architecture=architecture, critic="q", target="nstep", **PLAIN_SGD
    )
    rollout = fixed_rollout(algo, monkeypatch, terminations=False)
    a_next = fix_next_actions(algo, monkeypatch, rollout)
    expected = reference_step(algo, rollout, a_next)
    before = flat(algo.model)
    algo.iteration(0)
    torch.testing.assert_close(flat(algo.model) - before, expected, rtol=1e-4, atol=1e-5)


def spy_on(monkeypatch, name, arg):
    """Record argument `arg` of every call to a2c's `name` (a loss function)."""
    seen = []
    real = getattr(a2c_module, name)

    def spy(*args, **kwargs):
        seen.append(args[arg].detach().clone())
        return real(*args, **kwargs)

    monkeypatch.setattr(a2c_module, name, spy)
    return seen


@pytest.mark.parametrize("target", ["td0", "nstep", "gae"])
def test_truncation_bootstraps_from_the_final_observation(monkeypatch, target):
    """Moving a truncated step's final observation changes Â exactly as the target's formula says."""
    algo = make_algo(target=target, gae_lambda=0.8)
    rollout = fixed_rollout(algo, monkeypatch)
    advantages = spy_on(monkeypatch, "score_function_loss", 1)
    state = copy.deepcopy(algo.state_dict())
    t, n = (rollout.truncated & ~rollout.terminated).nonzero()[0].tolist()
    with torch.no_grad():
        old_v = critic(algo, rollout.next_obs[t, n]).item()
    algo.iteration(0)

    algo.load_state_dict(state)  # the same critic, a different final observation
    rollout.next_obs[t, n] += 3.0
    with torch.no_grad():
        new_v = critic(algo, rollout.next_obs[t, n]).item()
    assert abs(new_v - old_v) > 0.1
    t_end, n_end = rollout.terminated.nonzero()[0].tolist()
    rollout.next_obs[t_end, n_end] += 100.0  # a terminated step's final observation is never read
    algo.iteration(1)

    gamma, lam = algo.config.gamma, algo.config.gae_lambda
    decay = {"td0": 0.0, "nstep": gamma, "gae": gamma * lam}[target]
    T, N = rollout.rewards.shape
    expected = torch.zeros(T, N)
    start = t
    while start > 0 and not (rollout.terminated[start - 1, n] or rollout.truncated[start - 1, n]):
        start -= 1
    for k in range(start, t + 1):
        expected[k, n] = decay ** (t - k) * gamma * (new_v - old_v)
    diff = (advantages[1] - advantages[0]).view(T, N)
    torch.testing.assert_close(diff, expected, rtol=1e-4, atol=1e-5)


def test_q_critic_td0_target(monkeypatch):
    """y = r + γ Q(s', a'): no bootstrap on termination, Q(final observation, a') on truncation."""
    algo = make_algo(critic="q", target="td0")
    rollout = fixed_rollout(algo, monkeypatch)
    a_next = fix_next_actions(algo, monkeypatch, rollout)
    targets = spy_on(monkeypatch, "value_loss", 1)
    state = copy.deepcopy(algo.state_dict())
    term = rollout.terminated
    t, n = (rollout.truncated & ~term).nonzero()[0].tolist()
    with torch.no_grad():
        q_final = critic(algo, rollout.next_obs[t, n], a_next[t, n]).item()
    algo.iteration(0)
    T, N = rollout.rewards.shape
    y = targets[0].view(T, N)
    gamma = algo.config.gamma
    torch.testing.assert_close(y[term], rollout.rewards[term])  # terminated: y = r exactly
    assert y[t, n].item() == pytest.approx(rollout.rewards[t, n].item() + gamma * q_final, rel=1e-5)

    algo.load_state_dict(state)  # the same critic, different final observations
    t_end, n_end = term.nonzero()[0].tolist()
    rollout.next_obs[t_end, n_end] += 100.0
    rollout.next_obs[t, n] += 3.0
    with torch.no_grad():
        q_moved = critic(algo, rollout.next_obs[t, n], a_next[t, n]).item()
    algo.iteration(1)
    expected = torch.zeros(T, N)
    expected[t, n] = gamma * (q_moved - q_final)
    torch.testing.assert_close(targets[1].view(T, N) - y, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_envs", [1, 2])
@pytest.mark.parametrize("architecture", ["shared", "separate"])
def test_a_discrete_q_critic_reads_the_state_alone_and_is_indexed_by_the_action(
    monkeypatch, architecture, num_envs
):
    """Discrete actions: the critic gets no action input (neither index nor one-hot) and outputs Q(s, ·), one
    value per action; Q(s_t, a_t) is that output at index a_t, and the bootstrap's Q(s', a') the output at the
    index of ONE draw a' ~ π(·|s'). Also with one sub-env, where a [T, 1] batch must keep its shape."""
    seed_everything(0)
    envs = GymVecEnv(lambda: gym.make("CartPole-v1", max_episode_steps=15), num_envs=num_envs)
    options = {"critic": "q", "target": "nstep", "architecture": architecture, **PLAIN_SGD}
    config = Config(num_envs=num_envs, num_steps=12, hidden_sizes=(8,), **options)
    algo = A2C(config, envs, seed=0, device=torch.device("cpu"), total_steps=10_000)
    rollout = algo.collector.collect(algo.policy, config.num_steps)
    monkeypatch.setattr(algo.collector, "collect", lambda *a, **k: rollout)

    def table(obs):  # Q(s, ·) [T, N, |A|] from the networks directly
        return algo.model.value(obs) if algo.shared else algo.critic(obs)

    with torch.no_grad():
        q, q_next = table(rollout.obs), table(rollout.next_obs)
        a_next = algo.policy.distribution(rollout.next_obs).sample()
        next_probs = algo.policy.distribution(rollout.next_obs).probs
    T, N = rollout.rewards.shape
    q_sa = torch.tensor([[q[t, n, int(rollout.actions[t, n])] for n in range(N)] for t in range(T)])
    boot = torch.tensor([[q_next[t, n, int(a_next[t, n])] for n in range(N)] for t in range(T)])
    returns = torch.zeros(T, N)  # n-step returns to the episode's or the rollout's end, by a plain loop
    for n in range(N):
        after = 0.0
        for t in reversed(range(T)):
            if rollout.terminated[t, n]:
                after = 0.0
            elif rollout.truncated[t, n] or t == T - 1:
                after = float(boot[t, n])
            returns[t, n] = after = float(rollout.rewards[t, n]) + config.gamma * after

    calls, draws = [], []
    owner, name = (algo.model, "critic") if algo.shared else (algo.critic, "forward")
    real = getattr(owner, name)

    def critic_spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((args[1:] + tuple(kwargs.values()), out.shape))
        return out

    monkeypatch.setattr(owner, name, critic_spy)
    monkeypatch.setattr(algo, "_sample_next_actions", lambda dist: draws.append(dist) or a_next)
    predicted, targets = spy_on(monkeypatch, "value_loss", 0), spy_on(monkeypatch, "value_loss", 1)
    weights = spy_on(monkeypatch, "score_function_loss", 1)
    algo.iteration(0)
    assert len(calls) == 2  # the next states (bootstrap), then the states
    for extra, shape in calls:
        assert all(x is None for x in extra) and shape == (T, N, 2)  # state only in, Q(s, ·) out
    assert len(draws) == 1
    torch.testing.assert_close(draws[0].probs, next_probs)
    torch.testing.assert_close(predicted[0], q_sa.flatten())
    torch.testing.assert_close(weights[0], q_sa.flatten())  # Ψ_t = Q(s_t, a_t), no baseline
    torch.testing.assert_close(targets[0], returns.flatten())


@pytest.mark.parametrize("architecture", ["shared", "separate"])
def test_state_dict_round_trip(monkeypatch, architecture):
    a = make_algo(seed=0, architecture=architecture)
    a.iteration(0)
    b = make_algo(seed=1, architecture=architecture)
    # Deep copy, as a checkpoint on disk would be (torch's Optimizer.load_state_dict shares "step" tensors).
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    torch.testing.assert_close(flat(b.model), flat(a.model))
    rollout = a.collector.collect(a.policy, a.config.num_steps)
    for algo in (a, b):
        monkeypatch.setattr(algo.collector, "collect", lambda *args, **kw: rollout)
        algo.iteration(1)  # same RMSprop state → the same update
    torch.testing.assert_close(flat(b.model), flat(a.model))


OPTIONS = [{"target": t, "architecture": a, "critic": c, "q_baseline": qb} for t, a, c, qb in COMBOS] + [
    {"optimizer": "adam", "normalize_advantages": True, "ent_coef": 0.01, "value_lr": 1e-3},
    {"optimizer": "muon", "architecture": "shared", "normalize_obs": True, "hidden_sizes": (8, 8)},
]


@pytest.mark.parametrize(
    "env, options",
    [
        (env, options)
        for env in ("CartPole-v1", "Pendulum-v1")
        for options in OPTIONS
        if env == "CartPole-v1" or not options.get("q_baseline")  # q_baseline needs discrete actions
    ],
)
def test_options_run(env, options):
    algo = make_algo(env, num_steps=5, **options)
    metrics = algo.iteration(0).metrics
    assert all(np.isfinite(v) for k, v in metrics.items() if k != "stats/explained_variance")
    assert all(torch.isfinite(p).all() for p in algo.model.parameters())


def test_invalid_options_raise_one_line_errors():
    with pytest.raises(ConfigError, match="q_baseline"):
        make_algo(q_baseline=True)  # needs --critic q
    with pytest.raises(ConfigError, match="Discrete"):
        make_algo("Pendulum-v1", critic="q", q_baseline=True)
    with pytest.raises(ConfigError, match="value_lr"):
        make_algo(architecture="shared", value_lr=1e-3)
    with pytest.raises(ConfigError, match="target"):
        make_algo(target="td1")
    with pytest.raises(ConfigError, match="gae_lambda"):
        make_algo(gae_lambda=-0.1)


def test_shared_checkpoint_loads_as_a_plain_policy(tmp_path):
    """pgrad.load rebuilds algo.policy (the ActorCritic's Policy) from the checkpoint, weights and all."""
    summary = pgrad.train(
        "a2c",
        "CartPole-v1",
        total_steps=400,
        run_dir=str(tmp_path),
        architecture="shared",
        eval_episodes=1,
        **QUIET,
    )
    assert np.isfinite(summary["eval"]["mean_return"])
    agent = pgrad.load(tmp_path)
    state, _ = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    model = state["algorithm"]["model"]
    for key, value in agent.policy.state_dict().items():
        torch.testing.assert_close(value, model[f"policy.{key}"])
    assert set(model) - {f"policy.{k}" for k in agent.policy.state_dict()} == {
        "value_head.weight",
        "value_head.bias",
    }
    assert isinstance(ActorCritic.from_spec(ActorCritic(4, gym.spaces.Discrete(2)).spec()), ActorCritic)
    resumed = pgrad.resume(tmp_path, total_steps=800, progress=False)  # optimiser states load back
    assert resumed["global_step"] >= 800


@pytest.mark.parametrize("critic_kind", ["value", "q"])
def test_box_actions_train_without_nan(tmp_path, critic_kind):
    summary = pgrad.train(
        "a2c",
        "Pendulum-v1",
        total_steps=2000,
        run_dir=str(tmp_path),
        critic=critic_kind,
        num_envs=4,
        eval_episodes=2,
        **QUIET,
    )
    assert np.isfinite(summary["eval"]["mean_return"])
    agent = pgrad.load(tmp_path)
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())


def test_learns_cartpole_quickly(tmp_path):
    """Defaults, seed 0: evaluation 500 at 20k steps when measured (a random policy scores ~22)."""
    summary = pgrad.train(
        "a2c",
        "CartPole-v1",
        total_steps=20_000,
        seed=0,
        eval_episodes=10,
        eval_every=0,
        run_dir=str(tmp_path),
        **QUIET,
    )
    assert summary["eval"]["mean_return"] > 200, summary["eval"]
