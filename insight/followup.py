"""Follow-up questions in an insight thread: "and in Korean?", "그 중 VIP는?", "why?".

A thread passes its last turn (question, answer, intent, scope) with the next question. A question
that reads as a follow-up (a follow-up word, or a request for another language) is resolved
against that turn with a small, explicit rule, so it stays deterministic and testable:

- it names segments or customers: those are the scope; with no intent words of its own it keeps
  the earlier segment intent ("전략은?" -> "그 중 VIP는?" is a VIP strategy question);
- it names nothing: it keeps the earlier intent and scope ("and in Korean?", "why?").

Anything else is a new question and is routed as before. Only the last turn is used: a thread is a
short conversation, not a memory.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from typing_extensions import TypedDict

from personagraph.insight.lexicon import KeywordGuess, intent_cues

Lang = Literal["ko", "en"]

# Intents a follow-up naming one segment may carry over (comparison needs two, summary none).
CARRIED_INTENTS = ("segment_profile", "strategy", "message_drafting")
MAX_PREVIOUS_ANSWER_CHARS = 800

_LANGUAGE_REQUESTS: dict[Lang, re.Pattern[str]] = {
    "ko": re.compile(r"\bin korean\b|\bkorean,? please\b|한국어로|한국말로|한글로", re.IGNORECASE),
    "en": re.compile(r"\bin english\b|\benglish,? please\b|영어로", re.IGNORECASE),
}
_FOLLOW_UP_EN = re.compile(
    r"^\s*(and|also|so|then|what about|how about|why|what else)\b"
    r"|\b(those|them|they|these|that segment|the same|more detail|in detail|tell me more|elaborate|explain)\b",
    re.IGNORECASE,
)
_FOLLOW_UP_KO = re.compile(
    r"그\s?중|그럼|그러면|그리고|그들|이들|그 고객|그 세그먼트|거기|그건|그거|왜|자세히|좀 더|더 알려|^\s*또"
)


class PreviousTurn(TypedDict, total=False):
    """The last turn of a thread, as the next question sees it."""

    question: str
    answer: str
    lang: str
    intent: str
    scope: dict[str, list[str]]


def requested_language(question: str) -> Lang | None:
    """The language the question asks the answer to be in ("in Korean", "영어로"), if any."""
    for lang, pattern in _LANGUAGE_REQUESTS.items():
        if pattern.search(question):
            return lang
    return None


def reads_as_follow_up(question: str) -> bool:
    """Whether the question leans on an earlier one (follow-up words, or only a language request)."""
    return bool(
        requested_language(question) or _FOLLOW_UP_EN.search(question) or _FOLLOW_UP_KO.search(question)
    )


def previous_turn(turn: dict[str, Any] | None) -> PreviousTurn | None:
    """The part of a stored turn a follow-up needs (None for none or a refused/failed turn)."""
    if not turn or turn.get("intent") in (None, "", "out_of_scope") or turn.get("error"):
        return None
    scope = turn.get("scope") or {}
    return PreviousTurn(
        question=str(turn.get("question", "")),
        answer=str(turn.get("answer", ""))[:MAX_PREVIOUS_ANSWER_CHARS],
        lang=str(turn.get("lang", "en")),
        intent=str(turn["intent"]),
        scope={"segments": list(scope.get("segments", [])), "customers": list(scope.get("customers", []))},
    )


def resolve_follow_up(
    question: str, words: KeywordGuess, previous: PreviousTurn | None
) -> KeywordGuess | None:
    """The follow-up's intent and scope from the earlier turn (confident), or None: a new question.

    `words` is the keyword guess of the question alone.
    """
    if (
        previous is None
        or previous.get("intent") in (None, "", "out_of_scope")
        or not reads_as_follow_up(question)
    ):
        return None
    earlier_intent = str(previous["intent"])
    if words.customers:
        return KeywordGuess("customer_lookup", True, list(words.segments), list(words.customers))
    if words.segments:
        no_intent_words = not any(intent_cues(question).values())
        if no_intent_words and earlier_intent in CARRIED_INTENTS and len(words.segments) == 1:
            return KeywordGuess(earlier_intent, True, list(words.segments), [])
        return KeywordGuess(words.intent, True, list(words.segments), [])
    scope = previous.get("scope") or {}
    return KeywordGuess(
        earlier_intent, True, list(scope.get("segments", [])), list(scope.get("customers", []))
    )
