"""Twins answering surveys with schema-constrained structured output, so every stored answer is valid.

For each question a pydantic model is built from the question itself: a `Literal` of the allowed
option codes, an integer or number with `ge`/`le` bounds, or free text, plus a short `reason`. The
model role `twin` is asked through `serving.models.structured` (constrained decoding, validation,
retries with the validation error). Two modes:

- `per_question`: one call per question;
- `per_person`: one call per person for the whole questionnaire (as the Twin-2K-500 paper did), with
  one field per question id. When that object is still invalid after the retries, the fields that
  are valid on their own are kept and the rest are asked one by one (or recorded as failures).

An answer that never validates is recorded as a failure (`status="failed"`, no value): a stored
value is always one the question allows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from personagraph.prompts import twins as prompts
from personagraph.prompts import untrusted
from personagraph.services.twins import context_fit
from personagraph.serving.models import StructuredOutputError, extract_json, structured
from personagraph.serving.settings import Role
from personagraph.serving.tracing import trace_scope
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import CHOICE_TYPES, Question, Survey

# distribution: one call per closed question reading token log-probabilities (distributions.py).
Mode = Literal["per_question", "per_person", "distribution"]
MODES: tuple[str, ...] = ("per_question", "per_person", "distribution")
AnswerValue = int | float | str


class CompactModel(BaseModel):
    """A model whose JSON schema has no titles (shorter prompts and grammars for small models)."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return _strip_titles(super().model_json_schema(*args, **kwargs))


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _strip_titles(v)
            for k, v in node.items()
            # "title" is metadata, except as the name of a property called "title".
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


class AnswerRecord(BaseModel):
    """One person's answer to one question, or the record that no valid answer was obtained."""

    person_id: str
    question_id: str
    status: Literal["ok", "failed"]
    value: AnswerValue | None = None
    reason: str = ""
    arm: str | None = None
    error: str | None = None
    raw: str | None = None
    mode: str = "per_question"
    seconds: float = 0.0
    # Closed questions answered from token log-probabilities (services/twins/distributions.py):
    # option code (as text) -> probability; and the call's token usage where the server reports it.
    distribution: dict[str, float] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


# --- answer models ----------------------------------------------------------------------------------


def _signature(q: Question) -> tuple[Any, ...]:
    if q.type in CHOICE_TYPES:
        return ("codes", tuple(q.codes))
    if q.type == "open":
        return ("open",)
    return (q.type, q.scale_min, q.scale_max, q.integer or q.type == "slider_percent")


def _value_type(signature: tuple[Any, ...]) -> Any:
    if signature[0] == "codes":
        return Literal[signature[1]]  # type: ignore[valid-type]
    if signature[0] == "open":
        return Annotated[str, Field(min_length=1, max_length=1000)]
    _, low, high, integer = signature
    bounds: dict[str, Any] = {}
    if low is not None:
        bounds["ge"] = int(low) if integer else low
    if high is not None:
        bounds["le"] = int(high) if integer else high
    return Annotated[int if integer else float, Field(**bounds)]


def _type_name(signature: tuple[Any, ...]) -> str:
    if signature[0] == "codes":
        return "Codes_" + "_".join(str(c).replace("-", "m") for c in signature[1])
    if signature[0] == "open":
        return "OpenText"

    def num(v: float | None) -> str:
        return (
            "x"
            if v is None
            else str(int(v) if float(v).is_integer() else v).replace("-", "m").replace(".", "p")
        )

    return f"{'Int' if signature[3] else 'Number'}_{num(signature[1])}_{num(signature[2])}"


@lru_cache(maxsize=512)
def _answer_model_for(signature: tuple[Any, ...], reason_chars: int) -> type[BaseModel]:
    fields: dict[str, Any] = {"answer": (_value_type(signature), ...)}
    name = _type_name(signature)
    if reason_chars > 0:
        fields["reason"] = (str, Field(max_length=reason_chars))
    else:
        name += "_NoReason"
    return create_model(name, __base__=CompactModel, **fields)  # type: ignore[call-overload, no-any-return]


def answer_model(question: Question, reason_chars: int = 160) -> type[BaseModel]:
    """`{answer, reason}` for one question; questions with the same allowed answers share a model."""
    return _answer_model_for(_signature(question), reason_chars)


def _field_name(index: int) -> str:
    return f"q{index:03d}"


def questionnaire_model(questions: Sequence[Question], reason_chars: int = 80) -> type[BaseModel]:
    """One field per question id (the JSON key is the id): an `{answer, reason}` object, or just
    the answer when `reason_chars` is 0 (the shortest output, as in the paper's answer-only prompts)."""
    fields: dict[str, Any] = {}
    for i, q in enumerate(questions):
        kind = answer_model(q, reason_chars) if reason_chars > 0 else _value_type(_signature(q))
        fields[_field_name(i)] = (kind, Field(alias=q.id))
    model = create_model(  # type: ignore[call-overload]
        "Questionnaire", __base__=CompactModel, **fields
    )
    model.model_config = ConfigDict(populate_by_name=True, title="Questionnaire")
    model.model_rebuild(force=True)
    return model  # type: ignore[no-any-return]


# --- prompts ----------------------------------------------------------------------------------------


def _language_name(language: str) -> str:
    return prompts.LANGUAGE_NAMES.get(language, language)


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def answer_instruction(q: Question, language: str) -> str:
    if q.type in CHOICE_TYPES:
        return prompts.ANSWER_CODES
    if q.type == "open":
        return prompts.ANSWER_OPEN.format(language_name=_language_name(language))
    low, high = _number(q.scale_min), _number(q.scale_max)
    if q.type == "slider_percent":
        return prompts.ANSWER_PERCENT.format(low=low, high=high)
    if q.integer and low and high:
        return prompts.ANSWER_RANGE_INT.format(low=low, high=high)
    bounds = " ".join(p for p in (f">= {low}" if low else "", f"<= {high}" if high else "") if p)
    whole = " (a whole number)" if q.integer else ""
    return prompts.ANSWER_NUMBER.format(bounds=(f" {bounds}" if bounds else "") + whole)


def options_line(q: Question) -> str:
    if not q.options:
        return ""
    return prompts.OPTIONS_LINE.format(options="; ".join(f"{o.code} = {o.label}" for o in q.options))


def render_question(q: Question, language: str, hint: str | None = None) -> str:
    lines = [f"[{q.id}] {q.text}"]
    if q.options:
        lines.append(options_line(q))
    lines.append(answer_instruction(q, language))
    if hint:
        lines.append(prompts.POPULATION_HINT.format(distribution=hint))
    return "\n".join(lines)


def render_questionnaire(
    questions: Sequence[Question], language: str, hints: Mapping[str, str] | None = None
) -> str:
    """Questions in order; consecutive grid rows sharing a stem are shown under it once."""
    hints = hints or {}
    parts: list[str] = []
    i = 0
    while i < len(questions):
        q = questions[i]
        group = [q]
        if q.stem and q.row_label:
            while (
                i + len(group) < len(questions)
                and questions[i + len(group)].stem == q.stem
                and questions[i + len(group)].row_label
            ):
                group.append(questions[i + len(group)])
        if len(group) == 1:
            parts.append(render_question(q, language, hints.get(q.id)))
        else:
            shared = len({(options_line(g), answer_instruction(g, language)) for g in group}) == 1
            lines = [str(q.stem)]
            if shared:
                if q.options:
                    lines.append(options_line(q))
                lines.append(answer_instruction(q, language))
            for g in group:
                lines.append(f"[{g.id}] {g.row_label}")
                if not shared:
                    lines += [x for x in (options_line(g), answer_instruction(g, language)) if x]
                if g.id in hints:
                    lines.append(prompts.POPULATION_HINT.format(distribution=hints[g.id]))
            parts.append("\n".join(lines))
        i += len(group)
    return "\n\n".join(parts)


def _intro(survey: Survey) -> str:
    return prompts.SURVEY_INTRO.format(
        title=survey.title or survey.id, instructions=survey.instructions
    ).strip()


def _reason_rule(survey: Survey, reason_chars: int) -> str:
    if reason_chars <= 0:
        return prompts.NO_REASON_RULE
    return prompts.REASON_RULE.format(
        reason_chars=reason_chars, language_name=_language_name(survey.language)
    )


def system_message(respondent: Respondent) -> SystemMessage:
    return SystemMessage(content=prompts.TWIN_SYSTEM.format(profile=fenced_profile(respondent)))


def fenced_profile(respondent: Respondent) -> str:
    """The respondent's profile as fenced data (an uploaded profile can carry instructions)."""
    return untrusted.fence(respondent.profile, "respondent profile", prompts.WHAT_PROFILE)


# --- asking -----------------------------------------------------------------------------------------


def _record(respondent: Respondent, q: Question, parsed: Any, mode: str, seconds: float) -> AnswerRecord:
    """An ok record from a validated `{answer, reason}` model, or from a bare validated value."""
    value = getattr(parsed, "answer") if isinstance(parsed, BaseModel) else parsed  # noqa: B009
    return AnswerRecord(
        person_id=respondent.id, question_id=q.id, status="ok", value=value,
        reason=str(getattr(parsed, "reason", "") or ""), arm=q.condition_arm, mode=mode, seconds=round(seconds, 3),
    )  # fmt: skip


def _failure(
    respondent: Respondent, q: Question, error: str, raw: str | None, mode: str, seconds: float
) -> AnswerRecord:
    return AnswerRecord(
        person_id=respondent.id, question_id=q.id, status="failed", error=error[:1000],
        raw=(raw or "")[:4000] or None, arm=q.condition_arm, mode=mode, seconds=round(seconds, 3),
    )  # fmt: skip


def ask_question(
    respondent: Respondent,
    survey: Survey,
    question: Question,
    *,
    role: Role = "twin",
    reason_chars: int = 160,
    hint: str | None = None,
    attempts: int | None = None,
    mode: str = "per_question",
) -> AnswerRecord:
    """One question, one call. Invalid output after the retries is a failure record; transport
    errors (`ModelUnavailableError`) are raised for the caller to retry or stop."""
    schema = answer_model(question, reason_chars)
    messages = [
        system_message(respondent),
        HumanMessage(
            content=prompts.ONE_QUESTION.format(
                intro=_intro(survey),
                question=render_question(question, survey.language, hint),
                reason_rule=_reason_rule(survey, reason_chars),
            )
        ),
    ]
    started = time.perf_counter()
    max_tokens = 80 + reason_chars // 2 + (400 if question.type == "open" else 0)
    try:
        with trace_scope("twin_survey"):
            parsed = structured(role, schema, messages, attempts=attempts, max_tokens=max_tokens)
    except StructuredOutputError as exc:
        return _failure(respondent, question, str(exc), exc.raw, mode, time.perf_counter() - started)
    return _record(respondent, question, parsed, mode, time.perf_counter() - started)


def ask_questionnaire(
    respondent: Respondent,
    survey: Survey,
    questions: Sequence[Question],
    *,
    role: Role = "twin",
    reason_chars: int = 80,
    hints: Mapping[str, str] | None = None,
    attempts: int | None = None,
    fallback: bool = True,
) -> list[AnswerRecord]:
    """All of a person's questions in one call (one field per question id).

    If the whole object stays invalid after the retries, each field that validates on its own is
    kept; the others are asked one by one (`fallback`) or recorded as failures.
    """
    if not questions:
        return []
    schema = questionnaire_model(questions, reason_chars)
    messages = questionnaire_messages(respondent, survey, questions, reason_chars, hints)
    max_tokens = QUESTIONNAIRE_BASE_TOKENS + sum(
        questionnaire_answer_tokens(q, reason_chars) for q in questions
    )
    started = time.perf_counter()
    try:
        with trace_scope("twin_survey"):
            parsed = structured(role, schema, messages, attempts=attempts, max_tokens=max_tokens)
    except StructuredOutputError as exc:
        return _salvage(
            respondent, survey, questions, exc, started, role, reason_chars, hints, attempts, fallback
        )
    seconds = (time.perf_counter() - started) / len(questions)
    return [
        _record(respondent, q, getattr(parsed, _field_name(i)), "per_person", seconds)
        for i, q in enumerate(questions)
    ]


QUESTIONNAIRE_BASE_TOKENS = 64  # the JSON object's braces and slack


def questionnaire_answer_tokens(q: Question, reason_chars: int) -> int:
    """The answer room one question needs in a questionnaire reply (its id, value and reason)."""
    per_answer = (16 + reason_chars // 2 if reason_chars > 0 else 6) + len(q.id) // 3 + 2
    return per_answer + (300 if q.type == "open" else 0)


def questionnaire_messages(
    respondent: Respondent,
    survey: Survey,
    questions: Sequence[Question],
    reason_chars: int,
    hints: Mapping[str, str] | None = None,
) -> list[BaseMessage]:
    return [
        SystemMessage(content=prompts.TWIN_SYSTEM_QUESTIONNAIRE),
        HumanMessage(
            content=prompts.ALL_QUESTIONS.format(
                intro=_intro(survey),
                n=len(questions),
                questions=render_questionnaire(questions, survey.language, hints),
                profile=fenced_profile(respondent),
                reason_rule=_reason_rule(survey, reason_chars),
                reply_format=prompts.EACH_WITH_REASON if reason_chars > 0 else prompts.EACH_ANSWER_ONLY,
            )
        ),
    ]


def plan_questionnaire(
    respondent: Respondent,
    survey: Survey,
    questions: Sequence[Question],
    *,
    role: Role = "twin",
    reason_chars: int = 80,
    hints: Mapping[str, str] | None = None,
    most: int | None = None,
) -> list[list[Question]]:
    """A person's questions split into per_person calls that fit the role's model context.

    Counted with the model's tokenizer: the rules, profile and schema instruction of every call;
    each question's wording, hint and part of the answer schema; and room for the answer twice
    (a retry after invalid output carries the previous reply and the error).
    """
    if not questions:
        return []
    count = context_fit.token_counter(role)
    fixed_messages = questionnaire_messages(respondent, survey, [], reason_chars)
    schema_base = json.dumps(questionnaire_model([], reason_chars).model_json_schema(), ensure_ascii=False)
    fixed = "\n".join(str(m.content) for m in fixed_messages) + schema_base + STRUCTURED_OVERHEAD_TEXT

    def question_text(q: Question) -> str:
        schema = questionnaire_model([q], reason_chars).model_json_schema()
        rendered = render_question(q, survey.language, (hints or {}).get(q.id))
        return rendered + context_fit.schema_part(schema, q.id) + json.dumps(schema.get("$defs", {}))

    return context_fit.plan_chunks(
        questions, fixed_text=fixed, question_text=question_text,
        answer_tokens=lambda q: 2 * questionnaire_answer_tokens(q, reason_chars),
        context=context_fit.context_window(role), count=count, most=most, reserve=RETRY_RESERVE_TOKENS,
    )  # fmt: skip


# What `structured` adds around the schema (counted, never sent), and room for a retry's error message.
STRUCTURED_OVERHEAD_TEXT = "Reply with one JSON object only, no prose, matching this JSON schema:\n"
RETRY_RESERVE_TOKENS = 2 * QUESTIONNAIRE_BASE_TOKENS + 96


def _validate_item(q: Question, item: Any, reason_chars: int) -> Any:
    """One questionnaire field validated on its own (raises `ValidationError`)."""
    if reason_chars > 0:
        return answer_model(q, reason_chars).model_validate(item)
    return TypeAdapter(_value_type(_signature(q))).validate_python(item, strict=True)


def _salvage(
    respondent: Respondent,
    survey: Survey,
    questions: Sequence[Question],
    exc: StructuredOutputError,
    started: float,
    role: Role,
    reason_chars: int,
    hints: Mapping[str, str] | None,
    attempts: int | None,
    fallback: bool,
) -> list[AnswerRecord]:
    try:
        data = json.loads(extract_json(exc.raw))
    except (json.JSONDecodeError, TypeError):
        data = None
    if not isinstance(data, dict):
        data = {}
    seconds = (time.perf_counter() - started) / len(questions)
    records = []
    for q in questions:
        item = data.get(q.id)
        try:
            parsed = _validate_item(q, item, reason_chars)
        except ValidationError as invalid:
            problem = "; ".join(e["msg"] for e in invalid.errors())
            if fallback:
                records.append(
                    ask_question(
                        respondent,
                        survey,
                        q,
                        role=role,
                        reason_chars=max(reason_chars, 0),
                        hint=(hints or {}).get(q.id),
                        attempts=attempts,
                        mode="per_person_fallback",
                    )  # fmt: skip
                )
            else:
                raw_item = json.dumps(item, ensure_ascii=False) if item is not None else exc.raw
                records.append(
                    _failure(respondent, q, f"{exc} | {q.id}: {problem}", raw_item, "per_person", seconds)
                )
            continue
        records.append(_record(respondent, q, parsed, "per_person_salvaged", seconds))
    return records
