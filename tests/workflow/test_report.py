"""`pgrad report`: each pathology of a synthetic run triggers exactly its warning, a healthy one none; a real
tiny run gives a self-contained HTML page and a markdown page whose images exist; bad folders fail in one
line."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import pgrad
from pgrad.algorithms import get_algorithm
from pgrad.cli import main as cli_main
from pgrad.errors import ConfigError
from pgrad.run.config import RunConfig
from pgrad.run.folder import write_run_file
from pgrad.workflow import diagnose as diag
from pgrad.workflow import report as rep

N = 100  # records, one per 1,000 env steps; an evaluation every 10
HEALTHY = {
    # metric: value at fraction x ∈ (0, 1] of the run and record index i (noise from a fixed generator)
    "charts/episode_return": lambda x, i, z: 20 + 460 * min(1.0, x / 0.6) + 5 * z,
    "charts/episode_return_std": lambda x, i, z: 10.0,
    "eval/mean_return": lambda x, i, z: 20 + 470 * min(1.0, x / 0.6),
    "loss/policy": lambda x, i, z: -0.01 + 0.002 * z,
    "loss/value": lambda x, i, z: 10 - 5 * x + 0.5 * z,
    "stats/entropy": lambda x, i, z: 0.69 - 0.3 * x,
    "stats/approx_kl": lambda x, i, z: 0.01 + 0.002 * z,
    "stats/clip_fraction": lambda x, i, z: 0.1 + 0.01 * z,
    "stats/explained_variance": lambda x, i, z: 0.2 + 0.7 * x,
    "stats/grad_norm": lambda x, i, z: 0.5,
    "charts/sps": lambda x, i, z: 2000.0,
}


def records(**curves) -> list[dict]:
    """The healthy records with some curves replaced (`key=None` drops a metric); keys use __ for /."""
    curves = {**HEALTHY, **{k.replace("__", "/"): v for k, v in curves.items()}}
    z = np.random.default_rng(0).standard_normal(N)
    out = []
    for i in range(1, N + 1):
        record = {"global_step": 1000 * i, "iteration": i, "time": 0.5 * i}
        for key, curve in curves.items():
            if curve is None or (key.startswith("eval/") and i % 10):
                continue
            value = curve(i / N, i, float(z[i - 1]))
            record[key] = None if isinstance(value, float) and not math.isfinite(value) else value
        if "eval/mean_return" in record:
            record["eval/std_return"] = 5.0
        out.append(record)
    return out


def write_run(path: Path, recs: list[dict], algorithm: str = "ppo", **config) -> Path:
    """A run folder as the trainer writes it: run.json and metrics.jsonl."""
    path.mkdir(parents=True)
    cls = get_algorithm(algorithm)
    run = RunConfig(total_steps=N * 1000, seed=3, run_dir=str(path))
    payload = {
        "algorithm": algorithm,
        "env": "CartPole-v1",
        "env_is_id": True,
        "env_kwargs": {},
        "run": dataclasses.asdict(run),
        "config": dataclasses.asdict(dataclasses.replace(cls.Config(), **config)),
        "preset": {},
    }
    write_run_file(path, payload)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def codes(path: Path) -> list[str]:
    return sorted({w["code"] for w in diag.diagnose(path)})


def after(fraction: float, then, before):
    """A curve that follows `before` up to `fraction` of the run and `then` after it."""
    return lambda x, i, z: then(x, i, z) if x > fraction else before(x, i, z)


def test_a_healthy_run_has_no_warnings_and_every_rule_ran(tmp_path):
    run = diag.read_run(write_run(tmp_path / "ok", records()))
    result = diag.checks(run)
    assert [f for c in result for f in c.findings] == []
    assert {c.code for c in result if c.status == "ok"} == {
        "non_finite", "no_learning", "return_collapse", "eval_below_train", "entropy_collapse", "kl_spike",
        "value_loss_diverging", "explained_variance_negative", "clip_fraction_high", "clip_fraction_zero",
    }  # fmt: skip


H = HEALTHY
PATHOLOGIES = {
    # a NaN loss is written as null by the logger
    "non_finite": dict(loss__value=after(0.7, lambda x, i, z: math.nan, H["loss/value"])),
    # a random policy's return throughout: 22 ± noise, episodes spread by 11
    "no_learning": dict(
        charts__episode_return=lambda x, i, z: 22 + 2 * z,
        charts__episode_return_std=lambda x, i, z: 11.0,
        eval__mean_return=lambda x, i, z: 22.0 + (i % 3),
    ),
    # learns to 480 by 40% of the run, then falls to 40 (train and eval)
    "return_collapse": dict(
        charts__episode_return=lambda x, i, z: (
            float(np.interp(x, [0, 0.4, 0.6, 0.9, 1], [20, 480, 480, 40, 40])) + 5 * z
        ),
        eval__mean_return=lambda x, i, z: float(np.interp(x, [0, 0.4, 0.6, 0.9, 1], [20, 480, 480, 40, 40])),
    ),
    # training learns, the deterministic evaluation stays at a fifth of it
    "eval_below_train": dict(eval__mean_return=lambda x, i, z: 0.2 * (20 + 460 * min(1.0, x / 0.6))),
    # the entropy is gone at 20% of the run while the return is still near its start; it learns late
    "entropy_collapse": dict(
        stats__entropy=lambda x, i, z: 0.69 if x < 0.2 else 0.01,
        charts__episode_return=lambda x, i, z: 20 + 460 * max(0.0, (x - 0.5) / 0.5) + 5 * z,
        eval__mean_return=lambda x, i, z: 20 + 470 * max(0.0, (x - 0.5) / 0.5),
    ),
    # three updates move the policy 0.3 nats
    "kl_spike": dict(stats__approx_kl=lambda x, i, z: 0.3 if i in (30, 31, 70) else 0.01 + 0.002 * z),
    # the value loss grows ×10⁴ and is at its highest at the end
    "value_loss_diverging": dict(loss__value=lambda x, i, z: 10 * 10 ** (5 * x)),
    "explained_variance_negative": dict(stats__explained_variance=lambda x, i, z: -0.5 + 0.1 * z),
    "clip_fraction_high": dict(stats__clip_fraction=lambda x, i, z: 0.7 + 0.02 * z),
    "clip_fraction_zero": dict(stats__clip_fraction=lambda x, i, z: 0.0),
}


@pytest.mark.parametrize("code", PATHOLOGIES)
def test_each_pathology_triggers_exactly_its_warning(tmp_path, code):
    path = write_run(tmp_path / code, records(**PATHOLOGIES[code]))
    assert codes(path) == [code]
    for warning in diag.diagnose(path):
        assert warning["message"].endswith(".") and "\n" not in warning["message"]
        assert warning["step"] is None or warning["step"] % 1000 == 0


def test_warnings_name_the_step_and_the_numbers(tmp_path):
    kl = diag.diagnose(write_run(tmp_path / "kl", records(**PATHOLOGIES["kl_spike"])))
    assert [w["step"] for w in kl] == [30_000]
    assert "3 of 100 records" in kl[0]["message"] and "0.3 at step 30,000" in kl[0]["message"]
    nan = diag.diagnose(write_run(tmp_path / "nan", records(**PATHOLOGIES["non_finite"])))
    assert nan[0]["step"] == 71_000 and "loss/value at 30 of 100 records" in nan[0]["message"]
    entropy = diag.diagnose(write_run(tmp_path / "h", records(**PATHOLOGIES["entropy_collapse"])))
    assert entropy[0]["step"] == 20_000 and "1% of its first logged value, 0.69," in entropy[0]["message"]
    collapse = diag.diagnose(write_run(tmp_path / "c", records(**PATHOLOGIES["return_collapse"])))
    assert {w["metric"] for w in collapse} == {diag.TRAIN, diag.EVAL}  # both curves, each said once


def test_a_collapse_is_dated_from_its_last_fall_and_explained_by_the_entropy(tmp_path):
    """Like a2c at lr 3e-3 on CartPole: evaluations at 500 from the first one on (so their start is the first
    training return), a dip it recovered from, then a fall to 10 with the entropy gone."""
    shape = [0, 0.15, 0.25, 0.3, 0.4, 0.45, 0.75, 0.85, 1], [20, 490, 490, 20, 20, 450, 450, 10, 10]
    curves = dict(
        charts__episode_return=lambda x, i, z: float(np.interp(x, *shape)) + 5 * z,
        eval__mean_return=lambda x, i, z: 500.0 if x <= 0.75 else 10.0,
        stats__entropy=lambda x, i, z: 0.6 if x < 0.7 else 1e-6,
    )
    recs = records(**curves)
    warnings = diag.diagnose(write_run(tmp_path / "a2c", recs))
    assert [(w["code"], w["metric"]) for w in warnings] == [
        ("return_collapse", diag.TRAIN),
        ("return_collapse", diag.EVAL),
    ]
    train, ev = warnings
    assert train["step"] == 81_000 and "(half the gain) since step 81,000" in train["message"]
    assert "Its entropy ended at 1e-06 (0% of 0.6)" in train["message"]
    # the start is the initial policy's return (the first record), not the lowest one (the collapsed end)
    assert f"over its start ({diag.num(recs[0][diag.TRAIN])})" in train["message"]
    assert ev["step"] == 80_000 and "over the first training return (" in ev["message"]
    assert "entropy" not in ev["message"]  # said once


def test_thresholds_sit_where_the_docs_say(tmp_path):
    """Just either side of a threshold: the rule's inequality and its constant, not only a far-off case."""
    ok = lambda v: dict(stats__clip_fraction=lambda x, i, z: v)  # noqa: E731
    assert codes(write_run(tmp_path / "c1", records(**ok(0.49)))) == []
    assert codes(write_run(tmp_path / "c2", records(**ok(0.51)))) == ["clip_fraction_high"]
    kl = lambda top: dict(stats__approx_kl=lambda x, i, z: top if i == 50 else 0.004)  # noqa: E731
    assert codes(write_run(tmp_path / "k1", records(**kl(0.049)))) == []  # τ = max(0.05, 5 · 0.004)
    assert codes(write_run(tmp_path / "k2", records(**kl(0.051)))) == ["kl_spike"]
    # a fifth of the updates at 0.09: the median (0.004), not the mean (0.021), sets τ = 0.05
    fifth = dict(stats__approx_kl=lambda x, i, z: 0.09 if i % 5 == 0 else 0.004)
    assert codes(write_run(tmp_path / "k3", records(**fifth))) == ["kl_spike"]
    ev = lambda share: dict(  # noqa: E731
        stats__explained_variance=lambda x, i, z: -0.2 if i <= share * N else 0.3
    )
    assert codes(write_run(tmp_path / "e1", records(**ev(0.89)))) == []
    assert codes(write_run(tmp_path / "e2", records(**ev(0.9)))) == ["explained_variance_negative"]
    # the return keeps 55% / 45% of its gain (20 → 480) in the last window
    end = lambda kept: dict(  # noqa: E731
        charts__episode_return=lambda x, i, z: 20 + 460 * (min(1.0, x / 0.6) if x <= 0.9 else kept),
        eval__mean_return=None,
    )
    assert codes(write_run(tmp_path / "r1", records(**end(0.55)))) == []
    assert codes(write_run(tmp_path / "r2", records(**end(0.45)))) == ["return_collapse"]
    grow = lambda factor: dict(loss__value=lambda x, i, z: 10 * factor**x)  # noqa: E731
    assert codes(write_run(tmp_path / "v1", records(**grow(300)))) == []
    assert codes(write_run(tmp_path / "v2", records(**grow(3000)))) == ["value_loss_diverging"]


def test_entropy_is_measured_against_log_a_for_discrete_actions(tmp_path):
    """A policy deterministic from its first log interval on: its first logged entropy is no reference; the
    checkpoint's Discrete(2) action space gives log 2."""
    from pgrad.run.checkpoint import save_checkpoint

    stuck = dict(stats__entropy=lambda x, i, z: 1e-5, **PATHOLOGIES["no_learning"])
    path = write_run(tmp_path / "stuck", records(**stuck))
    assert codes(path) == ["no_learning"]
    space = {"type": "Discrete", "n": 2, "start": 0}
    save_checkpoint(path / "checkpoints", N * 1000, {"policy": {"action_space": space}})
    (warning,) = [w for w in diag.diagnose(path) if w["code"] == "entropy_collapse"]
    assert warning["step"] == 1000 and "0% of the uniform policy's 0.6931" in warning["message"]
    assert diag.max_entropy({"type": "MultiDiscrete", "nvec": [2, 3]}) == pytest.approx(math.log(6))
    assert diag.max_entropy({"type": "Box", "shape": [1]}) is None


def test_look_alikes_of_a_pathology_are_not_warned(tmp_path):
    learned = lambda x, i, z: 20 + 460 * min(1.0, x / 0.6)  # noqa: E731
    cases = {
        # one bad final evaluation (a few episodes) after good ones is noise, not a collapse
        "eval": dict(eval__mean_return=lambda x, i, z: 40.0 if i == N else learned(x, i, z)),
        # a nearly deterministic policy once the return is learned is convergence
        "entropy": dict(stats__entropy=lambda x, i, z: 0.69 if x < 0.7 else 0.01),
        # a value loss that fell near 0 (constant returns) and came back to its start level
        "value": dict(loss__value=lambda x, i, z: 10.0 if x < 0.2 or x > 0.8 else 1e-5),
        # a clip that binds at a few updates only; one that binds hard at a few
        "clip": dict(stats__clip_fraction=lambda x, i, z: 0.05 if i % 20 == 0 else 0.0),
        "clip_high": dict(stats__clip_fraction=lambda x, i, z: 0.8 if i % 20 == 0 else 0.1),
    }
    for name, curves in cases.items():
        assert codes(write_run(tmp_path / name, records(**curves))) == [], name


def test_rules_that_do_not_apply_are_skipped_and_said(tmp_path):
    # is_pg's approx_kl is the distance to the replay's behaviour policy; SAC steers its entropy to a target;
    # without a clip_coef, a clip fraction of 0 is no clip configured
    spiky = records(stats__approx_kl=lambda x, i, z: 0.5, stats__clip_fraction=lambda x, i, z: 0.0)
    assert codes(write_run(tmp_path / "is", spiky, algorithm="is_pg")) == []
    low = records(**PATHOLOGIES["entropy_collapse"])
    assert codes(write_run(tmp_path / "sac", low, algorithm="sac")) == []
    run = diag.read_run(write_run(tmp_path / "bare", records(stats__approx_kl=None)))
    skipped = {c.code: c.note for c in diag.checks(run) if c.status == "skipped"}
    assert skipped == {"kl_spike": "stats/approx_kl is not logged by this run"}


def test_a_null_explained_variance_is_undefined_not_a_fault(tmp_path):
    path = write_run(
        tmp_path / "ev", records(stats__explained_variance=lambda x, i, z: math.nan if i % 7 else 0.5)
    )
    assert codes(path) == []


def test_config_lists_the_options_that_differ_from_the_defaults(tmp_path):
    path = write_run(tmp_path / "cfg", records(), lr=1e-3, hidden_sizes=(32, 32))
    info = json.loads((path / "run.json").read_text())
    info["preset"] = {"lr": 1e-3}
    (path / "run.json").write_text(json.dumps(info))
    rows = rep.config_changes(diag.read_run(path))
    assert rows[:2] == [("hidden_sizes", "[32, 32]", "[64, 64]"), ("lr (preset)", "0.001", "0.0003")]
    assert ("run.total_steps", "100000", "100000") not in rows and len(rows) == 2


def test_bad_folders_fail_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty is not a pgrad run folder \(run.json not found\)"):
        rep.report(tmp_path / "empty")
    with pytest.raises(ConfigError, match="no such run folder"):
        rep.report(tmp_path / "missing")
    path = write_run(tmp_path / "nometrics", [])
    with pytest.raises(ConfigError, match=r"metrics\.jsonl holds no metrics records"):
        rep.report(path)
    (path / "metrics.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"has no metrics\.jsonl"):
        rep.report(path)
    (path / "metrics.jsonl").write_text('{"loss/value": 1.0}\n')
    with pytest.raises(ConfigError, match="record 1 has no integer global_step"):
        rep.report(path)
    ok, other = write_run(tmp_path / "a", records()), write_run(tmp_path / "b", records())
    with pytest.raises(ConfigError, match="needs --out"):
        rep.report([ok, other], group=True)
    with pytest.raises(ConfigError, match="given twice"):
        rep.report([ok, tmp_path / "a"])
    assert cli_main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pgrad: error: ") and err.count("\n") == 1
    assert cli_main(["report"]) == 2 and "needs one or more run folders" in capsys.readouterr().err
    assert cli_main(["report", str(ok), "--outt", "x"]) == 2 and "--outt" in capsys.readouterr().err


class StrictHTML(HTMLParser):
    """html.parser with the nesting checked: every opened element closed, in order."""

    VOID = ("meta", "img", "br", "hr", "link", "input")

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()


def test_a_real_run_gives_a_self_contained_html_page_and_markdown_with_its_pngs(tmp_path, capsys):
    run_dir = tmp_path / "r"
    pgrad.train(
        "reinforce", "CartPole-v1", total_steps=2_000, num_envs=2, eval_every=1_000, eval_episodes=2,
        progress=False, tensorboard=False, run_dir=str(run_dir), seed=0, log_every=0,
    )  # fmt: skip
    assert cli_main(["report", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    page = run_dir / "report"
    assert f"report: {page / 'report.html'}" in printed
    text = (page / "report.html").read_text()
    parser = StrictHTML()
    parser.feed(text)
    parser.close()
    assert parser.stack == [] and text.startswith("<!DOCTYPE html>")
    assert len(parser.images) >= 4  # return, loss/policy, entropy, grad norm, steps/s, ...
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    markdown = (page / "report.md").read_text()
    links = [line[line.index("](") + 2 : -1] for line in markdown.splitlines() if line.startswith("![")]
    assert len(links) == len(parser.images) and "return.png" in links
    assert all(not Path(link).is_absolute() and (page / link).is_file() for link in links)
    assert "reinforce on CartPole-v1 (seed 0)" in markdown and "| env steps | 2,0" in markdown


def test_group_page_and_python_api(tmp_path):
    a = write_run(tmp_path / "a", records())
    b = write_run(tmp_path / "b", records(**PATHOLOGIES["kl_spike"]))
    result = rep.report([a, b], out=tmp_path / "group", group=True)
    (page,) = result["pages"]
    assert page["html"] == str(tmp_path / "group" / "report.html")
    assert [(w["run_dir"], w["code"], w["step"]) for w in result["warnings"]] == [
        (str(b), "kl_spike", 30_000)
    ]
    markdown = Path(page["markdown"]).read_text()
    assert "# Report: 2 runs" in markdown and "### a" in markdown and "### b" in markdown
    assert all(Path(p).is_file() for p in page["images"])
    # several runs without --group: one page each, in its own folder (runs with only a return: one panel)
    bare = {k.replace("/", "__"): None for k in HEALTHY if k not in (diag.TRAIN, diag.EVAL)}
    a, b = write_run(tmp_path / "c" / "a", records(**bare)), write_run(tmp_path / "c" / "b", records(**bare))
    result = rep.report([a, b])
    assert [p["html"] for p in result["pages"]] == [
        str(a / "report/report.html"),
        str(b / "report/report.html"),
    ]
