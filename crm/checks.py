"""Output safety for CRM messages: deterministic, model-free checks.

- grounding: every number, price, discount/percentage, volume, date and ingredient in the message
  appears in the evidence (product facts, reviews for plain numbers, the event). Tone exemplars never
  ground a fact: they are other products' copy. A price after the event's discount counts as grounded.
- claims: no medical/cure claims, no absolute promises, no "No. 1"/"최고"-type superlative unless the
  same phrase is in the product facts or the event (Korean and English).
- length: the channel's limit from data/crm/channels.yaml (characters or EUC-KR bytes, title line).
- personalisation: no sensitive personal attributes of the recipient (health, age, money, religion,
  orientation, ethnicity, family status, body, location/tracking).
- language: the message is in the requested language.
- subject: the message names what it promotes (the brand, the product or its category).
- reads: the message reads as one (sentences, a call to action, no broken words, no keyword lists:
  crm/readable.py).
- citations (the draft): every draft point cites at least one retrieved evidence id, none unknown.

Limits: numbers written as words (삼만 원, "twenty") and relative dates ("이번 주말") are not
extracted; such messages pass grounding unless they also contain digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from personagraph.crm.catalog import Catalog, Channel
from personagraph.crm.readable import check_reads_as_message, explain_reads
from personagraph.safety.rules import leaks_prompt, repeats_words
from personagraph.serving.language import detect_language

GROUNDING_KINDS = {"product", "event"}  # what grounds prices, percentages, volumes, dates, ingredients
NUMBER_KINDS = {"product", "event", "review"}  # what grounds a plain number ("2주", "3단계")


@dataclass(frozen=True)
class Fact:
    kind: str  # price | discount | percent | volume | date | number | ingredient
    text: str  # as written in the message
    value: str  # normalised key compared against the evidence
    start: int = 0
    end: int = 0


_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}  # fmt: skip
_DATE_ISO = re.compile(r"(?<!\d)(20\d{2})\s*[-./]\s*(\d{1,2})\s*[-./]\s*(\d{1,2})(?!\d)")
_DATE_KO = re.compile(r"(?:(20\d{2})\s*년\s*)?(\d{1,2})\s*월\s*(\d{1,2})\s*일")
_DATE_EN = re.compile(
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b(?:,?\s*(20\d{2}))?",
    re.IGNORECASE,
)
_DATE_SLASH = re.compile(r"(?<![\d/.])(\d{1,2})\s*/\s*(\d{1,2})(?![\d/])")
_PRICE_MAN = re.compile(r"(\d+(?:\.\d+)?)\s*만\s*(?:(\d)\s*천\s*)?원")
_PRICE = re.compile(r"(?:₩|krw\s?)\s*(\d[\d,]*)|(\d[\d,]*)\s*(?:원|won\b|krw\b)", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|％|퍼센트|percent\b)", re.IGNORECASE)
_DISCOUNT_CUE = re.compile(r"할인|세일|off\b|sale|discount|저렴|인하|쿠폰|coupon", re.IGNORECASE)
_VOLUME = re.compile(r"(\d+(?:\.\d+)?)\s*(ml|mℓ|㎖|ℓ|kg|g|oz|매|개입|ea|pcs)(?![a-z])", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_UNITS = {"mℓ": "ml", "㎖": "ml", "ℓ": "l", "ea": "개", "pcs": "개", "개입": "개"}


def _num(text: str) -> str:
    """Canonical number: commas dropped, trailing '.0' dropped ('1,000' -> '1000', '2.50' -> '2.5')."""
    cleaned = text.replace(",", "")
    if "." in cleaned:
        cleaned = cleaned.rstrip("0").rstrip(".")
    return cleaned.lstrip("0") or "0"


def _date_keys(year: str | None, month: int, day: int) -> list[str]:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return []
    keys = [f"{month}-{day}"]
    if year:
        keys.insert(0, f"{year}-{month}-{day}")
    return keys


def extract_numeric_facts(text: str) -> list[Fact]:
    """Dates, prices, percentages/discounts, volumes, then any other number (each span counted once)."""
    facts: list[Fact] = []
    taken: list[tuple[int, int]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    def add(kind: str, match: re.Match[str], value: str) -> None:
        facts.append(Fact(kind, match.group(0).strip(), value, match.start(), match.end()))
        taken.append((match.start(), match.end()))

    for match in _DATE_ISO.finditer(text):
        keys = _date_keys(match.group(1), int(match.group(2)), int(match.group(3)))
        if keys:
            add("date", match, keys[0])
    for match in _DATE_KO.finditer(text):
        keys = _date_keys(match.group(1), int(match.group(2)), int(match.group(3)))
        if keys and free(match.start(), match.end()):
            add("date", match, keys[0])
    for match in _DATE_EN.finditer(text):
        keys = _date_keys(match.group(3), _MONTHS[match.group(1).lower()[:3]], int(match.group(2)))
        if keys and free(match.start(), match.end()):
            add("date", match, keys[0])
    for match in _DATE_SLASH.finditer(text):
        keys = _date_keys(None, int(match.group(1)), int(match.group(2)))
        if keys and free(match.start(), match.end()):
            add("date", match, keys[0])
    for match in _PRICE_MAN.finditer(text):
        if free(match.start(), match.end()):
            value = float(match.group(1)) * 10000 + int(match.group(2) or 0) * 1000
            add("price", match, str(int(value)))
    for match in _PRICE.finditer(text):
        if free(match.start(), match.end()):
            add("price", match, _num(match.group(1) or match.group(2)))
    for match in _PERCENT.finditer(text):
        if free(match.start(), match.end()):
            window = text[max(0, match.start() - 12) : match.end() + 12]
            add("discount" if _DISCOUNT_CUE.search(window) else "percent", match, _num(match.group(1)))
    for match in _VOLUME.finditer(text):
        if free(match.start(), match.end()):
            unit = match.group(2).lower()
            add("volume", match, _num(match.group(1)) + _UNITS.get(unit, unit))
    for match in _NUMBER.finditer(text):
        if free(match.start(), match.end()):
            add("number", match, _num(match.group(0)))
    return sorted(facts, key=lambda f: f.start)


def _alias_pattern(alias: str) -> str:
    body = r"\s*".join(re.escape(part) for part in alias.split())
    if alias[:1].isascii() and alias[:1].isalpha():
        body = r"(?<![a-z])" + body
    if alias[-1:].isascii() and alias[-1:].isalpha():
        body += r"(?![a-z])"
    return body


def ingredient_patterns(catalog: Catalog) -> dict[str, re.Pattern[str]]:
    patterns = {}
    for key, item in catalog.ingredients.items():
        aliases = sorted({item.name, *item.aliases}, key=len, reverse=True)
        patterns[key] = re.compile("|".join(_alias_pattern(a) for a in aliases), re.IGNORECASE)
    return patterns


def extract_ingredients(text: str, patterns: Mapping[str, re.Pattern[str]]) -> list[Fact]:
    found = []
    for key, pattern in patterns.items():
        match = pattern.search(text)
        if match:
            found.append(Fact("ingredient", match.group(0), key, match.start(), match.end()))
    return found


# --- claims and personalisation (Korean and English) -------------------------------------------------

CLAIM_RULES: dict[str, list[str]] = {
    "medical": [
        r"치료", r"완치", r"치유", r"의약품", r"약효", r"질병", r"질환", r"피부병", r"염증", r"아토피",
        r"세포\s*재생", r"피부\s*재생", r"항염", r"살균", r"의학적", r"임상(?:적으로)?\s*(?:입증|증명)",
        r"\bcures?\b", r"\bcured\b", r"\bheals?\b", r"\bhealing\b", r"\btreat(?:s|ing|ment)?\b(?!\s+yourself)",
        r"\bmedical\b", r"\bmedicine\b", r"\bdrug\b", r"\bdiseases?\b", r"\beczema\b", r"\binflammation\b",
        r"\bclinically proven\b", r"\bprescription\b", r"\bfda\b",
    ],
    "absolute": [
        r"부작용\s*(?:이\s*)?(?:없|제로|0)", r"100\s*%\s*(?:효과|안전|만족|보장)", r"영구적", r"평생\s*효과",
        r"즉시\s*효과", r"효과\s*보장", r"보장", r"완벽", r"\bno side effects?\b", r"\bguaranteed?\b", r"\bpermanent(?:ly)?\b",
        r"\binstant results?\b", r"\b100\s*% (?:safe|effective)\b",
    ],
    "superlative": [
        r"1\s*위", r"넘버\s*원", r"no\.?\s*1\b", r"#\s*1\b", r"최고", r"최상", r"최초", r"유일(?:한|의)?",
        r"가장\s*(?:좋은|효과적|뛰어난|많이\s*팔린|잘\s*팔리는)", r"\bnumber\s*one\b", r"\bbest[- ]?sell(?:ing|er)\b",
        r"\bthe best\b", r"\bworld'?s first\b", r"\bunbeatable\b", r"\bmost effective\b",
        r"\b\w+est\b(?:\s+\w+){0,3}\s+ever\b", r"\bever made\b",
    ],
}  # fmt: skip

PERSONAL_RULES: dict[str, list[str]] = {
    "health": [r"임신", r"임산부", r"출산", r"당뇨", r"암\s*(?:환자|투병)", r"우울증", r"장애(?:인|가)",
               r"\bpregnan\w*", r"\bdiabet\w*", r"\bcancer\b", r"\bdepress\w*", r"\bdisabilit\w*"],
    "age": [r"\d+\s*(?:세|살)(?:이신|인|이|의|\s)", r"\d+\s*대\s*(?:여성|남성|고객|이신|인)",
            r"\b\d+\s*years?\s*old\b", r"\byour age\b"],
    "finances": [r"소득", r"연봉", r"월급", r"빚", r"대출", r"형편", r"가난", r"\bincome\b", r"\bsalary\b",
                 r"\bdebts?\b", r"\bloans?\b", r"\bbroke\b"],
    "religion": [r"종교", r"교회", r"성당", r"\breligio\w*", r"\bchurch\b"],
    "orientation": [r"성적\s*지향", r"동성애", r"게이", r"레즈비언", r"\bsexual orientation\b", r"\bgay\b",
                    r"\blesbian\b"],
    "ethnicity": [r"인종", r"국적", r"다문화", r"\bethnic\w*", r"\brace\b", r"\bnationality\b"],
    "family": [r"이혼", r"미혼", r"기혼", r"싱글이신", r"\bdivorc\w*", r"\bmarital\b"],
    "body": [r"몸무게", r"체중", r"\bweight\b", r"\bbody shape\b"],
    "tracking": [r"현재\s*위치", r"근처에\s*계신", r"위치\s*정보", r"검색\s*기록", r"검색하신", r"방문\s*기록",
                 r"\byour location\b", r"\bnear you right now\b", r"\bbrowsing history\b", r"\bsearch history\b",
                 r"\bwe know (?:you|that you)\b"],
}  # fmt: skip

_CLAIMS = {k: [re.compile(p, re.IGNORECASE) for p in v] for k, v in CLAIM_RULES.items()}
_PERSONAL = {k: [re.compile(p, re.IGNORECASE) for p in v] for k, v in PERSONAL_RULES.items()}


def find_claim_spans(text: str, evidence_text: str = "") -> list[tuple[str, int, int]]:
    """(category, start, end) of every forbidden claim; a superlative is allowed when the evidence
    states the same phrase."""
    found = []
    for category, patterns in _CLAIMS.items():
        for pattern in patterns:
            for match in pattern.finditer(text):
                if category == "superlative" and re.search(pattern, evidence_text):
                    continue
                found.append((category, match.start(), match.end()))
    return found


def find_claims(text: str, evidence_text: str = "") -> list[dict[str, str]]:
    """Forbidden claims in the text (see `find_claim_spans`)."""
    return [{"category": c, "text": text[a:b]} for c, a, b in find_claim_spans(text, evidence_text)]


def find_personal(text: str) -> list[dict[str, str]]:
    found = []
    for category, patterns in _PERSONAL.items():
        for pattern in patterns:
            found += [{"category": category, "text": m.group(0).strip()} for m in pattern.finditer(text)]
    return found


# --- length --------------------------------------------------------------------------------------------


def encoded_length(text: str, encoding: str) -> int:
    total = 0
    for char in text:
        try:
            total += len(char.encode(encoding))
        except UnicodeEncodeError:
            total += 4
    return total


def check_length(text: str, channel_name: str, channel: Channel) -> dict[str, Any]:
    value = encoded_length(text, channel.encoding) if channel.measure == "bytes" else len(text)
    result: dict[str, Any] = {
        "passed": value <= channel.max, "channel": channel_name, "measure": channel.measure,
        "value": value, "limit": channel.max,
    }  # fmt: skip
    if channel.title_max_chars is not None:
        title = text.strip().split("\n", 1)[0]
        result["title_chars"] = len(title)
        result["title_limit"] = channel.title_max_chars
        result["passed"] = result["passed"] and len(title) <= channel.title_max_chars
    return result


# --- grounding -----------------------------------------------------------------------------------------


def evidence_keys(evidence: Sequence[Mapping[str, Any]], catalog: Catalog) -> dict[str, dict[str, set[str]]]:
    """For each fact kind, the normalised values the evidence supports, with the ids that state them."""
    patterns = ingredient_patterns(catalog)
    keys: dict[str, dict[str, set[str]]] = {}

    def put(kind: str, value: str, evidence_id: str) -> None:
        keys.setdefault(kind, {}).setdefault(value, set()).add(evidence_id)

    discounts: list[tuple[str, str]] = []
    prices: list[tuple[int, str]] = []
    for item in evidence:
        kind, text, eid = str(item.get("kind")), str(item.get("text", "")), str(item.get("id"))
        if kind not in NUMBER_KINDS:
            continue
        for raw in _NUMBER.findall(text):
            put("number", _num(raw), eid)
        if kind not in GROUNDING_KINDS:
            continue
        for fact in extract_numeric_facts(text):
            if fact.kind == "date":
                parts = fact.value.split("-")
                for key in _date_keys(parts[0] if len(parts) == 3 else None, int(parts[-2]), int(parts[-1])):
                    put("date", key, eid)
                continue
            kind_key = "percent" if fact.kind == "discount" else fact.kind
            put(kind_key, fact.value, eid)
            if fact.kind in ("discount", "percent"):
                discounts.append((fact.value, eid))
            if fact.kind == "price" and kind == "product":
                # Only a product's price is discounted: an event's threshold ("30,000원 이상") is not.
                prices.append((int(fact.value), eid))
        for fact in extract_ingredients(text, patterns):
            put("ingredient", fact.value, eid)
    # A price after the event's discount is supported by the price and the event together.
    for price, price_id in prices:
        for percent, event_id in discounts:
            discounted = price * (100 - float(percent)) / 100
            for value in {
                round(discounted),
                int(round(discounted / 10) * 10),
                int(round(discounted / 100) * 100),
            }:
                put("price", str(value), price_id)
                put("price", str(value), event_id)
    return keys


def _supported(fact: Fact, keys: Mapping[str, Mapping[str, set[str]]]) -> set[str]:
    kind = "percent" if fact.kind == "discount" else fact.kind
    return set(keys.get(kind, {}).get(fact.value, set()))


def check_grounding(text: str, evidence: Sequence[Mapping[str, Any]], catalog: Catalog) -> dict[str, Any]:
    keys = evidence_keys(evidence, catalog)
    facts = extract_numeric_facts(text) + extract_ingredients(text, ingredient_patterns(catalog))
    supported, unsupported = [], []
    for fact in sorted(facts, key=lambda f: f.start):
        ids = _supported(fact, keys)
        entry = {"kind": fact.kind, "text": fact.text, "start": fact.start, "end": fact.end}
        if ids:
            supported.append({**entry, "evidence_ids": sorted(ids)})
        else:
            unsupported.append(entry)
    return {"passed": not unsupported, "supported": supported, "unsupported": unsupported}


def check_citations(draft: Mapping[str, Any] | None, evidence_ids: Iterable[str]) -> dict[str, Any]:
    known = set(evidence_ids)
    unknown: list[str] = []
    uncited = 0
    for point in (draft or {}).get("points", []):
        ids = [str(i).strip("[] ") for i in point.get("evidence_ids", [])]
        if not ids:
            uncited += 1
        unknown += [i for i in ids if i not in known]
    return {
        "passed": not unknown and not uncited,
        "unknown_ids": sorted(set(unknown)),
        "uncited_points": uncited,
    }


# A line of a Korean message with no Hangul and this many English words is not the message: the
# stylist's note about its own rewrite ("This corrected version follows the provided rules by:" passed
# in the eval) or a label. A short English call to action ("Shop now") or a product name is fine.
FOREIGN_LINE_WORDS = 5


def foreign_lines(text: str, lang: str) -> list[str]:
    """Lines of a Korean message written in English (see FOREIGN_LINE_WORDS), and English headings
    ending in a colon ("Problems to fix:", a line of the stylist's rewrite prompt copied in the eval)."""
    if lang != "ko":
        return []
    return [
        line.strip()
        for line in text.splitlines()
        if not re.search(r"[가-힣]", line)
        and (
            len(re.findall(r"[A-Za-z]+", line)) >= FOREIGN_LINE_WORDS
            or re.fullmatch(r"\s*[A-Za-z][A-Za-z ]*:\s*", line)
        )
    ]


def check_language(text: str, lang: str) -> dict[str, Any]:
    detected = detect_language(text) if text.strip() else "?"
    foreign = foreign_lines(text, lang)
    return {
        "passed": detected == lang and not foreign,
        "expected": lang,
        "detected": detected,
        "foreign_lines": foreign,
    }


def subject_terms(catalog: Catalog, product_id: str) -> list[str]:
    """Words that name what a message promotes: brand and product names (ko/en) and the category."""
    product = catalog.products[product_id]
    brand = catalog.brands[product.brand_id]
    short = product.name.removeprefix(brand.name).strip()
    return [
        brand.name,
        brand.name_en,
        product.name,
        short,
        product.name_en,
        product.category_ko,
        product.category_en,
    ]


def check_subject(text: str, terms: Sequence[str]) -> dict[str, Any]:
    squashed = re.sub(r"\s+", "", text).lower()
    found = [t for t in terms if t and re.sub(r"\s+", "", t).lower() in squashed]
    return {"passed": bool(found), "found": found}


# Words in a row that make a message's text a copy of a customer review. Reviews are what customers
# wrote (untrusted text, issue 16): a message says what customers like in the brand's words, and a
# review pasted into it would send a stranger's text (a link, a phone number, an instruction) to
# every customer. Six Korean words (eojeol) or English words are a clause, not a shared phrase.
REVIEW_COPY_WORDS = 6
# A tag in a message: messages are plain text, and a tag is the prompt's own markup copied (the 1.5B
# stylist once wrote its input's `<data id=...>` fence and an HTML list into a Kakao message).
MARKUP = re.compile(r"</?[A-Za-z][^<>\n]{0,200}>")


def copied_reviews(message: str, evidence: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids of the reviews the message repeats REVIEW_COPY_WORDS words in a row of."""
    return [
        str(e.get("id"))
        for e in evidence
        if e.get("kind") == "review" and repeats_words(message, str(e.get("text", "")), REVIEW_COPY_WORDS)
    ]


def known_words(catalog: Catalog, subject: Sequence[str] = ()) -> list[str]:
    """Words a message may use that no dictionary knows: names, ingredients, the brands' own words."""
    known = [*subject, *(n for i in catalog.ingredients.values() for n in (i.name, *i.aliases))]
    return known + [n for b in catalog.brands.values() for n in (b.name, *b.words_used)]


def run_checks(
    message: str,
    *,
    evidence: Sequence[Mapping[str, Any]],
    catalog: Catalog,
    channel: str,
    lang: str = "ko",
    draft: Mapping[str, Any] | None = None,
    subject: Sequence[str] | None = None,
    instructions: str = "",
) -> dict[str, Any]:
    """Every check on a final message; `passed` is True only when all pass, `reasons` say what failed.
    `instructions`: the prompts' own rules, which a message must not repeat."""
    grounding_text = "\n".join(str(e.get("text", "")) for e in evidence if e.get("kind") in GROUNDING_KINDS)
    checks: dict[str, Any] = {
        "nonempty": {"passed": bool(message.strip())},
        "grounding": check_grounding(message, evidence, catalog),
        "claims": {"passed": True, "found": find_claims(message, grounding_text)},
        "length": check_length(message, channel, catalog.channels[channel]),
        "personalisation": {"passed": True, "found": find_personal(message)},
        "language": check_language(message, lang),
        "instructions": {"passed": not leaks_prompt(message, instructions)},
        "markup": {"passed": True, "found": MARKUP.findall(message)},
        "reviews": {"passed": True, "copied": copied_reviews(message, evidence)},
    }
    if subject is not None:
        checks["subject"] = check_subject(message, subject)
    known = known_words(catalog, subject or [])
    checks["reads"] = check_reads_as_message(message, lang, known, names=subject or [])
    checks["claims"]["passed"] = not checks["claims"]["found"]
    checks["reviews"]["passed"] = not checks["reviews"]["copied"]
    checks["markup"]["passed"] = not checks["markup"]["found"]
    checks["personalisation"]["passed"] = not checks["personalisation"]["found"]
    if draft is not None:
        checks["citations"] = check_citations(draft, [str(e.get("id")) for e in evidence])
    reasons = explain(checks)
    # Draft citations are reported but do not fail the final message (the message is what is sent).
    passed = all(v["passed"] for k, v in checks.items() if k != "citations")
    return {"passed": passed, "checks": checks, "reasons": reasons}


def explain(checks: Mapping[str, Any]) -> list[str]:
    """One plain sentence per failed check, usable as instructions for a rewrite."""
    reasons = []
    if not checks.get("nonempty", {}).get("passed", True):
        reasons.append("nonempty: the message is empty")
    if not checks.get("instructions", {}).get("passed", True):
        reasons.append("instructions: the message repeats the rules you were given; write only the message")
    markup = checks.get("markup", {}).get("found")
    if markup:
        reasons.append(f"markup: write plain text, without tags such as {', '.join(markup[:3])}")
    copied = checks.get("reviews", {}).get("copied")
    if copied:
        reasons.append(f"reviews: the message copies customer reviews word for word ({', '.join(copied)}); "
                       "say what customers like in your own words")  # fmt: skip
    grounding = checks.get("grounding", {})
    if grounding.get("unsupported"):
        listed = ", ".join(f"{u['text']} ({u['kind']})" for u in grounding["unsupported"])
        reasons.append(f"grounding: not in the product data or the event, remove or correct: {listed}")
    claims = checks.get("claims", {})
    if claims.get("found"):
        listed = ", ".join(f"'{c['text']}' ({c['category']})" for c in claims["found"])
        reasons.append(f"claims: cosmetics advertising may not say {listed}; remove these words")
    length = checks.get("length", {})
    if length and not length.get("passed", True):
        unit = "bytes (EUC-KR, Korean = 2)" if length["measure"] == "bytes" else "characters"
        text = f"length: {length['value']} {unit} exceeds the {length['channel']} limit of {length['limit']}"
        if length.get("title_limit") is not None and length.get("title_chars", 0) > length["title_limit"]:
            text += f"; first line {length['title_chars']} characters, limit {length['title_limit']}"
        reasons.append(text + "; shorten it")
    personal = checks.get("personalisation", {})
    if personal.get("found"):
        listed = ", ".join(f"'{p['text']}' ({p['category']})" for p in personal["found"])
        reasons.append(f"personalisation: do not mention the customer's sensitive attributes: {listed}")
    language = checks.get("language", {})
    if language and not language.get("passed", True):
        text = f"language: write in {'Korean' if language['expected'] == 'ko' else 'English'}"
        if language.get("foreign_lines"):
            text += f"; remove the lines that are not the message: {language['foreign_lines'][:2]}"
        reasons.append(text)
    if not checks.get("subject", {}).get("passed", True):
        reasons.append("subject: name the brand or the product the message is about")
    reads = checks.get("reads", {})
    if reads and not reads.get("passed", True):
        reasons.append(explain_reads(reads, str(checks.get("language", {}).get("expected", "ko"))))
    citations = checks.get("citations", {})
    if citations and not citations.get("passed", True):
        reasons.append(
            f"citations (draft): unknown evidence ids {citations['unknown_ids']}, "
            f"{citations['uncited_points']} point(s) without evidence"
        )
    return reasons
