"""Claims about two segments that the data contradicts.

- `wrong_comparisons`: "New has more customers than Dormant" when Dormant has twice as many,
  "신규 고객은 충성 고객 대비 21.11배 높습니다" when the loyal customers spend 21 times more. The
  numeric check sees that 21.11 is a ratio of the two segments, not which way it goes; a claim without
  a number ("they are also more frequent buyers") it does not see at all. The insight bench's
  comparisons made both mistakes in answers that passed every other check.
  A claim is read in one sentence that names two segments: the subject (named first, not as the
  standard) and the standard ("than Dormant", "충성 고객보다", "대비"); each comparative word ("more",
  "higher", "fewer", "많", "높", "적") goes with the nearest measure word (customers, spend, orders,
  order value, recency). Only a clear contradiction counts (the figures at least 5% apart the other
  way): the check must never fail a true sentence, so what it cannot read it lets pass.
- `borrowed_descriptions`: a segment described with a phrase of another segment's profile.

    wrong_comparisons("New has more customers than Dormant.", tool_results)
    -> ["New has more customers than Dormant. (customers: new 537, dormant 1142)"]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from personagraph.insight.lexicon import ANSWER_MENTIONS
from personagraph.insight.numbers import compared_against, owner_spans
from personagraph.insight.profiles import DESCRIPTIONS
from personagraph.insight.segments import SEGMENT_LABELS
from personagraph.insight.stats import records

# The figures a claim can be about, and for recency which way "more" goes ("more recent" = fewer days).
RECENCY = "avg_recency_days"
MEASURES = (
    "customers",
    "avg_spend_per_customer_krw",
    "avg_orders_per_customer",
    "avg_order_value_krw",
    RECENCY,
)

# Measure words, the longest first where one contains another ("order value" before "orders").
_MEASURE_WORDS: tuple[tuple[str, str], ...] = (
    ("avg_order_value_krw", r"order values?|basket sizes?|주문\s*금액|객단가"),
    (
        "avg_spend_per_customer_krw",
        r"spend(?:s|ing)?|spenders?|revenue per customer|구매\s*금액|구매액|지출|소비",
    ),
    ("avg_orders_per_customer", r"orders?|frequent(?:ly)?|often|주문\s*횟수|구매\s*횟수|빈도|자주"),
    ("customers", r"customers|numerous|고객\s*수|규모|인원"),
    (RECENCY, r"recent(?:ly)?|최근"),
)
_MEASURE = re.compile("|".join(f"(?P<{key}>{words})" for key, words in _MEASURE_WORDS), re.IGNORECASE)

# Comparative words: the subject has more of the measure, or less. A Korean stem counts at a word's
# start and before one of its endings ("높습니다", "적은"; not 크림, 적합, 목적).
_MORE = (
    r"\b(?:more|higher|larger|bigger|greater|times as (?:much|many|often))\b"
    r"|(?:많|높)(?=[이아은고다습지으])|크(?=[고다며게지])|큰|자주|길(?=[고다게어])"
)
_LESS = r"\b(?:fewer|lower|less|smaller)\b|(?:적|낮|작|짧)(?=[은고다습어아게지])|드물"
_COMPARATIVE = re.compile(rf"(?<![가-힣])(?:(?P<more>{_MORE})|(?P<less>{_LESS}))", re.IGNORECASE)

# A segment's name as the answers write it, and its English label capitalised ("New has more
# customers than Dormant"; a lowercase "new campaign" is no segment).
_SEGMENT = re.compile(
    "|".join(
        f"(?<![A-Za-z])(?P<{seg}>{'|'.join(re.escape(w) for w in sorted(words, key=len, reverse=True))}"
        f"|(?-i:{re.escape(SEGMENT_LABELS[seg]['en'])}))"
        for seg, words in ANSWER_MENTIONS.items()
    ),
    re.IGNORECASE,
)
_NAME_TAIL = re.compile(r"(?:'s|’s)?\s+(?:customers?|ones|segment|group|buyers)\b", re.IGNORECASE)
_SENTENCE = re.compile(r"(?:[^.!?。\n]|[.!?。](?![\s]|$))+[.!?。]*")  # "21.11" ends no sentence
# How far (characters) a comparative word reaches for its measure: English "more customers" looks
# ahead, "spend more" back; Korean "구매액이 높습니다" looks back.
_REACH = 40


@dataclass(frozen=True)
class _Mention:
    segment: str
    start: int
    end: int
    standard: bool


def _mentions(sentence: str) -> list[_Mention]:
    out = []
    for match in _SEGMENT.finditer(sentence):
        segment = str(match.lastgroup)
        standard = compared_against(sentence, match)
        tail = _NAME_TAIL.match(sentence, match.end())  # "dormant customers": "customers" is the name's
        out.append(_Mention(segment, match.start(), tail.end() if tail else match.end(), standard))
    return out


def segment_rows(tool_results: Any) -> dict[str, dict[str, float]]:
    """Each segment's comparable figures, from every result record that names its segment."""
    rows: dict[str, dict[str, float]] = {}
    for record in records(tool_results):
        if isinstance(record.get("segment"), str):
            figures = {k: float(record[k]) for k in MEASURES if isinstance(record.get(k), int | float)}
            rows.setdefault(record["segment"], {}).update(figures)
    return rows


def _measure_for(
    sentence: str, start: int, end: int, korean: bool, named: list[tuple[int, int]]
) -> str | None:
    """The measure word nearest to a comparative word: after it first in English, before it in Korean
    (never a word of a segment's name: "customers" in "dormant customers")."""
    own = _MEASURE.fullmatch(sentence, start, end)  # 자주 is its own measure
    if own:
        return own.lastgroup
    words = [m for m in _MEASURE.finditer(sentence) if not any(s <= m.start() < e for s, e in named)]
    after = [(m.start() - end, m) for m in words if end <= m.start() <= end + _REACH]
    before = [(start - m.end(), m) for m in words if start - _REACH <= m.end() <= start]
    ordered = sorted(before) + sorted(after) if korean else sorted(after) + sorted(before)
    return ordered[0][1].lastgroup if ordered else None


def _contradicts(subject: dict[str, float], standard: dict[str, float], measure: str, more: bool) -> bool:
    x, y = subject.get(measure), standard.get(measure)
    if x is None or y is None:
        return False
    if measure == RECENCY:  # more recent: fewer days since the last order
        x, y = -x, -y
    low, high = min(x, y), max(x, y)
    clear = high - low > 0.05 * max(abs(low), abs(high))
    return clear and (x < y if more else x > y)


def wrong_comparisons(text: str, tool_results: Any) -> list[str]:
    """Sentences claiming one segment has more (or less) of a measure than another when the figures
    say the opposite, each with the figures that contradict it."""
    rows = segment_rows(tool_results)
    wrong: list[str] = []
    for match in _SENTENCE.finditer(text):
        sentence = match.group(0)
        mentions = _mentions(sentence)
        subjects = [m for m in mentions if not m.standard]
        standards = [m for m in mentions if m.standard and (not subjects or m.segment != subjects[0].segment)]
        if not subjects or not standards:
            continue
        subject, standard = subjects[0].segment, standards[0].segment
        if subject == standard or subject not in rows or standard not in rows:
            continue
        korean = bool(re.search(r"[가-힣]", sentence))
        named = [(m.start, m.end) for m in mentions]
        for comparative in _COMPARATIVE.finditer(sentence):
            if any(s <= comparative.start() < e for s, e in named):
                continue
            measure = _measure_for(sentence, comparative.start(), comparative.end(), korean, named)
            if measure and _contradicts(
                rows[subject], rows[standard], measure, bool(comparative.group("more"))
            ):
                x, y = rows[subject][measure], rows[standard][measure]
                wrong.append(f"{sentence.strip()} ({measure}: {subject} {x:g}, {standard} {y:g})")
                break
    return wrong


# How long a phrase of another segment's description must be to count as copied: a few words.
BORROWED_CHARS = {"ko": 12, "en": 24}


def borrowed_descriptions(text: str) -> list[str]:
    """Pieces of the answer that give a segment another segment's description: the profiles in the
    prompt say what each segment is and how to treat it, and the 1.5B model copied at-risk's "개인화
    리마인드와 재구매 혜택으로 되찾는다" after "VIP는" (the bench's Korean comparison, which passed).
    A phrase of a few words from segment Y's description, in a piece of the answer about segment X
    (after X's name, or a pronoun for it) and not in X's own description, is borrowed."""
    found: list[str] = []
    for start, end, owner in owner_spans(text, set(DESCRIPTIONS)):
        piece = text[start:end]
        if owner is None or len(piece.strip()) < min(BORROWED_CHARS.values()):
            continue
        own = " ".join(DESCRIPTIONS.get(owner, ()))
        for other, descriptions in DESCRIPTIONS.items():
            if other == owner:
                continue
            for description, lang in zip(descriptions, ("en", "ko"), strict=True):
                phrase = _longest_common(piece, description)
                if len(phrase.strip()) >= BORROWED_CHARS[lang] and phrase.strip() not in own:
                    found.append(f"{piece.strip()} ({other}: {phrase.strip()})")
    return found


def _longest_common(a: str, b: str) -> str:
    match = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return a[match.a : match.a + match.size]
