"""`personagraph survey` / `interview` entry points, called through their argparse parsers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest

from personagraph.cli.twins import add_interview_parser, add_survey_parser
from personagraph.serving.models import use_models
from personagraph.serving.settings import REPO_ROOT
from personagraph.twins.respondents import load_twin2k, parse_select, select
from personagraph.twins.surveys import load_survey
from tests.fakes import scripted
from tests.unit.twins_support import answer_bot

TAM = REPO_ROOT / "data" / "surveys" / "tam_en.yaml"
GUIDE = REPO_ROOT / "data" / "interviews" / "ai_at_work_en.yaml"


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="personagraph")
    sub = parser.add_subparsers(dest="command", required=True)
    add_survey_parser(sub)
    add_interview_parser(sub)
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_count_and_save_selection(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(
        "survey", "--select", "where:sex=Female;age_band=65+", "--count", "--save-selection", "older-women"
    )
    err = capsys.readouterr().err
    expected = sum(
        1
        for p in load_twin2k().respondents
        if p.attributes["sex"] == "Female" and p.attributes["age_band"] == "65+"
    )
    assert code == 0 and f"{expected} respondents selected" in err and "selection saved" in err
    assert cli("survey", "--select", "saved:older-women", "--select", "random:5:1", "--count") == 0
    assert "5 respondents selected" in capsys.readouterr().err


def test_survey_runs_exports_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    survey = load_survey(TAM)
    people = select(parse_select(["random:3:9"]), load_twin2k())
    with use_models({"twin": scripted(answer_bot(survey, people))}):
        code = cli("survey", "--survey", str(TAM), "--select", "random:3:9", "--out", str(tmp_path / "out"),
                   "--mode", "per_person", "--concurrency", "2", "--no-progress", "--run-id", "tam-test")  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["run_id"] == "tam-test" and result["ok"] == 3 * len(survey.questions)
    sheets = pd.read_excel(result["files"]["excel"], sheet_name=None)
    assert set(sheets) == {"tam_en", "summary"} and len(sheets["tam_en"]) == 3
    idle = scripted(AssertionError("nothing left to ask"))
    with use_models({"twin": idle}):
        assert cli("survey", "--resume", "tam-test", "--no-progress") == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["asked_now"] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode", "per_page"], "--mode: 'per_page' is not allowed; allowed: per_question, per_person"),
        (["--concurrency", "0"], "--concurrency: Input should be greater than or equal to 1"),
        (["--rate", "-1"], "--rate: Input should be greater than or equal to 0.01"),
        (["--select", "where:planet=Mars"], "where: unknown attribute 'planet'; allowed: age_band"),
        (
            ["--select", "where:region=Mars"],
            "where.region: unknown value(s) ['Mars']; allowed: Midwest, Northeast",
        ),
        (["--select", "shuffle:3"], "--select: unknown kind 'shuffle'"),
    ],
)
def test_invalid_parameters_name_the_field_and_allowed_values(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli("survey", "--survey", str(TAM), "--out", str(tmp_path), *argv)
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("survey", "--select", "random:2", "--out", str(tmp_path)) == 2
    assert "--survey: give a survey file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("questions:\n  - {id: q1, type: likert, text: x, points: 1}\n")
    assert cli("survey", "--survey", str(bad), "--select", "random:2", "--out", str(tmp_path)) == 2
    assert "question 'q1' field 'points'" in capsys.readouterr().err
    assert cli("survey", "--resume", "no-such-run") == 2
    assert "run_id: no run 'no-such-run'" in capsys.readouterr().err
    assert cli("survey", "--resume", "../etc") == 2
    assert "run_id: '../etc' is not a valid id" in capsys.readouterr().err


def test_interview_batch_and_interactive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    sufficient = {"verdict": "sufficient", "follow_up": ""}
    with use_models({"twin": scripted("I mostly use my phone."), "router": scripted(sufficient)}):
        code = cli("interview", "--guide", str(GUIDE), "--select", "ids:1,2", "--out", str(tmp_path / "iv"),
                   "--no-progress", "--max-followups", "1")  # fmt: skip
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and result["ok"] == 2
    assert sorted(p.name for p in Path(result["files"]["transcripts_dir"]).glob("*.md")) == ["1.md", "2.md"]
    replies = iter(["What apps?", "", "/end"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(replies))
    with use_models({"twin": scripted("Answer.")}):
        code = cli(
            "interview",
            "--guide",
            str(GUIDE),
            "--select",
            "ids:7",
            "--interactive",
            "--out",
            str(tmp_path / "one"),
        )
    saved = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    transcript = json.loads(Path(saved["files"]["json"]).read_text())["transcript"]
    assert code == 0 and [e["asked_by"] for e in transcript] == ["guide", "human", "guide"]
    assert cli("interview", "--guide", str(GUIDE), "--select", "ids:1,2", "--interactive") == 2
    assert "exactly one respondent, got 2" in capsys.readouterr().err
