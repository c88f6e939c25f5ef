"""A3C: asynchronous advantage actor-critic (Mnih et al. 2016): K actor-learners on Ray, a parameter server.

Estimator. Actor-learner k pulls the shared parameters θ_v (version v), runs t_max = num_steps steps on its
own num_envs sub-envs, and computes on that rollout of B = num_envs · t_max steps exactly A2C's loss gradient
(`pgrad.algorithms.score_function.a2c`, its `loss`):

    g_k = ∇θ [−1/B Σ_t log πθ(a_t|s_t) · (G_t − V(s_t)) + c_v · ½ mean_t (V(s_t) − G_t)² − c_e · H[πθ]] at θ_v
    G_t = Σ_{i<m} γ^i r_{t+i} + γ^m (1 − term) V(s_{t+m})      (n-step: to the rollout's or episode's end)

clipped to max_grad_norm (per network with --architecture separate), and pushes (g_k, v). The parameter
server applies each push as it arrives with the one shared optimiser state (the paper's shared RMSProp:
every actor-learner's gradients feed the same running averages), θ ← θ − lr · RMSProp(g_k), v ← v + 1, and
answers with the new weights, from which the actor-learner collects its next rollout.

Asynchrony: while k collected, the others' gradients landed, so g_k, computed at θ_v, is applied at
θ_{v'}: its staleness is v' − v pushes (`stats/staleness_mean`, `stats/staleness_max`; 0 with one worker,
about K − 1 with K). As in Hogwild! (Recht et al. 2011), small steps from slightly stale gradients still
descend; the paper adds that actor-learners exploring different parts of the env decorrelate the updates, in
place of a replay buffer.

Differences from the paper: actor-learners are Ray actors (processes, on one machine or a cluster), not
threads of one process writing shared memory without locks; the shared parameters and optimiser state live
in a server actor that applies pushes one at a time. The harness needs a consistent state to evaluate and
checkpoint, so each `iteration` admits `pushes_per_iteration` pushes and then waits for every actor-learner
to stop (a gradient computed but refused at that barrier is pushed first in the next iteration). Only applied
pushes count: `global_step` is the env steps of the applied pushes; an actor-learner that dies is replaced
and its unpushed work is lost (`stats/worker_restarts`). With K ≥ 2 the order of the pushes depends on
timing: a run is not reproducible from its seed (with K = 1 it is).

Defaults follow the paper (t_max 5, entropy 0.01, shared RMSProp, one env per actor-learner) with
rl-baselines3-zoo's CartPole A2C for the rest (separate 64×64 networks, lr 7e-4, RMSprop α 0.99 ε 1e-5,
c_v 0.5, clip 0.5). On CartPole-v1 pgrad's preset gives each actor-learner A2C's batch, 8 envs × 5 steps
(`pgrad.algorithms.presets`): one env's 5 steps are too noisy a gradient there.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

import torch

from pgrad.algorithms.common import LinearDecay, NetworkConfig, check_at_least, extension_note
from pgrad.algorithms.score_function import a2c
from pgrad.algorithms.score_function.a3c_actors import ActorLearner, ParameterServer, load_flat
from pgrad.envs.base import VecEnv
from pgrad.errors import ConfigError, EnvError, PgradError
from pgrad.run.algorithm import Algorithm, IterationResult
from pgrad.run.seeding import derive_seed

# Replacements of one actor-learner within one iteration before giving up (one that dies at every start,
# say out of memory, would otherwise be replaced forever).
MAX_DEATHS = 3


@dataclass
class Config(NetworkConfig):
    """A3C options (`pgrad train a3c --help`); --workers K sets the number of actor-learners (default 2)."""

    num_envs: int = 1
    """Sub-envs PER actor-learner (the paper: 1); K actor-learners step K · num_envs in all."""
    num_steps: int = 5
    """t_max: steps per sub-env per gradient push (batch = num_envs · num_steps)."""
    gamma: float = 0.99
    """Discount γ."""
    target: Literal["td0", "nstep", "gae"] = "nstep"
    """Critic target / advantage: TD(0), n-step returns to the rollout or episode end (the
    paper's), or λ-returns."""
    gae_lambda: float = 0.95
    """λ of --target gae."""
    architecture: Literal["shared", "separate"] = "separate"
    """One trunk with policy and value heads (the paper's), or separate policy and value networks."""
    lr: float = 7e-4
    """Learning rate of the shared optimiser."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 at the step budget (the paper anneals to 0)."""
    optimizer: Literal["rmsprop", "adam"] = "rmsprop"
    """The shared optimiser the server steps: RMSprop (α 0.99, ε 1e-5) or Adam."""
    max_grad_norm: float = 0.5
    """Global-norm clip of each pushed gradient, per network with separate networks (0: none)."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient c_e (the paper: 0.01)."""
    vf_coef: float = 0.5
    """Critic-loss coefficient c_v (the critic loss is ½·MSE)."""
    init_std: float = 1.0
    """Initial standard deviation of Gaussian policies."""
    pushes_per_iteration: int = 100
    """Gradients the server applies per harness iteration (between evaluations and checkpoints)."""


def a2c_config(config: Config) -> a2c.Config:
    """The A2C config whose loss and networks the actor-learners share (A2C's other options at defaults)."""
    own = {f.name for f in fields(a2c.Config)}
    return a2c.Config(**{f.name: getattr(config, f.name) for f in fields(config) if f.name in own})


class A3C(Algorithm):
    name = "a3c"
    family = "score function"
    summary = "A3C: K asynchronous actor-learners push n-step actor-critic gradients to a parameter server"
    Config = Config
    workers = "own"
    default_workers = 2
    # `pgrad tune`'s search, as A2C's (rl-zoo's sample_a2c_params) around the paper's t_max 5.
    search_space: ClassVar[dict[str, tuple]] = {
        "lr": ("log", 1e-5, 3e-3),
        "num_steps": ("categorical", (5, 8, 16, 32)),
        "gamma": ("categorical", (0.95, 0.98, 0.99, 0.995, 0.999)),
        "ent_coef": ("log", 1e-8, 0.1),
        "max_grad_norm": ("float", 0.3, 2.0),
    }

    def __init__(self, config: Config, envs: VecEnv, seed: int, device: torch.device, total_steps: int):
        super().__init__(config, envs, seed, device, total_steps)
        check_at_least(config, 1, "num_envs", "num_steps", "pushes_per_iteration")
        self.setup = getattr(envs, "setup", None)
        if self.setup is None:
            raise ConfigError(
                f"a3c runs its actor-learners on Ray: env '{envs.label}' is not a "
                "pgrad.run.workers.WorkerEnvs (train with pgrad.train or `pgrad train a3c`, --workers K)"
            )
        self.learner_config = a2c_config(config)
        a2c.check_config(self.learner_config, envs)
        self.model = a2c.make_networks(self.learner_config, envs, device)
        groups = a2c.network_groups(self.model)
        self.policy = self.model.policy if "model" in groups else groups["policy"]
        # Never stepped here: the server's optimiser is the one; these give a fresh run's state layout.
        self.optimizers = a2c.make_optimizers(self.learner_config, groups)
        self.schedule = LinearDecay(total_steps)
        self.server: Any = None
        self.learners: list[Any] = []
        self.generation = [0] * self.setup.workers  # replacements of actor-learner k so far
        self.stream: tuple = ()  # seed path suffix: ("resume", version) after a resume
        self.saved: dict[str, Any] | None = None  # loaded before the server started
        self.restarts = 0
        self.run_id = uuid.uuid4().hex[:8]

    # -- the Ray actors -------------------------------------------------------------------------------------
    def _learner_seed(self, k: int) -> int:
        """Actor-learner k's envs, episodes and sampling: derive_seed(seed, "a3c", k) for the first one."""
        path = (*self.stream, self.generation[k]) if self.stream or self.generation[k] else ()
        return derive_seed(self.seed, "a3c", k, *path)

    def _start_learner(self, ray: Any, k: int) -> Any:
        # Named after the run, slot and generation: `ray list actors` shows which is which.
        name = f"pgrad-a3c-{self.run_id}-learner{k}-g{self.generation[k]}"
        actor = ray.remote(num_cpus=1, max_restarts=0)(ActorLearner).options(name=name)
        return actor.remote(self.setup, self.learner_config, self._learner_seed(k), self.server)

    def _start(self) -> Any:
        from pgrad.run.ray_cluster import cluster_cpus, connect

        ray = connect(self.setup.address, "a3c")
        if self.server is not None:
            return ray
        if cluster_cpus(ray) < self.setup.workers:
            raise ConfigError(
                f"a3c: --workers {self.setup.workers} actor-learners need {self.setup.workers} CPUs, the Ray "
                f"cluster has {cluster_cpus(ray)}"
            )
        server = ray.remote(num_cpus=0)(ParameterServer).options(name=f"pgrad-a3c-{self.run_id}-server")
        model = copy.deepcopy(self.model).cpu()
        self.server = server.remote(self.learner_config, model, self.setup.threads)
        if self.saved is not None:
            ray.get(self.server.load_state_dict.remote(self.saved))
        self.learners = [self._start_learner(ray, k) for k in range(self.setup.workers)]
        return ray

    def close(self) -> None:
        """Stop the actor-learners and the server (idempotent; the harness calls it when the run ends)."""
        if self.server is None:
            return
        from pgrad.run.ray_cluster import ray_module

        ray = ray_module("a3c")
        with contextlib.suppress(Exception):  # what a later state_dict needs (a dead server: none)
            self.saved = ray.get(self.server.state_dict.remote(), timeout=30)
        for actor in [*self.learners, self.server]:
            ray.kill(actor)
        self.server, self.learners = None, []

    def _run_learners(self, ray: Any) -> None:
        """Let every actor-learner work until the server closes; replace any that dies."""
        running = {learner.run.remote(): k for k, learner in enumerate(self.learners)}
        deaths = [0] * len(self.learners)
        closed = False  # an actor-learner returns when the server closes
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            k = running.pop(ref)
            try:
                ray.get(ref)
                closed = True
            except ray.exceptions.RayActorError as exc:  # killed or crashed: its unpushed work is lost
                deaths[k] += 1
                if deaths[k] > MAX_DEATHS:
                    raise EnvError(
                        f"a3c: actor-learner {k} died {deaths[k]} times in one iteration; the last: "
                        f"{str(exc).splitlines()[0]}"
                    ) from None
                self.restarts += 1
                self.generation[k] += 1
                self.learners[k] = self._start_learner(ray, k)
                # Others still running finish this iteration's pushes while the replacement starts (a
                # process importing torch: seconds); it joins the next. Alone, it must finish them.
                if not running and not closed:
                    running[self.learners[k].run.remote()] = k
            except ray.exceptions.RayTaskError as exc:  # pgrad's own errors as one line
                if isinstance(exc.cause, PgradError):
                    raise exc.cause from None
                if isinstance(exc.cause, ray.exceptions.RayActorError):  # the server, from a learner's push
                    raise EnvError(
                        "a3c: the parameter server died (the shared weights and optimiser state since the "
                        "last checkpoint are lost); continue with `pgrad resume RUN_DIR`"
                    ) from None
                raise

    # -- one iteration --------------------------------------------------------------------------------------
    def iteration(self, index: int) -> IterationResult:
        config = self.config
        ray = self._start()
        fraction = self.schedule.fraction(self.envs.global_step) if config.anneal_lr else 1.0
        ray.get(self.server.open.remote(config.pushes_per_iteration, fraction))
        self._run_learners(ray)
        out = ray.get(self.server.drain.remote())
        load_flat(self.model, out["weights"])
        self.envs.global_step += out["steps"]  # the steps of applied pushes only
        staleness = out["staleness"]
        metrics = {
            **out["metrics"],
            "stats/staleness_mean": float(staleness.mean()) if len(staleness) else 0.0,
            "stats/staleness_max": int(staleness.max()) if len(staleness) else 0,
            "stats/pushes": out["pushes"],
            "stats/version": out["version"],
            "stats/worker_restarts": self.restarts,
            "stats/lr": config.lr * fraction,
        }
        return IterationResult(metrics, out["episode_returns"], out["episode_lengths"])

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.server is not None:
            from pgrad.run.ray_cluster import ray_module

            state = ray_module("a3c").get(self.server.state_dict.remote())
        elif self.saved is not None:
            state = self.saved
        else:
            state = {
                "model": self.model.state_dict(),
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "version": 0,
            }
        return {**state, "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.schedule.load_state_dict(state["schedule"])
        saved = {k: state[k] for k in ("model", "optimizers", "version")}
        saved["model"] = {k: v.cpu() for k, v in saved["model"].items()}
        self.stream = ("resume", int(state["version"]))  # new episodes, not a replay of the first ones
        if self.server is None:
            self.saved = saved
        else:
            from pgrad.run.ray_cluster import ray_module

            ray_module("a3c").get(self.server.load_state_dict.remote(saved))

    def extend_budget(self, step: int, total_steps: int) -> str | None:
        self.total_steps = total_steps
        self.schedule.extend(step, total_steps)
        return extension_note(self.schedule, step, "learning rate") if self.config.anneal_lr else None
