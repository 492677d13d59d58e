"""Does a CRM message read as a message? Sentences, a call to action, no broken words, no keyword lists.

The other checks catch what is forbidden; this one catches what is not a message at all, such as
"루미에르 르 세럼 앱솔뤼: 고급스러운 사용감, 햝, 패키지, 선물, 프리미엄 원료, 비싸도 만족." (a list of
review keywords with a broken syllable and nothing for the reader to do).

- sentences: Korean needs a sentence-final ending (Kiwi tag EF: 남깁니다, 보세요, 챙겨요); English a
  verb (a word list plus a few verb endings). At least one sentence must have one, and after the first
  line (a headline or a subject line may be a phrase) at most half of the sentences may lack one.
- call to action: an invitation to act (보세요, 확인, 구매, shop, try, discover ...).
- broken words: a Hangul word with a syllable outside KS X 1001's 2,350 (촉촠하게, 햝), or one Kiwi can
  only analyse as a rare noun (its score per syllable below
  BROKEN_SCORE: 햝 -26.7, while 꿀템 is -15.7 and 스쿠알란 -9.3) or a stray jamo coda (Z_CODA).
  Names and ingredients of the catalog (`known`) are never broken.
- keyword lists: a sentence of KEYWORD_ITEMS or more comma- or dot-separated items with no
  sentence-final ending or verb in it (in English: or all but one of them three words or fewer).
- says something: besides the names of the brand and product (`names`), the call to action and the
  "(광고)" marker, the message has CONTENT_WORDS content words or more ("신상 컬러 도착!"), or one fewer
  when one of them is a predicate (새로 나왔어요, melts) or an offer (a number, 할인, off).
  "루미에르 르 세럼 앱솔뤼: 건성 / 지금 확인해 보세요" (a too-long draft cut to its name, a keyword and
  the call to action) has one content word and says nothing. The items of a list with no predicate
  count as one ("…젤: 지성, 복합성, 중성" says nothing either).
- cut lines: no line ends in an adnominal ending with nothing after it ("피부를 위한", "가격을 얻을"):
  Korean never ends there; it is a slot or a sentence cut at its length limit.
- names: no word one letter off the brand's or product's name ("루미에르" for 뤼미에르).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from personagraph.serving.language import korean_morphemes

BROKEN_SCORE = -20.0  # Kiwi's score per syllable below which a lone noun is a broken word
KEYWORD_ITEMS = 4  # separated items in one sentence without a predicate that make a keyword list
CONTENT_WORDS = 3  # content words beyond the names and the call to action a message needs

_HANGUL = re.compile(r"[가-힣]")
# Item separators; a comma or slash between digits (28,000원, 11/14) separates nothing.
_SPLIT_ITEMS = re.compile(r"\s*(?:(?<!\d)[,，/]|[,，/](?!\d)|[、·•|])\s*")
_SENTENCE_EN = re.compile(r"(?<=[.!?])\s+|\n+")

CTA_KO = re.compile(
    r"보세요|봐요|하세요|주세요|으세요|세요[.!~ ]*$|십시오|보시겠어요|보실래요|어떠세요|볼까요|시겠어요"
    r"|확인|구매|주문|신청|클릭|방문|예약|참여|바로\s*가기|링크|쿠폰\s*받|다운로드|장바구니|만나\s*보|담아\s*가",
    re.MULTILINE,
)
CTA_EN = re.compile(
    r"\b(?:shop|buy|order|try|discover|explore|visit|tap|click|get|claim|grab|book|join|see|find|meet|learn|"
    r"start|add|pick|sign\s+up|don't\s+miss|reply|treat\s+yourself|check\s+out|come|save|enjoy|unlock)\b",
    re.IGNORECASE,
)

# Words that only push the call to action along ("지금 확인해 보세요", "Shop now"): not content.
_FILLER_WORDS_KO = "지금 바로 오늘 꼭 한번 한 번 어서 얼른 더 함께 여기 이제 가능 광고"
_STOP_WORDS_EN = """
a an the and or but of to in on at for with from by as is are be it its this that these those your you
we our us my me i now today here there just more so very all any some not no yes it's what how when
"""
_FILLER_KO = frozenset(_FILLER_WORDS_KO.split())
_STOPWORDS_EN = frozenset(_STOP_WORDS_EN.split())
_CONTENT_TAGS_KO = frozenset({"NNG", "NNP", "VV", "VA", "XR", "MAG", "SL", "SN"})
_PREDICATE_TAGS_KO = frozenset({"VV", "VA"})  # a root (XR: 촉촉, 민감) only with 하다 after it
_OFFER = re.compile(r"\d|할인|세일|증정|쿠폰|무료|적립|\b(?:off|sale|free|discount|coupon)\b", re.IGNORECASE)

# English verbs a marketing message uses, plus auxiliaries; any word ending in a clear verb suffix
# also counts (see `_has_verb_en`).
_VERB_WORDS = """
am is are was were be been being have has had do does did can could will would shall should may
might must get gets got give gives make makes made take takes try tries shop shops discover
discovers explore explores visit visits tap click claim grab book join see sees find finds meet
meets learn start starts add adds pick picks reply treat enjoy enjoys save saves unlock unlocks
come comes bring brings keep keeps let lets leave leaves feel feels look looks need needs want
wants love loves like likes use uses apply applies melt melts absorb absorbs soothe soothes calm
calms hydrate hydrates nourish nourishes protect protects brighten brightens glow glows smooth
smooths refresh refreshes restore restores renew renews fill fills help helps care cares stay stays
wait waits deserve deserves welcome welcomes share shares invite invites gift gifts tell tells say
says know knows go goes ends end begin begins arrive arrives arrived open opens wrap wraps finish
finishes lock locks balance balances support supports boost boosts order buy sign check miss
"""
_VERBS_EN = frozenset(_VERB_WORDS.split())
_VERB_SUFFIX_EN = re.compile(r"^[a-z]+(?:ed|ize|izes|ise|ises|ify|ifies)$|n't$|'(?:s|re|ll|ve|d|m)$")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _sentences_ko(line: str) -> list[tuple[str, bool]]:
    """(sentence, has a sentence-final ending) for each sentence Kiwi finds in one line."""
    tokens = korean_morphemes(line)
    sentences: dict[int, list[Any]] = {}
    for token in tokens:
        sentences.setdefault(token.sent_position, []).append(token)
    out = []
    for group in sentences.values():
        start, end = group[0].start, group[-1].start + group[-1].len
        out.append((line[start:end], any(t.tag == "EF" for t in group)))
    return out


def _has_verb_en(sentence: str) -> bool:
    words = re.findall(r"[a-zA-Z']+", sentence.lower())
    return any(w in _VERBS_EN or _VERB_SUFFIX_EN.search(w) for w in words)


def sentences(text: str, lang: str) -> list[tuple[int, str, bool]]:
    """(line number, sentence, has a predicate) for every sentence of the message."""
    out = []
    for number, line in enumerate(_lines(text)):
        if lang == "ko" and _HANGUL.search(line):
            out += [(number, s, ok) for s, ok in _sentences_ko(line)]
        else:
            out += [(number, s.strip(), _has_verb_en(s)) for s in _SENTENCE_EN.split(line) if s.strip()]
    return out


def has_call_to_action(text: str, lang: str) -> bool:
    """An invitation to act; a Korean message may also use an English one ("Shop now")."""
    return bool(CTA_EN.search(text)) or (lang == "ko" and bool(CTA_KO.search(text)))


def rare_syllable(char: str) -> bool:
    """A Hangul syllable outside the 2,350 of KS X 1001 (EUC-KR writes it as an 8-byte jamo sequence):
    nearly always a typo or a garbled word (촠, 햝), never in ordinary copy."""
    return len(char.encode("euc_kr")) != 2


def _word_at(text: str, position: int) -> str:
    """The whitespace-delimited word around `position`."""
    start = max(text.rfind(" ", 0, position), text.rfind("\n", 0, position)) + 1
    ends = [i for i in (text.find(" ", position), text.find("\n", position)) if i >= 0]
    return text[start : min(ends) if ends else len(text)]


_GLUED_LATIN = re.compile(r"[가-힣]+-?[a-z]{3,}")  # "app에서" (a particle after English) is fine


def broken_words(text: str, known: Iterable[str] = ()) -> list[str]:
    """Hangul tokens Kiwi cannot analyse as real words (see BROKEN_SCORE), minus the known names."""
    squashed_known = {re.sub(r"\s+", "", k) for k in known if k}
    found = [
        word
        for word in re.findall(r"[가-힣]+", text)
        if any(rare_syllable(c) for c in word) and not any(word in k for k in squashed_known)
    ]
    tokens = korean_morphemes(text)
    for token, after in zip(tokens, tokens[1:], strict=False):
        # Two words run together: an adnominal ending glued to an adverb ("위한지금": a headline and
        # a call to action joined without a space, seen in the eval).
        if token.tag == "ETM" and after.tag == "MAG" and after.start == token.start + token.len:
            found.append(_word_at(text, token.start))
    # An English word glued after a Korean one ("고-priced", seen in the eval): half a translation.
    found += [m.group(0) for m in _GLUED_LATIN.finditer(text) if not any(m.group(0) in k for k in known)]
    for token in tokens:
        if token.tag == "Z_CODA":
            found.append(text[max(0, token.start - 1) : token.start + token.len])
            continue
        if not token.tag.startswith("NN") or not _HANGUL.search(token.form):
            continue
        syllables = len(_HANGUL.findall(token.form))
        if token.score / max(syllables, 1) >= BROKEN_SCORE:
            continue
        if any(token.form in k for k in squashed_known):
            continue
        found.append(token.form)
    return found


def _spans(text: str, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(text)]


def _name_spans(text: str, names: Iterable[str]) -> list[tuple[int, int]]:
    """Where the brand and product names occur (spaces inside a name may differ)."""
    spans: list[tuple[int, int]] = []
    for name in names:
        words = name.split()
        if words:
            pattern = re.compile(r"\s*".join(re.escape(w) for w in words), re.IGNORECASE)
            spans += _spans(text, pattern)
    return spans


_WORD = re.compile(r"[^\W\d_]+")  # letters of any script


def _name_like(word: str, name_word: str) -> bool:
    """`word` is `name_word`, with up to two letters after it (a particle: 세럼이, 뤼미에르의) and one
    letter typed differently in a name of three or more (루미에르 for 뤼미에르, Lumiére)."""
    if len(name_word) == 1 or len(word) < len(name_word) or len(word) - len(name_word) > 2:
        return word == name_word  # a one-letter word of a name (르) only as itself
    head = word[: len(name_word)].lower()
    differences = sum(a != b for a, b in zip(head, name_word.lower(), strict=True))
    return differences == 0 or (differences == 1 and len(name_word) >= 3)


def _name_word_spans(text: str, names: Iterable[str]) -> list[tuple[int, int]]:
    """Where a word of a name stands alone, possibly misspelt by one letter ("루미에르 르 세럼")."""
    name_words = {w for name in names for w in _WORD.findall(name)}
    return [m.span() for m in _WORD.finditer(text) if any(_name_like(m.group(0), w) for w in name_words)]


def misspellings(text: str, names: Iterable[str], known: Iterable[str] = ()) -> list[tuple[int, int, str]]:
    """(start, end, the name's word) of each word one letter off a word of the brand's or product's
    name ("루미에르" for 뤼미에르); the span is the misspelt part (a particle after it stays outside).
    Words in `known` (ingredients, the brand's words) are fine."""
    name_words = {w for name in names for w in _WORD.findall(name) if len(w) >= 3}
    fine = {w.lower() for k in known for w in _WORD.findall(k)} | {w.lower() for w in name_words}
    found = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        if word.lower() in fine:
            continue
        near = [w for w in name_words if _name_like(word, w) and not word.lower().startswith(w.lower())]
        if near:
            found.append((match.start(), match.start() + len(near[0]), near[0]))
    return found


def misspelt_names(text: str, names: Iterable[str], known: Iterable[str] = ()) -> list[str]:
    """Misspelt names as "written (right)": a message a marketer would never send."""
    return [f"{text[a:b]} ({right})" for a, b, right in misspellings(text, names, known)]


def _inside(start: int, end: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(a < end and start < b for a, b in spans)


def _content_ko(text: str, skip: list[tuple[int, int]]) -> tuple[list[str], bool]:
    """Kiwi's content morphemes outside `skip`, and whether one is a predicate. A verb whose auxiliary
    belongs to the call to action ("써 보세요", "시작해 보세요") belongs to it too."""
    tokens = korean_morphemes(text)
    skipped = [_inside(t.start, t.start + t.len, skip) for t in tokens]
    for i in range(len(tokens) - 1, 1, -1):
        if tokens[i].tag == "VX" and skipped[i] and tokens[i - 1].tag == "EC":
            j = i - 2
            skipped[j] = True
            if tokens[j].tag in {"XSV", "XSA"} and j > 0:
                skipped[j - 1] = True
    words: list[str] = []
    predicate = False
    for i, token in enumerate(tokens):
        if skipped[i]:
            continue
        if (
            token.tag in {"XSV", "XSA"}
            and i > 0
            and not skipped[i - 1]
            and tokens[i - 1].tag in {"NNG", "XR"}
        ):
            predicate = True  # 편안하게, 진정해요: a noun made a predicate
        if token.tag not in _CONTENT_TAGS_KO or token.form in _FILLER_KO:
            continue
        words.append(token.form)
        predicate = predicate or token.tag in _PREDICATE_TAGS_KO
    return words, predicate


def _content_en(text: str, skip: list[tuple[int, int]]) -> tuple[list[str], bool]:
    words = [
        m.group(0).lower()
        for m in re.finditer(r"[^\W\d_][^\W\d_']*(?:'[^\W\d_]+)?|\d[\d,.]*%?", text)
        if not _inside(*m.span(), skip) and m.group(0).lower() not in _STOPWORDS_EN
    ]
    return words, _has_verb_en(" ".join(words))


def content_words(text: str, lang: str, names: Iterable[str] = ()) -> tuple[list[str], bool]:
    """What the message says beyond the names and the call to action: its content words, and whether
    it says it with a predicate or an offer (see the module docstring)."""
    names = list(names)
    skip = _name_spans(text, names) + _name_word_spans(text, names) + _spans(text, CTA_EN)
    if lang == "ko":
        skip += _spans(text, CTA_KO)
        words, predicate = _content_ko(text, skip)
        english, english_predicate = _content_en(re.sub(r"[가-힣]+", " ", text), skip)
        words += [w for w in english if not w[0].isdigit()]  # Kiwi already counted the numbers (SN)
        predicate = predicate or english_predicate
    else:
        words, predicate = _content_en(text, skip)
    offer = any(_OFFER.search(w) for w in words)
    return words, predicate or offer


def says_something(text: str, lang: str, names: Iterable[str] = ()) -> tuple[bool, list[str]]:
    """Whether the message says something (see the module docstring), and its content words."""
    words, predicate_or_offer = content_words(text, lang, names)
    count = len(words)
    if not predicate_or_offer:
        # A list with no predicate says one thing however many items it has: "…젤: 지성, 복합성, 중성 /
        # 지금 확인해 보세요" passed the eval with three skin types as its three content words.
        for _, sentence, has_predicate in sentences(text, lang):
            items = [i for i in _SPLIT_ITEMS.split(sentence) if i.strip()]
            count -= 0 if has_predicate else max(0, len(items) - 1)
    return count >= CONTENT_WORDS - (1 if predicate_or_offer else 0), words


def cut_lines(text: str) -> list[str]:
    """Korean lines ending in an adnominal ending (Kiwi's ETM), or in a particle with no punctuation
    after it ("...위한 향과", "...피부를"; "고요한 의식처럼." is a line of the brand's own copy): cut off."""
    found = []
    for line in _lines(text):
        if not _HANGUL.search(line):
            continue
        ending = hanging_ending(line)
        if ending == "adnominal" or ending == "particle" and not re.search(r"[.!?…~]\W*$", line):
            found.append(line)
    return found


def hanging_ending(text: str) -> str | None:
    """How a Korean text's last morpheme (punctuation aside) leaves it hanging: "adnominal" (Kiwi's
    ETM, "...위한"), "particle" (any J tag but the polite 요, "...향과", "...피부를"), else None."""
    tokens = [t for t in korean_morphemes(text) if not t.tag.startswith("S")]
    if not tokens:
        return None
    if tokens[-1].tag == "ETM":
        return "adnominal"
    return "particle" if tokens[-1].tag.startswith("J") and tokens[-1].form != "요" else None


def keyword_lists(text: str, lang: str) -> list[str]:
    """Sentences that are lists of separated items with no predicate (a keyword list, not a message)."""
    found = []
    for _, sentence, has_predicate in sentences(text, lang):
        items = [i for i in _SPLIT_ITEMS.split(sentence) if i.strip()]
        if len(items) < KEYWORD_ITEMS:
            continue
        # English nouns double as verbs ("gift", "care"): there, short items make the list.
        short = sum(len(i.split()) <= 3 for i in items) >= len(items) - 1
        if not has_predicate or (lang != "ko" and short):
            found.append(sentence)
    return found


def check_reads_as_message(
    text: str, lang: str, known: Iterable[str] = (), names: Iterable[str] = ()
) -> dict[str, Any]:
    """The reads-as-a-message check: `passed` and what failed (see the module docstring). `known`:
    words never broken (names, ingredients, the brand's words); `names`: the brand and product names."""
    found = sentences(text, lang)
    names = list(names)
    saying, words = says_something(text, lang, names)
    with_predicate = [s for _, s, ok in found if ok]
    body = [(s, ok) for line, s, ok in found if line > 0] or [(s, ok) for _, s, ok in found[1:]]
    fragments = [s for s, ok in body if not ok]
    result: dict[str, Any] = {
        "sentences": len(found),
        "with_predicate": len(with_predicate),
        "fragments": fragments,
        "call_to_action": has_call_to_action(text, lang),
        "broken_words": broken_words(text, known) if lang == "ko" else [],
        "keyword_lists": keyword_lists(text, lang),
        "content_words": words,
        "misspelt_names": misspelt_names(text, names, known),
        "cut_lines": cut_lines(text) if lang == "ko" else [],
        "says_something": saying,
    }
    result["in_sentences"] = bool(with_predicate) and len(fragments) * 2 <= max(len(body), 1)
    result["passed"] = (
        result["in_sentences"]
        and result["call_to_action"]
        and not result["broken_words"]
        and not result["keyword_lists"]
        and result["says_something"]
        and not result["misspelt_names"]
        and not result["cut_lines"]
    )
    return result


def explain_reads(check: dict[str, Any], lang: str) -> str:
    """One plain sentence for a rewrite: what keeps the message from reading as one."""
    problems = []
    if not check.get("in_sentences", True):
        ending = "a sentence-final ending (-요, -니다, -세요)" if lang == "ko" else "a verb"
        problems.append(f"write full sentences, each with {ending}, not phrases")
    if not check.get("call_to_action", True):
        problems.append("end with a call to action (e.g. '지금 확인해 보세요.' / 'Shop now.')")
    if check.get("broken_words"):
        problems.append(f"remove the broken words {', '.join(repr(w) for w in check['broken_words'])}")
    if check.get("keyword_lists"):
        problems.append("do not list keywords separated by commas; say one or two points in sentences")
    if check.get("cut_lines"):
        problems.append(
            f"finish the lines cut off mid-phrase: {', '.join(repr(c) for c in check['cut_lines'])}"
        )
    if check.get("misspelt_names"):
        problems.append(
            f"write the names exactly: {', '.join(check['misspelt_names'])} (yours, then the right one)"
        )
    if not check.get("says_something", True):
        problems.append(
            "say what the product does for the reader in a sentence, beyond its name and the call to action"
        )
    return "reads: " + "; ".join(problems)
