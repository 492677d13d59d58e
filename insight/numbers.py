"""The numeric check: every figure in an answer must match a figure the tools returned.

Numbers are read in the forms answers use: 1,234 / 1234.5 / 1.2k / ₩1.2M / 12.3% / 35만원 / 3.5만 원 /
1억 / 45일 / 2026-03 / 3월. A number matches a tool figure when it equals it up to the precision it
is written with (12% matches 12.34; 1.2k matches 1,234; 35만원 matches 352,300; a rounded 1,200
matches 1,234 but 1,000 does not: rounding is accepted to within 5%). Percentages are matched
against percentage figures only. Not checked: numbers inside identifiers (C00012, SPF50), numbers the
question itself contains, and bare integers up to 10 without a unit (list markers, "3 ideas").

A number also has to belong to the segment it is written after: in "VIP (537 customers) and Loyal
(637 customers)" 537 must be one of VIP's figures (its own records, or a figure of no segment such as
a total or a ratio), not New's (seen in the insight bench: every number existed, two were given to
the wrong segment). A segment named as the standard of a comparison ("than at-risk ones", "이탈
위험 고객보다") does not take the figures after it: they stay the sentence subject's. A number before any segment name, or after one the results have no figures
for, is checked against all figures only.

A comparison's answer may also compute (`derived_figures`): for each figure two compared segments
both have, the ratio either way ("3.2배", "a third of"), the difference ("12.5일 더 최근") and the
change in percent ("220% more", "69% less"). A figure computed wrongly is still unsupported (the
bench's VIP / at-risk answers computed ratios, and the check, knowing only the tools' own ratios,
failed correct ones and wrong ones alike).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import permutations
from typing import Any

from personagraph.insight.lexicon import ANSWER_MENTIONS
from personagraph.insight.segments import SEGMENT_LABELS
from personagraph.insight.stats import figures

_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})(?:-(\d{2}))?(?!\d)")
_KO_DATE = re.compile(r"(?<!\d)(\d{4})년|(?<![\d.])(\d{1,2})월")
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.,\-])(?P<sign>[-−+])?(?P<cur>[₩$]|KRW)?\s?"
    # Grouped by thousands; else digits grouped any other way ("30,974,03": shown, so checked, and
    # never supported, see Number.well_formed); else plain.
    r"(?P<num>\d{1,3}(?:,\d{3})+(?!,?\d)(?:\.\d+)?|\d+(?:,\d+)+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?![\d,]*[A-Za-z]\d)"  # not the start of an identifier like 3A4
    r"\s?(?P<suf>%|퍼센트|percent\b|[kK](?![A-Za-z])|M(?![A-Za-z])|천|만|억)?"
    r"\s?(?P<unit>원|KRW|won)?"
)
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SCALE = {"k": 1e3, "K": 1e3, "M": 1e6, "천": 1e3, "만": 1e4, "억": 1e8}


@dataclass
class Number:
    text: str
    value: float
    tolerance: float
    percent: bool
    start: int = 0  # where it is written in the text parsed
    end: int = 0
    well_formed: bool = True  # False: digits grouped other than by thousands ("30,974,03")


def parse_numbers(text: str) -> list[Number]:
    """The numbers written in a text (dates excluded), with the tolerance their precision implies."""
    text = _DATE.sub(_blank, text)  # blanked, not removed: the positions stay the text's
    text = _KO_DATE.sub(_blank, text)
    out: list[Number] = []
    for m in _NUMBER.finditer(text):
        raw = m.group("num")
        well_formed = "," not in raw or _THOUSANDS.fullmatch(raw) is not None
        digits = raw.replace(",", "")
        value = float(digits)
        suffix = m.group("suf") or ""
        percent = suffix in ("%", "퍼센트") or suffix.startswith("percent")
        scale = _SCALE.get(suffix, 1.0)
        if "." in digits:
            step = 10 ** -len(digits.split(".")[1])
            tolerance = step / 2 * scale
        else:
            trailing = len(digits) - len(digits.rstrip("0")) if value else 0
            tolerance = max(0.5, min(10**trailing / 2, 0.05 * value)) * scale
        value *= scale
        if m.group("sign") in ("-", "−"):
            value = -value
        written = m.group(0).rstrip()
        out.append(
            Number(text=written.strip(), value=value, tolerance=tolerance + 1e-9, percent=percent,
                   start=m.start() + len(written) - len(written.lstrip()), end=m.start() + len(written),
                   well_formed=well_formed)
        )  # fmt: skip
    return out


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))


# A share's measure, as answers write it: the words, and the figure names that measure it (orders by
# channel are `channel_mix_pct`; "sales" is said of revenue and of units).
_MEASURES: dict[str, tuple[str, ...]] = {
    "revenue": ("revenue",), "매출": ("revenue",), "매출액": ("revenue",), "spend": ("revenue",),
    "spending": ("revenue",), "sales": ("revenue", "units"), "판매": ("revenue", "units"),
    "customers": ("customers",), "고객": ("customers",), "고객 수": ("customers",),
    "units": ("units",), "판매량": ("units",), "판매 수량": ("units",),
    "orders": ("orders", "channel_mix"), "주문": ("orders", "channel_mix"), "주문 수": ("orders", "channel_mix"),
}  # fmt: skip
_MEASURE_WORDS = "|".join(re.escape(w) for w in sorted(_MEASURES, key=len, reverse=True))
_SHARE_AFTER = re.compile(  # "12.7% of (all|their|...) revenue", "12.7% revenue share", "35.3%의 매출"
    rf"\s*(?:of\s+(?:(?:the|their|its|our|all|total|overall)\s+)*|의\s*)?(?P<word>{_MEASURE_WORDS})(?![A-Za-z])",
    re.IGNORECASE,
)
_SHARE_BEFORE = re.compile(  # "매출의 35.3%", "매출 비중 35.3%", "고객 비중은 4.7%", "share of revenue: 35.3%"
    rf"(?:(?P<ko>{_MEASURE_WORDS})\s*(?:의|\s(?:비중|비율|점유율)(?:은|는|이|가)?)"
    rf"|share of (?:(?:the|their|its|our|all|total|overall)\s+)*(?P<en>{_MEASURE_WORDS})(?:\s+is|:|\s+of)?)"
    rf"\s*(?:약|about|around|roughly)?\s*$",
    re.IGNORECASE,
)


def share_measure(text: str, number: Number) -> tuple[str, tuple[str, ...]] | None:
    """(the word, the figure names it means) when a percentage in `text` is written as a share of a
    measure; None when it names none."""
    if not number.percent:
        return None
    after = _SHARE_AFTER.match(text, number.end)
    before = _SHARE_BEFORE.search(text[max(0, number.start - 40) : number.start])
    found = after.group("word") if after else before and (before.group("ko") or before.group("en"))
    return (found, _MEASURES[found.lower()]) if found else None


def dates_in(text: str) -> list[str]:
    out = [m.group(0) for m in _DATE.finditer(text)]
    out += [m.group(0) for m in _KO_DATE.finditer(text)]
    return out


@dataclass
class NumericCheck:
    checked: int
    supported: list[str]
    unsupported: list[str]

    @property
    def ok(self) -> bool:
        return not self.unsupported

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "supported": self.supported,
            "unsupported": self.unsupported,
            "ok": self.ok,
        }


def _date_supported(token: str, source_text: str) -> bool:
    if "년" in token:
        return token.rstrip("년") in source_text
    if "월" in token:
        month = int(token.rstrip("월"))
        return 1 <= month <= 12 and f"-{month:02d}" in source_text
    return token in source_text


# Where an answer names a segment: the answer phrases ("loyal customers", "휴면 고객", "VIP"), and a
# segment's label used as a heading ("Loyal (637 customers)", "**New**: ...").
def _alternatives(words: Any) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_SEGMENT_NAME = re.compile(
    "|".join(f"(?<![A-Za-z])(?P<{seg}>{_alternatives(words)})" for seg, words in ANSWER_MENTIONS.items()),
    re.IGNORECASE,
)
_SEGMENT_HEADING = re.compile(
    "|".join(
        rf"(?<![A-Za-z])(?P<{seg}>{re.escape(names['en'])})(?=[*_]*\s*[(:])"
        for seg, names in SEGMENT_LABELS.items()
    )
)


def segment_figures(tool_results: Any) -> tuple[dict[str, list[tuple[str, float]]], list[tuple[str, float]]]:
    """The figures per segment (a result named "...[vip]", or a record whose "segment" is vip) and
    the figures of no segment (totals, ratios between segments)."""
    owned: dict[str, list[tuple[str, float]]] = {}
    free: list[tuple[str, float]] = []

    def walk(value: Any, path: str, owner: str | None) -> None:
        if isinstance(value, dict):
            owner = str(value["segment"]) if isinstance(value.get("segment"), str) else owner
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key), owner)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]", owner)
        else:
            for leaf_path, number in figures(value, path):
                (owned.setdefault(owner, []) if owner else free).append((leaf_path, number))

    if isinstance(tool_results, dict):
        for name, result in tool_results.items():
            found = re.search(r"\[([a-z_]+)\]$", str(name))
            walk(result, str(name), found.group(1) if found else None)
    return owned, free


def derived_figures(tool_results: Any) -> list[tuple[str, float]]:
    """What an answer may compute from a comparison result (one with `segments` records and
    `first_vs_second`): per shared figure of two segments, both ratios, the difference and the
    change in percent (a path with "pct", so it matches percentages)."""
    out: list[tuple[str, float]] = []
    if not isinstance(tool_results, dict):
        return out
    for name, result in tool_results.items():
        if not isinstance(result, dict) or "first_vs_second" not in result:
            continue
        rows = [r for r in result.get("segments") or [] if isinstance(r, dict)]
        for a, b in permutations(rows, 2):
            for key, x in a.items():
                y = b.get(key)
                if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (x, y)):
                    continue
                path = f"{name}.derived.{a.get('segment')}_vs_{b.get('segment')}.{key}"
                out.append((f"{path}.difference", abs(x - y)))
                if y:
                    out += [(f"{path}.ratio", x / y), (f"{path}.change_pct", (x / y - 1) * 100)]
    return out


# A segment named as the standard of a comparison ("than at-risk ones", "이탈 위험 고객보다"): the
# figures after it are still the sentence's subject's ("VIP customers ... than at-risk ones, with a
# 35.3% share of revenue" is VIP's share; the bench's comparison failed on it twice).
_COMPARED_BEFORE = re.compile(
    r"(?:\bthan|\bcompared\s+(?:to|with)|\bvs\.?|\bversus|\brelative\s+to)\s+(?:the\s+|our\s+|those\s+)?$",
    re.IGNORECASE,
)
_COMPARED_AFTER = re.compile(
    r"^\s*(?:'s|’s)?\s*(?:고객|세그먼트|고객층)?\s*들?\s*(?:보다|에\s*비해|대비|[과와]\s*비교해)"
)


def compared_against(line: str, match: re.Match[str]) -> bool:
    """Whether the segment name `match` is the standard of a comparison in `line`."""
    return bool(_COMPARED_BEFORE.search(line[: match.start()]) or _COMPARED_AFTER.match(line[match.end() :]))


# A sentence whose subject is a pronoun for the segment the sentence before named ("New customers
# spend more. They also have a longer recency (476.4 days)": the bench gave dormant's figure to "They").
_PRONOUN_SUBJECT = re.compile(
    r"\s*[*_]*(?:(?:they|their|these|those|such)\b(?!\s+(?:two|both|segments|groups))|this\s+(?:segment|group)\b"
    r"|이들|이\s*고객|이\s*세그먼트|해당\s*고객|해당\s*세그먼트|그들)",
    re.IGNORECASE,
)


def owner_spans(answer: str, segments: set[str]) -> list[tuple[int, int, str | None]]:
    """(start, end, segment) pieces of the answer: from each segment name to the next name or the end
    of its sentence. A line that names a segment and ends with a colon is a heading ("**New
    Segment:**", "VIP:"): the lines under it belong to its segment until a blank line or the next
    heading (the bench's "**New Segment:**\n- Customers: 637명" gave the loyal segment's count to new
    customers, and a heading's own line used to end its owner's span). A sentence opening with a
    pronoun ("They", "이들은") belongs to the one segment the sentence before it named. Other text
    has no owner."""
    spans: list[tuple[int, int, str | None]] = []
    heading: str | None = None
    named: set[str | None] = set()  # the segments named in the sentence being read
    finished: set[str | None] = set()  # and in the sentence before it
    offset = 0
    for line in answer.splitlines(keepends=True):
        body = line.strip().strip("*#_ ")
        if not body:
            heading = None
        names = sorted(
            (match.start(), match.lastgroup if match.lastgroup in segments else None)
            for pattern in (_SEGMENT_NAME, _SEGMENT_HEADING)
            for match in pattern.finditer(line)
            if not compared_against(line, match)
        )
        ends = [m.end() for m in re.finditer(r"[.!?。]+(?=\s|$)", line)]
        marks = sorted([(0, heading, "start"), *((p, o, "name") for p, o in names), *((e, heading, "end") for e in ends)],
                       key=lambda mark: mark[0])  # fmt: skip
        starts = [position for position, _, _ in marks[1:]] + [len(line)]
        for (start, owner, kind), end in zip(marks, starts, strict=True):
            if kind == "name":
                named.add(owner)
            elif kind == "end" or named:  # a sentence ended (a line break ends one without a period)
                finished, named = named, set()
            pronoun = (
                kind != "name" and not (kind == "start" and heading) and _PRONOUN_SUBJECT.match(line, start)
            )
            if pronoun and len(finished) == 1 and None not in finished:
                owner = next(iter(finished))
            if end > start:
                spans.append((offset + start, offset + end, owner))
        if names and body.endswith(":"):
            heading = names[-1][1]
        offset += len(line)
    return spans


@dataclass(frozen=True)
class _Pool:
    """Figures a number may match: percentages (matched by percentages only, by their names when a
    measure is written) and all of them."""

    percents: list[tuple[str, float]]  # (the name saying what it measures, value)
    plain: list[float]

    @classmethod
    def of(cls, values: list[tuple[str, float]]) -> _Pool:
        """A percentage's measure is in the last name of its path with "pct" in it:
        "share_of_revenue_pct", or "channel_mix_pct" for "channel_mix_pct.app"."""
        percents = [
            (next(part for part in reversed(path.split(".")) if "pct" in part), abs(v))
            for path, v in values
            if "pct" in path
        ]
        return cls(percents, [abs(v) for _, v in values])

    def supports(self, n: Number, measure: tuple[str, ...] | None = None) -> bool:
        target = abs(n.value)
        if n.percent:
            pool = [f for key, f in self.percents if measure is None or any(m in key for m in measure)]
        else:
            pool = self.plain
        return any(abs(target - f) <= n.tolerance or (f and abs(target - f) / f <= 0.005) for f in pool)


def check_numbers(answer: str, tool_results: Any, question: str = "") -> NumericCheck:
    """Which numbers of an answer are supported by the tool results (see the module docstring)."""
    derived = derived_figures(tool_results)
    everything = _Pool.of([*figures(tool_results), *derived])
    owned, free = segment_figures(tool_results)
    free = [*free, *derived]
    per_segment = {segment: _Pool.of([*values, *free]) for segment, values in owned.items()}
    source_text = json.dumps(tool_results, ensure_ascii=False, default=str)
    asked = {n.value for n in parse_numbers(question)} | {abs(n.value) for n in parse_numbers(question)}
    supported: list[str] = []
    unsupported: list[str] = []
    checked = 0
    for token in dates_in(answer):
        checked += 1
        (supported if _date_supported(token, source_text) else unsupported).append(token)
    for start, end, owner in owner_spans(answer, set(owned)):
        for n in parse_numbers(answer[start:end]):
            n.start, n.end = start + n.start, start + n.end
            bare = (
                not n.percent
                and n.value == int(n.value)
                and abs(n.value) <= 10
                and n.text.strip("+-−").isdigit()
            )
            if bare or n.value in asked:
                continue
            checked += 1
            share = share_measure(answer, n)
            measure = share[1] if share else None
            if not n.well_formed:
                unsupported.append(f"{n.text} (digits grouped wrongly)")
            elif not everything.supports(n):
                unsupported.append(n.text)
            elif share and not everything.supports(n, measure):
                unsupported.append(f"{n.text} (not a share of {share[0]})")
            elif owner and not per_segment[owner].supports(n, measure):
                unsupported.append(f"{n.text} (not a figure of {owner})")
            else:
                supported.append(n.text)
    return NumericCheck(checked=checked, supported=supported, unsupported=unsupported)
