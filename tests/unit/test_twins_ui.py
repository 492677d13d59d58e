"""The twin tabs' logic without a browser: selections, survey text, run visibility, plots, validation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from personagraph.accounts.identity import Caller
from personagraph.services.twins.analysis import segments_of, summary_of, validate_run
from personagraph.services.twins.executor import BatchOptions
from personagraph.services.twins.selections import save_upload
from personagraph.services.twins.store import RunError, open_run
from personagraph.services.twins.surveys import create_survey_run, run_survey
from personagraph.serving.models import use_models
from personagraph.serving.settings import REPO_ROOT
from personagraph.twins.surveys import SurveyError, load_survey
from personagraph.ui import twins_tab
from tests.fakes import scripted
from tests.unit.twins_support import BOSS, JOON, MINA, answer_bot, people_from

BRAND_FILE = REPO_ROOT / "data" / "surveys" / "brand_en.yaml"


def _finished_run(caller: Caller, n: int = 3) -> tuple[str, list[str]]:
    survey = load_survey(BRAND_FILE)
    people = people_from(n)
    options = BatchOptions(concurrency=1)
    run_id = create_survey_run(caller, survey, people, options).run_id
    with use_models({"twin": scripted(answer_bot(survey, people))}):
        summary = run_survey(caller, run_id, options, progress=False)
    assert summary.stopped is None
    return run_id, [p.id for p in people]


def test_selection_preview_counts_and_names_bad_specs() -> None:
    text, table = twins_tab.preview_selection(MINA, "random:7:3\n")
    assert text.startswith("**7 respondents**") and len(table) == 7 and "id" in table.columns
    _, again = twins_tab.preview_selection(MINA, "random:7:3")
    assert list(table["id"]) == list(again["id"])  # seeded
    with pytest.raises(ValueError, match="random"):
        twins_tab.selection_from_text(MINA, "random:many")


def test_survey_text_round_trip_and_errors() -> None:
    survey = twins_tab.survey_from_text(BRAND_FILE.read_text(encoding="utf-8"))
    assert survey.questions
    with pytest.raises(SurveyError, match="empty"):
        twins_tab.survey_from_text("  ")
    with pytest.raises(SurveyError):
        twins_tab.survey_from_text("questions: [")
    assert any("twin2k" in label for label, _ in twins_tab.template_choices())
    assert twins_tab.guide_choices()


def test_run_choices_list_the_callers_runs_and_owners_for_admins() -> None:
    mine, _ = _finished_run(MINA)
    theirs, _ = _finished_run(JOON)
    assert [value for _, value in twins_tab.run_choices(MINA)] == [mine]
    labels = dict((value, label) for label, value in twins_tab.run_choices(BOSS))
    assert set(labels) == {mine, theirs} and labels[theirs].endswith("· joon")


def test_summary_plots_show_the_stored_answers() -> None:
    run_id, _ = _finished_run(MINA, n=4)
    with open_run(MINA, run_id) as store:
        summary = summary_of(store)
        attribute = next(iter(store.people()[0].attributes))
        segments = segments_of(store, attribute)
    chosen = next(q for q in summary["questions"] if q.get("distribution"))
    figure = twins_tab.distribution_figure(summary, chosen["question_id"])
    assert sum(figure.data[0].y) == pytest.approx(1.0) and chosen["ok"] == 4  # shares of the answers
    assert len(figure.data) == 1  # no twin probabilities outside distribution mode
    assert "coverage **100.0%**" in twins_tab.summary_markdown(summary)
    assert "results: **zero-shot**" in twins_tab.summary_markdown(summary)
    seg = twins_tab.segment_figure(segments, chosen["question_id"])
    assert sum(sum(trace.y) for trace in seg.data) == 4
    assert twins_tab.distribution_figure({}).layout.title.text.startswith("No answered")


def test_validation_scores_a_run_against_an_answers_file(tmp_path: Path) -> None:
    run_id, ids = _finished_run(MINA, n=3)
    survey = load_survey(BRAND_FILE)
    scored = [q for q in survey.questions if q.options or q.scale_max is not None]
    # Real answers: the first two people match the twins' answers exactly, others are strangers.
    with open_run(MINA, run_id) as store:
        twin_answers = {(a.person_id, a.question_id): a.value for a in store.answers() if a.status == "ok"}
    rows = []
    for pid in ids[:2]:
        rows.append(
            {
                "twin_id": pid,
                **{q.id: twin_answers[(pid, q.id)] for q in scored if (pid, q.id) in twin_answers},
            }
        )
    for k in range(5):
        rows.append(
            {"twin_id": f"other{k}", **{q.id: (q.codes[0] if q.options else q.scale_min) for q in scored}}
        )
    path = tmp_path / "answers.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(PermissionError, match="^answers_file: "):  # not in mina's folders
        validate_run(MINA, run_id, path)
    report = validate_run(MINA, run_id, save_upload(MINA, path))
    assert report["people"] == 2 and report["people_without_answers"] == [ids[2]]
    assert report["twins"]["accuracy"]["item_mean"] == pytest.approx(1.0)
    assert "| twins | " in twins_tab.validation_markdown(report)
    stranger = tmp_path / "strangers.csv"
    pd.DataFrame(rows[2:]).to_csv(stranger, index=False)
    with pytest.raises(RunError, match="none of this run's respondents"):
        validate_run(MINA, run_id, save_upload(MINA, stranger))


def test_filter_builder_writes_specs_that_select() -> None:
    kind, categories, _ = twins_tab.attribute_info("sex")
    assert kind == "categorical" and "Female" in categories
    kind, _, span = twins_tab.attribute_info("big5_openness")
    assert kind == "numeric" and ".." in span
    with pytest.raises(ValueError, match="attribute"):
        twins_tab.attribute_info("shoe_size")
    spec = twins_tab.filter_spec("sex", ["Female"], None, None)
    assert spec == "where:sex=Female"
    assert twins_tab.filter_spec("big5_openness", [], 4, None) == "where:big5_openness=4.."
    with pytest.raises(ValueError, match="big5_openness"):
        twins_tab.filter_spec("big5_openness", [], None, None)
    text = twins_tab.add_spec(twins_tab.add_spec("all", spec), "random:5:1")
    assert text == "where:sex=Female\nrandom:5:1"
    people = twins_tab.select_respondents(MINA, twins_tab.selection_from_text(MINA, text))
    assert len(people) == 5 and all(p.attributes["sex"] == "Female" for p in people)


def test_every_handler_refuses_a_request_without_an_account(tmp_path: Path) -> None:
    """Every event handler of the tabs (private ones too: Gradio still serves them by fn_index)
    takes the gr.Request and asks who is signed in before anything else."""
    import inspect

    import gradio as gr

    from personagraph.accounts.identity import NotSignedInError
    from personagraph.accounts.store import AccountStore

    accounts = AccountStore(path=tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    accounts.add("mina", "mina-password")
    with gr.Blocks() as demo:
        twins_tab.build_twins_tabs(accounts)
    handlers = [fn.fn for fn in demo.fns.values() if fn.fn is not None]
    assert len(handlers) >= 30
    for handler in handlers:
        params = inspect.signature(handler).parameters
        assert "request" in params, handler.__name__
        args = {name: None for name in params}
        with pytest.raises(NotSignedInError):
            result = handler(**args)
            if inspect.isgenerator(result):
                next(result)


def test_survey_editor_round_trips_edits_and_names_bad_cells() -> None:
    from personagraph.twins.surveys import load_survey, survey_from_text

    path = REPO_ROOT / "data" / "surveys" / "tam_en.yaml"
    text = path.read_text(encoding="utf-8")
    rows = twins_tab.editor_rows(text)
    original = load_survey(path)
    assert [r[0] for r in rows] == [q.id for q in original.questions]
    again = survey_from_text(twins_tab.survey_text_from_rows(rows, text))
    assert [(q.id, q.type, q.text, q.codes) for q in again.questions] == [
        (q.id, q.type, q.text, q.codes) for q in original.questions
    ]
    assert again.title == original.title and again.language == original.language
    first = rows[0][0]
    edited = twins_tab.edit_rows(rows, "copy", 1)
    assert edited[1][0] == f"{first}_copy" and edited[1][1:] == rows[0][1:]
    edited = twins_tab.edit_rows(edited, "down", 1)
    assert [r[0] for r in edited[:2]] == [f"{first}_copy", first]
    edited = twins_tab.edit_rows(edited, "delete", 1)
    assert [r[0] for r in edited] == [r[0] for r in rows]
    added = twins_tab.edit_rows(edited, "add", 1)
    assert (
        added[1][1] == "likert"
        and len(survey_from_text(twins_tab.survey_text_from_rows(added, text)).questions) == len(rows) + 1
    )
    broken = [list(r) for r in rows]
    broken[1][3] = "1=Yes; two"
    with pytest.raises(ValueError, match="row 2, column options: 'two' is not CODE=Label"):
        twins_tab.survey_text_from_rows(broken, text)
    with pytest.raises(ValueError, match="row: 99 is not a row"):
        twins_tab.edit_rows(rows, "up", 99)
