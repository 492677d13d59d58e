"""Calibrating a survey run with a pilot panel in the product (issue 19): fitted on the pilot's real
answers only, stored in the run beside the zero-shot answers, shown and exported with its mode, for
the run's owner or an admin, from the service, the CLI and the app."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from personagraph.accounts.identity import NotFoundError
from personagraph.cli.twins import add_twins_parser
from personagraph.services.twins.analysis import summarize
from personagraph.services.twins.calibration import CALIBRATION_KEY, calibrate_run
from personagraph.services.twins.exports import export_all
from personagraph.services.twins.selections import save_upload
from personagraph.services.twins.store import RunError, open_run, run_info
from personagraph.serving.settings import get_settings
from personagraph.ui import twins_tab
from tests.unit.twins_support import BOSS, JOON, LOCAL, MINA, pilot_run


def _stored(caller: Any, run_id: str) -> dict[str, Any]:
    with open_run(caller, run_id) as store:
        return dict(store.meta(CALIBRATION_KEY))


def _rewrite(path: Path, change: Any) -> None:
    """Rewrite the CSV's rows with `change(cells) -> cells` (the header kept)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [",".join(change(line.split(","))) for line in lines[1:]]
    path.write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")


def test_a_run_is_calibrated_from_the_pilot_only(tmp_path: Path) -> None:
    run_id, pilot = pilot_run(MINA, tmp_path / "pack")
    summary = calibrate_run(MINA, run_id, save_upload(MINA, pilot), "mean")
    assert summary["result_mode"] == "calibrated" and summary["run_id"] == run_id
    assert summary["pilot_people"] == 30 and summary["people_calibrated"] == 10  # people 31..40
    questions = {q["question_id"]: q for q in summary["questions"]}
    assert set(questions) == {"lik", "bin_a", "bin_b", "pct"}
    lik = questions["lik"]
    assert lik["n_pilot"] == 30 and lik["fit"] in ("model", "prior") and lik["people"] == 10
    for key in ("zero_shot_distribution", "calibrated_distribution", "pilot_distribution"):
        assert sum(lik[key].values()) == pytest.approx(1.0, abs=1e-3), key
    # The pilot's real distribution: its 30 rows of lik (1 + i % 5 for i = 1..30: six of each code).
    assert lik["pilot_distribution"] == {f"{c} L{c}": 0.2 for c in range(1, 6)}
    assert questions["bin_a"]["fit"] == "prior" and questions["bin_a"]["n_pilot"] < 20  # one arm's half
    assert questions["pct"]["pilot_mean"] is not None and "pct" not in [
        k for k in questions["pct"] if k.endswith("distribution")
    ]
    stored = _stored(MINA, run_id)
    assert sorted(stored["answers"], key=int) == [
        str(i) for i in range(31, 41)
    ]  # only people outside the pilot
    assert stored["pilot_ids"] == [str(i) for i in range(1, 31)]
    with open_run(MINA, run_id) as store:
        arms = store.arms()
        survey = store.survey()
    for person, answers in stored["answers"].items():
        seen = {q.id for q in survey.questions_for(arms[person])}
        assert set(answers) == seen  # every closed question the person's twin was asked
        for qid, answer in answers.items():
            if answer["distribution"] is not None and survey.question(qid).ordinal:  # mean: the expected code
                expected = sum(int(c) * p for c, p in answer["distribution"].items())
                assert answer["value"] == pytest.approx(expected, abs=2e-3)

    # Real answers of people outside the pilot (rows 41..60) change nothing.
    _rewrite(pilot, lambda cells: cells if int(cells[0]) <= 40 else [cells[0], "5", "", "2", "100"])
    calibrate_run(MINA, run_id, save_upload(MINA, pilot), "mean")
    again = _stored(MINA, run_id)
    assert again["answers"] == stored["answers"] and again["questions"] == stored["questions"]
    # ... while a pilot answer does.
    _rewrite(pilot, lambda cells: [cells[0], "5", *cells[2:]] if int(cells[0]) <= 30 else cells)
    changed = calibrate_run(MINA, run_id, save_upload(MINA, pilot), "mean")
    assert (
        next(q for q in changed["questions"] if q["question_id"] == "lik")["pilot_distribution"]["5 L5"] == 1
    )


def test_errors_name_the_field(tmp_path: Path) -> None:
    run_id, pilot = pilot_run(MINA, tmp_path / "pack")
    mine = save_upload(MINA, pilot)
    with pytest.raises(
        RunError, match="^policy: 'average' is not allowed; allowed: mode, median, mean, draw$"
    ):
        calibrate_run(MINA, run_id, mine, "average")
    with pytest.raises(PermissionError, match="^pilot_file: "):  # not in mina's folders
        calibrate_run(MINA, run_id, pilot, "mean")
    strangers = tmp_path / "strangers.csv"
    _rewrite(pilot, lambda cells: cells if int(cells[0]) > 40 else [str(int(cells[0]) + 100), *cells[1:]])
    strangers.write_text(pilot.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(RunError, match="^pilot_file: no row .* belongs to a respondent of this run"):
        calibrate_run(MINA, run_id, save_upload(MINA, strangers), "mean")
    small_run, small = pilot_run(MINA, tmp_path / "small", n_pilot=10)
    with pytest.raises(RunError, match="^pilot_file: the pilot has 10 people .* needs at least 20"):
        calibrate_run(MINA, small_run, save_upload(MINA, small), "mean")
    broken = tmp_path / "broken.csv"
    broken.write_text("person,lik\n1,2\n", encoding="utf-8")
    with pytest.raises(RunError, match="^pilot_file: broken.csv has no 'twin_id' column$"):
        calibrate_run(MINA, run_id, save_upload(MINA, broken), "mean")
    with pytest.raises(RunError, match="^pilot_file: "):
        calibrate_run(MINA, run_id, save_upload(MINA, pilot.parent / "questions.json"), "mean")
    with open_run(MINA, run_id) as store:
        assert store.meta(CALIBRATION_KEY) is None  # nothing stored by a refused calibration


def test_only_the_owner_or_an_admin_calibrates(tmp_path: Path) -> None:
    run_id, pilot = pilot_run(MINA, tmp_path / "pack")
    theirs = save_upload(JOON, pilot)
    with pytest.raises(NotFoundError) as refused:
        calibrate_run(JOON, run_id, theirs, "mean")
    with pytest.raises(NotFoundError) as missing:
        run_info(JOON, "no-such-run")
    assert str(refused.value).replace(run_id, "X") == str(missing.value).replace("no-such-run", "X")
    with open_run(MINA, run_id) as store:
        assert store.meta(CALIBRATION_KEY) is None
    assert calibrate_run(BOSS, run_id, save_upload(BOSS, pilot), "mode")["people_calibrated"] == 10


def test_the_calibration_persists_replaces_and_leaves_the_zero_shot_answers(tmp_path: Path) -> None:
    run_id, pilot = pilot_run(MINA, tmp_path / "pack")
    assert summarize(MINA, run_id)["result_mode"] == "zero-shot"
    with open_run(MINA, run_id) as store:
        before = store.answers()
    mine = save_upload(MINA, pilot)
    calibrate_run(MINA, run_id, mine, "mean")
    calibrate_run(MINA, run_id, mine, "draw")
    get_settings.cache_clear()  # as after a restart: read back from the run's file
    summary = summarize(MINA, run_id)
    assert summary["result_mode"] == "calibrated"
    assert summary["calibration"]["policy"] == "draw" and summary["calibration"]["pilot_people"] == 30
    lik = next(q for q in summary["questions"] if q["question_id"] == "lik")
    assert lik["calibrated_distribution"] and lik["pilot_distribution"] and lik["calibration_fit"]
    assert lik["ok"] == 40  # the zero-shot figures: every twin's own answer
    stored = _stored(MINA, run_id)
    draws = [
        a["value"] for answers in stored["answers"].values() for a in answers.values() if a["distribution"]
    ]
    assert all(float(v).is_integer() for v in draws)  # a draw is a code, the mean was not
    with open_run(MINA, run_id) as store:
        assert store.answers() == before


def test_exports_carry_both_modes(tmp_path: Path) -> None:
    run_id, pilot = pilot_run(MINA, tmp_path / "pack")
    calibrate_run(MINA, run_id, save_upload(MINA, pilot), "median")
    calibrated = sum(len(a) for a in _stored(MINA, run_id)["answers"].values())
    files = export_all(MINA, run_id)
    long = pd.read_csv(files["csv"])
    counts = long["result_mode"].value_counts().to_dict()
    with open_run(MINA, run_id) as store:
        zero_shot = len(store.answers())
    assert counts == {"zero-shot": zero_shot, "calibrated": calibrated}
    rows = long[long["result_mode"] == "calibrated"]
    assert set(rows["mode"]) == {"calibrated:median"} and set(rows["person_id"]) == set(range(31, 41))
    data = json.loads(Path(files["json"]).read_text(encoding="utf-8"))
    assert {a["result_mode"] for a in data["answers"]} == {"zero-shot"} and len(data["answers"]) == zero_shot
    assert {a["result_mode"] for a in data["calibrated_answers"]} == {"calibrated"}
    assert len(data["calibrated_answers"]) == calibrated and data["calibration"]["policy"] == "median"
    assert data["summary"]["result_mode"] == "calibrated"
    sheets = pd.read_excel(files["excel"], sheet_name=None)
    wide = sheets[next(name for name in sheets if name != "summary")]
    assert list(wide["result_mode"]) == ["zero-shot"] * 40 + ["calibrated"] * 10
    assert list(wide["person_id"][40:]) == list(range(31, 41))


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="personagraph")
    add_twins_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_cli_calibrates_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, pilot = pilot_run(LOCAL, tmp_path / "pack")
    assert cli("twins", "calibrate", run_id, "--pilot", str(pilot), "--policy", "mode") == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["result_mode"] == "calibrated" and printed["policy"] == "mode"
    assert printed["pilot_people"] == 30 and len(printed["questions"]) == 4
    assert cli("twins", "calibrate", run_id, "--pilot", str(pilot), "--policy", "best") == 2
    assert "--policy: 'best' is not allowed; allowed: mode, median, mean, draw" in capsys.readouterr().err
    assert cli("twins", "calibrate", run_id, "--pilot", str(tmp_path / "none.csv")) == 2
    assert "--pilot: file not found" in capsys.readouterr().err
    assert cli("twins", "calibrate", "no-such-run", "--pilot", str(pilot)) == 2
    assert "run_id: no run 'no-such-run'" in capsys.readouterr().err


def test_the_app_shows_the_calibration_and_plots_it(tmp_path: Path) -> None:
    run_id, pilot = pilot_run(MINA, tmp_path / "pack")
    report = calibrate_run(MINA, run_id, save_upload(MINA, pilot), "mean")
    text = twins_tab.calibration_markdown(report)
    assert text.startswith("**Results: calibrated**") and "pilot of 30 people" in text
    assert "| lik | " in text and "no answer of a person outside the pilot" in text
    summary = summarize(MINA, run_id)
    assert "results: **calibrated**" in twins_tab.summary_markdown(summary)
    figure = twins_tab.distribution_figure(summary, "lik")
    assert [trace.name for trace in figure.data] == ["twins' answers", "calibrated", "pilot (real answers)"]
    assert list(figure.data[2].y) == pytest.approx([0.2] * 5)


def test_the_app_handler_takes_the_caller_from_the_request(tmp_path: Path) -> None:
    import gradio as gr

    from personagraph.accounts.store import AccountStore

    accounts = AccountStore(tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    for user in ("mina", "joon"):
        accounts.add(user, f"password-{user}")
    with gr.Blocks() as app:
        twins_tab.build_twins_tabs(accounts)
    calibrate = next(f.fn for f in app.fns.values() if f.api_name == "calibrate_run")
    assert calibrate is not None
    run_id, pilot = pilot_run(MINA, tmp_path / "pack")
    text, _ = calibrate(run_id, None, "mean", SimpleNamespace(username="mina"))
    assert text.startswith("⚠️ pilot_file: upload")
    text, _ = calibrate(run_id, str(pilot), "mean", SimpleNamespace(username="joon"))
    assert text.startswith("⚠️ run_id: ") and summarize(MINA, run_id)["result_mode"] == "zero-shot"
    text, figure = calibrate(run_id, str(pilot), "mean", SimpleNamespace(username="mina"))
    assert text.startswith("**Results: calibrated**") and "calibrated" in [t.name for t in figure.data]
