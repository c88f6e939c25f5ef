"""`pgrad compare`: the statistics against rliable and against hand-computed values on fake run folders with
known curves, the errors a user meets, and one tiny real end-to-end run of the CLI (train, compare, reuse)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pgrad.cli import main
from pgrad.errors import ConfigError
from pgrad.run.config import RunConfig
from pgrad.workflow.compare import compare, compare_algorithms

rly_metrics = pytest.importorskip("rliable.metrics")


def fake_run(root: Path, name: str, points, algorithm="ppo", env="CartPole-v1", seed=0, tag=None) -> Path:
    """A run folder as a real run writes it: run.json, and metrics.jsonl whose training records lie between
    the evaluation records `points` [(step, eval return)]."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    run = dataclasses.asdict(RunConfig(env=env, seed=seed, run_dir=str(run_dir)))
    if tag is not None:
        run["tag"] = tag
    saved = {"algorithm": algorithm, "env": env, "env_is_id": True, "env_kwargs": {}, "run": run}
    (run_dir / "run.json").write_text(json.dumps({**saved, "config": {}, "preset": {}}, indent=1))
    lines = []
    for i, (step, value) in enumerate(points):
        lines.append({"global_step": step - 1, "iteration": 2 * i, "charts/episode_return": -1.0})
        lines.append(
            {"global_step": step, "iteration": 2 * i + 1, "eval/mean_return": value, "eval/std_return": 0.0}
        )
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run_dir


def finals_group(root: Path, algorithm: str, finals) -> list[Path]:
    """One run per final score, each evaluated at steps 1000 (return 50: the final is the last, not the best
    evaluation) and 2000 (the final)."""
    return [
        fake_run(root, f"{algorithm}{i}", [(1000, 50.0), (2000, float(v))], algorithm=algorithm, seed=i)
        for i, v in enumerate(finals)
    ]


A_FINALS = [30, 0, 100, 3, 20, 1, 4, 2]  # sorted 0 1 2 3 4 20 30 100: IQM (2+3+4+20)/4, median 3.5, mean 20
B_FINALS = [5, 8, 1, 7, 3, 6, 2, 4]  # 1..8: IQM of the middle half 3..6 = 4.5


def test_final_scores_equal_rliable_and_hand_computed(tmp_path):
    runs = finals_group(tmp_path, "a", A_FINALS) + finals_group(tmp_path, "b", B_FINALS)
    state = np.random.get_state()
    result = compare(runs, reps=300, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(state, np.random.get_state(), strict=True))  # restored
    a, b = result["groups"]
    assert (a["label"], a["n_runs"], b["label"], b["n_runs"]) == ("a", 8, "b", 8)
    assert a["final"]["iqm"] == pytest.approx(rly_metrics.aggregate_iqm(np.array(A_FINALS)[:, None]))
    assert a["final"]["iqm"] == pytest.approx((2 + 3 + 4 + 20) / 4)
    assert b["final"]["iqm"] == pytest.approx(4.5)
    assert a["final"]["median"] == pytest.approx(3.5)  # across runs, not rliable's median of task means
    assert a["final"]["mean"] == pytest.approx(20.0)
    assert [r["final_score"] for r in a["runs"]] == A_FINALS
    for group in (a, b):
        for name in ("iqm", "median", "mean"):
            low, high = group["final"][f"{name}_ci"]
            assert low <= group["final"][name] <= high and low < high
    again = compare(runs, reps=300, seed=3)
    assert again["groups"] == result["groups"] and again["pairwise"] == result["pairwise"]
    other = compare(runs, reps=300, seed=4)
    assert other["groups"][0]["final"]["mean_ci"] != a["final"]["mean_ci"]
    narrow = compare(runs, reps=300, seed=3, confidence=0.5)["groups"][0]["final"]["mean_ci"]
    assert a["final"]["mean_ci"][0] < narrow[0] < narrow[1] < a["final"]["mean_ci"][1]


def curve_runs(root: Path) -> list[Path]:
    return [
        fake_run(root, "r1", [(1000, 10), (2000, 20), (3000, 30)], seed=1),
        fake_run(root, "r2", [(1500, 0), (2500, 40), (3500, 60)], seed=2),
        fake_run(root, "r3", [(1000, 100), (3000, 100)], seed=3),
        fake_run(root, "r4", [(1000, -10), (2000, -10), (3000, -10), (4000, -10)], seed=4),
    ]


def test_learning_curve_is_the_iqm_of_interpolated_runs_never_extrapolated(tmp_path):
    result = compare(curve_runs(tmp_path), reps=200)
    assert result["grid"] == [1000, 1500, 2000, 2500, 3000, 3500, 4000]
    curve = result["groups"][0]["curve"]
    # only where all four runs have records; at 1500: r1 15, r2 0, r3 100, r4 -10 -> IQM (0 + 15) / 2
    assert curve["steps"] == [1500, 2000, 2500, 3000]
    assert curve["iqm"] == pytest.approx([7.5, 20.0, 32.5, 40.0])
    for low, mid, high in zip(curve["ci_low"], curve["iqm"], curve["ci_high"], strict=True):
        assert low <= mid <= high
    assert curve["ci_low"][0] < curve["ci_high"][0]
    assert any("stops at step 3,000" in note for note in result["notes"])
    final = result["groups"][0]["final"]  # the last evaluation of each run: 30, 60, 100, -10
    assert final["iqm"] == pytest.approx(45.0)
    assert [r["final_step"] for r in result["groups"][0]["runs"]] == [3000, 3500, 3000, 4000]


def test_a_long_grid_is_resampled_evenly(tmp_path, monkeypatch):
    monkeypatch.setattr("pgrad.workflow.compare.MAX_GRID", 4)  # 7 distinct steps -> 4 evenly spaced ones
    result = compare(curve_runs(tmp_path), reps=50)
    assert result["grid"] == [1000, 2000, 3000, 4000]
    assert result["groups"][0]["curve"]["steps"] == [2000, 3000]
    assert result["groups"][0]["curve"]["iqm"] == pytest.approx([20.0, 40.0])
    assert any("4 evenly spaced steps" in note for note in result["notes"])


def test_probability_of_improvement_unequal_groups_ties_and_domination(tmp_path):
    x = finals_group(tmp_path, "x", [2, 3, 5])
    y = finals_group(tmp_path, "y", [2, 2, 4, 6, 0])
    low = finals_group(tmp_path, "low", [-5, -4, -3])
    result = compare(x + y + low, reps=200)
    pairs = {(p["x"], p["y"]): p for p in result["pairwise"]}
    assert list(pairs) == [("x", "y"), ("x", "low"), ("y", "low")]  # each pair once, in label order
    # x > y over the 15 pairs: 2 beats 0 and ties two 2s (1 + 2 * 0.5), 3 beats three, 5 beats four -> 9/15
    assert pairs["x", "y"]["probability"] == pytest.approx(9 / 15)
    ci = pairs["x", "y"]["ci"]
    assert ci[0] <= 9 / 15 <= ci[1] and ci[0] < ci[1]
    assert pairs["x", "low"]["probability"] == 1.0 and pairs["x", "low"]["ci"] == [1.0, 1.0]
    assert pairs["y", "low"]["probability"] == 1.0


def test_outputs_table_and_degenerate_groups(tmp_path):
    runs = finals_group(tmp_path, "a", [1, 2, 3]) + finals_group(tmp_path, "solo", [7])
    result = compare(runs, out=tmp_path / "out", reps=100)
    solo = result["groups"][1]
    assert solo["final"] == {
        "iqm": 7.0,
        "iqm_ci": None,
        "median": 7.0,
        "median_ci": None,
        "mean": 7.0,
        "mean_ci": None,
    }
    assert solo["curve"]["ci_low"] is None and solo["curve"]["iqm"] == [50.0, 7.0]
    assert result["pairwise"][0]["ci"] is None and result["pairwise"][0]["probability"] == 0.0
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved == json.loads(json.dumps(result))
    table = (tmp_path / "out" / "compare.md").read_text()
    assert "| solo | 1 | 2,000 | 7.00 (no CI) | 7.00 (no CI) | 7.00 (no CI) |" in table
    assert "| a | solo | 0.00 (no CI) |" in table
    assert "'solo' has 1 run: no confidence intervals" in table
    assert "fewer than 4 runs in 'a' (3): the IQM trims ⌊n/4⌋ = 0 runs" in table
    assert (tmp_path / "out" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_labels_tags_and_a_single_group(tmp_path):
    runs = [
        fake_run(tmp_path, "p0", [(1000, 1.0)], algorithm="ppo", seed=0, tag="wide"),
        fake_run(tmp_path, "p1", [(1000, 2.0)], algorithm="ppo", seed=1, tag="narrow"),
        fake_run(tmp_path, "a0", [(1000, 3.0)], algorithm="a2c", env="Acrobot-v1", seed=0, tag="wide"),
    ]
    with pytest.warns(UserWarning, match="'wide' mixes envs Acrobot-v1, CartPole-v1"):
        by_tag = compare(runs, label_by="tag", reps=50)  # 'wide' holds a CartPole and an Acrobot run
    assert [(g["label"], g["n_runs"]) for g in by_tag["groups"]] == [("wide", 2), ("narrow", 1)]
    assert any("mixes envs" in note for note in by_tag["notes"])
    both = compare(runs, label_by="algorithm+env", reps=50)
    assert [g["label"] for g in both["groups"]] == ["ppo on CartPole-v1", "a2c on Acrobot-v1"]
    single = compare(runs[:2], reps=50)
    assert single["pairwise"] == [] and any("one group" in note for note in single["notes"])


@pytest.mark.parametrize(
    "make, options, message",
    [
        (lambda root: [root], {}, "is not a pgrad run folder (no run.json)"),
        (lambda root: [root / "missing"], {}, "no such run folder"),
        (lambda root: [fake_run(root, "r", [])], {}, "has no 'eval/mean_return' record"),
        (lambda root: [fake_run(root, "r", [(1, 1.0)])], {"label_by": "tag"}, "has no tag"),
        (lambda root: [fake_run(root, "r", [(1, 1.0)])], {"label_by": "algo"}, "did you mean algorithm"),
        (lambda root: [fake_run(root, "r", [(1, 1.0)])] * 2, {}, "is given twice"),
        (lambda root: [fake_run(root, "r", [(1, 1.0)])], {"reps": 0}, "--reps must be"),
        (lambda root: [fake_run(root, "r", [(1, 1.0)])], {"seed": -1}, "--seed must be"),
        (lambda root: [fake_run(root, "r", [(1, 1.0)])], {"confidence": 95}, "--confidence must be"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, make, options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare(make(tmp_path), **options)


def test_without_rliable_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rliable.library", None)  # as if rliable were not installed
    with pytest.raises(ConfigError, match=r"pgrad compare needs rliable: pip install 'pgrad\[compare\]'"):
        compare([fake_run(tmp_path, "r", [(1, 1.0)])])


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip() == f"pgrad: error: {tmp_path} is not a pgrad run folder (no run.json)"
    )
    assert main(["compare", "--label-by", "nope", str(tmp_path)]) == 2
    assert main(["compare", "--seeds", "3", str(tmp_path)]) == 2
    assert "--seeds only apply with --algos" in capsys.readouterr().err
    assert main(["compare"]) == 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """reinforce and vpg on CartPole, 2 seeds, 2,000 steps, through `pgrad compare --algos`."""
    out = tmp_path_factory.mktemp("compare")
    argv = ["compare", "--algos", "reinforce,vpg", "--env", "CartPole-v1", "--seeds", "2", "--total-steps",
            "2000", "--eval-every", "1000", "--eval-episodes", "2", "--no-progress", "--no-tensorboard",
            "--reps", "200", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    return out, argv


def test_cli_trains_compares_and_reuses_finished_runs(trained, capsys):
    out, argv = trained
    names = sorted(p.name for p in (out / "runs").iterdir())
    assert names == [f"{a}-CartPole-v1-s{s}" for a in ("reinforce", "vpg") for s in (0, 1)]
    result = json.loads((out / "compare.json").read_text())
    assert [(g["label"], g["n_runs"]) for g in result["groups"]] == [("reinforce", 2), ("vpg", 2)]
    assert all(run["final_step"] >= 2000 for g in result["groups"] for run in g["runs"])
    assert (out / "compare.md").read_text().startswith("# pgrad compare")
    assert (out / "compare.png").stat().st_size > 0
    pointers = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoints/latest.json")}
    assert main(argv) == 0  # the runs are finished: reused, not trained again
    captured = capsys.readouterr()
    assert captured.err.count("reusing") == 4 and "training" not in captured.err
    assert {p: p.stat().st_mtime_ns for p in pointers} == pointers
    assert "| reinforce | 2 |" in captured.out and "| reinforce | vpg |" in captured.out
    train = compare(sorted((out / "runs").iterdir()), metric="train", reps=50)
    assert train["metric"] == "charts/episode_return" and len(train["groups"]) == 2


def test_unfinished_runs_resume_and_other_options_are_refused(trained, monkeypatch):
    out, _ = trained
    import pgrad.api

    resumed = []
    monkeypatch.setattr(pgrad.api, "resume", lambda run_dir, **kw: resumed.append((Path(run_dir).name, kw)))
    options = {"eval_every": 1000, "eval_episodes": 2, "progress": False, "tensorboard": False}
    compare_algorithms(["vpg"], "CartPole-v1", 1, 4000, out, reps=50, **options)
    assert resumed == [("vpg-CartPole-v1-s0", {"total_steps": 4000, **options})]
    with pytest.raises(ConfigError, match=r"trained with lr=0\.003, not 0\.5"):
        compare_algorithms(["vpg"], "CartPole-v1", 1, 2000, out, reps=50, lr=0.5, **options)
    with pytest.raises(ConfigError, match="unknown algorithm 'nope'"):
        compare_algorithms(["vpg", "nope"], "CartPole-v1", 1, 2000, out)


def test_resampling_statistics_equal_rliables():
    """The bootstrap resamples use numpy twins of rliable's IQM and P(X > Y): equal on any scores."""
    from pgrad.workflow.compare import _improvement, _iqm

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 5, 7, 8, 13):
        scores = rng.integers(0, 4, size=(n, 1, 6)).astype(float)  # small integers: many ties
        assert _iqm(scores[..., 0]) == pytest.approx(rly_metrics.aggregate_iqm(scores[..., 0]))
        expected = [rly_metrics.aggregate_iqm(scores[..., f]) for f in range(6)]
        assert _iqm(scores) == pytest.approx(expected)
        other = rng.integers(0, 4, size=(n + 2, 1)).astype(float)
        got = _improvement(scores[..., 0], other)
        assert got == pytest.approx(rly_metrics.probability_of_improvement(scores[..., 0], other))
