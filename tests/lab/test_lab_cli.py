import pytest

from pgrad.cli import main


def test_lab_list(capsys):
    assert main(["lab", "list"]) == 0
    out = capsys.readouterr().out
    assert "baselines" in out and "claims" in out


def test_a_study_writes_its_table_and_plot(tmp_path, capsys):
    assert (
        main(["lab", "baselines", "--out", str(tmp_path), "--estimates", "20", "--budgets", "5", "20"]) == 0
    )
    out = capsys.readouterr().out
    assert "reward-to-go" in out and "rel. bias" in out
    assert (tmp_path / "baselines.md").read_text().count("\n|") >= 12  # 6 estimators × 2 budgets
    assert (tmp_path / "baselines.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args, message", [(["lab", "nosuch"], "unknown lab study"), (["lab", "gae", "--bogus"], "--bogus")]
)
def test_lab_errors_are_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.parametrize("study", ["gae", "off_policy", "critic", "bptt", "relaxations", "zeroth_order"])
def test_every_study_runs(tmp_path, monkeypatch, study):
    if study == "critic":  # fit the study's critics for 20 steps (3000 in the study): the table, not the fit
        import pgrad.lab.studies as studies

        fit = studies.fitted_q_ensemble
        monkeypatch.setattr(studies, "fitted_q_ensemble", lambda *a, **kw: fit(*a, **kw, steps=20))
    assert main(["lab", study, "--out", str(tmp_path), "--estimates", "4", "--budgets", "3"]) == 0
    table = (tmp_path / f"{study}.md").read_text()
    assert "| estimator |" in table and (tmp_path / f"{study}.png").exists()
