"""Who may do what with twin runs, interviews, selections and files.

A run belongs to its creator: another user gets NotFoundError (the same words as for a run that does
not exist), an admin may manage every run. App and API callers name files only in their upload
folder or the shipped data, refused with the same message whether or not the path exists; the
terminal operator (CLI_CALLER) may name any path. Runs in the background return at once, report
progress, and can be cancelled and resumed without losing or re-asking anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from personagraph.accounts.identity import Caller, ConflictError, NotFoundError
from personagraph.services.twins import analysis, exports, selections, store
from personagraph.services.twins.executor import BatchOptions
from personagraph.services.twins.interviews import InterviewSession, create_interview_run, run_interviews
from personagraph.services.twins.runs import start_run_in_background, start_survey_run
from personagraph.services.twins.surveys import create_survey_run, run_survey
from personagraph.serving.models import use_models
from personagraph.serving.settings import REPO_ROOT, get_settings
from personagraph.twins.guides import guide_from_data
from personagraph.twins.respondents import RespondentError, Selection
from personagraph.twins.surveys import load_survey
from tests.fakes import scripted
from tests.unit.twins_support import BOSS, JOON, LOCAL, MINA, answer_bot, people_from

BRAND = load_survey(REPO_ROOT / "data" / "surveys" / "brand_en.yaml")
GUIDE = guide_from_data({"id": "g", "questions": [{"id": "q1", "text": "How do you drink tea?"}]})


def _finished_run(caller: Caller, n: int = 2) -> str:
    people = people_from(n)
    with use_models({"twin": scripted(answer_bot(BRAND, people))}):
        run_id = create_survey_run(caller, BRAND, people, BatchOptions()).run_id
        assert run_survey(caller, run_id, progress=False).stopped is None
    return run_id


def _wait(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _answers_csv(run_id: str, folder: Path) -> Path:
    with store.open_run(LOCAL, run_id) as opened:
        rows = [f"{a.person_id},{a.value}" for a in opened.answers() if a.question_id == "awareness"]
    path = folder / "answers.csv"
    path.write_text("twin_id,awareness\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_another_user_cannot_see_or_touch_a_run(tmp_path: Path) -> None:
    run_id = _finished_run(MINA)
    answers = selections.save_upload(JOON, _answers_csv(run_id, tmp_path))
    attempts: dict[str, Callable[[], object]] = {
        "run_info": lambda: store.run_info(JOON, run_id),
        "open_run": lambda: store.open_run(JOON, run_id),
        "summarize": lambda: analysis.summarize(JOON, run_id),
        "by_segment": lambda: analysis.by_segment(JOON, run_id, "age"),
        "validate_run": lambda: analysis.validate_run(JOON, run_id, answers),
        "export_all": lambda: exports.export_all(JOON, run_id),
        "cancel_run": lambda: store.cancel_run(JOON, run_id),
        "delete_run": lambda: store.delete_run(JOON, run_id),
        "run_survey": lambda: run_survey(JOON, run_id, progress=False),
        "start_run_in_background": lambda: start_run_in_background(JOON, run_id),
    }
    for name, attempt in attempts.items():
        with pytest.raises(NotFoundError) as refused:
            attempt()
        with pytest.raises(NotFoundError) as missing:
            store.run_info(JOON, "no-such-run")
        # Someone else's run reads exactly like a run that does not exist.
        assert str(refused.value).replace(run_id, "X") == str(missing.value).replace("no-such-run", "X"), name
    assert store.visible_runs(JOON) == []
    assert not (get_settings().personagraph_home / "exports" / "joon").exists()
    with store.open_run(MINA, run_id) as opened:  # nothing was changed by the attempts
        assert opened.meta("cancel_requested") is False and opened.meta("state") == "done"


def test_owner_and_admin_manage_a_run(tmp_path: Path) -> None:
    mine, other = _finished_run(MINA), _finished_run(JOON)
    assert [r["run_id"] for r in store.visible_runs(MINA)] == [mine]
    assert {r["run_id"] for r in store.visible_runs(BOSS)} == {mine, other}  # admins see every run
    info = store.run_info(BOSS, mine)
    assert (info["owner"], info["state"], info["stored"], info["active"]) == (
        "mina",
        "done",
        info["expected"],
        False,
    )
    assert analysis.summarize(BOSS, mine)["coverage"] == 1.0
    files = exports.export_all(BOSS, mine)
    assert Path(files["csv"]).is_relative_to(get_settings().personagraph_home / "exports" / "boss" / mine)
    answers = selections.save_upload(BOSS, _answers_csv(mine, tmp_path))
    assert analysis.validate_run(BOSS, mine, answers)["people"] == 2
    assert store.cancel_run(BOSS, mine)["cancel_requested"] is True
    store.delete_run(MINA, mine)  # owners delete their own runs
    store.delete_run(BOSS, other)  # admins any run
    assert store.visible_runs(BOSS) == []


def test_exports_of_app_callers_stay_in_their_folder(tmp_path: Path) -> None:
    run_id = _finished_run(MINA)
    with pytest.raises(PermissionError, match="^out_dir: "):
        exports.export_all(MINA, run_id, tmp_path / "anywhere")
    own = get_settings().personagraph_home / "exports" / "mina" / "sub"
    assert Path(exports.export_all(MINA, run_id, own)["json"]).parent == own.resolve()
    assert Path(exports.export_all(LOCAL, run_id, tmp_path / "anywhere")["json"]).is_file()  # the CLI may


def test_interview_runs_and_sessions_belong_to_their_caller() -> None:
    sufficient = {"verdict": "sufficient", "follow_up": ""}
    with use_models({"twin": scripted("Green tea."), "router": scripted(sufficient)}):
        run_id = create_interview_run(MINA, GUIDE, people_from(1), BatchOptions())
        with pytest.raises(NotFoundError):
            run_interviews(JOON, run_id, progress=False)
        assert run_interviews(MINA, run_id, progress=False).ok == 1
        with pytest.raises(store.RunError, match="^run_id: .* is not a survey run"):
            analysis.summarize(MINA, run_id)
        turn = InterviewSession(MINA).start(people_from(1)[0], GUIDE, max_followups=0)
        assert turn.waiting is not None
        for stranger in (JOON, BOSS):  # an interview is personal: admins cannot continue it either
            session = InterviewSession(stranger)
            with pytest.raises(NotFoundError, match="^thread_id: no interview"):
                session.reply(turn.thread_id, "/end")
            with pytest.raises(NotFoundError, match="^thread_id: no interview"):
                session.turn(turn.thread_id)
            with pytest.raises(NotFoundError, match="^thread_id: no interview"):
                session.save_transcript(turn.thread_id)
        with pytest.raises(ValueError, match="^thread_id: "):
            InterviewSession(MINA).turn("../../state/checkpoints")
        done = InterviewSession(MINA).reply(turn.thread_id, "/end")
    assert done.done
    files = InterviewSession(MINA).save_transcript(turn.thread_id)
    folder = get_settings().personagraph_home / "interviews" / "mina"
    assert Path(files["json"]).parent == folder.resolve()
    assert json.loads(Path(files["json"]).read_text())["transcript"][0]["answer"] == "Green tea."
    with pytest.raises(PermissionError, match="^out_dir: "):
        InterviewSession(MINA).save_transcript(turn.thread_id, Path("/tmp"))


OUTSIDE_SPECS = [
    ("source:{path}", "source"),
    ("file:{path}", "file"),
    ("hf:{path}", "hf"),
    ("source:hf:{path}", "source"),
]


@pytest.mark.parametrize(("spec", "field"), OUTSIDE_SPECS)
def test_app_callers_cannot_name_files_outside_their_folders(tmp_path: Path, spec: str, field: str) -> None:
    existing = tmp_path / "people.csv"
    existing.write_text("id,profile\n1,A secret person.\n", encoding="utf-8")
    messages = set()
    for path in (existing, tmp_path / "missing.csv", "/etc/passwd", "../../x.csv", "/tmp/x"):
        with pytest.raises(PermissionError) as refused:
            selections.parse_selection(MINA, [spec.format(path=path)])
        assert str(refused.value).startswith(f"{field}: files must be in your upload folder")
        messages.add(str(refused.value))
    assert len(messages) == 1  # the same words whether or not the path exists


def test_selection_sources_are_checked_wherever_they_come_from(tmp_path: Path) -> None:
    outside = tmp_path / "people.csv"
    outside.write_text("id,profile\n1,A secret person.\n", encoding="utf-8")
    with pytest.raises(PermissionError, match="^source: "):
        selections.respondent_pool(MINA, str(outside))
    with pytest.raises(PermissionError, match="^source: "):  # a Selection built by hand (e.g. an API body)
        selections.select_respondents(MINA, Selection(source=str(outside)))
    # A selection file uploaded by the user that points outside.
    sneaky = tmp_path / "sneaky.json"
    sneaky.write_text(json.dumps({"source": str(outside)}), encoding="utf-8")
    uploaded = selections.save_upload(MINA, sneaky)
    with pytest.raises(PermissionError, match="^source: "):
        selections.parse_selection(MINA, [f"file:{uploaded.name}"])
    # A link in the upload folder that leads outside.
    (selections.upload_folder(MINA) / "link.csv").symlink_to(outside)
    with pytest.raises(PermissionError, match="^source: "):
        selections.parse_selection(MINA, ["source:link.csv"])
    with pytest.raises(PermissionError, match="^source: "):
        start_survey_run(MINA, BRAND, Selection(source=str(outside)), BatchOptions())
    assert store.visible_runs(MINA) == []


def test_uploads_and_the_shipped_data_are_open_to_app_callers(tmp_path: Path) -> None:
    mine = tmp_path / "my people (v2).csv"
    mine.write_text("id,profile,age\nu1,Loves hiking.,34\nu2,Retired teacher.,61\n", encoding="utf-8")
    uploaded = selections.save_upload(MINA, mine)
    assert uploaded.name == "my_people__v2_.csv" and uploaded.parent == selections.upload_folder(MINA)
    selection = selections.parse_selection(MINA, [f"source:{uploaded.name}", "where:age=40.."])
    assert [p.id for p in selections.select_respondents(MINA, selection)] == ["u2"]
    shipped = get_settings().data_dir / "twin2k" / "personas.csv"
    assert selections.count_respondents(MINA, selections.parse_selection(MINA, [f"source:{shipped}"])) == 2058
    # Joon's folder is not Mina's.
    with pytest.raises(PermissionError):
        selections.parse_selection(JOON, [f"source:{uploaded}"])


def test_the_terminal_operator_may_name_any_path(tmp_path: Path) -> None:
    outside = tmp_path / "people.csv"
    outside.write_text("id,profile\n1,A person.\n", encoding="utf-8")
    selection = selections.parse_selection(LOCAL, [f"source:{outside}"])
    assert [p.id for p in selections.select_respondents(LOCAL, selection)] == ["1"]
    selection = selections.parse_selection(LOCAL, ["hf:/tmp/x-no-such-dataset"])
    assert selection.source == "hf:/tmp/x-no-such-dataset"
    with pytest.raises(RespondentError, match="not found"):  # checked only for existence
        selections.respondent_pool(LOCAL, selection.source)


def test_saved_selections_belong_to_an_account() -> None:
    selection = selections.parse_selection(MINA, ["where:sex=Female", "random:3:1"])
    assert selections.save_selection(MINA, selection, "women") == "women"
    assert selections.list_selections(MINA) == ["women"] and selections.list_selections(JOON) == []
    assert selections.parse_selection(MINA, ["saved:women"]) == selection
    with pytest.raises(RespondentError, match="saved: selection 'women' not found; saved selections: none"):
        selections.parse_selection(JOON, ["saved:women"])
    with pytest.raises(ValueError, match="^selection name: "):
        selections.save_selection(MINA, selection, "../joon/women")


def test_a_background_run_reports_progress_cancels_and_resumes() -> None:
    people = people_from(4)
    bot = answer_bot(BRAND, people)
    log: list[int] = []

    def slow(messages: list[Any]) -> str:
        log.append(1)
        time.sleep(0.05)
        return bot(messages)

    with use_models({"twin": scripted(slow)}):
        handle = create_survey_run(MINA, BRAND, people, BatchOptions(concurrency=1))
        run_id = start_run_in_background(MINA, handle.run_id)
        assert run_id == handle.run_id and store.run_info(MINA, run_id)["active"]  # back at once
        with pytest.raises(ConflictError, match="already running"):
            start_run_in_background(BOSS, run_id)
        with pytest.raises(ConflictError, match="cancel it first"):
            store.delete_run(MINA, run_id)
        _wait(lambda: (store.run_info(MINA, run_id)["progress"] or {}).get("done", 0) >= 3)
        with pytest.raises(NotFoundError):
            store.cancel_run(JOON, run_id)
        assert store.cancel_run(MINA, run_id)["cancel_requested"] is True
        _wait(lambda: not store.run_info(MINA, run_id)["active"])
        info = store.run_info(MINA, run_id)
        assert info["state"] == "cancelled" and 3 <= info["stored"] < handle.expected, info
        asked_before = len(log)
        assert info["stored"] == asked_before  # every answer asked was stored
        summary = run_survey(MINA, run_id, progress=False)  # resume: only what is missing
    assert summary.stored == handle.expected and summary.stopped is None
    assert len(log) == handle.expected  # nothing asked twice
    assert store.run_info(MINA, run_id)["state"] == "done"


def test_a_failed_background_run_records_why() -> None:
    people = people_from(1)
    handle = create_survey_run(MINA, BRAND, people, BatchOptions())
    with use_models({"twin": scripted(RuntimeError("the model fell over"))}):
        start_run_in_background(MINA, handle.run_id)
        _wait(lambda: not store.run_info(MINA, handle.run_id)["active"])
    info = store.run_info(MINA, handle.run_id)
    # The run list shows a short reason; the exception itself goes to the server log.
    assert info["state"] == "failed" and info["message"].startswith("internal error"), info
    assert "the model fell over" not in info["message"]
