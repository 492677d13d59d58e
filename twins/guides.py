"""Interview guides as data (JSON or YAML): the questions an interview asks, in order.

    id: ai_at_work
    title: AI at work
    language: en                 # the twin answers in this language
    instructions: ...            # context the twin is given (optional)
    max_followups: 2             # default follow-ups per question (the run may set a lower cap)
    questions:
      - id: q1
        text: How do you use AI tools in your work today?
        goal: concrete tasks, frequency, feelings   # optional, guides the interviewer's follow-ups
        max_followups: 1                            # optional, this question only

Validation errors name the question id and the field. Limits as for surveys (settings):
SURVEY_MAX_BYTES, SURVEY_MAX_QUESTIONS, QUESTION_MAX_CHARS; YAML anchors and aliases are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from personagraph.serving.safe_yaml import UserDataError, check_size, load_json, load_yaml, read_text_file
from personagraph.serving.settings import get_settings


class GuideError(ValueError):
    """An interview guide is invalid; the message names the question id and the field."""


class GuideQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    text: str = Field(min_length=1)
    goal: str = ""
    max_followups: int | None = Field(default=None, ge=0, le=10)


class InterviewGuide(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default="interview", pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    title: str = ""
    language: str = "en"
    instructions: str = ""
    max_followups: int = Field(default=2, ge=0, le=10)
    questions: list[GuideQuestion] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> InterviewGuide:
        ids = [q.id for q in self.questions]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"questions: duplicate question id {dupes[0]!r}")
        return self


def guide_from_data(data: Any, *, default_id: str = "interview") -> InterviewGuide:
    if isinstance(data, list):
        data = {"questions": data}
    if not isinstance(data, dict):
        raise GuideError("guide: expected a mapping with 'questions'")
    raw = data.get("questions")
    if not isinstance(raw, list) or not raw:
        raise GuideError("guide field 'questions': expected a non-empty list")
    limit = get_settings().survey_max_questions
    if len(raw) > limit:
        raise GuideError(
            f"guide field 'questions': {len(raw)} questions; the maximum is {limit} (SURVEY_MAX_QUESTIONS)"
        )
    questions = []
    for position, item in enumerate(raw, start=1):
        if isinstance(item, str):
            item = {"id": f"q{position}", "text": item}
        if not isinstance(item, dict):
            raise GuideError(f"question #{position}: expected a mapping or a string")
        qid = str(item.get("id") or f"#{position}")
        try:
            questions.append(GuideQuestion.model_validate({"id": f"q{position}", **item}))
        except ValidationError as exc:
            problems = "; ".join(f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
            raise GuideError(f"question {qid!r}: {problems}") from None
    try:
        guide = InterviewGuide.model_validate({"id": default_id, **data, "questions": questions})
    except ValidationError as exc:
        problems = "; ".join(f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
        raise GuideError(f"guide {problems}") from None
    return check_text_limits(guide)


def check_text_limits(guide: InterviewGuide) -> InterviewGuide:
    """GuideError naming the question and field of the first text over QUESTION_MAX_CHARS."""
    limit = get_settings().question_max_chars
    texts = [("guide", "title", guide.title), ("guide", "instructions", guide.instructions),
             ("guide", "language", guide.language)]  # fmt: skip
    for q in guide.questions:
        texts += [(f"question {q.id!r}", "text", q.text), (f"question {q.id!r}", "goal", q.goal)]
    for where, field, text in texts:
        if len(text) > limit:
            raise GuideError(
                f"{where} field '{field}': is {len(text)} characters; the maximum is {limit} (QUESTION_MAX_CHARS)"
            )
    return guide


def guide_data_from_text(text: str, *, as_json: bool = False, field: str = "guide") -> Any:
    """The parsed data of guide text (YAML, which includes JSON; or strict JSON with `as_json`): at
    most SURVEY_MAX_BYTES, no YAML anchors or aliases; GuideError naming `field` otherwise."""
    try:
        check_size(text, field, get_settings().survey_max_bytes, "SURVEY_MAX_BYTES")
        return load_json(text, field) if as_json else load_yaml(text, field)
    except UserDataError as exc:
        raise GuideError(str(exc)) from None


def guide_from_text(text: str, *, default_id: str = "interview") -> InterviewGuide:
    """An interview guide from JSON or YAML text, with the limits above."""
    return guide_from_data(guide_data_from_text(text), default_id=default_id)


def load_guide(path: str | Path) -> InterviewGuide:
    path = Path(path).expanduser()
    if not path.is_file():
        raise GuideError(f"interview guide not found: {path}")
    try:
        text = read_text_file(path, get_settings().survey_max_bytes, "guide", "SURVEY_MAX_BYTES")
    except UserDataError as exc:
        raise GuideError(str(exc)) from None
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    return guide_from_data(guide_data_from_text(text, as_json=not is_yaml), default_id=path.stem)
