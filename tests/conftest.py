"""Fixtures shared across test folders."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray with 2 CPUs for every test that needs it (started once: ~5 s), shut down at the end.

    Tests that run pgrad with --workers request this fixture; pgrad's own `connect` then reuses the running
    instance instead of starting another."""
    from pgrad.run.ray_cluster import connect

    ray = connect(None, "tests", num_cpus=2)
    yield ray
    ray.shutdown()
