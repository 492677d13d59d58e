"""What a fan would notice in a persona's reply: drift detectors shared by the output check and the evals.

Every detector is a pure function of its arguments, so the chat's output check (nodes/output_checks.py,
before the fan sees a sentence) and the persona eval (evals/persona.py, after the fact) reach the same
verdict on the same text. `findings` runs them all and returns `(category, reason)` pairs:

- `wrong_language`: not in the language of the fan's current message (Korean without Hangul, or
  mostly the other language's letters; Chinese or Japanese inside the right language is `mixed_script`).
- `claims_fan_fact`: the reply says one of the fan's facts (name, birthday, hometown, favourites, a
  pet's name ...) as the persona's own: "Yes, I'm Arin.", "내 고향은 부산이야" about the fan's
  hometown, "I remember that my birthday is on May 3". The fan's facts come from the stored profile
  and from what the fan said in the thread (`facts_from_text`, plain patterns, no model call).
- `assistant_refusal`: assistant boilerplate refusals ("I'm sorry, but I can't assist with that
  request.", "죄송하지만 그 요청은 도와드릴 수 없습니다"); in-character refusals ("that's not mine to
  answer, Starlight") are not matched.
- `admits_fiction`: the reply says it is an AI, a model or a program (personas/rules.ai_claims), or a
  character, a fictional or made-up person ("응, Captain Haneul Seo는 *Mireu* 시리즈의 캐릭터야.").
- `mixed_script`: letters of a script the fan did not write in: Cyrillic, Greek, Arabic, Thai ... in
  any reply, Chinese or Japanese characters, and Latin words inside a Korean reply that are neither
  names the persona's data or the conversation uses (STELLA, Polaris) nor short acronyms (MV, OK).
- `copied_context`: a run of words copied from a retrieved document (`COPY_MIN_WORDS` in a row).
- `other_character`: talks as another character (personas/rules.identity_breaks).
- `repeats_message`: a sentence that repeats the fan's message or the persona's previous reply
  (a small model parrots "스텔라에서 하은이를 제일 좋아해요!" back to the fan who said it).

`attributed_mentions` is the memory eval's check that a recalled fact is said to or about the fan.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from personagraph.personas.model import Persona
from personagraph.personas.rules import ai_claims, identity_breaks, split_sentences
from personagraph.serving.language import in_other_language, korean_morphemes

CATEGORIES = (
    "wrong_language",
    "claims_fan_fact",
    "names_fan_as_persona",
    "assistant_refusal",
    "admits_fiction",
    "mixed_script",
    "copied_context",
    "other_character",
    "repeats_message",
)
# Words copied in a row from one retrieved document before a reply counts as pasted: Korean words
# (어절) carry their particles, so fewer of them in a row already mean a copied sentence.
COPY_MIN_WORDS = {"en": 12, "ko": 8}
# The language of a streamed prefix is judged once it has this many letters ("Polaris!" alone is
# not yet an English reply to a Korean message).
MIN_LETTERS_FOR_LANGUAGE = 12

# --- the fan's facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FanFact:
    """One thing the fan said about themselves: `kind` names it ("name", "birthday", "hometown",
    "favourite", or the fan's own words such as "dog's name"), `value` is what it is ("Minji")."""

    kind: str
    value: str


# A fact whose kind is not known (the memory eval's expected strings).
ANY_KIND = "any"
# Words that say which fact a sentence is about, per kind (English and Korean, matched as prefixes).
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "name": ("name", "called", "이름", "불러"),
    "birthday": ("birthday", "born", "birth", "생일", "태어"),
    "hometown": ("hometown", "home", "from", "live", "living", "born", "grew", "고향", "출신", "살", "태어"),
    # Not "love"/"좋아": the persona may like the fan's favourite song or member too ("나도 하은이 좋아");
    # only "my favourite/최애 is ..." takes it.
    "favourite": ("favourite", "favorite", "fave", "bias", "최애"),
    "job": ("work", "job", "do for", "직업", "일해", "일하"),
}
_PROFILE_KINDS = {
    "name": "name",
    "nickname": "name",
    "birthday": "birthday",
    "favourite_member": "favourite",
    "favourite_song": "favourite",
}
# Capitalised words after "I'm" that are not names ("I'm Korean", "I'm Sorry").
_NOT_NAMES = {
    "a", "an", "the", "so", "just", "not", "from", "in", "at", "here", "back", "fine", "good", "ok",
    "okay", "sorry", "happy", "sad", "tired", "glad", "korean", "american", "excited", "new", "really",
    "very", "always", "still", "going", "gonna", "trying", "your", "also", "too", "learning",
}  # fmt: skip
_EN_STOP_VALUE = re.compile(r"\s+(?:and|but|so|because|since|which|who|,)\b.*$", re.IGNORECASE)
_KO_COPULA_END = (
    r"(?:이에요|예요|에요|이야|야|입니다|이라고|라고|이지|지|이다|다|이고|고|이니까|니까|이거든|거든)"
)

_FACT_PATTERNS_EN = [
    ("name", re.compile(r"\bmy name(?: is|'s)\s+([A-Z][\w'-]+)", re.IGNORECASE)),
    ("name", re.compile(r"\b(?i:call me|i'm|i am|im)\s+([A-Z][a-z][\w'-]*)\b")),
    ("name", re.compile(r"\b(?i:it's me|it is me|this is)\s*,?\s+([A-Z][a-z][\w'-]*)\b")),
    (
        "hometown",
        re.compile(r"\b(?i:i'm|i am|im) from\s+([A-Z][\w' -]{1,30}?)(?=[.,!?;]|\s+(?:and|but|so)\b|$)"),
    ),
    ("hometown", re.compile(r"\b(?i:i live in)\s+([A-Z][\w' -]{1,30}?)(?=[.,!?;]|\s+(?:and|but|so)\b|$)")),
    ("job", re.compile(r"\bi work as (?:an? )?([\w' -]{2,40}?)(?=[.,!?;]|\s+(?:and|but|so)\b|$)", re.I)),
    (
        "",
        re.compile(
            r"\bmy\s+([\w' -]{2,40}?)\s+(?:is|are|was)\s+(?:on\s+|in\s+|called\s+|named\s+)?([^.,!?;\n]{1,40})",
            re.IGNORECASE,
        ),
    ),
    (  # "Do you remember my birthday? It's May 3!"
        "",
        re.compile(
            r"\bmy\s+([\w' -]{2,40}?)\s*[?!.]+\s*(?:it's|it is|its)\s+(?:on\s+|in\s+)?([^.,!?;\n]{1,40})",
            re.I,
        ),
    ),
]
_FACT_PATTERNS_KO = [
    (
        "name",
        re.compile(
            rf"(?<![가-힣])(?:나는|난|저는|전|나|저)\s+([가-힣]{{2,4}}?){_KO_COPULA_END}(?=[\s.,!?~]|$)"
        ),
    ),
    (
        "",
        re.compile(
            r"(?<![가-힣])(?:내|제|나의|저의|우리)\s*([가-힣 ]{1,15}?)(?:은|는)\s+"
            rf"([^.,!?~\n]{{1,25}}?)({_KO_COPULA_END})(?=[\s.,!?~]|$)"
        ),
    ),
    ("hometown", re.compile(r"(?<![가-힣])(?:나|저)?\s*([가-힣]{2,6})에\s*살(?:아|고|아요|고\s*있)")),
    ("hometown", re.compile(r"([가-힣]{2,6})\s*출신")),
    (
        "favourite",
        re.compile(r"(?<![가-힣])([가-힣A-Za-z]{2,10}?)(?:이를|를|을)\s*(?:제일|가장)\s*좋아"),
    ),
]


def _kind_of(phrase: str) -> str:
    """A fact kind for the words that named it ("birthday", "favourite STELLA song", "고향"); other
    phrases ("dog's name", "고양이 이름") are their own kind."""
    lowered = " ".join(phrase.lower().split())
    for kind, words in (
        ("birthday", ("birthday", "생일")),
        ("hometown", ("hometown", "home town", "고향", "출신")),
        ("favourite", ("favourite", "favorite", "fave", "bias", "최애", "좋아")),
        ("job", ("job", "직업")),
    ):
        if any(word in lowered for word in words):
            return kind
    return "name" if lowered in ("name", "이름") else lowered


def _clean_value(value: str) -> str:
    value = _EN_STOP_VALUE.sub("", value).strip(" '\"“”‘’")
    # Korean: a name of two or more syllables ending in the 이 of 서진이야 is the name without it;
    # one syllable and 이 (콩이) is kept whole.
    if len(value) >= 3 and value.endswith("이") and re.fullmatch(r"[가-힣]+", value):
        value = value[:-1]
    return value


def facts_from_text(text: str) -> list[FanFact]:
    """What a fan states about themselves in a message or a profile note ("I'm Minji", "my birthday
    is May 3", "제 고향은 부산이에요"); plain patterns, so a few phrasings are missed, never invented."""
    found: list[FanFact] = []
    for fixed_kind, pattern in _FACT_PATTERNS_EN + _FACT_PATTERNS_KO:
        for match in pattern.finditer(text):
            if fixed_kind:
                kind, value = fixed_kind, match.group(1)
            else:  # "my <kind> is <value>": the kind is in the fan's own words
                kind, value = _kind_of(match.group(1)) or "fact", match.group(2)
                if len(value) == 1 and (match.groups()[2:] or [""])[0].startswith("이"):
                    value += "이"  # 콩이야: the name is 콩이 (one syllable and 이 is a whole name)
            value = _clean_value(value)
            if kind == "name" and value.lower() in _NOT_NAMES:
                continue
            if len(value) >= 2 and len(value.split()) <= 5:
                found.append(FanFact(kind, value))
    return _unique(found)


# The fan names one of their facts without its value ("Do you remember my birthday?", "내 이름 기억나?"):
# the persona must not answer with "my birthday is ..." (a fact of that kind, value unknown).
_MENTIONED_EN = re.compile(
    r"\bmy\s+(name|birthday|hometown|home town|(?:favou?rite|fave) \w+|bias|(?:dog|cat|pet)'s name|job)\b",
    re.I,
)
_MENTIONED_KO = re.compile(r"(?<![가-힣])(?:내|제)\s*(이름|생일|고향|최애|직업)")


def mentioned_kinds(text: str) -> list[FanFact]:
    """The kinds of fact the fan names as theirs, as facts without a value."""
    found = [FanFact(_kind_of(m.group(1)), "") for m in _MENTIONED_EN.finditer(text)]
    found += [FanFact(_kind_of(m.group(1)), "") for m in _MENTIONED_KO.finditer(text)]
    return _unique(found)


def facts_from_profile(profile: dict[str, Any]) -> list[FanFact]:
    """The stored profile's fields (name, birthday, favourites) and its free-text facts."""
    found = [
        FanFact(_PROFILE_KINDS[key], " ".join(str(value).split()))
        for key, value in profile.items()
        if key in _PROFILE_KINDS and isinstance(value, str) and value.strip()
    ]
    for note in profile.get("facts") or []:
        found += facts_from_text(str(note))
    return _unique(found)


def _unique(facts: Iterable[FanFact]) -> list[FanFact]:
    seen: dict[tuple[str, str], FanFact] = {}
    for fact in facts:
        seen.setdefault((fact.kind, fact.value.casefold()), fact)
    return list(seen.values())


def own_facts(persona: Persona) -> set[str]:
    """Words that are the persona's own (its names): a fan named Yuna does not make "I'm Yuna" a claim."""
    names = {persona.name, persona.name_ko, *persona.name.split()}
    if persona.name_ko and len(persona.name_ko) == 3:
        names.add(persona.name_ko[1:])
    return {n.casefold() for n in names if n}


def mentions(text: str, value: str) -> bool:
    """The value as a whole word in Latin script, anywhere in Korean (particles attach)."""
    return _contains(text, value)


def names_persona(text: str, persona: Persona) -> bool:
    """The text uses one of the persona's own names ("Bori, Captain." calls the fan by it)."""
    return any(_contains(text, name) for name in own_facts(persona))


# --- what the fan said about themselves, in any words --------------------------------------------------


@dataclass(frozen=True)
class FanStatement:
    """Something the fan said about themselves ("I only drink hot chocolate with cinnamon", "저 3월
    14일에 자격시험 봐요", a profile note): its content words, and the specific ones among them
    (numbers and names), for `statement_claims`."""

    text: str
    words: frozenset[str]
    specific: frozenset[str]


# A reply sentence in the first person that shares this many content words with one of the fan's
# statements gives it as the persona's own; two are enough when one of them is specific (a date, a
# number, a name, a Korean noun): "I'm tired from work today" may answer "I'm tired from practice
# today", but "내 시험 날짜는 3월 14일이야" takes the fan's exam.
STATEMENT_SHARED_WORDS = 3
STATEMENT_SHARED_WITH_SPECIFIC = 2
# Korean verb and adjective stems too common to say what a statement is about.
_KO_COMMON_STEMS = frozenset({"하", "있", "없", "되", "보", "가", "오", "주", "않", "같", "알", "말", "싶"})
_KO_CONTENT_TAGS = ("NNG", "NNP", "SL", "SN", "VV", "VA", "XR")
_KO_SPECIFIC_TAGS = ("NNG", "NNP", "SL", "SN")
_MONTHS = frozenset(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december")
)  # fmt: skip


def _content_words(text: str, ignore: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(content words, specific words) of a text: Kiwi's nouns, stems, numbers and Latin words for
    Korean; words that are not stop words for English (a plural's s dropped). Words in `ignore`
    (the persona's own names: its songs, places, crew) say nothing about the fan."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words: set[str] = set()
    specific: set[str] = set()
    if _HANGUL.search(text):
        for token in korean_morphemes(text):
            form = _fold(token.form)
            if token.tag in ("NNG", "NNP") and len(form) >= 3 and form.endswith("이"):
                form = form[:-1]  # 하은이를 / 하은이가: Kiwi keeps a name's affectionate 이 only sometimes
            if token.tag in _KO_CONTENT_TAGS and form not in _KO_COMMON_STEMS and form not in ignore:
                words.add(form)
                if token.tag in _KO_SPECIFIC_TAGS:
                    specific.add(form)
    for match in re.finditer(r"[A-Za-z0-9]+", text.replace("'s ", " ")):
        raw = match.group(0)
        word = raw.casefold()
        if word in ENGLISH_STOP_WORDS or word in ignore or (len(word) < 3 and not word.isdigit()):
            continue
        word = word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
        words.add(word)
        if word.isdigit() or word in _MONTHS or (raw[0].isupper() and match.start() > 0):
            specific.add(word)
    return frozenset(words), frozenset(specific)


def fan_statements(
    messages: Iterable[str], notes: Iterable[str] = (), ignore: frozenset[str] = frozenset()
) -> list[FanStatement]:
    """What the fan said about themselves: per message, its sentences with a first-person word ("I",
    "my", "나", "제"), taken together ("나는 하은이를 제일 좋아해! 내 최애야."); and every profile note
    (all about the fan); with their content words."""
    texts = [" ".join(s for s in split_sentences(m) if _states_about_self(s)) for m in messages]
    texts += [" ".join(str(n).split()) for n in notes]
    texts = [t for t in texts if t.strip()]
    found = []
    for text in texts:
        words, specific = _content_words(text, ignore)
        if len(words) >= STATEMENT_SHARED_WITH_SPECIFIC:
            found.append(FanStatement(text, words, specific))
    return found


def speaks_of_self(sentence: str) -> bool:
    """A first-person word ("I", "my", "나는", "제")."""
    return bool(_FIRST_PERSON_EN.search(sentence) or _FIRST_PERSON_KO.search(sentence + " "))


# The fan states something about themselves: "I ...", "my ...", "나는 ...", not a request ("read me the
# code") nor a question ("do you remember my name?").
_SELF_SUBJECT_EN = re.compile(r"\b(?:i|i'm|im|i've|i'd|i'll|my|mine)\b", re.IGNORECASE)


def _states_about_self(sentence: str) -> bool:
    if sentence.rstrip().endswith(("?", "？")):
        return False
    return bool(_SELF_SUBJECT_EN.search(sentence) or _FIRST_PERSON_KO.search(sentence + " "))


def statement_claims(text: str, statements: Sequence[FanStatement]) -> list[FanStatement]:
    """The fan's statements a reply repeats as the persona's own: the reply's sentences that are not
    said to the fan ("your", "you said") nor agreeing ("me too", "나도"), one of them in the first
    person, share enough content words with the statement (see STATEMENT_SHARED_WORDS). Taken
    together, since Korean drops the subject: "하은이가 제일 좋아해! 내 최애야." takes the fan's
    "나는 하은이를 제일 좋아해! 내 최애야."."""
    if not statements:
        return []  # the sentence gate asks on every prefix: no Kiwi run when there is nothing to compare
    own = [
        sentence
        for sentence in split_sentences(text) or [text]
        if not (speaks_to_the_fan(sentence) or _AGREEMENT.search(sentence))
    ]
    if not any(speaks_of_self(sentence) for sentence in own):
        return []
    words, _ = _content_words(" ".join(own), frozenset())
    claimed: list[FanStatement] = []
    for statement in statements:
        shared = words & statement.words
        if len(shared) >= STATEMENT_SHARED_WORDS or (
            len(shared) >= STATEMENT_SHARED_WITH_SPECIFIC and bool(shared & statement.specific)
        ):
            claimed.append(statement)
    return claimed


# --- who a sentence is about -------------------------------------------------------------------------

_FIRST_PERSON_EN = re.compile(r"\b(?:i|i'm|im|i've|i'd|my|mine|me|myself)\b", re.IGNORECASE)
_FIRST_PERSON_KO = re.compile(
    r"(?<![가-힣])(?:내|제|나의|저의|내가|제가|나는|난|저는|전|나도|저도|나|저)(?=\s)"
)
_SECOND_PERSON = re.compile(
    r"\b(?:you|your|yours|you're|youre|you've|you'd|yourself|u|ur)\b"
    r"|(?<![가-힣])(?:너|넌|너의|네가|니가|너는|너도|당신|당신의|당신은|그대)(?=\s|[.,!?~]|$)"
    # 네/니 alone is "your" only before a word: "네," "네!" and "네 내 생일은 ..." say "yes".
    r"|(?<![가-힣])(?:네|니)\s+(?=[가-힣])(?!알겠|맞아|그래|내\s|제\s)",
    re.IGNORECASE,
)
# The fan said it: "you said", "you told me", "(이)라고 했지", "말했잖아".
_REPORTED = re.compile(
    r"\byou (?:said|told|mentioned|shared)\b|(?:이)?라고\s*(?:했|말했|하셨|말씀)|말했잖|알려\s*줬|얘기했",
    re.IGNORECASE,
)


def speaks_to_the_fan(sentence: str) -> bool:
    """The sentence speaks to the fan ("your ...", "네 ...", "you said", "(이)라고 했잖아")."""
    return bool(_SECOND_PERSON.search(sentence) or _REPORTED.search(sentence))


_AGREEMENT = re.compile(r"\b(?:too|also|as well|same here|me too)\b|(?<![가-힣])(?:나도|저도)(?=\s)", re.I)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _contains(text: str, value: str) -> bool:
    """Whole words for Latin values (Leo is not in Leon); anywhere for Korean ones (particles attach)."""
    value = _fold(value).strip()
    if not value:
        return False
    folded = _fold(text)
    if value.isascii():
        return re.search(rf"(?<![\w]){re.escape(value)}(?![a-z0-9])", folded) is not None
    compact = re.sub(r"\s+", "", value)
    return value in folded or compact in re.sub(r"\s+", "", folded)


def _kind_words(fact: FanFact) -> tuple[str, ...]:
    return KIND_WORDS.get(fact.kind) or tuple(w for w in re.findall(r"\w+", fact.kind.lower()) if len(w) > 1)


def _claims(sentence: str, fact: FanFact, own: set[str] | None = None) -> bool:
    """The sentence gives the fact as the speaker's own: a first-person self-introduction with the
    name, or a first-person word close before the fact's kind ("my birthday", "내 고향", "I live in")
    with the value in the same sentence, and nothing said to the fan ("your", "네"). A fact without
    a value (the fan asked about "my name") is claimed by a self-introduction with a name not in
    `own` (the persona's names), or by a first-person word before its kind."""
    value = re.escape(_fold(fact.value))
    folded = _fold(sentence)
    if fact.kind == "name" and not fact.value:
        if any(_contains(sentence, name) for name in own or ()):
            return False  # the persona naming itself ("My name is Yuna", "내 이름은 유나야") takes nothing
        for match in re.finditer(r"\b(?i:i'm|i am|my name is|my name's)\s+([A-Z][a-z][\w'-]*)", sentence):
            if match.group(1).casefold() not in (own or set()) and match.group(1).lower() not in _NOT_NAMES:
                return True
    elif fact.kind == "name":
        if re.search(
            rf"\b(?:i'm|i am|im|my name is|my name's|call me|this is)\s+(?:\w+\s+)?{value}\b", folded
        ):
            return True
        if re.search(
            rf"(?:^|[\s,.!?])(?:나는|난|저는|전|나|저|내\s*이름은|제\s*이름은)\s*{value}(?:이)?"
            r"(?:야|예요|에요|이에요|입니다|이다|다|라고|라구)",
            folded,
        ):
            return True
    if speaks_to_the_fan(sentence):
        return False
    if fact.kind == "favourite" and _AGREEMENT.search(sentence):
        return False  # "Polaris is my favourite too!": the persona shares the taste, it does not take it
    if fact.kind == "hometown" and fact.value and _says_own_origin(folded, value):
        return True
    if fact.kind == ANY_KIND:  # kind unknown: a first-person possessive or subject with the value
        return bool(
            re.search(r"\b(?:my|mine)\b|(?<![가-힣])(?:내|제|나의|저의)\s", folded)
            or re.search(rf"\bi(?:'m| am)? (?:from |in |live in |was born (?:on |in )?)?{value}", folded)
            or re.search(rf"(?<![가-힣])(?:나는|난|저는|전)\s*(?:\S+\s+){{0,2}}?\S*{value}", folded)
        )
    words = "|".join(re.escape(w) for w in _kind_words(fact))
    if not words:
        return False
    english = rf"\b(?:i|i'm|im|i am|i've|my)\b(?:\W+\w+){{0,3}}?\W+(?:{words})"
    korean = rf"(?<![가-힣])(?:내|제|나의|저의|내가|제가|나는|난|저는|전)\s*(?:\S+\s+){{0,3}}?\S*(?:{words})"
    return re.search(english, folded) is not None or re.search(korean, folded) is not None


# Korean drops the subject: "부산에서 태어났고, ..." in the persona's reply is the persona's birthplace,
# unless the ending speaks of the listener ("부산에서 왔구나!", "부산에 살지?").
_KO_ORIGIN = r"\s*(?:에서\s*(?:태어|자랐|자라|왔어|왔습|왔다)|에\s*살(?:아|고\s*있|았|지)(?!\s*싶)|\s*출신)"
_LISTENER_ENDING = re.compile(r"(?:구나|군요|군|잖아|잖아요|네요|[?？])[\s!.~\W]*$")


def _says_own_origin(folded_sentence: str, value: str) -> bool:
    """A subject-less Korean sentence giving the place as where the speaker is from or lives."""
    return (
        re.search(value + _KO_ORIGIN, folded_sentence) is not None
        and _LISTENER_ENDING.search(folded_sentence) is None
    )


def fan_fact_claims(text: str, facts: Iterable[FanFact], persona: Persona) -> list[FanFact]:
    """The fan's facts the reply gives as the persona's own (one entry per fact)."""
    own = own_facts(persona)
    claimed: list[FanFact] = []
    sentences = split_sentences(text) or [text]
    for fact in facts:
        if fact.value.casefold() in own or len(fact.value) == 1:
            continue
        if not fact.value and fact.kind != "name":
            continue  # "my birthday is in April" is the persona's own unless it gives the fan's date
        if any((not fact.value or _contains(s, fact.value)) and _claims(s, fact, own) for s in sentences):
            claimed.append(fact)
    return claimed


# "Your name is Yuna." / "I remember your name. It's Yuna." / "네 이름은 유나야": the name the reply
# gives the fan, up to two words (the persona's own names are checked against it).
_YOUR_NAME_EN = re.compile(
    r"\b(?:your name(?:['’]s|\s+is|\s*[.!,]?\s*(?:it['’]s|it\s+is))|you['’]re|you\s+are)"
    r"\s+(?P<name>[^\s.,!?~]+(?:\s+[^\s.,!?~]+)?)",
    re.IGNORECASE,
)
_YOUR_NAME_KO = re.compile(
    r"(?<![가-힣])(?:네|너의|니|당신의|너|당신)\s*이름(?:은|이)\s*(?P<name>[가-힣A-Za-z]+)"
)


def persona_name_given_to_fan(text: str, persona: Persona, fan_facts: Iterable[FanFact] = ()) -> str:
    """The persona's own name when the reply tells the fan it is theirs ("Your name is Yuna." to
    Minji, seen in the memory eval); empty when it does not, or when the fan has that name too."""
    own = sorted(own_facts(persona), key=len, reverse=True)
    fan_names = {_fold(f.value) for f in fan_facts if f.kind == "name" and f.value}
    for match in [*_YOUR_NAME_EN.finditer(text), *_YOUR_NAME_KO.finditer(text)]:
        given = _fold(match.group("name"))
        if any(given.startswith(name) for name in fan_names):
            continue
        for name in own:
            # The whole name, or the name and a Korean copula or particle ("유나야", "유나예요").
            if (
                given == name
                or given.startswith(name + " ")
                or (not name.isascii() and re.fullmatch(rf"{re.escape(name)}{_KO_COPULA_END}?", given))
            ):
                return match.group("name")[: len(name)]
    return ""


def _addresses(sentence: str, fan_names: Sequence[str]) -> bool:
    """The sentence speaks to the fan: a second-person word, "you said", or the fan's name or the
    persona's name for fans used to call them ("Of course, Minji!", "서진아,", "신입.")."""
    if speaks_to_the_fan(sentence):
        return True
    folded = _fold(sentence)
    for name in fan_names:
        name = _fold(name).strip()
        if not name:
            continue
        if name.isascii():
            if re.search(
                rf"(?:^|[,!?.]\s*)\W*(?:(?:hey|hi|hello|dear|oh|yes|yeah|of course)\s+)?{re.escape(name)}\W*"
                rf"(?:[,!?.~]|$)|,\s*{re.escape(name)}\b",
                folded,
            ):
                return True
        elif re.search(rf"{re.escape(name)}(?:아|야|이|님|씨)?\s*(?:[,!?.~]|$)", folded):
            return True
    return False


def claims_as_own(reply: str, expect_any: Sequence[str]) -> bool:
    """True when a sentence of the reply gives one of the expected facts as the speaker's own
    ("Yes, I'm Arin.", "내 고향은 부산이야", "I remember that my birthday is on May 3")."""
    sentences = split_sentences(reply) or [reply]
    facts = [FanFact(kind, e) for e in expect_any for kind in ("name", ANY_KIND)]
    return any(_contains(s, f.value) and _claims(s, f) for s in sentences for f in facts)


def attributed_mentions(
    reply: str, expect_any: Sequence[str], persona: Persona, fan_names: Sequence[str] = ()
) -> bool:
    """True when the reply says one of the expected facts to or about the fan, and never as the
    persona's own: a sentence with the fact that is addressed to the fan ("your birthday is May 3",
    "네 고향은 부산이지", "부산이라고 했잖아", "Of course, Arin!"), or the fact in a reply that addresses
    the fan elsewhere ("Of course I remember, recruit. Busan."). "Yes, I'm Arin." is not."""
    sentences = split_sentences(reply) or [reply]
    addressees = [*fan_names, persona.speech.fan_address_ko, persona.speech.fan_address_en]
    hits = [s for s in sentences if any(_contains(s, e) for e in expect_any)]
    if not hits:
        return False
    if claims_as_own(reply, expect_any):
        return False
    # In the fact's own sentence the fact may be the addressee ("Of course, Arin!"); elsewhere
    # only the fan's name or address counts.
    return any(_addresses(s, [*addressees, *expect_any]) for s in hits) or any(
        _addresses(s, addressees) for s in sentences
    )


# --- assistant refusals and admissions ----------------------------------------------------------------

_ASSISTANT_REFUSAL = re.compile(
    r"\b(?:i'm sorry|i am sorry|sorry|i apologi[sz]e|unfortunately)(?:\s+(?:for|about)\s+[^,.!?]{1,30})?,?\s*"
    r"(?:but\s+)?(?:i|as)\b[^.!?]{0,30}?"
    r"\b(?:can't|cannot|can not|am unable to|am not able to|won't be able to|must decline to)\s+"
    r"(?:assist|help|provide|comply|fulfil|fulfill|complete|process|respond to|answer (?:that|this)"
    r"|continue (?:this|the|our) conversation)"
    r"|\b(?:can't|cannot|unable to|not able to)\s+(?:assist|help)\s+(?:you\s+)?with\s+(?:that|this|your)\b"
    r"|\b(?:that|this|your) request\b"
    r"|\bi(?:'m| am) (?:not able|unable) to (?:assist|help|provide|comply|share|discuss|disclose)\b"
    r"|\b(?:is there )?anything else i can (?:help|assist) you with\b"
    r"|\b(?:is|would be) (?:against|outside) (?:my|the) (?:guidelines|policies|policy|programming|capabilities)\b"
    # "I'm sorry, but I don't have any information about your exam." (seen in the memory eval)
    r"|\b(?:i'm sorry|i am sorry|sorry|unfortunately),?\s*(?:but\s+)?i (?:don't|do not) have (?:enough |any )?"
    r"(?:information|data|access|details)\b"
    r"|\bi (?:don't|do not) have (?:enough |any )?information to answer\b",
    re.IGNORECASE,
)
_ASSISTANT_REFUSAL_KO = re.compile(
    r"(?:도와|도움을?)\s*(?:드릴|드리기|줄)\s*수\s*(?:가\s*)?없(?:습니다|어요|어)"
    r"|요청(?:은|을|에는|하신)\s*[^.!?]{0,20}(?:도와|응할|응해|처리할|수행할|제공할|답변할)\s*수\s*없"
    r"|(?:제공|답변|지원)(?:해\s*)?(?:드릴|드리기|할)\s*수\s*없(?:습니다|어요)"
    r"|(?:정책|가이드라인|지침)(?:상|에\s*따라|에\s*어긋)"
    r"|(?:다른|더)\s*(?:도움이|궁금한\s*점이)\s*(?:필요하시|있으시)"
    r"|죄송(?:하지만|합니다)[^.!?]{0,30}(?:정보|데이터)(?:가|는)\s*(?:충분하지\s*)?(?:않|없)",
)

_FICTION_EN = re.compile(
    r"\b(?:i'm|i am|im)\s+(?:just\s+|only\s+|merely\s+|actually\s+|really\s+)?(?:an?\s+|the\s+)?"
    r"(?:[\w*'-]+\s+){0,2}(?:character|fictional|made-up|imaginary|not real|not a real (?:person|human))\b"
    r"|\b(?:i|i'm|im)\s+(?:don't|do not|am not|'m not)\s+(?:really\s+|actually\s+)?(?:exist|real)\b"
    r"|\bcharacter (?:in|from|of) (?:the |a |an |this )?(?:[\w*'-]+\s+){0,3}?"
    r"(?:series|story|novel|game|show|webtoon|book|franchise|universe|fiction|drama|anime|manga|world)\b"
    r"|\b(?:fictional|fictitious|made-up|imaginary) (?:character|person|persona|being|idol|captain)\b"
    r"|\b(?:role-?play(?:ing)?|playing (?:the role|a role|a character))\b"
    r"|\bi was (?:written|created|designed|invented) (?:by|as|for)\b",
    re.IGNORECASE,
)
_FICTION_KO = re.compile(
    r"(?:시리즈|작품|소설|웹툰|게임|드라마|세계관|이야기|스토리|애니|만화)(?:의|에|에서|속의?)?\s*"
    r"(?:나오는\s*|등장하는\s*)?(?:캐릭터|등장인물|주인공|인물)"
    r"|(?:가상|허구|상상)(?:의|적인|속)?\s*(?:캐릭터|인물|존재|사람)"
    r"|(?:캐릭터|등장인물)(?:이야|야|예요|에요|이에요|입니다|일\s*뿐|이라서|라서|이지|이죠|로서|이니까)"
    r"|실제로?\s*(?:존재하지|있지)\s*않|실존\s*인물이\s*아니|역할극|롤\s*플레이|(?:캐릭터를|역할을)\s*연기",
)


def assistant_refusals(text: str) -> list[str]:
    """Assistant boilerplate refusals in the reply (an in-character "I can't talk about that" is not)."""
    return [
        m.group(0).strip()
        for m in (*_ASSISTANT_REFUSAL.finditer(text), *_ASSISTANT_REFUSAL_KO.finditer(text))
    ]


def fiction_admissions(text: str) -> list[str]:
    """Phrases where the reply says it is an AI, a model, a program, a character or made up."""
    found = [m.group(0).strip() for m in (*_FICTION_EN.finditer(text), *_FICTION_KO.finditer(text))]
    return ai_claims(text) + found


# --- scripts -------------------------------------------------------------------------------------------

_OTHER_SCRIPT = re.compile(
    r"[\u0370-\u03ff\u0400-\u052f\u0530-\u058f\u0590-\u05ff\u0600-\u06ff\u0700-\u08ff\u0900-\u0dff"
    r"\u0e00-\u0eff\u0f00-\u0fff\u10a0-\u10ff\u1200-\u139f\u1780-\u17ff\u1e00-\u1eff]+"
)
_HAN_KANA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]+")
_LATIN_WORD = re.compile(r"(?<![A-Za-z])[A-Za-z][A-Za-z'-]*[A-Za-z](?![A-Za-z])")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Latin a Korean sentence may hold without mixing scripts: acronyms (MV, OK, SNS) and a few loan
# spellings fans use as they are.
_KO_LATIN_OK = {
    "ok",
    "okay",
    "mv",
    "sns",
    "tv",
    "dm",
    "cd",
    "pd",
    "kpop",
    "k-pop",
    "vlive",
    "live",
    "fighting",
}


def vocabulary(*texts: str, names_only: bool = False) -> frozenset[str]:
    """The Latin words of some texts, case-folded: words a Korean reply may use as they are. With
    `names_only`, only capitalised words (a persona's or a document's names, songs and places:
    "STELLA", "Polaris"; not every English word of a biography)."""
    return frozenset(
        w.casefold() for text in texts for w in _LATIN_WORD.findall(text) if not names_only or w[0].isupper()
    )


def persona_vocabulary(persona: Persona, world: dict[str, Any] | None = None) -> frozenset[str]:
    """Names in the persona's own data (its names, group, songs, places, crew)."""
    data = [persona.model_dump_json(), json.dumps(world or {}, ensure_ascii=False)]
    return vocabulary(*data, names_only=True)


# An English reply may hold one Korean word (the fan's Korean nickname, "화이팅"); more are Korean
# sentences ("네, Arin. 저는 Captain Haneul Seo입니다.", seen in the memory eval, where each sentence
# alone still read as English by its letters).
EN_MAX_KOREAN_WORDS = 1
_HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]+")


def mixed_scripts(
    text: str, lang: str, allowed: frozenset[str] = frozenset(), korean_names: Iterable[str] = ()
) -> list[str]:
    """Pieces of the reply in a script the fan's language does not use (see the module docstring).
    `korean_names` (the persona's Korean name, its Korean address for fans) may stand in English."""
    found = _OTHER_SCRIPT.findall(text) + _HAN_KANA.findall(text)
    if lang == "ko" and _HANGUL.search(text):
        for word in _LATIN_WORD.findall(text):
            folded = word.casefold()
            acronym = word.isupper() and len(word) <= 5
            if not acronym and folded not in allowed and folded not in _KO_LATIN_OK:
                found.append(word)
    if lang == "en":
        names = [name for name in korean_names if name]
        korean = [w for w in _HANGUL_WORD.findall(text) if not any(name in w for name in names)]
        if len(korean) > EN_MAX_KOREAN_WORDS:
            found += korean
    return found


# --- copied context -------------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", _fold(text))


def copied_run(text: str, documents: Iterable[str]) -> int:
    """The longest run of words the reply shares, in order, with one document."""
    words = _tokens(text)
    best = 0
    for document in documents:
        doc = _tokens(document)
        if not words or not doc:
            continue
        match = SequenceMatcher(None, words, doc, autojunk=False).find_longest_match(
            0, len(words), 0, len(doc)
        )
        best = max(best, match.size)
    return best


def copies_context(text: str, documents: Iterable[str], lang: str) -> int:
    """The copied run's length in words when it reaches `COPY_MIN_WORDS` for the language, else 0."""
    run = copied_run(text, documents)
    return run if run >= COPY_MIN_WORDS.get(lang, COPY_MIN_WORDS["en"]) else 0


# --- all at once ----------------------------------------------------------------------------------------


def _letters(text: str) -> int:
    return len(re.findall(r"[A-Za-z\uac00-\ud7a3]", text))


def _other_language(text: str, lang: str | None) -> bool:
    return in_other_language(text, "ko" if lang == "ko" else "en")


def language_undecided(text: str, lang: str | None) -> bool:
    """A streamed prefix too short to tell its language that is not yet in the fan's ("Hi Starlight!"
    in a Korean turn): the sentence gate waits for more text before showing it."""
    return bool(lang) and _letters(text) < MIN_LETTERS_FOR_LANGUAGE and _other_language(text, lang)


def findings(
    text: str,
    persona: Persona,
    lang: str | None = None,
    *,
    fan_facts: Iterable[FanFact] = (),
    fan_statements: Sequence[FanStatement] = (),
    documents: Sequence[str] = (),
    allowed: frozenset[str] = frozenset(),
    other_names: Iterable[str] = (),
    echoes: Sequence[str] = (),
    final: bool = True,
) -> list[tuple[str, str]]:
    """Every drift finding as (category, reason); the reason is written for the model's revision.

    `lang` is the language of the fan's current message (None: not checked); `final` False for a
    streamed prefix, whose language is judged only once it has MIN_LETTERS_FOR_LANGUAGE letters;
    `echoes` the texts a reply must not repeat (the fan's message, the persona's previous reply)."""
    found: list[tuple[str, str]] = []
    if lang and (final or _letters(text) >= MIN_LETTERS_FOR_LANGUAGE) and _other_language(text, lang):
        want = "Korean (한국어)" if lang == "ko" else "English"
        found.append(("wrong_language", f"the fan wrote in {want} and the reply is not in {want}"))
    for fact in fan_fact_claims(text, fan_facts, persona):
        what = f"{fact.kind} ({fact.value})" if fact.value else fact.kind
        found.append(("claims_fan_fact", f"it says the fan's {what} as your own; it is the fan's"))
    if name := persona_name_given_to_fan(text, persona, fan_facts):
        known = next((f.value for f in fan_facts if f.kind == "name" and f.value), "")
        whose = f"the fan's name is {known}" if known else "you do not know the fan's name"
        found.append(
            ("names_fan_as_persona", f"it tells the fan their name is {name}, your own name; {whose}")
        )
    if not any(category == "claims_fan_fact" for category, _ in found):
        for statement in statement_claims(text, fan_statements)[:1]:
            found.append(
                (
                    "claims_fan_fact",
                    f"it says what the fan told you about themselves ({_quoted([statement.text])}) as"
                    " your own; it is the fan's",
                )
            )
    if phrases := assistant_refusals(text):
        found.append(
            ("assistant_refusal", f"it refuses like an assistant ({_quoted(phrases)}), not in character")
        )
    if phrases := fiction_admissions(text):
        found.append(
            ("admits_fiction", f"it says you are an AI, a program or a character ({_quoted(phrases)})")
        )
    # A reply already in the wrong language is not also reported for its Korean words.
    korean_names = (persona.name_ko, persona.speech.fan_address_ko)
    wrong = any(category == "wrong_language" for category, _ in found)
    if lang and not wrong and (pieces := mixed_scripts(text, lang, allowed, korean_names)):
        found.append(("mixed_script", f"it mixes in another script ({', '.join(pieces[:3])})"))
    if run := copies_context(text, documents, lang or "en"):
        found.append(("copied_context", f"it copies {run} words in a row from a retrieved document"))
    if phrases := identity_breaks(text, persona, other_names):
        found.append(("other_character", f"it talks as another character ({_quoted(phrases)})"))
    if repeated := repeated_sentences(text, echoes, persona):
        found.append(
            (
                "repeats_message",
                f"it repeats what was already said ({_quoted(repeated[:2])}); answer it in your own words",
            )
        )
    return found


# A sentence shorter than this (letters: a Hangul syllable is one) is too short to count as a copy:
# "Me too!", "고마워!", "I love you so much" answer a fan naturally. English words are longer than
# Korean syllables, hence two limits.
REPEAT_MIN_LETTERS = {"ko": 10, "en": 24}
REPEAT_SIMILARITY = 0.85


def _letters_only(text: str) -> str:
    return "".join(ch for ch in _fold(text) if ch.isalnum())


def repeated_sentences(text: str, echoes: Sequence[str], persona: Persona) -> list[str]:
    """The reply's sentences that repeat a sentence of `echoes` (nearly word for word: a
    SequenceMatcher ratio of REPEAT_SIMILARITY on letters and digits). The persona's signature
    expressions may come back every turn; short sentences never count."""
    said = [_letters_only(s) for echo in echoes for s in split_sentences(echo)]
    signatures = {_letters_only(s) for s in persona.speech.signature_expressions}
    found = []
    for sentence in split_sentences(text):
        letters = _letters_only(sentence)
        hangul = len(_HANGUL.findall(letters))
        minimum = REPEAT_MIN_LETTERS["ko" if hangul * 2 >= len(letters) else "en"]
        if len(letters) < minimum or any(sig and sig in letters for sig in signatures):
            continue
        for earlier in said:
            if len(earlier) < minimum:
                continue
            if SequenceMatcher(None, letters, earlier).ratio() >= REPEAT_SIMILARITY:
                found.append(sentence)
                break
    return found


def _quoted(phrases: Sequence[str]) -> str:
    return ", ".join(repr(p) for p in dict.fromkeys(phrases))
