"""Follow-up questions in an insight thread: "and in Korean?", "그 중 VIP는?", "why?", "채널별로는?".

A thread passes its last turn (question, answer, intent, scope) with the next question, which is
resolved against it by small, explicit rules (deterministic and testable):

- a question about something else entirely (weather, a film: OFF_TOPIC) is a new question;
- it names customers: a lookup of those;
- it names segments: with a comparison word and one segment, that segment joins the earlier ones
  ("VIP랑 비교하면?"); after a comparison, two or more named segments replace the compared ones
  ("그럼 신규랑 휴면은?"), one joins them; with follow-up words and no intent words, the earlier segment intent for them
  ("그럼 휴면 고객은?", "충성 고객 버전도요"); with its own intent words and no follow-up word it is a new
  question ("Compare VIP and loyal customers");
- it asks about customers close to a segment ("그럼 이탈 위험에 가까운 고객은?"): that boundary scope, with
  the earlier intent when it names none; "그 중" / "among them" keeps the earlier group;
- it names nothing: the earlier scope (a boundary included), with the question's own intent when it has a strong one
  (write / compare / strategy / overview: "그걸로 카톡 메시지 하나 써줘", "둘이 비교해봐",
  "what should we do about it?"), else the earlier intent ("객단가는?", "make it shorter", "in Korean").

Only the last turn is used: a thread is a short conversation, not a memory.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from typing_extensions import TypedDict

from personagraph.insight.lexicon import OTHER_COMPANIES, KeywordGuess, intent_cues

Lang = Literal["ko", "en"]

# Intents a follow-up naming one segment may carry over (comparison needs two, summary none).
CARRIED_INTENTS = ("segment_profile", "strategy", "message_drafting")
MAX_PREVIOUS_ANSWER_CHARS = 800

_LANGUAGE_REQUESTS: dict[Lang, re.Pattern[str]] = {
    "ko": re.compile(r"\bin korean\b|\bkorean,? please\b|한국어로|한국말로|한글로", re.IGNORECASE),
    "en": re.compile(r"\bin english\b|\benglish,? please\b|영어로", re.IGNORECASE),
}
_FOLLOW_UP_EN = re.compile(
    r"^\s*(and|also|so|then|what about|how about|why|what else|versus|vs\.?|just)\b"
    r"|\b(those|them|they|these|that segment|the same|more detail|in detail|tell me more|elaborate|explain"
    r"|too|as well|one for|version|that comparison|the two|both|each of)\b",
    re.IGNORECASE,
)
_FOLLOW_UP_KO = re.compile(
    r"그\s?중|그럼|그러면|그리고|그들|이들|그 고객|그 세그먼트|거기|그건|그거|왜|자세히|좀 더|더 알려|^\s*또"
    r"|버전|걔네|얘네|그 둘|둘 중|둘이|각각|(?:용|은|는|도)\s*(?:요|하나|부탁해?요?|해\s?줘)?\s*[?？.!]*\s*$"
)
# Clearly about something else: a new question even inside a thread ("아 그리고 내일 날씨 어때?").
OFF_TOPIC = (
    "weather", "movie", "film", "recipe", "restaurant", "lunch", "dinner menu", "news", "stock price", "bitcoin",
    "football", "soccer", "baseball", "joke", "poem", "lottery", "horoscope", "translate this sentence",
    "날씨", "영화", "레시피", "맛집", "점심", "저녁 메뉴", "뉴스", "주가", "주식", "비트코인", "코인", "축구", "야구", "농담",
    "운세", "로또", "드라마", "python", "script", "source code", "your name", "who are you", "파이썬", "코드", "함수",
    "스크립트", "이름이 뭐", "너는 누구",
)  # fmt: skip
# Strong intent words of a follow-up that names no segment ("which group should we focus on?"); the
# profile words of the lexicon ("buy", "channel") are weak: they keep the earlier intent.
_STRATEGY_MORE = ("should we", "should marketing", "how would you", "what would get", "keep them", "win them",
                  "win back", "win-back", "budget", "뭘 해야", "해야 할까", "해야 돼", "예산", "데려오")  # fmt: skip
_COMPARE_MORE = ("나란히", "side by side", "versus", "compare", " vs", "비교")
# "Of those, ...": a boundary follow-up that names no group of its own keeps the earlier one.
_NARROWING = re.compile(
    r"그\s?중|이 중|중에서|among (?:them|those)|of (?:them|those)|which of", re.IGNORECASE
)


class PreviousTurn(TypedDict, total=False):
    """The last turn of a thread, as the next question sees it."""

    question: str
    answer: str
    lang: str
    intent: str
    scope: dict[str, list[str]]  # segments, customers, and boundary when the turn asked about one
    before_segments: list[str]  # the segments of the turn before it ("compare the two" across turns)


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


def previous_turn(turn: dict[str, Any] | None, before: dict[str, Any] | None = None) -> PreviousTurn | None:
    """The part of a stored turn a follow-up needs (None for none or a refused/failed turn); `before`,
    the turn before it, lends its segments to "compare the two"."""
    if not turn or turn.get("intent") in (None, "", "out_of_scope") or turn.get("error"):
        return None
    scope = turn.get("scope") or {}
    boundary = {"boundary": list(scope["boundary"])} if scope.get("boundary") else {}
    return PreviousTurn(
        question=str(turn.get("question", "")),
        answer=str(turn.get("answer", ""))[:MAX_PREVIOUS_ANSWER_CHARS],
        lang=str(turn.get("lang", "en")),
        intent=str(turn["intent"]),
        scope={
            "segments": list(scope.get("segments", [])),
            "customers": list(scope.get("customers", [])),
            **boundary,
        },
        before_segments=list(((before or {}).get("scope") or {}).get("segments", []))
        if before and before.get("intent") not in (None, "", "out_of_scope", "summary")
        else [],
    )


def _has_any(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(w in lowered for w in words)


def resolve_follow_up(
    question: str, words: KeywordGuess, previous: PreviousTurn | None
) -> KeywordGuess | None:
    """The follow-up's intent and scope from the earlier turn (confident), or None: a new question.

    `words` is the keyword guess of the question alone.
    """
    if previous is None or previous.get("intent") in (None, "", "out_of_scope"):
        return None
    if not (words.segments or words.customers) and _has_any(question, OFF_TOPIC + OTHER_COMPANIES):
        return None
    earlier_intent = str(previous["intent"])
    scope = previous.get("scope") or {}
    earlier_segments = list(scope.get("segments", []))
    earlier_customers = list(scope.get("customers", []))
    earlier_boundary = next((b for b in scope.get("boundary", []) if b in earlier_segments), None)
    follows = reads_as_follow_up(question)
    cues = intent_cues(question)
    compare = cues["segment_comparison"] or _has_any(question, _COMPARE_MORE)
    if words.boundary:
        return _boundary_follow_up(
            question, words, cues, earlier_intent, earlier_segments, earlier_boundary, follows
        )
    if words.customers:
        if not follows and words.intent != "customer_lookup":
            return None
        return KeywordGuess("customer_lookup", True, list(words.segments), list(words.customers))
    if words.segments:
        added = [s for s in words.segments if s not in earlier_segments]
        if (
            compare
            and len(words.segments) == 1
            and added
            and earlier_segments
            and earlier_intent != "summary"
        ):
            return KeywordGuess(
                "segment_comparison", True, [*earlier_segments, *added], []
            )  # "VIP랑 비교하면?"
        if not follows:
            return None
        no_intent_words = not any(cues.values())
        if no_intent_words and earlier_intent in CARRIED_INTENTS and len(words.segments) == 1:
            return KeywordGuess(earlier_intent, True, list(words.segments), [])
        if no_intent_words and earlier_intent == "segment_comparison":
            # A new pair replaces the compared ones ("그럼 A랑 B는?"); one new segment joins them.
            joined = (
                [*earlier_segments, *added] if added and len(words.segments) == 1 else list(words.segments)
            )
            return KeywordGuess("segment_comparison", True, joined, [])
        return KeywordGuess(words.intent, True, list(words.segments), [])
    # Names nothing: the earlier scope, with the question's own strong intent if it has one.
    two = list(dict.fromkeys([*previous.get("before_segments", []), *earlier_segments]))
    if (
        compare and len(earlier_segments) < 2 and len(two) >= 2
    ):  # "둘이 비교해봐" after one segment, then another
        return KeywordGuess("segment_comparison", True, two, [])
    if requested_language(question) and not cues["segment_comparison"]:
        intent = earlier_intent  # "방금 요약 영어로 다시 써줘": the same answer in another language
    elif cues["message_drafting"]:
        intent = "message_drafting"
    elif compare and len(earlier_segments) >= 2:
        intent = "segment_comparison"
    elif cues["strategy"] or _has_any(question, _STRATEGY_MORE):
        intent = "strategy"
    elif cues["summary"]:
        intent = "summary"
    elif earlier_intent == "customer_lookup" or earlier_intent == "summary":
        intent = earlier_intent
    elif cues["segment_profile"] and earlier_intent in ("strategy", "message_drafting"):
        intent = "segment_profile" if len(earlier_segments) < 2 else "segment_comparison"
    else:
        intent = earlier_intent
    boundary = earlier_boundary if intent in CARRIED_INTENTS else None  # "그들에게 보낼 메시지 써줘"
    return KeywordGuess(intent, True, earlier_segments, earlier_customers, boundary=boundary)


def _boundary_follow_up(
    question: str,
    words: KeywordGuess,
    cues: dict[str, bool],
    earlier_intent: str,
    earlier_segments: list[str],
    earlier_boundary: str | None,
    follows: bool,
) -> KeywordGuess | None:
    """A follow-up asking about customers close to a segment: its own boundary scope; the earlier
    intent when it names none of its own; the earlier group when it narrows ("그 중 VIP에 가까운 고객은?")."""
    if not follows:
        return None  # "Which loyal customers are close to VIP?" stands alone
    toward = str(words.boundary)
    own_intent = cues["message_drafting"] or cues["strategy"]
    intent = words.intent if own_intent or earlier_intent not in CARRIED_INTENTS else earlier_intent
    group = [s for s in words.segments if s != toward]
    if not group and _NARROWING.search(question):
        group = [s for s in earlier_segments if s not in (toward, earlier_boundary)]
    return KeywordGuess(intent, True, [*group, toward], [], boundary=toward)
