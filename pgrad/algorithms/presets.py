"""Per-env presets: pgrad's own settings that solve a task fast, applied when a run names that env.

`pgrad train ppo --env CartPole-v1` trains with PRESETS["ppo"]["CartPole-v1"] on top of PPO's defaults; flags
given on the command line (or options given to `pgrad.train`) override the preset, and `--no-preset` keeps the
algorithm's defaults. The preset in use is printed and stored in run.json ("preset"). Like
rl-baselines3-zoo's hyper-parameter files, but each entry is measured here: benchmarks/acceptance.py trains
every one on 5 seeds (benchmarks/results/acceptance.md gives the steps and times per seed).
"""

from __future__ import annotations

from typing import Any

# rl-zoo's CartPole PPO: 8 envs × 32 steps, 20 epochs of one 256-sample minibatch, γ 0.98, λ 0.8,
# lr 1e-3 → 0, clip 0.2 → 0. Reaches 475 in 10–30k steps. Kept for side-by-side benchmarks at SB3's settings.
PPO_CARTPOLE_ZOO = dict(
    num_envs=8,
    num_steps=32,
    num_minibatches=1,
    update_epochs=20,
    gamma=0.98,
    gae_lambda=0.8,
    lr=1e-3,
    anneal_clip=True,
)
# pgrad's CartPole preset: the zoo's with lr 4e-3, tuned for time to solve (benchmarks/time_to_solve.py).
# Median steps to the first 20-episode evaluation ≥ 475 (evaluating every 5k steps), 10 seeds:
# lr 1e-3: 20,224; 2e-3: 10,240; 3e-3: 10,240; 4e-3: 5,120 (6 of 10 seeds at the first evaluation);
# 5e-3: 5,120 (5 seeds). Fewer epochs or more envs per update need more steps.
PPO_CARTPOLE = {**PPO_CARTPOLE_ZOO, "lr": 4e-3}
# rl-zoo's Acrobot PPO: 16 envs × 256 steps, 4 epochs of SB3's 64-sample minibatches, λ 0.94, VecNormalize
# (observations and rewards). Reaches −100 in 20–41k steps (5 seeds); with 4 minibatches and raw rewards
# (this preset before) it needed 53–201k.
PPO_ACROBOT = dict(
    num_envs=16,
    num_steps=256,
    num_minibatches=64,
    update_epochs=4,
    gae_lambda=0.94,
    normalize_obs=True,
    normalize_reward=True,
)
# rl-zoo's Pendulum PPO without gSDE: 4 envs × 1024 steps, 10 epochs of 64, γ 0.9, lr 1e-3, normalised
# observations and rewards.
PPO_PENDULUM = dict(
    num_envs=4,
    num_steps=1024,
    num_minibatches=64,
    update_epochs=10,
    gamma=0.9,
    gae_lambda=0.95,
    lr=1e-3,
    anneal_lr=False,
    normalize_obs=True,
    normalize_reward=True,
)
# Learned critics on Pendulum-v1: small networks, a short warm-up, batch 128 (rl-zoo uses 256×256 and 10k
# random steps; these reach ≥ −200 in a few thousand steps).
CRITIC_PENDULUM = dict(hidden_sizes=(64, 64), learning_starts=500, batch_size=128)
# Discrete SAC's critics learn CartPole like rl-zoo's DQN: 256×256, lr 2.3e-3, 128 updates after every 256
# env steps, a fast-moving target (zoo: a hard copy every 10 updates; here τ 0.05).
SAC_DISCRETE_CARTPOLE = dict(
    learning_starts=1000,
    hidden_sizes=(256, 256),
    train_freq=256,
    gradient_steps=128,
    critic_lr=2.3e-3,
    actor_lr=2.3e-4,
    tau=0.05,
)
# MountainCarContinuous needs long, consistent pushes that white exploration noise rarely makes: pink (1/f)
# noise in SAC's exploring samples (Eberhard et al. 2023); rl-zoo uses gSDE for the same reason.
SAC_MOUNTAINCAR = dict(
    hidden_sizes=(64, 64), learning_starts=1000, exploration="pink", actor_lr=1e-3, critic_lr=1e-3
)
# A3C on CartPole: A2C's batch per gradient (rl-zoo: 8 envs × 5 steps) for each actor-learner, the paper's
# t_max 5, entropy 0.01 and shared RMSprop otherwise. With the paper's one env per actor-learner (the
# default) a 5-step gradient is too noisy here (seed 0: entropy < 0.1 and returns ~100 by 30k steps, with
# RMSprop at lr 7e-4 or 1e-4 and with Adam at 1e-4).
A3C_CARTPOLE = dict(num_envs=8)

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "a3c": {"CartPole-v1": A3C_CARTPOLE},
    "ppo": {"CartPole-v1": PPO_CARTPOLE, "Acrobot-v1": PPO_ACROBOT, "Pendulum-v1": PPO_PENDULUM},
    "sac": {
        "Pendulum-v1": {**CRITIC_PENDULUM, "actor_lr": 3e-3, "critic_lr": 3e-3},
        "MountainCarContinuous-v0": SAC_MOUNTAINCAR,
    },
    "td3": {"Pendulum-v1": CRITIC_PENDULUM},
    "ddpg": {"Pendulum-v1": CRITIC_PENDULUM},
    "crossq": {"Pendulum-v1": {**CRITIC_PENDULUM, "critic_hidden_sizes": (128, 128)}},
    "sac_discrete": {"CartPole-v1": SAC_DISCRETE_CARTPOLE},
}


def preset(algorithm: str, env: object) -> dict[str, Any]:
    """The preset options of `algorithm` (a registry name) on `env` (an env id; anything else has none)."""
    if not isinstance(env, str):
        return {}
    return dict(PRESETS.get(algorithm, {}).get(env, {}))
