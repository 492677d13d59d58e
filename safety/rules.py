"""Layer 1 of input safety: normalised rule matching in Korean and English.

Normalisation defeats the usual tricks: spacing ("시 발", "f u c k"), leetspeak ("sh1t"), zero-width
characters, full-width letters, repeated letters ("fuuuck") and decomposed Hangul jamo.
Rules live in data/safety/rules.yaml, next to non-blocking cue groups that the classifier
(safety/classifier.py) uses as features.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from personagraph.serving.settings import get_settings

_ZERO_WIDTH = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_REPEATS = re.compile(r"(.)\1{2,}")
_HAS_JAMO = re.compile(r"[\u1100-\u11ff]")
_DIGITS_IN_HANGUL = re.compile(r"(?<=[가-힣])\d+(?=[가-힣])")
_LETTER_RUN = re.compile(r"(?<!\S)\w(?: \w){2,}(?!\S)")
# Letters split by one symbol each ("s.u.i.c.i.d.e", "f-u-c-k", "자.살"): joined in the spaced form too.
_DOT = r"[.*_·-]"
_DOTTED_RUN = re.compile(rf"(?<![\w.*_·-])\w(?:{_DOT}\w){{2,}}(?![\w*_·-])")
# Compatibility jamo as typed on a keyboard -> conjoining jamo (consonants as initials).
_COMPAT_JAMO = {
    **{ord(c): 0x1100 + i for i, c in enumerate("ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ")},
    **{0x314F + i: 0x1161 + i for i in range(21)},
}
# Initial consonants (U+1100..) that can also close a syllable, with their final index (U+11A7 + i).
_LEAD_AS_FINAL = {
    chr(0x1100 + lead): final
    for lead, final in {
        0: 1,
        1: 2,
        2: 4,
        3: 7,
        5: 8,
        6: 16,
        7: 17,
        9: 19,
        10: 20,
        11: 21,
        12: 22,
        14: 23,
        15: 24,
        16: 25,
        17: 26,
        18: 27,
    }.items()
}


@dataclass(frozen=True)
class RuleHit:
    category: str
    pattern: str
    matched: str


def compose_jamo(text: str) -> str:
    """Join runs of conjoining jamo into syllables: "시바ᄅ" (typed as ㅅㅣㅂㅏㄹ) -> "시발".

    NFC alone joins an initial and a vowel but leaves a typed final consonant behind ("시바ᄅ"),
    because a typed consonant is always an initial. A consonant after a vowel that is not itself
    followed by a vowel is taken as the final here. Consonant-only runs ("ㅋㅋ", "ㅅㅂ") stay.
    """
    if not _HAS_JAMO.search(text):
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        lead = ord(text[i]) - 0x1100
        vowel = ord(text[i + 1]) - 0x1161 if i + 1 < n else -1
        if 0 <= lead < 19 and 0 <= vowel < 21:
            final, j = 0, i + 2
            if j < n and 0x11A8 <= ord(text[j]) <= 0x11C2:
                final, j = ord(text[j]) - 0x11A7, j + 1
            elif (
                j < n
                and text[j] in _LEAD_AS_FINAL
                and not (j + 1 < n and 0x1161 <= ord(text[j + 1]) <= 0x1175)
            ):
                final, j = _LEAD_AS_FINAL[text[j]], j + 1
            out.append(chr(0xAC00 + (lead * 21 + vowel) * 28 + final))
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def normalise(text: str) -> tuple[str, str]:
    """(spaced, compact) normal forms of a text."""
    # Typed jamo (ㅅ, ㅣ) become conjoining jamo and are joined into syllables before NFKC, which
    # would join an initial and a vowel itself but strand a typed final ("ㅅㅣㅂㅏㄹ" -> "시바ᄅ").
    text = compose_jamo(_ZERO_WIDTH.sub("", text).translate(_COMPAT_JAMO))
    text = unicodedata.normalize("NFKC", text)  # full-width -> ascii
    text = unicodedata.normalize("NFC", text).lower()
    text = _REPEATS.sub(r"\1\1", text)
    text = _DOTTED_RUN.sub(lambda m: re.sub(_DOT, "", m.group(0)), text)
    leet = " ".join(word.translate(_LEET) if re.search(r"[a-z]", word) else word for word in text.split())
    spaced = re.sub(r"\s+", " ", leet).strip()
    # Single letters separated by spaces or dots ("f u c k", "시 발", "ㅅ ㅣ ㅂ ㅏ ㄹ") only join in
    # the compact form (and in `join_letters` for runs of three or more).
    compact = unicodedata.normalize("NFC", compose_jamo(_NON_WORD.sub("", spaced)))
    # Digits slipped inside a Korean word ("병1신", "존1나") drop out of the compact form.
    compact = _DIGITS_IN_HANGUL.sub("", compact)
    return spaced, compact


def join_letters(spaced: str) -> str:
    """Join runs of three or more single letters in the spaced form: "s e x t me" -> "sext me"."""
    return _LETTER_RUN.sub(lambda m: m.group(0).replace(" ", ""), spaced)


@lru_cache(maxsize=4)
def _compiled(path: Path) -> list[tuple[str, str, re.Pattern[str]]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = []
    for category, forms in data["categories"].items():
        for form in ("spaced", "compact"):
            for pattern in forms.get(form, []) or []:
                # NFKC like the text, so patterns written with compatibility jamo ("ㅅㅂ") match.
                rules.append((category, form, re.compile(unicodedata.normalize("NFKC", pattern))))
    return rules


@lru_cache(maxsize=4)
def _compiled_cues(path: Path) -> list[tuple[str, str, re.Pattern[str]]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    cues = []
    for group, forms in (data.get("cues") or {}).items():
        for form in ("spaced", "compact"):
            for pattern in forms.get(form, []) or []:
                cues.append((group, form, re.compile(unicodedata.normalize("NFKC", pattern))))
    return cues


def rules_path() -> Path:
    return get_settings().data_dir / "safety" / "rules.yaml"


def match_rules(text: str, path: Path | None = None) -> list[RuleHit]:
    spaced, compact = normalise(text)
    joined = join_letters(spaced)
    views = {"spaced": (spaced,) if joined == spaced else (spaced, joined), "compact": (compact,)}
    hits = []
    for category, form, pattern in _compiled(path or rules_path()):
        for view in views[form]:
            found = pattern.search(view)
            if found:
                hits.append(RuleHit(category=category, pattern=pattern.pattern, matched=found.group(0)))
                break
    return hits


def match_cues(text: str, path: Path | None = None, *, forms: tuple[str, str] | None = None) -> list[str]:
    """Names of the cue groups (rules.yaml `cues`, never blocking) found in a text, sorted.

    `forms` is the text's (spaced, compact) normal form when the caller already has it.
    """
    spaced, compact = forms or normalise(text)
    found = {
        group
        for group, form, pattern in _compiled_cues(path or rules_path())
        if pattern.search(spaced if form == "spaced" else compact)
    }
    return sorted(found)


# What a reply written by the persona may not contain. Stricter than for fans: the persona never
# swears, not even as praise, so a bare swear word (cue group `pf_swear`) counts as profanity.
OUTPUT_UNSAFE_CATEGORIES = ("profanity", "sexual", "hate")
SWEAR_CUE = "pf_swear"


def unsafe_language(text: str, path: Path | None = None) -> list[RuleHit]:
    """Profanity, sexual content or hate in a persona's reply (rules plus bare swear words)."""
    hits = [h for h in match_rules(text, path) if h.category in OUTPUT_UNSAFE_CATEGORIES]
    if any(h.category == "profanity" for h in hits):
        return hits
    spaced, compact = normalise(text)
    swear_patterns = [
        (form, p) for group, form, p in _compiled_cues(path or rules_path()) if group == SWEAR_CUE
    ]
    for form, pattern in swear_patterns:
        found = pattern.search(spaced if form == "spaced" else compact)
        if found:
            return [*hits, RuleHit(category="profanity", pattern=pattern.pattern, matched=found.group(0))]
    return hits


def leaks_prompt(text: str, instructions: str, n: int = 8) -> bool:
    """True when the text repeats any run of `n` words of the instructions (punctuation and case
    aside: a leak split into sentences, or re-punctuated, is still a leak)."""
    return repeats_words(text, instructions, n)


def repeats_words(text: str, source: str, n: int) -> bool:
    """True when the text has a run of `n` words in a row that is also in `source` (punctuation and
    case aside)."""
    words = _words(text)
    if not source or len(words) < n:
        return False
    source_grams = {tuple(g) for g in _ngrams(_words(source), n)}
    return any(tuple(g) in source_grams for g in _ngrams(words, n))


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _ngrams(words: list[str], n: int) -> list[list[str]]:
    return [words[i : i + n] for i in range(len(words) - n + 1)]
