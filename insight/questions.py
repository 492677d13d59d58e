"""A marketer's question to the insight job, and how its intent is routed: checked before any work."""

from __future__ import annotations

from typing import Any, Literal, cast

from personagraph.serving.text import check_text

RouterMode = Literal["hybrid", "model", "keywords"]
ROUTER_MODES: tuple[RouterMode, ...] = ("hybrid", "model", "keywords")
MAX_QUESTION_CHARS = 1000


class InvalidQuestionError(ValueError):
    """A question or router mode that cannot be answered; the message names the field."""


def validate_question(question: Any, max_chars: int = MAX_QUESTION_CHARS) -> str:
    if not isinstance(question, str) or not question.strip():
        raise InvalidQuestionError("question: must be a non-empty string")
    if len(question) > max_chars:
        raise InvalidQuestionError(f"question: at most {max_chars} characters (got {len(question)})")
    check_text(question, "question", InvalidQuestionError)
    return question.strip()


def validate_router_mode(mode: Any) -> RouterMode:
    if mode not in ROUTER_MODES:
        raise InvalidQuestionError(f"router_mode: {mode!r} is not one of {', '.join(ROUTER_MODES)}")
    return cast(RouterMode, mode)
