"""Distributed rollouts on Ray: a run's sub-envs split over K actors, the algorithm none the wiser.

`WorkerEnvs` is the `VecEnv` the harness hands an algorithm run with `--workers K` (docs/scale_out.md). It has
the spaces, `obs_dim`, `label` and time limit of the run's env (read from a one-sub-env probe built here) but
steps nothing itself: the collectors of `pgrad.run.rollout` see its `collect_steps` / `collect_episodes` and
call them instead of stepping. Each call

1. puts the policy's `state_dict()` (CPU tensors, observation normalisers included) in Ray's object store
   once, shared by all K actors (the policy module itself crossed once per actor, when it first acted);
2. has actor k collect on global sub-envs [k·m, (k+1)·m), m = N/K, with the local collector on its own
   vector env of m sub-envs;
3. concatenates the K rollouts along the env dimension (time-major [T, N]; whole-episode batches of different
   lengths padded as `stack_rollouts` pads them) and adds each actor's env steps to `global_step` when its
   rollout arrives.

Seeds. Worker k resets its sub-envs with exactly the seeds those sub-envs get in a local run (Gymnasium: the
per-sub-env seeds `GymVecEnv` derives from an int seed, or the given per-sub-env list, sliced), so K workers
start from the local run's start states. Worker 0 samples actions with the learner's torch RNG state (sent
with the weights; the advanced state comes back and is set on the learner), so **one worker reproduces local
sampling bitwise**; worker k ≥ 1 samples from its own stream, seeded with `derive_seed(seed, "worker", k)`.
(The native torch twins draw every sub-env's start states from one generator: with K > 1 their start states
differ from a local run's; K = 1 is still exact.)

Worker death. An actor that dies (killed, its node lost) is replaced by a new one for its slot, generation
g + 1: fresh episodes (seeds derived from the run seed, the slot and g), its own sampling stream
`derive_seed(seed, "worker", k, g)`. Its share of the batch is collected again with the same weights, and
nothing from the dead actor is counted; `stats/worker_restarts` (in every metrics record) counts
replacements in this process.

Ray is imported (through `pgrad.run.ray_cluster`: joined, or started locally) when a `WorkerEnvs` is built;
the actors start at the first collect.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch

from pgrad.envs.gym import derive_sub_env_seeds
from pgrad.errors import CheckpointError, ConfigError, EnvError, PgradError
from pgrad.policies.networks import Policy
from pgrad.run.ray_cluster import WorkerSetup, cluster_cpus, connect
from pgrad.run.rollout import StepCollector, collect_episodes, stack_rollouts
from pgrad.run.seeding import derive_seed
from pgrad.types import Rollout

FIELDS = ("obs", "actions", "log_probs", "rewards", "terminated", "truncated", "next_obs", "mask")
# Replacements of one slot within one collect before giving up (an actor that dies at every start, say
# out of memory on its node, would otherwise be replaced forever).
MAX_RESTARTS_IN_A_ROW = 3


def sub_env_seeds(seed: int | Sequence[int], num_envs: int) -> list[int]:
    """The per-sub-env seeds a local run's `reset(seed)` gives its `num_envs` sub-envs (as `GymVecEnv`
    derives them from an int seed: `pgrad.envs.gym.derive_sub_env_seeds`), or the given list."""
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        if seed < 0:
            raise EnvError(f"reset seed must be a non-negative integer, got {seed}")
        return derive_sub_env_seeds(int(seed), num_envs)
    seeds = list(seed)
    if len(seeds) != num_envs:
        raise EnvError(f"reset seeds: {len(seeds)} given for {num_envs} sub-envs (one per sub-env)")
    return seeds


class RolloutWorker:
    """One Ray actor (`num_cpus=1`): worker `index` of K, stepping m = N/K sub-envs with a local collector.

    Its constructor only stores the setup (an exception in a Ray actor's constructor loses its type); the
    envs are built by the first collect, whose errors reach the learner as the task's exception.
    """

    def __init__(self, setup: WorkerSetup, index: int, generation: int):
        self.setup = setup
        self.index = index
        self.generation = generation
        self.envs: Any = None
        self.collector: StepCollector | None = None
        self.policies: dict[int, Policy] = {}

    def _build(self) -> None:
        if self.envs is not None:
            return
        setup, k, g = self.setup, self.index, self.generation
        torch.set_num_threads(max(1, setup.threads))
        self.envs = setup.make_envs(setup.num_envs // setup.workers)
        # Seeds a replacement (g ≥ 1) starts fresh episodes with when the learner asks for no reset.
        self.collector = StepCollector(self.envs, derive_seed(setup.seed, "worker", k, "episodes", g))
        if k > 0:  # worker 0 samples with the learner's RNG state, sent with every collect
            torch.manual_seed(
                derive_seed(setup.seed, "worker", k) if g == 0 else derive_seed(setup.seed, "worker", k, g)
            )

    def _policy(self, key: int, module: Policy | None, weights: dict[str, torch.Tensor]) -> Policy:
        if module is not None:
            self.policies[key] = module
        policy = self.policies[key]
        policy.load_state_dict(weights)
        return policy

    def _result(self, rollout: Rollout, before: int, rng: torch.Tensor | None) -> dict[str, Any]:
        return {
            # Copies: a field may view a larger buffer (collect_episodes doubles its capacity), and Ray
            # would send the whole storage.
            "fields": {name: getattr(rollout, name).clone() for name in FIELDS},
            "start_step": rollout.start_step,
            "episode_returns": rollout.episode_returns,
            "episode_lengths": rollout.episode_lengths,
            "steps": self.envs.global_step - before,
            "rng": None if rng is None else torch.get_rng_state(),
        }

    def collect_steps(
        self,
        key: int,
        module: Policy | None,
        weights: dict[str, torch.Tensor],
        rng: torch.Tensor | None,
        num_steps: int,
        seed: int | list[int] | None,
        count_steps: bool,
    ) -> dict[str, Any]:
        """`StepCollector.collect` on this worker's sub-envs (reset first with `seed` when one is given)."""
        self._build()
        policy = self._policy(key, module, weights)
        if rng is not None:
            torch.set_rng_state(rng)
        if seed is not None:
            self.collector.restart(seed)  # type: ignore[arg-type]  # a list: one seed per sub-env
        self.collector.count_steps = count_steps
        before = self.envs.global_step
        rollout = self.collector.collect(policy, num_steps)
        result = self._result(rollout, before, rng)
        result["last_obs"] = self.collector.obs
        result["episode_step"] = self.collector.episode_step
        return result

    def collect_episodes(
        self,
        key: int,
        module: Policy | None,
        weights: dict[str, torch.Tensor],
        rng: torch.Tensor | None,
        episodes_per_env: int,
        seed: int | list[int],
        max_steps: int,
    ) -> dict[str, Any]:
        """`collect_episodes` on this worker's sub-envs, reset with their share of the seeds."""
        self._build()
        policy = self._policy(key, module, weights)
        if rng is not None:
            torch.set_rng_state(rng)
        before = self.envs.global_step
        rollout = collect_episodes(self.envs, policy, episodes_per_env, seed, max_steps)
        return self._result(rollout, before, rng)


class WorkerEnvs:
    """The run's N sub-envs as K Ray actors' shares (m = N/K each): a `VecEnv` for the harness and the
    algorithm, stepped only through the collectors (`pgrad.run.rollout`), which dispatch to
    `collect_steps` / `collect_episodes` here. See the module docstring for seeds and worker death.

    Building it joins Ray (or starts a local one) and refuses more workers than the cluster has CPUs; the
    actors start at the first collect, so an algorithm that runs its own actors from `setup` (A3C) never
    starts these; it adds the env steps its actors report to `global_step` itself.
    """

    def __init__(self, setup: WorkerSetup, device: torch.device | str = "cpu"):
        K, N = setup.workers, setup.num_envs
        if K < 1:
            raise ConfigError(f"--workers must be >= 1 for Ray workers, got {K}")
        if N % K:
            raise ConfigError(
                f"--workers {K} must divide num_envs {N} (each worker steps num_envs / K sub-envs); "
                f"choose num_envs a multiple of {K}"
            )
        self.setup = setup
        self.device = torch.device(device)
        self.num_envs = N
        self.workers = K
        self.per_worker = N // K
        probe = setup.make_envs(1)  # spaces, checks and time limit, exactly as the workers' envs have them
        try:
            self.label: str = probe.label
            self.spec_id: str | None = getattr(probe, "spec_id", None)
            self.single_observation_space = probe.single_observation_space
            self.single_action_space = probe.single_action_space
            self.obs_dim: int = probe.obs_dim
            self.max_episode_steps: int | None = probe.max_episode_steps
        finally:
            probe.close()
        # Joined (or started) now, so that too many workers are refused before the run folder is made.
        self._ray: ModuleType = connect(setup.address, "--workers")
        cpus = cluster_cpus(self._ray)
        if cpus < K:
            raise ConfigError(
                f"--workers {K} needs {K} CPUs, the Ray cluster has {cpus}: ask for at most {cpus} "
                "workers or add nodes (ray start --address=HEAD:6379)"
            )
        self.global_step = 0  # env steps over all workers, added as each worker's rollout arrives
        self.restarts = 0  # actors replaced in this process
        self._actors: list[Any] = []
        self._generation = [0] * K
        self._has_policy: list[set[int]] = [set() for _ in range(K)]
        self._policies: dict[int, Policy] = {}  # keeps every sent policy alive, so its id stays its key

    # -- the VecEnv surface ---------------------------------------------------------------------------------
    def _not_here(self) -> EnvError:
        return EnvError(
            f"env '{self.label}' runs on {self.workers} Ray workers: it is stepped by the collectors of "
            "pgrad.run.rollout (StepCollector, collect_episodes), not by reset/step"
        )

    def reset(self, seed: int | Sequence[int] | None = None) -> torch.Tensor:
        """Refused: the workers reset their own sub-envs (through the collectors)."""
        raise self._not_here()

    def step(self, actions: torch.Tensor) -> Any:
        """Refused: the workers step their own sub-envs (through the collectors)."""
        raise self._not_here()

    def metrics(self) -> dict[str, float]:
        """What the harness adds to every metrics record."""
        return {"stats/worker_restarts": self.restarts}

    def close(self) -> None:
        """End the actors (idempotent); a local Ray itself stays up until the process exits."""
        actors, self._actors = self._actors, []
        for actor in actors:
            with contextlib.suppress(Exception):  # already gone
                self._ray.kill(actor)

    # -- actors ---------------------------------------------------------------------------------------------
    def _start(self) -> ModuleType:
        ray = self._ray
        if self._actors:
            return ray
        self._actor_class = ray.remote(num_cpus=1)(RolloutWorker)
        self._actors = [self._new_actor(k) for k in range(self.workers)]
        return ray

    def _new_actor(self, k: int) -> Any:
        self._has_policy[k] = set()
        return self._actor_class.remote(self.setup, k, self._generation[k])

    def _replace(self, k: int) -> None:
        with contextlib.suppress(Exception):  # already gone
            self._ray.kill(self._actors[k])
        self._generation[k] += 1
        self.restarts += 1
        self._actors[k] = self._new_actor(k)

    def _where(self, k: int) -> str:
        m = self.per_worker
        return f"worker {k} of {self.workers} (sub-envs {k * m}-{(k + 1) * m - 1})"

    def _unwrap(self, k: int, exc: BaseException) -> PgradError:
        """A worker's exception as one pgrad error naming the worker (and its env, for an env's own)."""
        cause = getattr(exc, "cause", None) or exc
        if isinstance(cause, PgradError) and type(cause) in (EnvError, ConfigError, CheckpointError):
            return type(cause)(f"{self._where(k)}: {cause}")
        first = (str(cause).strip().splitlines() or [""])[0]
        return EnvError(f"{self._where(k)}, env '{self.label}': {type(cause).__name__}: {first}")

    def _gather(self, method: str, policy: Policy, args: Callable[[int], tuple]) -> list[dict[str, Any]]:
        """Call `method` on every actor with the current weights; the results in worker order (an actor that
        died replaced and its call repeated, the same weights and RNG state)."""
        ray = self._start()
        RayActorError, RayTaskError = ray.exceptions.RayActorError, ray.exceptions.RayTaskError

        key = id(policy)
        self._policies[key] = policy
        weights = ray.put({name: t.detach().cpu() for name, t in policy.state_dict().items()})
        module_ref = None
        rng = torch.get_rng_state()

        def call(k: int) -> Any:
            nonlocal module_ref
            module = None
            if key not in self._has_policy[k]:
                if module_ref is None:  # the module crosses once, shared by every actor that lacks it
                    module_ref = ray.put(copy.deepcopy(policy).cpu())
                module = module_ref
                self._has_policy[k].add(key)
            actor = getattr(self._actors[k], method)
            return actor.remote(key, module, weights, rng if k == 0 else None, *args(k))

        refs = [call(k) for k in range(self.workers)]
        results = []
        for k in range(self.workers):
            deaths = 0
            while True:
                try:
                    result = ray.get(refs[k])
                    break
                except RayTaskError as exc:
                    self.close()
                    raise self._unwrap(k, exc) from None
                except RayActorError as exc:
                    if getattr(exc, "actor_init_failed", False):
                        self.close()
                        lines = [line for line in str(exc).splitlines() if line.strip()]
                        raise EnvError(
                            f"{self._where(k)} could not start: {lines[-1] if lines else exc}"
                        ) from None
                    deaths += 1
                    if deaths > MAX_RESTARTS_IN_A_ROW:
                        self.close()
                        raise EnvError(
                            f"{self._where(k)} died {deaths} times in a row; is its node out of memory? "
                            f"(last: {type(exc).__name__})"
                        ) from None
                    self._replace(k)
                    refs[k] = call(k)
            self.global_step += int(result["steps"])
            if k == 0:  # worker 0 sampled with the learner's stream: continue from where it left it
                torch.set_rng_state(result["rng"])
            results.append(result)
        return results

    def _seed_shares(self, seed: int | Sequence[int]) -> list[int | list[int]]:
        """Each worker's reset seed: one worker takes the seed as a local run does (so a native twin's
        start states match too); K workers the local run's per-sub-env seeds, sliced."""
        if self.workers == 1:
            return [seed if isinstance(seed, int | np.integer) else list(seed)]
        seeds = sub_env_seeds(seed, self.num_envs)
        m = self.per_worker
        return [seeds[k * m : (k + 1) * m] for k in range(self.workers)]

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device)

    # -- the collectors' entry points -----------------------------------------------------------------------
    def collect_steps(
        self, policy: Policy, num_steps: int, seed: int | None, count_steps: bool
    ) -> tuple[Rollout, torch.Tensor, torch.Tensor | None]:
        """`num_steps` vector steps on every worker (reset first with `seed` when it is not None): the
        rollout [T, N], the last observations [N, D] and, when counting, each sub-env's episode step [N]."""
        shares = self._seed_shares(seed) if seed is not None else [None] * self.workers
        parts = self._gather("collect_steps", policy, lambda k: (num_steps, shares[k], count_steps))
        fields = {
            name: self._to_device(torch.cat([p["fields"][name] for p in parts], dim=1)) for name in FIELDS
        }
        start = None
        episode_step = None
        if count_steps:
            start = self._to_device(torch.cat([p["start_step"] for p in parts]))
            episode_step = self._to_device(torch.cat([p["episode_step"] for p in parts]))
        rollout = Rollout(
            **fields,
            episode_returns=np.concatenate([p["episode_returns"] for p in parts]),
            episode_lengths=np.concatenate([p["episode_lengths"] for p in parts]),
            start_step=start,
        )
        last_obs = self._to_device(torch.cat([p["last_obs"] for p in parts]))
        return rollout, last_obs, episode_step

    def collect_episodes(
        self, policy: Policy, episodes_per_env: int, seed: int | Sequence[int], max_steps: int
    ) -> Rollout:
        """Every worker's sub-envs run their first `episodes_per_env` episodes (reset with their share of
        `seed`); the batches side by side, shorter ones padded with masked-out steps."""
        shares = self._seed_shares(seed)
        parts = self._gather("collect_episodes", policy, lambda k: (episodes_per_env, shares[k], max_steps))
        fields = stack_rollouts([p["fields"] for p in parts])
        return Rollout(
            **{name: self._to_device(x) for name, x in fields.items()},
            episode_returns=np.concatenate([p["episode_returns"] for p in parts]),
            episode_lengths=np.concatenate([p["episode_lengths"] for p in parts]),
        )
