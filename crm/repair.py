"""Deterministic repair of a stylist's message: what rules can fix without another model call.

Runs between the stylist and the checks; every change is a `Fix` with its rule and reason (kept in
the result's `attempts`). The checks that follow are the same as without repair: a repaired message
still has to pass all of them, and what repair cannot fix goes back to the stylist as reasons.

In order:
1. markup: tags are removed (list items become "- " lines): a message is plain text, and a tag is
   the prompt's markup copied (`checks.MARKUP`).
2. notes: in a Korean message, a line in English ("This corrected version follows the provided rules
   by:", `checks.foreign_lines`) and a bare list marker ("1.") are dropped: the stylist's notes.
3. names: a word one letter off the brand's or product's name ("루미에르" for 뤼미에르) is written as
   the catalog has it (`readable.misspellings`).
4. reviews: a sentence repeating a customer review word for word (`checks.copied_reviews`) is
   dropped when the message has another (a review is a stranger's text, never the brand's copy).
5. claims: a banned superlative, medical claim or absolute promise is replaced by the brand's
   allowed wording (`Brand.allowed_wording`, else ALLOWED_KO / ALLOWED_EN); a claim no rule can
   reword drops its sentence (when the message has another).
6. prices: a price not in the evidence but within PRICE_TOLERANCE of the catalog's (or the
   event's discounted) price is written as the catalog has it; a discount the event does not state is
   set to the event's one when the event has exactly one.
7. call to action: a message without one gets the draft's call to action (or a plain default).
8. length: a first line too long for the channel's title gets the draft's headline above it;
   over the channel's limit, the lowest-priority sentences (body sentences from the end,
   never the first line or the call to action) are dropped until it fits; if even that is too long,
   the message becomes a shorter one built from the draft's headline, the message's own sentences,
   the subject and the call to action: the first that fits, says something (`readable.content_words`)
   and names the brand or product; else the first that fits and says something; else the first that
   fits (the checks then send it back with their reasons).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from personagraph.crm.catalog import Catalog
from personagraph.crm.checks import (
    GROUNDING_KINDS,
    MARKUP,
    check_grounding,
    check_length,
    check_subject,
    copied_reviews,
    evidence_keys,
    extract_numeric_facts,
    find_claim_spans,
    foreign_lines,
    known_words,
)
from personagraph.crm.readable import has_call_to_action, misspellings, says_something

PRICE_TOLERANCE = 0.5  # a wrong price within 50% of a catalog price is taken as a mistyped one

# Allowed wording for banned phrases, most specific first (regex -> replacement).
ALLOWED_KO: tuple[tuple[str, str], ...] = (
    (r"최고급", "고급"), (r"최고\s*의", "특별한"), (r"최상\s*의", "좋은"), (r"최고로|최상으로", "한층"),
    (r"최고(?:예요|에요)", "좋아요"), (r"최고입니다", "좋습니다"), (r"(?:업계\s*)?최초(?:로|의)?\s*", ""),
    (r"(?:판매량?\s*)?(?:\d+\s*위|넘버\s*원)(?:\s*(?:제품|상품|브랜드))?(?:의|인)?\s*", ""),
    (r"유일(?:한|의)", "특별한"), (r"가장\s*(?:좋은|효과적인|뛰어난)", "믿을 수 있는"),
    (r"가장\s*많이\s*팔린|가장\s*잘\s*팔리는", "사랑받는"),
    (r"완치|치료|치유", "케어"), (r"(?:피부|세포)\s*재생", "피부 결 케어"), (r"항염", "진정"),
    (r"염증", "트러블"), (r"아토피", "건조하고 예민한 피부"), (r"피부병|질환|질병", "피부 고민"),
    (r"살균", "청결"), (r"의학적(?:으로)?\s*", ""), (r"임상(?:적으로)?\s*(?:입증|증명)(?:된|되었|됐)?", "테스트를 거친"),
    (r"약효", "효과"), (r"의약품", "화장품"),
    (r"부작용\s*(?:이\s*)?없(?:어요|습니다)", "자극을 줄였어요"), (r"부작용\s*(?:이\s*)?(?:없는|제로|0)", "자극을 줄인"),
    (r"100\s*%\s*(?:효과|안전|만족|보장)", "만족스러운"), (r"즉시\s*효과", "산뜻한 사용감"),
    (r"효과\s*보장", "꼼꼼한 설계"), (r"보장(?:합니다|됩니다)", "도와줍니다"), (r"보장(?:해요|돼요|해\s*드려요)", "도와줘요"),
    (r"보장(?:해\s*드립니다)", "도와드립니다"), (r"보장(?:된|되는)", "꼼꼼한"), (r"완벽(?:한|함)", "꼼꼼한"), (r"완벽(?:하게|히)", "꼼꼼하게"),
    (r"완벽\s*", ""), (r"\s*보장(?=[!.,~\s]|$)", ""), (r"영구적(?:인|으로)?\s*", ""), (r"평생\s*효과", "꾸준한 케어"),
)  # fmt: skip
ALLOWED_EN: tuple[tuple[str, str], ...] = (
    (r"\bthe best\b(?=\s*[.!,]|\s*$)", "a favourite"), (r"\bthe best\b", "a lovely"), (r"\bbest[- ]?sell(?:ing|er)\b", "much-loved"),
    (r"\b(?:no\.?\s*1|number\s*one)\b\s*|#\s*1\b\s*", ""), (r"\bworld'?s first\b", "new"),
    (r"\bunbeatable\b", "great"), (r"\bmost effective\b", "thoughtfully made"),
    (r"\bcures\b", "cares for"), (r"\bcured?\b", "care for"), (r"\bheals\b", "soothes"), (r"\bheal\b", "soothe"),
    (r"\bhealing\b", "soothing"), (r"\btreatment\b", "care"), (r"\btreats\b", "cares for"),
    (r"\btreating\b", "caring for"), (r"\btreat\b(?!\s+yourself)", "care for"),
    (r"\bclinically proven\b", "tested"), (r"\bmedical\b\s*", ""), (r"\bmedicine\b", "skincare"),
    (r"\bguaranteed?\b\s*", ""), (r"\bpermanent(?:ly)?\b", "lasting"), (r"\binstant results?\b", "a fresh feel"),
    (r"\bno side effects?\b", "a gentle feel"), (r"\b100\s*% (?:safe|effective)\b", "carefully made"),
    (r"\b(?:diseases?|eczema|inflammation)\b", "skin concerns"), (r"\bprescription\b", "routine"),
)  # fmt: skip

DEFAULT_CTA = {"ko": "지금 확인해 보세요.", "en": "Shop now."}
_SENTENCE = re.compile(r"(?<=[.!?。])\s+")


@dataclass(frozen=True)
class Fix:
    rule: str  # markup | note | name | review | claim | price | discount | cta | title | length
    before: str
    after: str
    reason: str


def _evidence_text(evidence: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(str(e.get("text", "")) for e in evidence if e.get("kind") in GROUNDING_KINDS)


def _split(message: str) -> list[list[str]]:
    """Lines, each a list of sentences."""
    return [[s for s in _SENTENCE.split(line.strip()) if s] for line in message.splitlines() if line.strip()]


def _join(lines: list[list[str]]) -> str:
    return "\n".join(" ".join(line) for line in lines if line)


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"\s+([,.!?])", r"\1", text)
    return "\n".join(line.strip() for line in text.splitlines())


def repair_claims(
    message: str, lang: str, evidence: Sequence[Mapping[str, Any]], allowed: Mapping[str, str] | None = None
) -> tuple[str, list[Fix]]:
    """Banned claims replaced by allowed wording; a sentence with a claim left over is dropped."""
    fixes: list[Fix] = []
    grounding = _evidence_text(evidence)
    rules = [*((re.escape(k), v) for k, v in (allowed or {}).items()), *ALLOWED_KO, *ALLOWED_EN]
    for pattern, replacement in rules:
        spans = find_claim_spans(message, grounding)
        if not spans:
            break
        compiled = re.compile(pattern, re.IGNORECASE)
        for match in reversed(list(compiled.finditer(message))):
            if not any(a < match.end() and match.start() < b for _, a, b in spans):
                continue  # only a phrase the checks forbid here (an evidence-backed one stays)
            category = next(c for c, a, b in spans if a < match.end() and match.start() < b)
            fixes.append(Fix("claim", match.group(0), replacement,
                             f"{category}: cosmetics advertising may not say {match.group(0)!r}"))  # fmt: skip
            message = message[: match.start()] + replacement + message[match.end() :]
    message = _tidy(message)
    spans = find_claim_spans(message, grounding)
    if spans:
        lines = _split(message)
        if sum(len(line) for line in lines) > 1:
            position, kept = 0, []
            for line in lines:
                keep = []
                for sentence in line:
                    start = message.find(sentence, position)
                    end = start + len(sentence)
                    position = max(position, end)
                    if any(a < end and start < b for _, a, b in spans):
                        fixes.append(Fix("claim", sentence, "", "claim no rule can reword: sentence dropped"))
                    else:
                        keep.append(sentence)
                kept.append(keep)
            if any(kept):
                message = _join(kept)
    return message, fixes


def _format_price(value: int, original: str) -> str:
    """The catalog's price in the message's own way of writing it (원, won, ₩, KRW)."""
    if re.search(r"[₩]|krw", original, re.IGNORECASE):
        return re.sub(r"\d[\d,.]*", f"{value:,}", original, count=1)
    if "won" in original.lower():
        return f"{value:,} won"
    return f"{value:,}원"


def repair_prices(
    message: str, evidence: Sequence[Mapping[str, Any]], catalog: Catalog
) -> tuple[str, list[Fix]]:
    """Prices and discounts the evidence does not state, set to the nearest one it does (see module doc)."""
    keys = evidence_keys(evidence, catalog)
    prices = sorted(int(v) for v in keys.get("price", {}))
    discounts = sorted(keys.get("percent", {}))
    report = check_grounding(message, evidence, catalog)
    fixes: list[Fix] = []
    for fact in sorted(report["unsupported"], key=lambda f: f["start"], reverse=True):
        text = fact["text"]
        if fact["kind"] == "price" and prices:
            value = next(f.value for f in extract_numeric_facts(text) if f.kind == "price")
            target = min(prices, key=lambda p: abs(p - int(value)))
            if abs(target - int(value)) > PRICE_TOLERANCE * target:
                continue
            new = _format_price(target, text)
            fixes.append(Fix("price", text, new, f"price: {text} is not the catalog's price; {new} is"))
        elif fact["kind"] == "discount" and len(discounts) == 1:
            new = re.sub(r"\d+(?:\.\d+)?", discounts[0], text, count=1)
            fixes.append(Fix("discount", text, new, f"discount: the event states {discounts[0]}%"))
        else:
            continue
        message = message[: fact["start"]] + new + message[fact["end"] :]
    return message, fixes


def repair_markup(message: str) -> tuple[str, list[Fix]]:
    """Tags removed; a list item starts a "- " line and a line break tag breaks the line."""
    found = MARKUP.findall(message)
    if not found:
        return message, []
    text = re.sub(r"<\s*li\b[^<>\n]*>", "\n- ", message, flags=re.IGNORECASE)
    text = re.sub(r"<\s*br\s*/?\s*>", "\n", text, flags=re.IGNORECASE)
    text = MARKUP.sub("", text)
    text = "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return text, [Fix("markup", tag, "", "markup: a message is plain text; tag removed") for tag in found]


def repair_notes(message: str, lang: str) -> tuple[str, list[Fix]]:
    """A Korean message's lines in English and bare list markers dropped, when another line is left."""
    notes = set(foreign_lines(message, lang))
    lines = [line for line in message.splitlines() if line.strip()]
    dropped = [
        line for line in lines if line.strip() in notes or re.fullmatch(r"\s*(?:\d{1,2}[.)]|[-*•])\s*", line)
    ]
    kept = [line for line in lines if line not in dropped]
    if not dropped or not kept:
        return message, []
    return "\n".join(kept), [Fix("note", line.strip(), "", "not the message (a note or a bare list marker): line dropped")
                              for line in dropped]  # fmt: skip


def repair_names(message: str, names: Sequence[str], known: Sequence[str] = ()) -> tuple[str, list[Fix]]:
    """Misspelt brand and product names written as the catalog has them."""
    fixes = []
    for start, end, right in reversed(misspellings(message, names, known)):
        fixes.append(
            Fix("name", message[start:end], right, f"name: {message[start:end]!r} is written {right!r}")
        )
        message = message[:start] + right + message[end:]
    return message, fixes[::-1]


def repair_reviews(message: str, evidence: Sequence[Mapping[str, Any]]) -> tuple[str, list[Fix]]:
    """Drop the sentences that copy a review, as long as one sentence is left."""
    lines = _split(message)
    fixes: list[Fix] = []
    for line in lines:
        for sentence in list(line):
            if sum(len(other) for other in lines) <= 1:
                break
            if copied_reviews(sentence, evidence):
                line.remove(sentence)
                fixes.append(
                    Fix("review", sentence, "", "copied a customer review word for word: sentence dropped")
                )
    return (_join(lines), fixes) if fixes else (message, [])


def repair_cta(message: str, lang: str, cta: str | None) -> tuple[str, list[Fix]]:
    if has_call_to_action(message, lang):
        return message, []
    line = cta.strip() if cta and has_call_to_action(cta, lang) else DEFAULT_CTA[lang]
    return (
        f"{message.rstrip()}\n{line}",
        [Fix("cta", "", line, "no call to action: the draft's call to action added")],
    )


def _lowest_priority(lines: list[list[str]], lang: str) -> tuple[int, int] | None:
    """The sentence to drop first: the last body sentence that is no call to action (the first line
    is the headline; in a one-line message its first sentence is)."""
    for i in range(len(lines) - 1, -1, -1):
        for j in range(len(lines[i]) - 1, -1, -1):
            if (i, j) == (0, 0) or (i == 0 and len(lines) > 1):
                continue
            if not has_call_to_action(lines[i][j], lang):
                return i, j
    return None


def _best_fallback(fitting: Sequence[str], lang: str, names: Sequence[str]) -> str:
    """The first fallback that says something and names the subject, else says something, else any."""
    saying = [t for t in fitting if says_something(t, lang, names)[0]]
    named = [t for t in saying if check_subject(t, names)["passed"]]
    return (named or saying or list(fitting))[0]


def repair_length(
    message: str,
    lang: str,
    channel_name: str,
    catalog: Catalog,
    fallbacks: Sequence[str],
    names: Sequence[str] = (),
) -> tuple[str, list[Fix]]:
    """Drop the lowest-priority sentences until the message fits; else the first fallback that fits
    and says something, or failing that the first that fits."""
    channel = catalog.channels[channel_name]
    fixes: list[Fix] = []
    lines = _split(message)
    title = " ".join(lines[0]) if lines else ""
    if channel.title_max_chars and len(title) > channel.title_max_chars and fallbacks:
        # A first sentence too long for a subject line: the draft's headline becomes the title.
        headline = fallbacks[0].split("\n", 1)[0]
        if headline and len(headline) <= channel.title_max_chars:
            fixes.append(Fix("title", "", headline, f"first line over the {channel.label} title limit: headline added as title"))  # fmt: skip
            lines.insert(0, [headline])
            message = _join(lines)
    while not check_length(message, channel_name, channel)["passed"]:
        spot = _lowest_priority(lines, lang)
        if spot is None:
            fitting = [t for t in fallbacks if t and check_length(t, channel_name, channel)["passed"]]
            if not fitting:
                return message, fixes
            text = _best_fallback(fitting, lang, names)
            fixes.append(Fix("length", message, text,
                             f"over the {channel.label} limit: one line and the call to action only"))  # fmt: skip
            return text, fixes
        i, j = spot
        fixes.append(Fix("length", lines[i].pop(j), "",
                         f"over the {channel.label} limit: lowest-priority sentence dropped"))  # fmt: skip
        lines = [line for line in lines if line]
        message = _join(lines)
    return message, fixes


def repair_message(
    message: str,
    *,
    lang: str,
    channel: str,
    catalog: Catalog,
    evidence: Sequence[Mapping[str, Any]],
    draft: Mapping[str, Any] | None = None,
    brand_id: str | None = None,
    subject: str = "",
    names: Sequence[str] = (),
) -> tuple[str, list[dict[str, str]]]:
    """The repaired message and the fixes made (as dicts: rule, before, after, reason). `names`: the
    brand and product names (`checks.subject_terms`), which alone say nothing."""
    if not message.strip():
        return message, []
    brand = catalog.brands.get(brand_id or "")
    allowed = brand.allowed_wording if brand else {}
    fixes: list[Fix] = []
    message, found = repair_markup(message)
    fixes += found
    message, found = repair_notes(message, lang)
    fixes += found
    known = known_words(catalog, names)
    message, found = repair_names(message, names, known)
    fixes += found
    message, found = repair_reviews(message, evidence)
    fixes += found
    message, found = repair_claims(message, lang, evidence, allowed)
    fixes += found
    message, found = repair_prices(message, evidence, catalog)
    fixes += found
    cta = str((draft or {}).get("call_to_action") or "")
    message, found = repair_cta(message, lang, cta)
    fixes += found
    cta_line = cta if cta and has_call_to_action(cta, lang) else DEFAULT_CTA[lang]
    headline = str((draft or {}).get("headline") or "").strip()
    own = [s for line in _split(message) for s in line if not has_call_to_action(s, lang)]
    fallbacks = [f"{headline}\n{cta_line}" if headline else "",
                 *(f"{headline}\n{s}\n{cta_line}" for s in own if headline),
                 *(f"{s}\n{cta_line}" for s in own), f"{subject} {cta_line}".strip(), cta_line]  # fmt: skip
    message, found = repair_length(message, lang, channel, catalog, fallbacks, names or [subject])
    fixes += found
    message, found = repair_names(message, names, known)  # a headline taken from the draft
    fixes += found
    return message, [asdict(f) for f in fixes]
