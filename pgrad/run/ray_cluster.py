"""Ray, joined or started on demand: the one module through which pgrad reaches Ray (the `ray` extra).

Nothing here imports Ray at module level: `pgrad train` without `--workers` never loads it (a test checks).
`connect(address)` joins a running cluster (`ray start --head` on one machine, `ray start --address=HEAD:6379`
on the others, then `--ray-address auto` or `HEAD:6379`), or with no address starts a local Ray sized to
this machine's cores, once per process: later calls reuse it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from pgrad.errors import ConfigError, optional_import


def ray_module(feature: str) -> ModuleType:
    """The `ray` module, or one ConfigError saying `pip install 'pgrad[ray]'` for `feature`."""
    return optional_import("ray", "ray", feature)


def connect(address: str | None, feature: str, num_cpus: int | None = None) -> ModuleType:
    """Ray, initialised for this process: joined at `address` ("auto": the cluster this machine belongs to;
    "HOST:PORT": its head) or, with None, a local instance with `num_cpus` CPUs (None: all cores) started
    here and shut down when the process exits. Returns the `ray` module."""
    ray = ray_module(feature)
    if ray.is_initialized():
        return ray
    # Workers inherit the driver's environment: one OpenMP thread each (pgrad's networks are small, and K
    # workers on K cores each asking for all cores make every op slow).
    env_vars = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        if address is None:
            # Ray starts its workers at nice 15, as background jobs; here they are the run's own compute and
            # the driver waits on them: with any other load on the machine they starved (2 actors took 60 s
            # to start at load 4, 6.6 s at nice 0). RAY_worker_niceness set by the user wins.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=True,
                runtime_env={"env_vars": env_vars},
                logging_level="WARNING",
            )
        else:
            _check_reachable(address, feature)
            ray.init(address=address, runtime_env={"env_vars": env_vars}, logging_level="WARNING")
    except ConnectionError as exc:
        raise ConfigError(
            f"{feature}: cannot join the Ray cluster at --ray-address '{address}' ({exc}); start one with "
            "`ray start --head` or leave --ray-address out for a local Ray"
        ) from None
    return ray


def _check_reachable(address: str, feature: str, timeout: float = 5.0) -> None:
    """Refuse a HOST:PORT nobody listens on in one line: Ray itself retries an unreachable head for minutes
    before it gives up. "auto" and ray:// addresses are left to Ray."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(
            f"{feature}: no Ray cluster answers at --ray-address '{address}' ({exc.strerror or exc}); start "
            "one with `ray start --head` there, or leave --ray-address out for a local Ray"
        ) from None


def cluster_cpus(ray: ModuleType) -> int:
    """CPUs the joined cluster offers (for refusing more workers than can ever be placed)."""
    return int(ray.cluster_resources().get("CPU", 0))


@dataclass(frozen=True)
class WorkerSetup:
    """What Ray workers need to build their share of a run's envs and to act: handed by the trainer to
    `pgrad.run.workers.WorkerEnvs` (and through it to algorithms that run their own actors, like A3C).

    Everything here crosses to the workers once, when they start (Ray serialises it; an `env` given as a
    callable must be importable or picklable by Ray's cloudpickle there).
    """

    workers: int
    """K, the number of Ray actors."""
    address: str | None
    """--ray-address: None starts a local Ray."""
    env: str | Any
    """Env id or factory, as `pgrad.envs.make.make_env` takes it."""
    env_kwargs: dict[str, Any]
    num_envs: int
    """Sub-envs over all workers (the algorithm's num_envs)."""
    backend: str
    """Resolved training backend ("gym" or "native")."""
    algorithm: str
    action_spaces: tuple[type, ...]
    seed: int
    """The run's seed: worker k's env seeds and sampling streams derive from it."""
    threads: int = 1
    """torch threads per worker."""

    def make_envs(self, num_envs: int, device: torch.device | str = "cpu") -> Any:
        """A vector env of `num_envs` sub-envs built exactly as the trainer builds the run's (in a worker)."""
        from pgrad.envs.make import make_env

        return make_env(
            self.env,
            num_envs,
            backend=self.backend,
            algorithm=self.algorithm,
            env_kwargs=dict(self.env_kwargs),
            action_spaces=self.action_spaces,
            device=torch.device(device),
        )
