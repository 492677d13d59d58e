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

Validation errors name the question id and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class GuideError(ValueError):
    """An interview guide is invalid; the message names the question id and the field."""


class GuideQuestion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    text: str = Field(min_length=1, max_length=2000)
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
        return InterviewGuide.model_validate({"id": default_id, **data, "questions": questions})
    except ValidationError as exc:
        problems = "; ".join(f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
        raise GuideError(f"guide {problems}") from None


def load_guide(path: str | Path) -> InterviewGuide:
    path = Path(path).expanduser()
    if not path.is_file():
        raise GuideError(f"interview guide not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise GuideError(f"{path}: cannot parse: {exc}") from exc
    return guide_from_data(data, default_id=path.stem)
