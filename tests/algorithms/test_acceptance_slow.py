"""Learning acceptance (slow; `make test-slow`): each case reaches its threshold in at least 4 of 5 seeds.

The cases and their per-env settings live in benchmarks/acceptance.py, which also writes the results table.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from acceptance import CASES, run_case

# Measured below target; kept in the suite so that fixing the settings turns it green (see the results table).
KNOWN_SHORT = {
    "sac_discrete-cartpole": "2 of 5 seeds reach 475 within 100k (benchmarks/results/acceptance.md)"
}


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(reason=KNOWN_SHORT[c], strict=False))
        if c in KNOWN_SHORT
        else c
        for c in CASES
        if c != "reinforce-cartpole"  # that one: test_reinforce_slow
    ],
)
def test_case_reaches_its_threshold_in_4_of_5_seeds(case, tmp_path):
    rows = [run_case(case, seed, run_dir=str(tmp_path / f"s{seed}")) for seed in range(5)]
    for row in rows:
        print(row)
    assert sum(row["reached"] for row in rows) >= 4, rows
