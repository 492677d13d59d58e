"""Answering: schema per question, retries on invalid output, failures recorded (never an invalid value)."""

from __future__ import annotations

import json
import typing

import pytest
from pydantic import ValidationError

from personagraph.services.twins.answering import (
    answer_model,
    ask_question,
    ask_questionnaire,
    questionnaire_model,
    render_questionnaire,
)
from personagraph.serving.models import ModelUnavailableError, use_models
from personagraph.serving.settings import REPO_ROOT
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import load_survey, survey_from_data
from tests.fakes import scripted

SURVEY = survey_from_data(
    {
        "id": "mini",
        "title": "Mini",
        "questions": [
            {"id": "lik", "type": "likert", "text": "Agree?", "points": 5},
            {"id": "pct", "type": "slider_percent", "text": "Share?"},
            {"id": "num", "type": "numeric", "text": "How many?", "min": 0, "max": 10},
            {"id": "open", "type": "open", "text": "Why?"},
        ],
    }
)
PERSON = Respondent(id="p1", profile="A 40-year-old nurse from Ohio.")


def test_answer_models_carry_the_allowed_values() -> None:
    lik, pct, num, opn = (answer_model(q) for q in SURVEY.questions)
    assert typing.get_args(lik.model_fields["answer"].annotation) == (1, 2, 3, 4, 5)
    schema = lik.model_json_schema()
    assert schema["properties"]["answer"] == {"enum": [1, 2, 3, 4, 5], "type": "integer"}
    assert schema["required"] == ["answer", "reason"] and "title" not in json.dumps(schema)
    assert pct.model_json_schema()["properties"]["answer"] == {
        "maximum": 100,
        "minimum": 0,
        "type": "integer",
    }
    assert pct.model_validate({"answer": 100, "reason": ""}).answer == 100  # type: ignore[attr-defined]
    for model, bad in ((lik, 6), (lik, "3"), (pct, 101), (pct, 12.5), (num, -1), (opn, "")):
        with pytest.raises(ValidationError):
            model.model_validate({"answer": bad, "reason": "x"})
    assert answer_model(SURVEY.questions[0]) is answer_model(
        SURVEY.questions[0].model_copy(update={"id": "other"})
    )
    assert "reason" not in answer_model(SURVEY.questions[0], reason_chars=0).model_fields


def test_out_of_range_answers_are_retried_then_recorded_as_failures() -> None:
    twin = scripted({"answer": 9, "reason": "x"})  # always out of the 1-5 range
    with use_models({"twin": twin}):
        record = ask_question(PERSON, SURVEY, SURVEY.question("lik"))
    assert len(twin.calls) == 3  # LLM_STRUCTURED_ATTEMPTS
    assert record.status == "failed" and record.value is None
    assert "no valid" in (record.error or "") and record.raw == '{"answer": 9, "reason": "x"}'
    # The retry showed the validation problem to the model.
    assert "invalid" in str(twin.calls[1]["messages"][-1].content)


def test_malformed_then_valid_answer_is_kept() -> None:
    twin = scripted("Sure! I think about 4", '```json\n{"answer": 4, "reason": "mostly agree"}\n```')
    with use_models({"twin": twin}):
        record = ask_question(PERSON, SURVEY, SURVEY.question("lik"))
    assert record.status == "ok" and record.value == 4 and record.reason == "mostly agree"
    prompt = str(twin.calls[0]["messages"][1].content)
    assert (
        "[lik] Agree?" in prompt
        and "Options: 1 = 1; 2 = 2" in prompt
        and "Answer with one option number." in prompt
    )


def test_server_errors_propagate_for_the_batch_to_retry() -> None:
    with use_models({"twin": scripted(ModelUnavailableError("down"))}), pytest.raises(ModelUnavailableError):
        ask_question(PERSON, SURVEY, SURVEY.question("pct"))


def test_questionnaire_model_has_one_field_per_question_id() -> None:
    model = questionnaire_model(SURVEY.questions)
    schema = model.model_json_schema()
    assert list(schema["properties"]) == ["lik", "pct", "num", "open"]
    parsed = model.model_validate(
        {"lik": {"answer": 2, "reason": "a"}, "pct": {"answer": 30, "reason": "b"},
         "num": {"answer": 7, "reason": "c"}, "open": {"answer": "Because.", "reason": ""}}
    )  # fmt: skip
    assert parsed.q002.answer == 7  # type: ignore[attr-defined]


def _all_valid() -> dict:
    return {
        "lik": {"answer": 5, "reason": "yes"},
        "pct": {"answer": 70, "reason": "most"},
        "num": {"answer": 3, "reason": "few"},
        "open": {"answer": "It helps.", "reason": ""},
    }


def test_per_person_one_call_for_the_whole_questionnaire() -> None:
    twin = scripted(_all_valid())
    with use_models({"twin": twin}):
        records = ask_questionnaire(PERSON, SURVEY, SURVEY.questions)
    assert len(twin.calls) == 1
    assert [(r.question_id, r.status, r.value) for r in records] == [
        ("lik", "ok", 5), ("pct", "ok", 70), ("num", "ok", 3), ("open", "ok", "It helps."),
    ]  # fmt: skip
    assert all(r.mode == "per_person" for r in records)


def test_per_person_answer_only_schema_is_flat() -> None:
    model = questionnaire_model(SURVEY.questions, reason_chars=0)
    schema = model.model_json_schema()
    assert schema["properties"]["lik"] == {"enum": [1, 2, 3, 4, 5], "type": "integer"}
    twin = scripted(
        {"lik": 9, "pct": 70, "num": 3, "open": "Yes."},  # lik out of range three times
        {"lik": 9, "pct": 70, "num": 3, "open": "Yes."},
        {"lik": 9, "pct": 70, "num": 3, "open": "Yes."},
        {"answer": 2},
    )
    with use_models({"twin": twin}):
        records = ask_questionnaire(PERSON, SURVEY, SURVEY.questions, reason_chars=0)
    assert "each with the answer only" in str(twin.calls[0]["messages"][1].content)
    assert [(r.question_id, r.value, r.mode) for r in records] == [
        ("lik", 2, "per_person_fallback"), ("pct", 70, "per_person_salvaged"),
        ("num", 3, "per_person_salvaged"), ("open", "Yes.", "per_person_salvaged"),
    ]  # fmt: skip


def test_per_person_salvages_valid_fields_and_asks_the_rest_alone() -> None:
    bad = {**_all_valid(), "pct": {"answer": 250, "reason": "lots"}}
    twin = scripted(bad, bad, bad, {"answer": 40, "reason": "some"})
    with use_models({"twin": twin}):
        records = ask_questionnaire(PERSON, SURVEY, SURVEY.questions)
    assert len(twin.calls) == 4  # three attempts at the whole object, one for the invalid field
    by_id = {r.question_id: r for r in records}
    assert by_id["pct"].value == 40 and by_id["pct"].mode == "per_person_fallback"
    assert by_id["lik"].value == 5 and by_id["lik"].mode == "per_person_salvaged"


def test_per_person_without_fallback_records_the_invalid_field_as_failed() -> None:
    bad = {**_all_valid(), "num": {"answer": 99, "reason": "x"}}
    with use_models({"twin": scripted(bad)}):
        records = ask_questionnaire(PERSON, SURVEY, SURVEY.questions, fallback=False)
    by_id = {r.question_id: r for r in records}
    assert by_id["num"].status == "failed" and by_id["num"].value is None
    assert "num" in (by_id["num"].error or "")
    assert [r.status for r in records].count("ok") == 3


def test_grid_rows_share_their_stem_and_korean_reasons() -> None:
    survey = load_survey(REPO_ROOT / "data" / "twin2k" / "questions.json")
    rows = [
        q
        for q in survey.questions
        if q.block == "probability_matching" and q.condition_arm == "cards_problem_1"
    ]
    text = render_questionnaire(rows, "en")
    assert text.count("A deck with 10 cards") == 1 and text.count("Options: 1 = 1; 2 = 2") == 1
    assert "[prob_match_cards_shuffle_10] shuffle #10" in text
    ko = survey_from_data(
        {"id": "k", "language": "ko", "questions": [{"id": "a", "type": "open", "text": "왜?"}]}
    )
    twin = scripted({"answer": "편해서요.", "reason": "편리함"})
    with use_models({"twin": twin}):
        record = ask_question(PERSON, ko, ko.questions[0])
    assert record.value == "편해서요."
    assert "Korean" in str(twin.calls[0]["messages"][1].content)
