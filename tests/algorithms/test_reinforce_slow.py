"""Acceptance: REINFORCE with a learned value baseline solves CartPole-v1 (run with `make test-slow`)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from reinforce_cartpole import THRESHOLD, run_seed


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_reinforce_value_baseline_solves_cartpole_in_4_of_5_seeds(tmp_path):
    rows = [run_seed(seed, 500_000, run_dir=str(tmp_path / f"s{seed}")) for seed in range(5)]
    for row in rows:
        print(row)
    assert sum(row["eval_return"] >= THRESHOLD for row in rows) >= 4, rows
