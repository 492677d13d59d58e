"""Bring a Korean reply to the persona's speech level (반말 / 존댓말) by changing its sentence endings.

A small model often answers in 존댓말 ("좋습니다", "고마워요") for a persona who speaks 반말, and a
rewrite by the same model rarely fixes it (persona eval: every rule miss of the 1.5B model was this).
The level lives in a few morphemes, so they are changed directly with the Kiwi morphological
analyser (kiwipiepy, model shipped on PyPI): the final ending (EF) of each sentence, the honorific
시 before it, and in the sentences that change, the humble first person (저 -> 나, 저희 -> 우리), humble
verbs (드리다 -> 주다, 말씀 -> 말) and the answer word (네 -> 응); and the other way for a 존댓말
persona. Kiwi re-joins the morphemes of each changed word, so conjugation stays right
("어렵+었+습니다" -> "어려웠어", "주+세요" -> "줘").

Sentences of thanks or apology keep their level at first (a 반말 persona may say "고마워요"); they
change only when the reply is still off the persona's level without them.

    conform_speech_level("오늘 정말 좋았습니다. 다음에 또 와요!", persona, "ko")  # -> "오늘 정말 좋았어. 다음에 또 와!"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from personagraph.personas.model import Persona
from personagraph.personas.rules import check_speech
from personagraph.serving.language import KIWI_LOCK, korean_analyzer

Level = Literal["banmal", "jondaemal"]
Morph = tuple[str, str]

# Sentence-final endings (Kiwi EF forms) per level. Anything else ending in 요 is 존댓말 ("ᆯ게요").
_TO_BANMAL = {
    **dict.fromkeys(
        (
            "습니다",
            "ᆸ니다",
            "습니까",
            "ᆸ니까",
            "어요",
            "아요",
            "여요",
            "세요",
            "으세요",
            "시오",
            "으시오",
            "십시오",
            "으십시오",
            "셔요",
            "으셔요",
        ),
        "어",
    ),
    **dict.fromkeys(("ᆸ시다", "읍시다", "시죠"), "자"),
    **dict.fromkeys(("죠", "지요"), "지"),
}
_COPULA_TO_BANMAL = ("에요", "예요", "이에요", "어요", "ᆸ니다", "ᆸ니까", "세요")  # after 이다 / 아니다 -> 야
_TO_JONDAE = {
    **dict.fromkeys(("어", "아", "여", "자", "냐", "니", "으니", "다", "ᆫ다", "는다", "으냐", "나"), "어요"),
    **dict.fromkeys(("라", "어라", "아라", "으라", "렴", "으렴"), "세요"),
    "지": "죠",
    "구나": "군요",
}
_JONDAE_ENDINGS_WITH_YO = (
    "네",
    "거든",
    "잖아",
    "ᆯ게",
    "을게",
    "ᆯ까",
    "을까",
    "는데",
    "ᆫ데",
    "던데",
    "군",
    "래",
    "대",
)
_HUMBLE_TO_PLAIN: dict[Morph, Morph] = {
    ("저", "NP"): ("나", "NP"),
    ("저희", "NP"): ("우리", "NP"),
    ("드리", "VX"): ("주", "VX"),
    ("드리", "VV"): ("주", "VV"),
    ("말씀", "NNG"): ("말", "NNG"),
    ("뵙", "VV"): ("보", "VV"),
    ("네", "IC"): ("응", "IC"),
    ("예", "IC"): ("응", "IC"),
    ("아니요", "IC"): ("아니", "IC"),
    ("아니에요", "IC"): ("아니야", "IC"),
    ("그렇죠", "IC"): ("그렇지", "IC"),
}
_PLAIN_TO_HUMBLE: dict[Morph, Morph] = {
    ("나", "NP"): ("저", "NP"),
    ("응", "IC"): ("네", "IC"),
    ("아니", "IC"): ("아니요", "IC"),
    ("아니야", "IC"): ("아니에요", "IC"),
    ("그렇지", "IC"): ("그렇죠", "IC"),
}
# Morphemes of thanks and apology: such sentences keep their level in the first pass.
_COURTESY = ("감사", "고맙", "죄송", "미안", "고마워요", "고마워")
_COPULAS = ("VCP", "VCN")


@dataclass(frozen=True)
class _Token:
    form: str
    tag: str
    start: int
    end: int
    word: tuple[int, int]  # (sentence, word) position: the unit that is re-joined


_POLITE_TAIL = ("요", "니다", "니까", "죠")


def _analyse(text: str) -> list[_Token]:
    """Kiwi's morphemes of `text`. A polite predicate that Kiwi takes for a proper noun before a
    name ("반갑습니다, 조약돌!", "고마워요 별빛!") is analysed again on its own."""
    kiwi = korean_analyzer()
    with KIWI_LOCK:
        tokens = kiwi.tokenize(text)
    out: list[_Token] = []
    for t in tokens:
        word = (t.sent_position, t.word_position)
        if t.tag == "NNP" and t.form.endswith(_POLITE_TAIL):
            with KIWI_LOCK:
                again = [m for m in kiwi.tokenize(t.form + ".") if m.tag != "SF"]
            if any(m.tag == "EF" for m in again):
                out.extend(_Token(m.form, m.tag, t.start, t.start + t.len, word) for m in again)
                continue
        out.append(_Token(t.form, t.tag, t.start, t.start + t.len, word))
    return out


def conform_speech_level(text: str, persona: Persona, lang: str) -> str:
    """`text` with the sentences of the wrong speech level changed, when the reply's 반말 share is off
    the persona's `speech.banmal_ratio` by more than its tolerance; otherwise `text` unchanged."""
    if lang != "ko" or _within_level(text, persona):
        return text
    target: Level = "banmal" if persona.speech.banmal_ratio >= 0.5 else "jondaemal"
    changed = convert(text, target, keep_courtesy=True)
    if _within_level(changed, persona):
        return changed
    return convert(text, target, keep_courtesy=False)


def _within_level(text: str, persona: Persona) -> bool:
    return not any(p["rule"] == "speech_level" for p in check_speech(text, persona, "ko"))


def convert(text: str, target: Level, *, keep_courtesy: bool = False) -> str:
    """Every sentence of `text` at the `target` level (see the module docstring for what changes)."""
    tokens = _analyse(text)
    morphs: list[Morph] = [(t.form, t.tag) for t in tokens]
    changed = [False] * len(tokens)
    start = 0
    for end in range(len(tokens) + 1):
        if end < len(tokens) and not _ends_sentence(tokens, end):
            continue
        stop = min(end + 1, len(tokens))
        clause = range(start, stop)
        if not clause:
            break
        kept = keep_courtesy and any(_is_courtesy(morphs[i][0]) for i in clause)
        if not kept and _convert_clause(morphs, changed, clause, target):
            swaps = _HUMBLE_TO_PLAIN if target == "banmal" else _PLAIN_TO_HUMBLE
            for i in clause:
                if morphs[i] in swaps:
                    morphs[i], changed[i] = swaps[morphs[i]], True
        start = stop
    return _rebuild(text, tokens, morphs, changed)


def _ends_sentence(tokens: list[_Token], i: int) -> bool:
    """An EF; a connective ending that closes a sentence in chat ("그렇지?", "아니에요, 괜찮아요");
    or a polite 요 particle closing one ("저도요", "정말요")."""
    form, tag = tokens[i].form, tokens[i].tag
    following = tokens[i + 1].tag if i + 1 < len(tokens) else "SF"
    closes = following in ("SF", "SW", "W_EMOJI") or (following == "SP" and form.endswith("요"))
    if tag == "EF":
        return True
    if tag == "EC":
        return closes
    return form == "요" and tag == "JX" and (closes or following.startswith("S"))


def _is_courtesy(form: str) -> bool:
    return any(form.startswith(word) for word in _COURTESY)


def _convert_clause(morphs: list[Morph], changed: list[bool], clause: range, target: Level) -> bool:
    """Change the clause's final ending in place; True when it changed."""
    last = clause[-1]
    form, tag = morphs[last]
    if tag not in ("EF", "EC", "JX"):
        return False
    before = morphs[last - 1] if last > clause[0] else ("", "")
    if target == "banmal":
        new = _to_banmal(form, tag, before)
    else:
        noun = morphs[last - 2][0] if last - 2 >= clause[0] else ""
        new = _to_jondae(form, tag, before, noun_ends_open=ends_open(noun))
    if new is None or new == morphs[last]:
        return False
    morphs[last], changed[last] = new, True
    if target == "banmal" and before == ("하", "XSA") and morphs[last - 2 : last - 1] == [("안녕", "NNG")]:
        morphs[last - 1] = morphs[last] = ("", "EF")  # 안녕하세요 -> 안녕
        changed[last - 1] = True
    elif target == "banmal" and before == ("시", "EP"):  # honorific 시 ("하셨어요" -> "했어")
        morphs[last - 1], changed[last - 1] = ("", "EP"), True
    elif (
        target == "banmal"
        and before[1] == "EP"
        and last - 2 >= clause[0]
        and morphs[last - 2] == ("시", "EP")
    ):
        morphs[last - 2], changed[last - 2] = ("", "EP"), True
    if new == ("야", "EF") and last - 2 >= clause[0] and morphs[last - 2] == ("것", "NNB"):
        morphs[last - 2], changed[last - 2] = ("거", "NNB"), True  # "될 것입니다" -> "될 거야"
    if target == "jondaemal" and new == ("예요", "EF") and before[1] in _COPULAS:
        morphs[last - 1], changed[last - 1] = ("", before[1]), True  # 가수+예요, not 가수+이+에요
    return True


def _to_banmal(form: str, tag: str, before: Morph) -> Morph | None:
    if tag == "JX":  # a closing 요 particle is dropped
        return ("", "JX") if form == "요" else None
    if tag == "EC" and not form.endswith("요"):
        return None
    if before[1] in _COPULAS and form in _COPULA_TO_BANMAL:
        return ("야", "EF")
    if form in _TO_BANMAL:
        return (_TO_BANMAL[form], "EF")
    if form == "요":
        return ("", "EF")
    if form.endswith("요"):
        return (form[:-1], "EF")
    return None


def ends_open(word: str) -> bool:
    """True when the word ends in a Hangul syllable without a final consonant ("가수", not "서울")."""
    return bool(word) and "가" <= word[-1] <= "힣" and (ord(word[-1]) - 0xAC00) % 28 == 0


def _to_jondae(form: str, tag: str, before: Morph, *, noun_ends_open: bool) -> Morph | None:
    if tag == "JX" or form.endswith(("요", "니다", "니까", "죠", "시오")):
        return None
    if before[1] in _COPULAS and form in ("야", "이야", "다", "이다", "어"):
        # 가수+예요 (the copula 이 contracts after a vowel), 서울+이+에요, 아니+에요
        return ("예요", "EF") if before[1] == "VCP" and noun_ends_open else ("에요", "EF")
    if form in _TO_JONDAE:
        return (_TO_JONDAE[form], "EF")
    if form in _JONDAE_ENDINGS_WITH_YO:
        return (form + "요", "EF")
    return None


def _rebuild(text: str, tokens: list[_Token], morphs: list[Morph], changed: list[bool]) -> str:
    """The text with each word (eojeol) that holds a changed morpheme re-joined by Kiwi."""
    words: dict[tuple[int, int], list[int]] = {}
    for i, token in enumerate(tokens):
        words.setdefault(token.word, []).append(i)
    edits = []
    for indices in words.values():
        if not any(changed[i] for i in indices):
            continue
        begin = min(tokens[i].start for i in indices)
        end = max(tokens[i].end for i in indices)
        kept = [morphs[i] for i in indices if morphs[i][0]]
        with KIWI_LOCK:
            joined = korean_analyzer().join(kept) if kept else ""
        edits.append((begin, end, joined))
    for begin, end, joined in sorted(edits, reverse=True):
        text = text[:begin] + joined + text[end:]
    return text
