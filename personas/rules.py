"""Rule checks of a persona's speech, shared by the graph and the persona-consistency eval.

`check_speech(text, persona, lang)` returns the speech-rule problems of one reply, each
`{"rule", "reason", "severity"}`; severity "hard" means the reply breaks a persona rule, "soft"
means it misses a habit that is expected only some of the time (the fan address). `drift(...)` is
True when the reply leaves the role altogether. Every check is a pure function of its arguments
(except `unsafe_language`, which reads the shipped safety rules through `safety_rules.unsafe_language`).

The rules, precisely:

- `empty` (hard): the reply is empty or whitespace (no other rule is checked then).

- `emoji_count` (hard): emoji are counted as clusters (a ZWJ sequence, a flag or a keycap is one
  emoji; text symbols such as ★ ♡ ♪ are not emoji). With `speech.emoji_per_message = E`, a reply
  may use E-1 .. E+1 emoji (at least 0); E = 0 means none at all.
- `emoji_set` (hard): when E > 0 and the persona lists an emoji set, every emoji is from the set.
- `fan_address` (soft): the reply addresses the fan, i.e. contains the persona's fan address in
  either language (Korean as a substring, so 별빛아 / 별빛이 count; English as a whole word, any
  case) or the fan's name when it is known. Skipped when the persona has no fan address. The
  persona's policy ("at least sometimes") is judged over many replies: see FAN_ADDRESS_MIN_RATE.
- `forbidden_topic` (hard): a keyword of one of the persona's forbidden topics, matched like the
  output safety check does (`forbidden_topic_hits`).
- `banned_phrase` (hard): the reply claims or admits to being an AI, a model, a bot, a program or
  a fictional character, or uses assistant boilerplate ("How can I assist you today?").
- `unsafe_language` (hard): profanity (bare swear words included: the persona never swears), sexual
  content or hate per data/safety/rules.yaml.
- `length` (hard): when one of the persona's speech rules states a sentence limit ("under 4
  sentences" -> at most 3; "2-5 short sentences" -> at most 5; "at most N sentences"), the reply
  has no more sentences than that. Only the maximum is enforced: a one-line answer stays in
  character. Sentences end at . ! ? (and their full-width forms), at a run of emoji followed by
  more text, or at a line break; "..." / "…" and abbreviations such as "Dr." do not end one. A
  greeting or exclamation of at most two words ending in "!" ("Hi, Starlight!") is not counted.
- `speech_level` (hard, Korean replies only): every Korean sentence is classified by its final
  word: 존댓말 when it ends in 요 / 니다 / 니까 / 죠 / 시오 (해요체, 하십시오체), 반말 when it ends in
  a plain verbal ending (어, 아, 야, 지, 자, 다, 니, 냐, 래, 게, 네, 군, 걸, 까, 데, 줘, ...);
  sentences ending in a noun or an interjection ("별빛!", "하나, 둘!") are not classified. The
  reply's 반말 share must lie within `banmal_tolerance` (default 0.5) of `speech.banmal_ratio`,
  i.e. a reply's dominant level may not be the opposite of the persona's usual one. The aggregate
  반말 share over many replies is computed by the eval with `speech_levels`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from personagraph.personas.model import ForbiddenTopic, Persona
from personagraph.safety.rules import normalise, unsafe_language
from personagraph.serving.language import Lang, in_other_language, script_drift

HARD, SOFT = "hard", "soft"
# The fan address is a habit, not a rule for every reply: the persona meets "at least sometimes"
# when at least this share of replies addresses the fan (by the address or by name).
FAN_ADDRESS_MIN_RATE = 0.3
DEFAULT_BANMAL_TOLERANCE = 0.5

# --- emoji ----------------------------------------------------------------------------------------

_EMOJI_BASE = (
    "\U0001f300-\U0001f3fa\U0001f400-\U0001f5ff"  # pictographs (skin-tone modifiers 1F3FB-1F3FF excluded)
    "\U0001f600-\U0001f64f\U0001f680-\U0001f6ff"  # emoticons, transport
    "\U0001f900-\U0001f9ff\U0001fa70-\U0001faff"  # supplemental pictographs, extended-A
    "\U0001f004\U0001f0cf\U0001f170-\U0001f251"  # mahjong, joker, enclosed letters (🆗 🅰)
    "\u2600-\u27bf"  # misc symbols and dingbats (✨ ❤ ☀ ⚡ ✅); text symbols are removed below
    "\u2b50\u2b55\u2b1b\u2b1c\u2934\u2935\u3030\u303d\u3297\u3299\u203c\u2049"
)
_NOT_EMOJI = "★☆♡♢♤♧♩♪♫♬♭♮♯✓✗✘"
_MODIFIERS = "\ufe0f\U0001f3fb-\U0001f3ff"
_EMOJI = re.compile(
    rf"[\U0001f1e6-\U0001f1ff]{{2}}"  # a flag: two regional indicators
    rf"|[0-9#*]\ufe0f?\u20e3"  # a keycap
    rf"|(?![{_NOT_EMOJI}])[{_EMOJI_BASE}][{_MODIFIERS}]*(?:\u200d[{_EMOJI_BASE}][{_MODIFIERS}]*)*"
)


def find_emoji(text: str) -> list[str]:
    """The emoji in a text, one entry per emoji cluster (ZWJ sequences and flags count once)."""
    return _EMOJI.findall(text)


def _emoji_key(emoji: str) -> str:
    return emoji.replace("\ufe0f", "")


# --- sentences and speech level ----------------------------------------------------------------------

_ABBREVIATIONS = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|St|Lt|Capt|Cmdr|Sgt|vs|etc|e\.g|i\.e|a\.m|p\.m)\.", re.I)
_ELLIPSIS = re.compile(r"\.{2,}|…")
_BOUNDARY = re.compile(
    rf"[.!?。！？]+[\"'”’)\]]*(?=\s|$)"  # end punctuation followed by a space or the end
    rf"|(?:{_EMOJI.pattern})+(?=\s+\S)"  # a run of emoji with more text after it
    r"|\n+"
)
_HAS_WORD = re.compile(r"[0-9A-Za-z\uac00-\ud7a3]")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_PLACEHOLDER = "\x00"


def split_sentences(text: str) -> list[str]:
    """Sentences of a Korean or English reply (see the module docstring for the boundaries)."""
    protected = _ABBREVIATIONS.sub(lambda m: m.group(0)[:-1] + _PLACEHOLDER, text)
    protected = _ELLIPSIS.sub(lambda m: _PLACEHOLDER * len(m.group(0)), protected)
    parts: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(protected):
        parts.append(protected[start : match.end()])
        start = match.end()
    parts.append(protected[start:])
    sentences = []
    for part in parts:
        restored = part.replace(_PLACEHOLDER, ".").strip()
        if _HAS_WORD.search(restored):
            sentences.append(restored)
    return sentences


def count_sentences(text: str) -> int:
    """Sentences counted for the length rule: a greeting or exclamation of at most two words that
    ends in "!" ("Hi, Starlight!", "안녕, 별빛!", "Wow!") does not count."""
    return sum(1 for s in split_sentences(text) if not (s.endswith("!") and len(s.split()) <= 2))


# Final-word endings. 존댓말 is checked first, so 니다/니까 never count as the 반말 다/까.
_JONDAE_END = re.compile(r"(?:요|니다|니까|죠|시오|소서)$")
_BANMAL_END = re.compile(
    r"(?:어|아|야|지|자|다|니|냐|래|게|네|군|걸|까|데|줘|워|와|봐|돼|해|내|라|렴|구나|거든|잖아|든)$"
)
_TRAILING = re.compile(r"[^\uac00-\ud7a3]+$")  # punctuation, emoji, ㅎㅎ/ㅋㅋ, latin after the last syllable


def speech_level(sentence: str) -> str | None:
    """'jondaemal', 'banmal' or None (not a Korean predicate: a noun, a name, an interjection)."""
    stripped = _TRAILING.sub("", sentence)
    if not stripped:
        return None
    last_word = stripped.split()[-1]
    if _JONDAE_END.search(last_word):
        return "jondaemal"
    if len(last_word) >= 2 and _BANMAL_END.search(last_word):
        return "banmal"
    if last_word in ("응", "해", "봐", "줘", "돼", "가", "와", "자"):
        return "banmal"
    return None


def speech_levels(text: str) -> tuple[int, int]:
    """(반말 sentences, 존댓말 sentences) among the Korean sentences of a reply."""
    banmal = jondae = 0
    for sentence in split_sentences(text):
        if not _HANGUL.search(sentence):
            continue
        level = speech_level(sentence)
        banmal += level == "banmal"
        jondae += level == "jondaemal"
    return banmal, jondae


# --- length rule ----------------------------------------------------------------------------------------

_UNDER_N = re.compile(r"\b(?:under|fewer than|less than) (\d+) (?:short )?sentences", re.I)
_AT_MOST_N = re.compile(r"\b(?:at most|no more than|up to|maximum of) (\d+) (?:short )?sentences", re.I)
_RANGE_N = re.compile(r"\b(\d+)\s*(?:-|–|to)\s*(\d+) (?:short )?sentences", re.I)


def max_sentences(persona: Persona) -> int | None:
    """The sentence limit stated in the persona's speech rules, or None when there is none."""
    for rule in persona.speech.rules:
        if found := _UNDER_N.search(rule):
            return int(found.group(1)) - 1
        if found := _AT_MOST_N.search(rule):
            return int(found.group(1))
        if found := _RANGE_N.search(rule):
            return int(found.group(2))
    return None


# --- forbidden topics (shared with nodes/safety.check_output) -------------------------------------------


def forbidden_topic_hits(text: str, persona: Persona) -> list[tuple[ForbiddenTopic, str]]:
    """(topic, keyword) for each forbidden topic the text mentions, first matching keyword per topic.

    Same matching as the output safety check: both sides normalised; a Korean keyword matches
    anywhere in the compact form (particles attach to words), an ASCII keyword as whole words.
    """
    spaced, compact = normalise(text)
    hits = []
    for topic in persona.forbidden_topics:
        for keyword in topic.keywords:
            kw_spaced, kw_compact = normalise(keyword)
            if not kw_compact:
                continue
            if kw_compact.isascii():
                found = re.search(rf"\b{re.escape(kw_spaced)}\b", spaced) is not None
            else:
                found = kw_compact in compact
            if found:
                hits.append((topic, keyword))
                break
    return hits


# --- role breaks --------------------------------------------------------------------------------------------

_AI_CLAIM = re.compile(
    r"\b(?:as an? (?:ai|artificial intelligence|language model|llm|chatbot|bot|assistant|virtual assistant)"
    r"|(?:i am|i'm|im) (?:just |only |merely |really |actually )?(?:an? )?"
    r"(?:ai|artificial intelligence|bot|robot|chatbot|computer program|program|language model|llm|virtual assistant"
    r"|ai assistant|assistant|fictional character|virtual character|made-up character)\b"
    r"|(?:large )?language model|ai (?:language )?model|ai assistant|virtual assistant"
    r"|i (?:don't|do not|can't|cannot) (?:have|feel) (?:real |personal |human )?(?:feelings|emotions|a (?:physical )?body)"
    r"|i was (?:created|programmed|built) by"
    r"|how (?:can|may) i (?:assist|help) you(?: today)?\s*[?.!])",
    re.IGNORECASE,
)
_KO_AI_NOUN = r"(?:(?<![a-z])ai|인공\s*지능|언어\s*모델|챗봇|프로그램|로봇|봇|가상의?\s*(?:캐릭터|인물)|허구의?\s*(?:캐릭터|인물))"
_KO_COPULA = (
    r"\s*(?:이야|야|이에요|예요|에요|입니다|이라서|라서|이라|라|일\s*뿐|이기|이니까|니까|로서|으로서)"
)
# "저는 캐릭터로 만들어진 AI, ...": a made thing, with words between the subject and it, where the noun
# ends the phrase (a copula or a clause break), so "새로 만들어진 로봇 전시회" is not one.
_KO_MADE = r"(?:만들어진|프로그래밍된|설계된|학습된|개발된|창작된)"
_AI_CLAIM_KO = re.compile(
    rf"(?:저는|나는|난|전|제가|내가)\s*(?:그냥\s*|사실\s*|단지\s*|진짜\s*)?{_KO_AI_NOUN}{_KO_COPULA}"
    rf"|(?:저는|나는|난|전)\s+(?:[^.!?\n]{{0,24}}?\s)?{_KO_MADE}\s*(?:{_KO_AI_NOUN}|캐릭터|인물|존재)"
    rf"(?:{_KO_COPULA}|\s*[,.!?~]|이고|이지만|인데|이며|\s*$)"
    r"|(?<![a-z])ai\s*(?:로서|라서|이기\s*때문에|으로서|어시스턴트|비서|모델)|인공\s*지능\s*(?:으로서|이라서|이기\s*때문에|비서|모델)"
    r"|언어\s*모델|챗봇(?:이에요|입니다|이야|이라서)"
    r"|무엇을\s*도와\s*드릴까요|어떻게\s*도와\s*드릴까요",
    re.IGNORECASE,
)


def ai_claims(text: str) -> list[str]:
    """Phrases where the reply claims to be an AI, a model, a program or a fictional character."""
    return [m.group(0) for m in _AI_CLAIM.finditer(text)] + [m.group(0) for m in _AI_CLAIM_KO.finditer(text)]


def _name_tokens(persona: Persona) -> set[str]:
    tokens = {t.lower() for t in persona.name.split() if len(t) > 1}
    if persona.name_ko:
        tokens.add(persona.name_ko)
        tokens.add(persona.name_ko[1:] if len(persona.name_ko) == 3 else persona.name_ko)  # 서하늘 -> 하늘
    return tokens


def other_character_names(persona: Persona, world: Any = None, others: Iterable[Persona] = ()) -> list[str]:
    """Names of characters other than the persona: other personas, and people in its world data.

    People in `world` are the dicts (at any depth) that have a `name` and a `role`, like STELLA's
    members or the Mireu's crew. Each full name and its first token are listed (Korean names too).
    """
    own = _name_tokens(persona) | {persona.name.lower()}
    names: set[str] = set()

    def add(name: str) -> None:
        name = name.strip()
        if not name:
            return
        variants = {name, name.split()[0]}
        if _HANGUL.search(name) and len(name) == 3 and " " not in name:
            variants.add(name[1:])  # 윤소리 -> 소리
        names.update(v for v in variants if len(v) > 1 and v.lower() not in own)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("name"), str) and "role" in node:
                add(node["name"])
                add(str(node.get("name_ko") or ""))
                add(str(node.get("nickname") or ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(world)
    for other in others:
        if other.id != persona.id:
            add(other.name)
            add(other.name_ko)
    return sorted(names)


def identity_breaks(text: str, persona: Persona, other_names: Iterable[str] = ()) -> list[str]:
    """Phrases where the reply talks as a different character or disowns the persona's name.

    Detected: self-introduction as one of `other_names` ("I'm Rin", "this is Sori speaking",
    "나 지아야", "저는 배진호입니다"), "my name is X" / "제 이름은 X" with X not the persona's name,
    and "I'm not Yuna" / "저는 유나가 아니".
    """
    own = _name_tokens(persona)
    found: list[str] = []
    lowered = text.lower()
    for name in other_names:
        escaped = re.escape(name.lower())
        if name.isascii():
            pattern = (
                rf"\b(?:(?:i am|i'm|im|my name is|call me|speaking as)\s+(?:captain |leader )?{escaped}\b(?!'s)"
                rf"|(?:this is|it's)\s+{escaped}\s+(?:here|speaking)\b)"
            )
        else:
            pattern = (
                rf"(?:^|[\s,.!?])(?:저는|나는|난|전|나|저|제\s*이름은|내\s*이름은)\s*{escaped}"
                r"(?:이)?(?:야|예요|에요|이에요|입니다|이다|다|라고)"
            )
        if match := re.search(pattern, lowered):
            found.append(match.group(0).strip(" ,.!?"))
    for match in re.finditer(r"\bmy name is ([a-z][a-z'-]+)", lowered):
        if match.group(1) not in own:
            found.append(match.group(0))
    for match in re.finditer(
        r"(?:제|내)\s*이름은\s*([\uac00-\ud7a3]+?)(?:이)?(?:야|예요|에요|이에요|입니다|이다|라고)", text
    ):
        if match.group(1) not in own:
            found.append(match.group(0))
    for name in own:
        escaped = re.escape(name)
        if re.search(rf"\b(?:i am|i'm|im) (?:not|no longer) (?:really )?{escaped}\b", lowered) or re.search(
            rf"(?:저는|나는|난|전)\s*{escaped}(?:이|가)\s*아니", text
        ):
            found.append(f"not {name}")
    return found


def wrong_language(text: str, lang: str) -> bool:
    """True when a non-empty reply is not in the fan's language (script drift or the other language)."""
    if not text.strip():
        return False
    expected: Lang = "ko" if lang == "ko" else "en"
    return script_drift(text, expected) or in_other_language(text, expected)


def drift(text: str, persona: Persona, lang: str, other_names: Iterable[str] = ()) -> bool:
    """True when the reply leaves the role: it claims to be an AI / model / program / fictional
    character, talks as a different character (see `identity_breaks`; pass `other_character_names`
    to recognise known characters by name), or is not in the fan's language."""
    return bool(ai_claims(text) or identity_breaks(text, persona, other_names) or wrong_language(text, lang))


def drift_reasons(text: str, persona: Persona, lang: str, other_names: Iterable[str] = ()) -> list[str]:
    """Why `drift` is True (empty when it is False)."""
    reasons = [f"claims to be an AI or model ({c!r})" for c in ai_claims(text)]
    reasons += [f"talks as another character ({c!r})" for c in identity_breaks(text, persona, other_names)]
    if wrong_language(text, lang):
        reasons.append(f"not in the fan's language ({lang})")
    return reasons


# --- the speech check -----------------------------------------------------------------------------------------


def addresses_fan(text: str, persona: Persona, fan_name: str | None = None) -> bool | None:
    """Whether the reply addresses the fan (None when the persona has no fan address)."""
    forms = [f for f in (persona.speech.fan_address_ko, persona.speech.fan_address_en) if f]
    if not forms and not fan_name:
        return None
    if fan_name:
        forms.append(fan_name)
    folded = unicodedata.normalize("NFKC", text).casefold()
    for form in forms:
        form = unicodedata.normalize("NFKC", form).casefold()
        if form.isascii():
            if re.search(rf"\b{re.escape(form)}\b", folded):
                return True
        elif form in folded:
            return True
    return False


def check_speech(
    text: str,
    persona: Persona,
    lang: str,
    *,
    fan_name: str | None = None,
    banmal_tolerance: float = DEFAULT_BANMAL_TOLERANCE,
) -> list[dict[str, str]]:
    """Speech-rule problems of one reply: `{"rule", "reason", "severity"}` (see the module docstring)."""
    problems: list[dict[str, str]] = []

    def add(rule: str, reason: str, severity: str = HARD) -> None:
        problems.append({"rule": rule, "reason": reason, "severity": severity})

    if not text.strip():
        add("empty", "the reply is empty")
        return problems
    speech = persona.speech
    emoji = find_emoji(text)
    expected = speech.emoji_per_message
    low, high = (0, 0) if expected == 0 else (max(0, expected - 1), expected + 1)
    if not low <= len(emoji) <= high:
        allowed = "none" if high == 0 else f"{low}-{high}"
        add("emoji_count", f"{len(emoji)} emoji ({''.join(emoji)}); allowed {allowed}")
    if expected > 0 and speech.emoji_set:
        allowed_set = {_emoji_key(e) for e in speech.emoji_set}
        outside = [e for e in emoji if _emoji_key(e) not in allowed_set]
        if outside:
            add("emoji_set", f"emoji outside the persona's set: {''.join(outside)}")

    if addresses_fan(text, persona, fan_name) is False:
        address = " / ".join(f for f in (speech.fan_address_ko, speech.fan_address_en) if f)
        add(
            "fan_address",
            f"does not address the fan ({address}{' or ' + fan_name if fan_name else ''})",
            SOFT,
        )

    for topic, keyword in forbidden_topic_hits(text, persona):
        add("forbidden_topic", f"mentions {topic.topic} ({keyword})")

    claims = ai_claims(text)
    if claims:
        add(
            "banned_phrase",
            "claims to be an AI / model / program or talks like an assistant: "
            + ", ".join(repr(c) for c in claims),
        )

    unsafe = unsafe_language(text)
    if unsafe:
        add("unsafe_language", ", ".join(f"{h.category} ({h.matched!r})" for h in unsafe))

    limit = max_sentences(persona)
    if limit is not None:
        count = count_sentences(text)
        if count > limit:
            add("length", f"{count} sentences; the persona keeps to at most {limit}")

    if lang == "ko":
        banmal, jondae = speech_levels(text)
        if banmal + jondae:
            share = banmal / (banmal + jondae)
            if abs(share - speech.banmal_ratio) > banmal_tolerance + 1e-9:
                add(
                    "speech_level",
                    f"반말 share {share:.2f} ({banmal} 반말, {jondae} 존댓말 sentences); "
                    f"persona uses about {speech.banmal_ratio:.2f} (tolerance {banmal_tolerance})",
                )
    return problems


def hard_problems(problems: list[dict[str, str]]) -> list[dict[str, str]]:
    return [p for p in problems if p.get("severity", HARD) == HARD]
