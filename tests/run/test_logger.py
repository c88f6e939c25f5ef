"""metrics.jsonl, TensorBoard and W&B: what a run writes is what a reader gets back, NaN as null, a crash's
cut last line skipped, a resume's rewind drops exactly the records past its checkpoint, the fields are the
ones docs/harness.md lists, and W&B (offline) gets every record and keeps one run across a resume."""

import dataclasses
import json
import math
import re
import struct
import sys
import time
from pathlib import Path

import pytest

import pgrad
from pgrad.cli import ResumeArgs
from pgrad.errors import ConfigError
from pgrad.run.config import RESUMABLE_OPTIONS, RunConfig, check_run_config
from pgrad.run.logger import METRICS_FILE, WANDB_ID_FILE, MetricsLogger, read_metrics, truncate_metrics


def test_records_round_trip_with_nan_and_inf_as_null(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.log({"global_step": 8, "loss/policy": 0.5, "stats/explained_variance": math.nan})
    logger.log({"global_step": 16, "loss/policy": -math.inf, "note": "text", "flag": True})
    logger.close()
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert json.loads(lines[0]) == {"global_step": 8, "loss/policy": 0.5, "stats/explained_variance": None}
    assert read_metrics(tmp_path) == [
        {"global_step": 8, "loss/policy": 0.5, "stats/explained_variance": None},
        {"global_step": 16, "loss/policy": None, "note": "text", "flag": True},
    ]


def test_a_cut_last_line_is_skipped_and_a_missing_file_is_no_records(tmp_path):
    assert read_metrics(tmp_path) == []
    truncate_metrics(tmp_path, 10)  # nothing to rewind
    assert not (tmp_path / METRICS_FILE).exists()
    (tmp_path / METRICS_FILE).write_text('{"global_step": 1, "x": 1}\n{"global_step": 2, "x"')
    assert read_metrics(tmp_path) == [{"global_step": 1, "x": 1}]


def test_truncate_keeps_the_records_up_to_the_checkpoint(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for step in (4, 8, 12, 16):
        logger.log({"global_step": step, "x": step / 4})
    logger.close()
    truncate_metrics(tmp_path, 8)
    assert [r["global_step"] for r in read_metrics(tmp_path)] == [4, 8]
    assert not (tmp_path / "metrics.tmp").exists()
    logger = MetricsLogger(tmp_path, tensorboard=False)  # a resumed run appends after them
    logger.log({"global_step": 12, "x": 9.0})
    logger.close()
    assert [r["x"] for r in read_metrics(tmp_path)] == [1.0, 2.0, 9.0]


def test_tensorboard_gets_the_numeric_scalars_at_their_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = MetricsLogger(tmp_path, tensorboard=True)
    logger.log({"global_step": 8, "loss/policy": 0.5, "stats/epochs": 3, "note": "x", "flag": True})
    logger.log({"global_step": 16, "loss/policy": 0.25})
    logger.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["loss/policy", "stats/epochs"]
    assert [(e.step, e.value) for e in events.Scalars("loss/policy")] == [(8, 0.5), (16, 0.25)]
    assert [(e.step, e.value) for e in events.Scalars("stats/epochs")] == [(8, 3.0)]


# -- the documented field list (docs/harness.md, "Metrics") against a real run ------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "harness.md"
ALGORITHM_PREFIXES = ("loss/", "stats/")  # each algorithm's own, documented on its family's page


def documented_fields() -> dict[str, str]:
    """field -> "in" column of the table between the metrics-fields markers of docs/harness.md."""
    text = DOCS.read_text()
    begin, end = "<!-- metrics-fields:begin -->", "<!-- metrics-fields:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1, f"{DOCS}: the metrics table's markers"
    rows = [line for line in text.split(begin)[1].split(end)[0].splitlines() if line.startswith("| `")]
    fields = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        fields[re.fullmatch(r"`([^`]+)`", cells[0])[1]] = cells[1]
    return fields


WHERE = (
    "every record",
    "training records",
    "training records with an ended episode",
    "evaluation records",
    "evaluation records with a cut episode",
)


def test_the_documented_metric_fields_are_what_a_run_writes(tmp_path):
    fields = documented_fields()
    assert {"global_step", "iteration", "time", "charts/sps", "charts/episode_return"} <= set(fields)
    assert set(fields.values()) <= set(WHERE), "docs/harness.md: an 'in' cell the test does not know"
    # records every 400 steps, evaluations at 600 and 1200, and the final one on a record of its own
    pgrad.train(
        "reinforce", "CartPole-v1", total_steps=1500, num_envs=2, log_every=400, eval_every=600,
        eval_episodes=1, progress=False, tensorboard=False, run_dir=str(tmp_path / "r"), seed=0,
    )  # fmt: skip
    records = read_metrics(tmp_path / "r")
    training = [r for r in records if set(r) - {"global_step"} - {k for k in r if k.startswith("eval/")}]
    evaluation = [r for r in records if any(k.startswith("eval/") for k in r)]
    assert len(training) >= 3 and len(evaluation) == 3 and records[-1] not in training  # each kind is tested
    for record in records:
        written = {k for k in record if not k.startswith(ALGORITHM_PREFIXES)}
        assert written <= set(fields), f"undocumented in docs/harness.md: {sorted(written - set(fields))}"
        must = {"every record"}
        if record in training:
            must |= {"training records"} | (
                {"training records with an ended episode"} if record["charts/episodes"] else set()
            )
        if record in evaluation:
            must.add("evaluation records")
        assert {k for k, where in fields.items() if where in must} <= set(record), record
        if record not in training:  # an evaluation-only record holds nothing of training's
            assert not {k for k, where in fields.items() if where.startswith("training")} & set(record)
    assert any(k.startswith(ALGORITHM_PREFIXES) for k in training[0])
    assert [r["global_step"] for r in records] == sorted(r["global_step"] for r in records)


# -- Weights & Biases, offline ---------------------------------------------------------------------------


def wandb_records(path: Path) -> list:
    """The records of an offline run's `.wandb` file: W&B's LevelDB-style log (32 KiB blocks of chunks with a
    7-byte header: CRC, length, type) after a 7-byte file header, each record a wandb_internal protobuf."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B transaction log"
    records, pos, chunk = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if kind == 0:
            break
        piece, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        chunk = piece if kind in (1, 2) else chunk + piece  # FULL, FIRST start a record; MIDDLE, LAST go on
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def wandb_session(run_dir: Path, index: int) -> dict:
    """What a run's index-th W&B session wrote: its run record, history rows, metric definitions, exit."""
    files = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    # W&B's service process writes the log: on a loaded machine its last records may land after finish()
    # returned (a fresh-clone run once read a file without its run record), so wait for the exit record
    deadline = time.monotonic() + 60
    while True:
        records = wandb_records(files[index])
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    rows = [  # a key with a slash may come as a path (nested_key); W&B's own keys start with _
        {
            name: json.loads(item.value_json)
            for item in r.history.item
            if not (name := _key(item)).startswith("_")
        }
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    metrics = [r.metric for r in records if r.WhichOneof("record_type") == "metric"]
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    return {"file": files[index], "run": run, "config": config, "rows": rows, "metrics": metrics,
            "exit_code": exit_record.exit_code, "sessions": len(files)}  # fmt: skip


def scalars(record: dict) -> dict:
    return {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    """W&B offline, quiet, writing nothing outside tmp_path and reaching for no server."""
    pytest.importorskip("wandb")
    for name, value in {
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off", "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true", "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"), "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)


class Pruned(Exception):
    pass


def test_wandb_offline_logs_the_run_and_a_resume_continues_its_id(tmp_path, offline_wandb):
    run_dir = tmp_path / "cartpole-baseline"

    def stop_at_second_evaluation(result):
        if result["global_step"] >= 1000:
            raise Pruned  # the run stops on an error, its last checkpoint at ~500 steps

    options = dict(num_envs=2, log_every=250, eval_every=500, eval_episodes=1, checkpoint_every=500)
    with pytest.raises(Pruned):
        pgrad.train(
            "reinforce", "CartPole-v1", total_steps=1500, progress=False, tensorboard=False,
            run_dir=str(run_dir), seed=0, wandb=True, tag="baseline", on_evaluation=stop_at_second_evaluation,
            **options,
        )  # fmt: skip
    run_id = (run_dir / WANDB_ID_FILE).read_text().strip()
    first = wandb_session(run_dir, 0)
    assert first["run"].run_id == run_id and first["file"].name == f"run-{run_id}.wandb"
    assert first["run"].project == "pgrad" and first["run"].display_name == "cartpole-baseline"
    assert first["run"].run_group == "baseline" and list(first["run"].tags) == ["baseline"]
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["run"]["tag"] == "baseline"
    assert {k: v for k, v in first["config"].items() if k != "_wandb"} == saved  # run.json as the config
    assert any(m.glob_name == "*" and m.step_metric == "global_step" for m in first["metrics"])
    assert first["rows"] == [pytest.approx(scalars(r)) for r in read_metrics(run_dir)]  # every record, as is
    assert first["exit_code"] == 1  # stopped on an error: W&B marks the run failed

    before = read_metrics(run_dir)
    summary = pgrad.resume(run_dir, total_steps=1800)  # wandb=True comes from run.json
    second = wandb_session(run_dir, 1)
    assert second["sessions"] == 2 and second["run"].run_id == run_id  # the same W&B run
    assert second["config"]["run"]["total_steps"] == 1800 and second["exit_code"] == 0  # the resume's options
    after = read_metrics(run_dir)  # rewound to the checkpoint, then the resume's records
    kept = next(n for n in range(len(after)) if n == len(before) or after[n] != before[n])
    assert 0 < kept < len(before)  # the records past the checkpoint were dropped, then written again
    assert second["rows"] == [pytest.approx(scalars(r)) for r in after[kept:]]
    assert second["rows"][-1]["global_step"] == summary["global_step"] >= 1800


def test_wandb_missing_is_one_line_before_the_run_folder_is_made(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"--wandb needs wandb: pip install 'pgrad\[wandb\]'"):
        pgrad.train("reinforce", total_steps=100, run_dir=str(tmp_path / "r"), wandb=True, progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "option, expected",
    [
        ({"tag": "two\nlines"}, "--tag must be one line of at most 64"),
        ({"tag": "x" * 65}, "--tag must be one line of at most 64"),
        ({"wandb_project": "team/project"}, "--wandb-project must be 1 to 128 characters without"),
        ({"wandb_project": ""}, "--wandb-project must be 1 to 128"),
        ({"wandb_mode": "cloud"}, "wandb_mode must be one of 'online', 'offline' or None"),
    ],
)
def test_bad_tag_and_wandb_options_are_one_line(option, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        check_run_config(RunConfig(**option))


def test_resume_may_turn_wandb_on_but_never_relabels_a_run(tmp_path):
    assert {"wandb", "wandb_project", "wandb_mode"} <= set(RESUMABLE_OPTIONS)
    assert "tag" not in RESUMABLE_OPTIONS  # run.json, written once, is where `pgrad compare` reads it
    assert {f.name for f in dataclasses.fields(ResumeArgs)} == set(
        RESUMABLE_OPTIONS
    )  # the CLI offers them all
    (tmp_path / "run.json").write_text(json.dumps({"algorithm": "reinforce", "run": {}, "config": {}}))
    with pytest.raises(
        ConfigError, match="tag cannot change when a run resumes \\(it labels the run for good"
    ):
        pgrad.resume(tmp_path, tag="other")
