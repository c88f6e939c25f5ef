"""Progress output: plain lines (with an ETA) wherever stderr is not a terminal, a live bar with an ETA
where it is, nothing with --no-progress, and stdout left to the run's JSON summary."""

import io
import json
import os
import re

import pytest

from pgrad.cli import main
from pgrad.run import progress as progress_module
from pgrad.run.progress import LiveBar, PlainLines, Progress, progress_display

LINE = re.compile(
    r"^(?P<label>\S+ \S+) \| (?P<step>[\d,]+)/(?P<total>[\d,]+) steps \((?P<percent>\d+)%\) \| "
    r"train return (-|-?\d+\.\d) \| (eval return -?\d+\.\d \| )?([\d,]+|-) steps/s \| "
    r"elapsed \d+:\d\d:\d\d \| ETA (\d+:\d\d:\d\d|-)$"
)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_tenth_of_the_budget_with_elapsed_and_eta():
    out, clock = io.StringIO(), Clock()
    with PlainLines(1000, "ppo CartPole-v1", stream=out, clock=clock) as display:
        for step in range(50, 1001, 50):
            clock.now += 1.0  # 50 steps a second
            display.update(step, train_return=step / 20, sps=1234.4)
            if step == 250:
                display.update(eval_return=99.0)  # an evaluation's return joins the next line
    lines = out.getvalue().splitlines()
    assert [int(LINE.match(line)["percent"]) for line in lines] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert lines[0] == (
        "ppo CartPole-v1 | 100/1,000 steps (10%) | train return 5.0 | 1,234 steps/s | elapsed 0:00:02 | "
        "ETA 0:00:18"
    )  # ETA: 900 steps left at 100 steps / 2 s
    assert lines[2] == (
        "ppo CartPole-v1 | 300/1,000 steps (30%) | train return 15.0 | eval return 99.0 | 1,234 steps/s | "
        "elapsed 0:00:06 | ETA 0:00:14"
    )
    assert lines[-1].endswith("elapsed 0:00:20 | ETA 0:00:00")


def test_plain_lines_every_minute_when_a_tenth_takes_longer_and_a_last_line_at_the_end():
    out, clock = io.StringIO(), Clock()
    with PlainLines(10_000, "a2c Pendulum-v1", stream=out, clock=clock) as display:
        for step in (100, 200, 300, 400):
            clock.now += 25.0
            display.update(step, sps=4.0)
        display.update(eval_return=-1200.0)  # the final evaluation, after the last record
    lines = out.getvalue().splitlines()
    # one line once 60 s had passed (at 75 s, step 300), none 25 s later, one at the end for the evaluation
    assert [LINE.match(line)["step"] for line in lines] == ["300", "400"]
    assert "eval return" not in lines[0] and "eval return -1200.0" in lines[1]
    assert lines[0].endswith("ETA 0:40:25")  # 9,700 steps at 300 steps / 75 s: 2,425 s


def test_a_resumed_run_counts_its_speed_and_marks_from_the_checkpoint():
    out, clock = io.StringIO(), Clock()
    with PlainLines(1000, "vpg CartPole-v1", start=640, stream=out, clock=clock) as display:
        clock.now += 10.0
        display.update(690)  # not at a mark yet: 700 is the next tenth above 640
        clock.now += 10.0
        display.update(740, train_return=30.0)
    (line,) = out.getvalue().splitlines()
    assert line.startswith("vpg CartPole-v1 | 740/1,000 steps (74%) | train return 30.0 | - steps/s")
    assert line.endswith("elapsed 0:00:20 | ETA 0:00:52")  # 260 left at 100 steps / 20 s


def test_the_last_line_shows_the_steps_run_past_the_budget_capped_at_100_percent():
    out, clock = io.StringIO(), Clock()
    with PlainLines(1000, "x y", stream=out, clock=clock) as display:
        clock.now += 2.0
        display.update(1024)
    assert "1,024/1,000 steps (100%)" in out.getvalue() and out.getvalue().endswith("ETA 0:00:00\n")


def test_no_last_line_when_the_run_stops_on_an_error():
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt), PlainLines(1000, "x y", stream=out, clock=Clock()) as display:
        display.update(10)
        raise KeyboardInterrupt
    assert out.getvalue() == ""


def test_no_progress_is_silent_and_a_pipe_or_dumb_terminal_gets_plain_lines(monkeypatch):
    out = io.StringIO()
    silent = progress_display(False, 100, "x y", stream=out)
    assert type(silent) is Progress
    with silent:
        silent.update(100, train_return=1.0, sps=1.0, eval_return=2.0)
    assert out.getvalue() == ""
    assert isinstance(progress_display(True, 100, "x y", stream=out), PlainLines)  # StringIO: not a TTY
    master, slave = os.openpty()
    with open(slave, "w") as tty:
        monkeypatch.setenv("TERM", "xterm-256color")
        assert isinstance(progress_display(True, 100, "x y", stream=tty), LiveBar)
        monkeypatch.setenv("TERM", "dumb")
        assert isinstance(progress_display(True, 100, "x y", stream=tty), PlainLines)
    os.close(master)


def test_the_live_bar_shows_train_and_eval_return_and_an_eta():
    from rich.console import Console
    from rich.progress import TimeRemainingColumn

    bar = LiveBar(1000, "ppo CartPole-v1", start=200, stream=io.StringIO())
    bar.update(1200, train_return=41.25, sps=3512.0, eval_return=87.3)
    bar.evaluating(3, 10)
    shown = io.StringIO()
    Console(file=shown, width=250).print(bar.bar.make_tasks_table(bar.bar.tasks))
    text = shown.getvalue()
    assert "ppo CartPole-v1 · evaluating 3/10" in text
    assert "1,000/1,000 steps" in text  # rich's bar stops at the budget
    assert "train return 41.2" in text and "eval return 87.3" in text and "3,512 steps/s" in text
    assert "ETA" in text and any(isinstance(column, TimeRemainingColumn) for column in bar.bar.columns)


def test_a_real_run_writing_to_a_pipe_prints_plain_lines_and_keeps_stdout_for_its_summary(tmp_path, capsys):
    argv = ["train", "reinforce", "--env", "CartPole-v1", "--total-steps", "2000", "--num-envs", "2"]
    options = ["--log-every", "200", "--eval-every", "1500", "--eval-episodes", "1", "--no-tensorboard"]
    assert main([*argv, *options, "--run-dir", str(tmp_path / "r")]) == 0  # progress on (the default)
    captured = capsys.readouterr()  # pytest's capture: not a TTY, as in a file or a CI log
    summary = json.loads(captured.out)  # stdout: the summary line alone
    lines = [line for line in captured.err.splitlines() if line.startswith("reinforce CartPole-v1 |")]
    assert "\x1b" not in captured.err and "\r" not in captured.err
    assert all(LINE.match(line) for line in lines), lines
    percents = [int(LINE.match(line)["percent"]) for line in lines]
    assert len(lines) >= 5 and percents == sorted(percents) and percents[-1] == 100  # a line per ~10%
    last = LINE.match(lines[-1])
    assert int(last["step"].replace(",", "")) == summary["global_step"]
    assert f"eval return {summary['eval_mean_return']:.1f}" in lines[-1] and "ETA 0:00:00" in lines[-1]


def test_the_cadence_constants_are_the_documented_ones():
    # docs/harness.md and `pgrad train --help` promise these two
    assert progress_module.LINE_EVERY_FRACTION == 0.1 and progress_module.LINE_EVERY_SECONDS == 60.0
