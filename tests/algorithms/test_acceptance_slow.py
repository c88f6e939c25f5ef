"""Learning acceptance (slow; `make test-slow`): each case reaches its threshold in at least 4 of 5 seeds.

The cases and their per-env settings live in benchmarks/acceptance.py, which also writes the results table.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from acceptance import CASES, run_case


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c != "reinforce-cartpole"],  # that one: test_reinforce_slow
)
def test_case_reaches_its_threshold_in_4_of_5_seeds(case, tmp_path):
    rows = [run_case(case, seed, run_dir=str(tmp_path / f"s{seed}")) for seed in range(5)]
    for row in rows:
        print(row)
    assert sum(row["reached"] for row in rows) >= 4, rows


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_apg_on_lqr_is_within_5_percent_of_the_riccati_optimum_on_paired_start_states(tmp_path):
    """The apg-lqr case judged without evaluation noise: the trained policy and the Riccati-optimal
    time-varying controller play the same 20,000 start states; the mean cost gap must be < 5% in 4 of 5 seeds
    (measured: 1.8-2.6%, paired standard error 0.02%)."""
    import torch

    import pgrad
    from pgrad.envs.diff.registration import default_lqr

    env = default_lqr(dtype=torch.float64)
    x0 = env.reset(20_000, torch.Generator().manual_seed(123))
    gains, _ = env.riccati_gains()

    def total_return(act) -> torch.Tensor:
        x, total = x0.clone(), torch.zeros(len(x0), dtype=torch.float64)
        for t in range(env.horizon):
            x, r, _ = env.step(x, act(t, x))
            total += r
        return total

    optimal = total_return(lambda t, x: -(x @ gains[t].mT)).mean()
    case = CASES["apg-lqr"]
    gaps = []
    for seed in range(5):
        run_dir = tmp_path / f"s{seed}"
        quiet = dict(eval_every=0, eval_episodes=0, progress=False, tensorboard=False)
        pgrad.train(case["algo"], case["env"], total_steps=51_200, seed=seed, run_dir=str(run_dir),
                    **quiet, **case["options"])  # fmt: skip
        agent = pgrad.load(run_dir)

        def act(t, x, agent=agent):
            action = agent.act(env.observe(x).float().numpy(), deterministic=True)
            return torch.as_tensor(action, dtype=torch.float64)

        with torch.no_grad():
            gaps.append(float(total_return(act).mean() / optimal - 1))
    print(gaps)
    assert sum(gap < 0.05 for gap in gaps) >= 4, gaps


@pytest.mark.slow
@pytest.mark.timeout(7200)
@pytest.mark.parametrize(
    ("challenger", "task"), [("sapo", "pendulum"), ("sapo", "swingup"), ("ahac", "contact")]
)
def test_sapo_and_ahac_reach_shacs_threshold_within_1_5x_its_steps(challenger, task, tmp_path):
    """Issue 10: SAPO and AHAC reach SHAC's return on their tasks within 1.5× SHAC's env steps (medians over
    5 seeds of the steps to the case's threshold; a seed that misses counts as the budget)."""
    steps = {}
    for algo in ("shac", challenger):
        case = f"{algo}-{task}"
        rows = [run_case(case, seed, run_dir=str(tmp_path / f"{algo}-s{seed}")) for seed in range(5)]
        steps[algo] = sorted(row["steps"] if row["reached"] else CASES[case]["budget"] for row in rows)
    print(steps)
    assert steps[challenger][2] <= 1.5 * steps["shac"][2], steps
