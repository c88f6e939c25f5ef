"""metrics.jsonl and TensorBoard: what a run writes is what a reader gets back, NaN as null, a crash's cut
last line skipped, and a resume's rewind drops exactly the records past its checkpoint."""

import json
import math

from pgrad.run.logger import METRICS_FILE, MetricsLogger, read_metrics, truncate_metrics


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
