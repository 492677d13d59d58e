"""Surveys as data: the twin2k item file round trip, templates, likert defaults, clear validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personagraph.serving.settings import REPO_ROOT
from personagraph.twins.surveys import (
    SurveyError,
    assign_arms,
    list_templates,
    load_survey,
    save_survey,
    survey_from_data,
    to_native,
    to_twin2k,
)

TWIN2K_QUESTIONS = REPO_ROOT / "data" / "twin2k" / "questions.json"


def test_twin2k_file_loads_as_is_and_round_trips(tmp_path: Path) -> None:
    original = json.loads(TWIN2K_QUESTIONS.read_text(encoding="utf-8"))
    survey = load_survey(TWIN2K_QUESTIONS)
    assert survey.format == "twin2k" and len(survey.questions) == 58
    types = {q.source_type: q.type for q in survey.questions}
    assert types == {
        "likert": "likert", "binary_choice": "binary_choice", "slider_percent": "slider_percent",
        "single_choice_ordinal": "single_choice", "numeric_open": "numeric",
    }  # fmt: skip
    framing = survey.question("framing_gain")
    assert (framing.design, framing.condition_group, framing.condition_arm) == (
        "between",
        "asian_disease",
        "gain",
    )
    estimate = survey.question("anchor_africa_low12_estimate")
    assert estimate.scale_min == 0 and estimate.scale_max is None and not estimate.integer
    assert estimate.accuracy_transform is not None and estimate.accuracy_transform["type"] == "decile"
    # Back to the twin2k format: identical, key order included; and through a file.
    back = to_twin2k(survey)
    assert back == original
    assert list(back) == list(original) and all(
        list(a) == list(b) for a, b in zip(back["items"], original["items"], strict=True)
    )
    saved = save_survey(survey, tmp_path / "copy.json")
    assert json.loads(saved.read_text(encoding="utf-8")) == original


def test_arms_questions_for_and_seeded_assignment() -> None:
    survey = load_survey(TWIN2K_QUESTIONS)
    groups = survey.condition_groups()
    assert groups["less_is_more"] == ["A", "B", "C"]
    arms = assign_arms(survey, "42", seed=3)
    assert arms == assign_arms(survey, "42", seed=3)
    assert set(arms) == set(groups) and all(arms[g] in groups[g] for g in groups)
    shown = survey.questions_for(arms)
    for q in shown:
        assert q.design == "within" or arms[q.condition_group] == q.condition_arm  # type: ignore[index]
    assert not any(
        q.condition_group == "asian_disease" and q.condition_arm != arms["asian_disease"] for q in shown
    )
    # Over many people every arm is used.
    seen = {assign_arms(survey, str(i), seed=0)["less_is_more"] for i in range(60)}
    assert seen == {"A", "B", "C"}


@pytest.mark.parametrize("path", list_templates(), ids=lambda p: p.name)
def test_shipped_templates_load_and_round_trip(path: Path, tmp_path: Path) -> None:
    survey = load_survey(path)
    assert {q.type for q in survey.questions} >= {
        "likert",
        "single_choice",
        "binary_choice",
        "slider_percent",
        "open",
    }
    for suffix in (".yaml", ".json"):
        again = load_survey(save_survey(survey, tmp_path / f"copy{suffix}"))
        assert again.model_dump(exclude={"id"}) == survey.model_dump(exclude={"id"})


def test_templates_include_korean_english_and_brand() -> None:
    names = {p.stem for p in list_templates()}
    assert {"tam_en", "tam_ko", "brand_en"} <= names
    ko = load_survey(next(p for p in list_templates() if p.stem == "tam_ko"))
    assert ko.language == "ko" and ko.question("pu1").options[0].label == "전혀 그렇지 않다"  # type: ignore[index]
    brand = load_survey(next(p for p in list_templates() if p.stem == "brand_en"))
    assert brand.condition_groups() == {"price_framing": ["regular", "discount"]}
    nps = brand.question("nps")
    assert nps.codes == list(range(0, 11)) and nps.options[0].label == "Not at all likely"  # type: ignore[index]


def test_likert_defaults_points_and_labels() -> None:
    survey = survey_from_data(
        {
            "questions": [
                {"id": "a", "type": "likert", "text": "Default scale"},
                {
                    "id": "b",
                    "type": "likert",
                    "text": "Five labelled",
                    "labels": ["no", "-", "meh", "+", "yes"],
                },
                {
                    "id": "c",
                    "type": "likert",
                    "text": "Ten points",
                    "points": 10,
                    "labels": {1: "low", 10: "high"},
                },
                {"id": "d", "type": "single_choice", "text": "Pick", "options": ["x", "y", "z"]},
                {"id": "e", "type": "numeric", "text": "Age", "min": 18, "max": 99},
                {"id": "f", "type": "slider_percent", "text": "Share"},
                {"id": "g", "type": "open", "text": "Why?"},
            ]
        }
    )
    a, b, c, d, e, f, g = survey.questions
    assert a.codes == [1, 2, 3, 4, 5, 6, 7] and a.options[0].label == "1"  # type: ignore[index]
    assert b.codes == [1, 2, 3, 4, 5] and b.options[4].label == "yes"  # type: ignore[index]
    assert c.codes == list(range(1, 11)) and c.options[9].label == "high" and c.options[4].label == "5"  # type: ignore[index]
    assert d.codes == [1, 2, 3] and d.ordinal is False
    assert (e.scale_min, e.scale_max, f.scale_min, f.scale_max) == (18, 99, 0, 100)
    assert g.options is None
    assert survey_from_data(to_native(survey)).model_dump() == survey.model_dump()


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ({"id": "q1", "type": "scale", "text": "x"}, "question 'q1' field 'type': 'scale' is not allowed; allowed: likert"),
        ({"id": "q2", "type": "binary_choice", "text": "x", "options": ["a", "b", "c"]},
         "question 'q2': field 'options': binary_choice needs exactly 2 options"),
        ({"id": "q3", "type": "single_choice", "text": "x", "options": ["only"]},
         "question 'q3': field 'options': a choice question needs at least 2 options"),
        ({"id": "q4", "type": "likert", "text": "x", "points": 1}, "question 'q4' field 'points': expected an integer >= 2"),
        ({"id": "q5", "type": "likert", "text": "x", "labels": ["a", "b"], "points": 5},
         "question 'q5' field 'labels': 2 labels for 5 points"),
        ({"id": "q6", "type": "numeric", "text": "x", "min": 10, "max": 1},
         "question 'q6': field 'scale_min': 10.0 is above scale_max 1.0"),
        ({"id": "q7", "type": "open", "text": ""}, "question 'q7': field 'text': String should have at least 1 character"),
        ({"id": "q8", "type": "binary_choice", "text": "x", "options": ["a", "b"], "design": "between"},
         "question 'q8': field 'condition_group': between-subject questions need condition_group"),
        ({"id": "bad id", "type": "open", "text": "x"}, "question 'bad id': field 'id': String should match pattern"),
        ({"id": "q9", "type": "open", "text": "x", "colour": "red"}, "question 'q9': field 'colour': Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_validation_errors_name_question_and_field(question: dict, message: str) -> None:
    with pytest.raises(SurveyError) as info:
        survey_from_data({"questions": [{"id": "ok", "type": "open", "text": "fine"}, question]})
    assert message in str(info.value)


def test_survey_level_errors() -> None:
    with pytest.raises(SurveyError, match="duplicate question id 'a'"):
        survey_from_data(
            {
                "questions": [
                    {"id": "a", "type": "open", "text": "x"},
                    {"id": "a", "type": "open", "text": "y"},
                ]
            }
        )
    with pytest.raises(SurveyError, match="field 'questions': expected a non-empty list"):
        survey_from_data({"title": "empty"})
    with pytest.raises(SurveyError, match="question 'x' field 'answer_type': 'ranking' is not allowed"):
        survey_from_data({"items": [{"id": "x", "answer_type": "ranking", "question_text": "?"}]})
    with pytest.raises(SurveyError, match="survey field 'colour': not allowed"):
        survey_from_data({"colour": 1, "questions": [{"id": "a", "type": "open", "text": "x"}]})


def test_yaml_and_json_files(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "id: s1\nquestions:\n  - {id: q, type: binary_choice, text: 'Go on', options: ['Yes', 'No']}\n"
    )
    assert load_survey(path).question("q").codes == [1, 2]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SurveyError, match="not valid JSON"):
        load_survey(bad)
    with pytest.raises(SurveyError, match="survey file not found"):
        load_survey(tmp_path / "missing.yaml")
