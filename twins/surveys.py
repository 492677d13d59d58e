"""Surveys as data: questions with a type, wording, options or range, and an optional between-subject arm.

Native format (JSON or YAML):

    id: tam_en
    title: Technology acceptance
    language: en                       # the twins write their reasons in this language
    instructions: ...                  # optional, shown before the questions
    questions:
      - {id: pu1, type: likert, text: "...", points: 7, labels: {1: Strongly disagree, 7: Strongly agree}}
      - {id: plan, type: single_choice, text: "...", options: [Basic, Plus, Pro]}
      - {id: pay, type: binary_choice, text: "...", options: ["Yes", "No"]}
      - {id: share, type: slider_percent, text: "..."}
      - {id: minutes, type: numeric, text: "...", min: 0, max: 600, integer: true}
      - {id: why, type: open, text: "..."}
      - {id: price_a, ..., design: between, condition_group: price, condition_arm: a}

Types: `likert` (any number of points, default 1-7, labels for some or all points), `single_choice`,
`binary_choice` (exactly two options), `slider_percent` (0-100), `numeric` (optional range), `open`.
Option codes are 1-based positions unless given.

The Twin-2K-500 item file (`data/twin2k/questions.json`: `{"items": [...]}` with `answer_type`
likert, binary_choice, slider_percent, single_choice_ordinal, numeric_open) loads as-is and
writes back unchanged (`to_twin2k`). Validation errors name the question id and the field.

Limits (settings): SURVEY_MAX_BYTES per file or text, SURVEY_MAX_QUESTIONS, QUESTION_MAX_CHARS per
text (question, stem, option label, title, instructions), QUESTION_MAX_OPTIONS per question. YAML
anchors and aliases are refused (serving/safe_yaml.py), so a small file cannot expand in memory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from personagraph.serving.safe_yaml import UserDataError, check_size, load_json, load_yaml, read_text_file
from personagraph.serving.settings import get_settings

QuestionType = Literal["likert", "single_choice", "binary_choice", "slider_percent", "numeric", "open"]
QUESTION_TYPES: tuple[str, ...] = (
    "likert",
    "single_choice",
    "binary_choice",
    "slider_percent",
    "numeric",
    "open",
)
CHOICE_TYPES = ("likert", "single_choice", "binary_choice")

# Twin-2K-500 answer types -> (type, ordinal)
TWIN2K_TYPES: dict[str, tuple[str, bool]] = {
    "likert": ("likert", True),
    "binary_choice": ("binary_choice", False),
    "slider_percent": ("slider_percent", True),
    "single_choice_ordinal": ("single_choice", True),
    "numeric_open": ("numeric", True),
}
# Fields of a twin2k item, in file order; the ones not mapped onto Question live in `extra`.
TWIN2K_ITEM_KEYS = (
    "id", "block", "paper_task", "design", "condition_group", "condition_arm", "question_text", "stem",
    "row_label", "answer_type", "options", "scale_min", "scale_max", "accuracy_min", "accuracy_max",
    "accuracy_transform",
)  # fmt: skip


class SurveyError(ValueError):
    """A survey file is invalid; the message names the question id and the field."""


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: int
    label: str = Field(min_length=1)


class Question(BaseModel):
    """One question, normalised: choice questions always carry their options (codes and labels)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    type: QuestionType
    text: str = Field(min_length=1)
    options: list[Option] | None = None
    scale_min: float | None = None
    scale_max: float | None = None
    integer: bool = Field(default=True, description="numeric: whole numbers only.")
    ordinal: bool = Field(default=True, description="Codes are ordered (scored by distance).")
    required: bool = True
    block: str | None = None
    paper_task: str | None = None
    design: Literal["within", "between"] = "within"
    condition_group: str | None = None
    condition_arm: str | None = None
    stem: str | None = None
    row_label: str | None = None
    accuracy_min: float | None = None
    accuracy_max: float | None = None
    accuracy_transform: dict[str, Any] | None = None
    source_type: str | None = Field(default=None, description="The answer type in the source file.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Other source fields, kept as they are.")

    @model_validator(mode="after")
    def _consistent(self) -> Question:
        if self.type in CHOICE_TYPES:
            if not self.options or len(self.options) < 2:
                raise ValueError("options: a choice question needs at least 2 options")
            if self.type == "binary_choice" and len(self.options) != 2:
                raise ValueError(f"options: binary_choice needs exactly 2 options, got {len(self.options)}")
            codes = [o.code for o in self.options]
            if len(set(codes)) != len(codes):
                raise ValueError(f"options: duplicate codes {codes}")
        elif self.options:
            raise ValueError(f"options: not allowed for type {self.type}")
        if self.type == "slider_percent":
            self.scale_min = 0 if self.scale_min is None else self.scale_min
            self.scale_max = 100 if self.scale_max is None else self.scale_max
        if self.type in CHOICE_TYPES and self.options:
            self.scale_min = min(o.code for o in self.options) if self.scale_min is None else self.scale_min
            self.scale_max = max(o.code for o in self.options) if self.scale_max is None else self.scale_max
        if self.scale_min is not None and self.scale_max is not None and self.scale_min > self.scale_max:
            raise ValueError(f"scale_min: {self.scale_min} is above scale_max {self.scale_max}")
        if self.design == "between" and not (self.condition_group and self.condition_arm):
            raise ValueError(
                "condition_group: between-subject questions need condition_group and condition_arm"
            )
        return self

    @property
    def codes(self) -> list[int]:
        return [o.code for o in self.options or []]

    @property
    def scored(self) -> bool:
        """Whether answers are numbers that can be compared with real answers."""
        return self.type != "open"


class Survey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default="survey", pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    title: str = ""
    language: str = "en"
    instructions: str = ""
    questions: list[Question] = Field(min_length=1)
    format: Literal["native", "twin2k"] = "native"
    meta: dict[str, Any] = Field(
        default_factory=dict, description="Other top-level fields of the source file."
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> Survey:
        seen: set[str] = set()
        for q in self.questions:
            if q.id in seen:
                raise ValueError(f"questions: duplicate question id {q.id!r}")
            seen.add(q.id)
        return self

    def question(self, question_id: str) -> Question:
        for q in self.questions:
            if q.id == question_id:
                return q
        raise KeyError(question_id)

    def condition_groups(self) -> dict[str, list[str]]:
        """Between-subject groups and their arms, in question order."""
        groups: dict[str, list[str]] = {}
        for q in self.questions:
            if q.design == "between" and q.condition_group and q.condition_arm:
                arms = groups.setdefault(q.condition_group, [])
                if q.condition_arm not in arms:
                    arms.append(q.condition_arm)
        return groups

    def questions_for(self, arms: dict[str, str]) -> list[Question]:
        """The questions a person sees: every within item and only their own arm of each group."""
        return [
            q
            for q in self.questions
            if q.design == "within"
            or (q.condition_group in arms and arms[q.condition_group] == q.condition_arm)
        ]


# --- native format ---------------------------------------------------------------------------------


def _check_option_count(qid: str, field: str, count: int) -> None:
    limit = get_settings().question_max_options
    if count > limit:
        raise SurveyError(
            f"question {qid!r} field '{field}': {count} options; the maximum is {limit} (QUESTION_MAX_OPTIONS)"
        )


def _options_from(value: Any, qid: str) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise SurveyError(
            f"question {qid!r} field 'options': expected a list of labels or {{code, label}} objects"
        )
    _check_option_count(qid, "options", len(value))
    out = []
    for position, item in enumerate(value, start=1):
        out.append({"code": position, "label": str(item)} if not isinstance(item, dict) else dict(item))
    return out


def _likert_options(raw: dict[str, Any], qid: str) -> list[dict[str, Any]]:
    low = raw.pop("min", raw.pop("scale_min", None))
    high = raw.pop("max", raw.pop("scale_max", None))
    points = raw.pop("points", None)
    labels = raw.pop("labels", None)
    if isinstance(labels, list) and points is None and low is None and high is None:
        points = len(labels)
    for field, value in (("min", low), ("max", high)):
        # Checked before any arithmetic: a mapping or a string here would raise a TypeError.
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise SurveyError(f"question {qid!r} field '{field}': expected a whole number, got {value!r}")
    low = 1 if low is None else low
    if points is not None:
        if not isinstance(points, int) or isinstance(points, bool) or points < 2:
            raise SurveyError(f"question {qid!r} field 'points': expected an integer >= 2, got {points!r}")
        high = low + points - 1 if high is None else high
    high = low + 6 if high is None else high
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) or high <= low:
        raise SurveyError(
            f"question {qid!r} field 'min'/'max': expected whole numbers min < max, got {low}..{high}"
        )
    if points is not None and high - low + 1 != points:
        raise SurveyError(f"question {qid!r} field 'points': {points} points do not fit {low}..{high}")
    _check_option_count(qid, "points", high - low + 1)
    codes = list(range(low, high + 1))
    names: dict[int, str] = {}
    if isinstance(labels, list):
        if len(labels) != len(codes):
            raise SurveyError(
                f"question {qid!r} field 'labels': {len(labels)} labels for {len(codes)} points"
            )
        names = {code: str(label) for code, label in zip(codes, labels, strict=True)}
    elif isinstance(labels, dict):
        for key, label in labels.items():
            try:
                code = int(key)
            except (TypeError, ValueError, OverflowError):  # OverflowError: .inf
                raise SurveyError(
                    f"question {qid!r} field 'labels': key {key!r} is not a point number"
                ) from None
            if code not in codes:
                raise SurveyError(f"question {qid!r} field 'labels': point {code} outside {low}..{high}")
            names[code] = str(label)
    elif labels is not None:
        raise SurveyError(f"question {qid!r} field 'labels': expected a list or a {{point: label}} mapping")
    return [{"code": c, "label": names.get(c, str(c))} for c in codes]


def _native_question(raw: Any, position: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SurveyError(f"question #{position}: expected a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    qid = str(raw.get("id") or f"#{position}")
    kind = raw.get("type", raw.pop("answer_type", None))
    if not isinstance(kind, str):  # a list or mapping is unhashable: `in` would raise a TypeError
        raise SurveyError(
            f"question {qid!r} field 'type': expected one of {', '.join(QUESTION_TYPES)}, got {kind!r}"
        )
    if kind in TWIN2K_TYPES and kind not in QUESTION_TYPES:
        raw.setdefault("source_type", kind)
        kind, ordinal = TWIN2K_TYPES[kind]
        raw.setdefault("ordinal", ordinal)
    if kind not in QUESTION_TYPES:
        raise SurveyError(
            f"question {qid!r} field 'type': {kind!r} is not allowed; allowed: {', '.join(QUESTION_TYPES)}"
        )
    raw["type"] = kind
    if "question_text" in raw and "text" not in raw:
        raw["text"] = raw.pop("question_text")
    if kind == "likert" and raw.get("options") is None:
        raw["options"] = _likert_options(raw, qid)
    else:
        raw["options"] = _options_from(raw.get("options"), qid)
        if "min" in raw:
            raw["scale_min"] = raw.pop("min")
        if "max" in raw:
            raw["scale_max"] = raw.pop("max")
    if kind == "single_choice":
        raw.setdefault("ordinal", False)
    return raw


def _validate_question(raw: dict[str, Any], position: int) -> Question:
    qid = str(raw.get("id") or f"#{position}")
    try:
        return Question.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(question)"
            msg = err["msg"].removeprefix("Value error, ")
            if field == "(question)" and ":" in msg:
                field, _, msg = msg.partition(":")
            problems.append(f"field '{field}': {msg.strip()}")
        raise SurveyError(f"question {qid!r}: " + "; ".join(problems)) from None


def _check_question_count(field: str, count: int) -> None:
    limit = get_settings().survey_max_questions
    if count > limit:
        raise SurveyError(
            f"survey field '{field}': {count} questions; the maximum is {limit} (SURVEY_MAX_QUESTIONS)"
        )


def check_text_limits(survey: Survey) -> Survey:
    """SurveyError naming the question and field of the first text over QUESTION_MAX_CHARS."""
    limit = get_settings().question_max_chars
    texts: list[tuple[str, str, str | None]] = [
        ("survey", "title", survey.title), ("survey", "instructions", survey.instructions),
        ("survey", "language", survey.language),
    ]  # fmt: skip
    for q in survey.questions:
        where = f"question {q.id!r}"
        texts += [(where, "text", q.text), (where, "stem", q.stem), (where, "row_label", q.row_label)]
        texts += [(where, f"options[{i}].label", o.label) for i, o in enumerate(q.options or [])]
    for where, field, text in texts:
        if text is not None and len(text) > limit:
            raise SurveyError(
                f"{where} field '{field}': is {len(text)} characters; the maximum is {limit} (QUESTION_MAX_CHARS)"
            )
    return survey


def survey_from_data(data: Any, *, default_id: str = "survey") -> Survey:
    """A Survey from parsed JSON/YAML in the native or the Twin-2K-500 format."""
    if isinstance(data, list):
        data = {"questions": data}
    if not isinstance(data, dict):
        raise SurveyError("survey: expected a mapping with 'questions' (or a twin2k file with 'items')")
    if "items" in data and "questions" not in data:
        return check_text_limits(_from_twin2k(data, default_id))
    raw_questions = data.get("questions")
    if not isinstance(raw_questions, list) or not raw_questions:
        raise SurveyError("survey field 'questions': expected a non-empty list")
    _check_question_count("questions", len(raw_questions))
    questions = [_validate_question(_native_question(q, i), i) for i, q in enumerate(raw_questions, start=1)]
    top = {k: v for k, v in data.items() if k != "questions"}
    unknown = set(top) - {"id", "title", "language", "instructions", "meta"}
    if unknown:
        raise SurveyError(
            f"survey field {sorted(unknown, key=str)[0]!r}: not allowed; allowed: id, title, language, instructions, meta, questions"
        )
    try:
        return check_text_limits(Survey(questions=questions, **{"id": default_id, **top}))
    except ValidationError as exc:
        raise SurveyError(
            "survey " + "; ".join(f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
        ) from None


def _from_twin2k(data: dict[str, Any], default_id: str) -> Survey:
    items = data["items"]
    if not isinstance(items, list) or not items:
        raise SurveyError("survey field 'items': expected a non-empty list")
    _check_question_count("items", len(items))
    questions = []
    for position, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise SurveyError(f"item #{position}: expected a mapping")
        qid = str(item.get("id") or f"#{position}")
        answer_type = item.get("answer_type")
        if not isinstance(answer_type, str) or answer_type not in TWIN2K_TYPES:
            raise SurveyError(
                f"question {qid!r} field 'answer_type': {answer_type!r} is not allowed; allowed: {', '.join(TWIN2K_TYPES)}"
            )
        kind, ordinal = TWIN2K_TYPES[answer_type]
        mapped = {k: item.get(k) for k in TWIN2K_ITEM_KEYS if k not in ("question_text", "answer_type")}
        mapped.update(
            type=kind,
            ordinal=ordinal,
            text=item.get("question_text"),
            source_type=answer_type,
            design=item.get("design") or "within",
            integer=kind != "numeric",
            extra={k: v for k, v in item.items() if k not in TWIN2K_ITEM_KEYS},
        )
        questions.append(_validate_question(mapped, position))
    meta = {k: v for k, v in data.items() if k != "items"}
    return Survey(
        id=default_id, title=str(data.get("dataset") or default_id), language="en", questions=questions,
        format="twin2k", meta=meta,
    )  # fmt: skip


def to_twin2k(survey: Survey) -> dict[str, Any]:
    """The survey in the Twin-2K-500 item format (the inverse of loading a twin2k file)."""
    reverse = {(kind, ordinal): name for name, (kind, ordinal) in TWIN2K_TYPES.items()}
    items = []
    for q in survey.questions:
        answer_type = q.source_type or reverse.get((q.type, q.ordinal)) or q.type
        item: dict[str, Any] = {
            "id": q.id, "block": q.block, "paper_task": q.paper_task, "design": q.design,
            "condition_group": q.condition_group, "condition_arm": q.condition_arm, "question_text": q.text,
            "stem": q.stem, "row_label": q.row_label, "answer_type": answer_type,
            "options": [o.model_dump() for o in q.options] if q.options else None,
            "scale_min": _plain_number(q.scale_min), "scale_max": _plain_number(q.scale_max),
            "accuracy_min": _plain_number(q.accuracy_min), "accuracy_max": _plain_number(q.accuracy_max),
            "accuracy_transform": q.accuracy_transform,
        }  # fmt: skip
        item.update(q.extra)
        items.append(item)
    meta = dict(survey.meta)
    head = {
        k: meta.pop(k)
        for k in list(meta)
        if k in ("dataset", "answers_file", "answer_coding", "accuracy", "n_items")
    }
    return {**head, **{k: v for k, v in meta.items() if k != "skipped"}, "items": items,
            **({"skipped": meta["skipped"]} if "skipped" in meta else {})}  # fmt: skip


def _plain_number(value: float | None) -> float | int | None:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def to_native(survey: Survey) -> dict[str, Any]:
    """The survey in the native format (loads back to an equal Survey)."""
    data = survey.model_dump(exclude_defaults=True, exclude={"format"})
    data["id"] = survey.id
    for raw, q in zip(data["questions"], survey.questions, strict=True):
        if q.type == "single_choice":
            raw["ordinal"] = q.ordinal  # its default differs by type
    return data


def survey_data_from_text(text: str, *, as_json: bool = False, field: str = "survey") -> Any:
    """The parsed data of survey text (YAML, which includes JSON; or strict JSON with `as_json`):
    at most SURVEY_MAX_BYTES, no YAML anchors or aliases; SurveyError naming `field` otherwise."""
    try:
        check_size(text, field, get_settings().survey_max_bytes, "SURVEY_MAX_BYTES")
        return load_json(text, field) if as_json else load_yaml(text, field)
    except UserDataError as exc:
        raise SurveyError(str(exc)) from None


def survey_from_text(text: str, *, default_id: str = "survey") -> Survey:
    """A survey from JSON or YAML text (native or Twin-2K-500 format), with the limits above."""
    return survey_from_data(survey_data_from_text(text), default_id=default_id)


def load_survey(path: str | Path) -> Survey:
    """Load a survey from a JSON or YAML file (native or Twin-2K-500 format)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SurveyError(f"survey file not found: {path}")
    try:
        text = read_text_file(path, get_settings().survey_max_bytes, "survey", "SURVEY_MAX_BYTES")
    except UserDataError as exc:
        raise SurveyError(str(exc)) from None
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    return survey_from_data(survey_data_from_text(text, as_json=not is_yaml), default_id=path.stem)


def save_survey(survey: Survey, path: str | Path) -> Path:
    """Write a survey as JSON or YAML (by suffix), in its own format (twin2k surveys stay twin2k)."""
    path = Path(path)
    data = to_twin2k(survey) if survey.format == "twin2k" else to_native(survey)
    if path.suffix.lower() in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    else:
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def templates_dir() -> Path:
    from personagraph.serving.settings import get_settings

    return get_settings().data_dir / "surveys"


def list_templates() -> list[Path]:
    directory = templates_dir()
    return (
        sorted(p for p in directory.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
        if directory.is_dir()
        else []
    )


def assign_arms(survey: Survey, person_id: str, seed: int) -> dict[str, str]:
    """A reproducible random arm per between-subject group for one person (new surveys)."""
    import hashlib

    arms = {}
    for group, options in survey.condition_groups().items():
        digest = hashlib.sha256(f"{seed}|{survey.id}|{group}|{person_id}".encode()).digest()
        arms[group] = options[int.from_bytes(digest[:8], "big") % len(options)]
    return arms


def describe_types(questions: Sequence[Question]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for q in questions:
        counts[q.type] = counts.get(q.type, 0) + 1
    return counts
