"""Language detection and drift checks (small models may switch from Korean to Chinese, or from English
to Spanish)."""

from __future__ import annotations

import re
import threading
from functools import cache
from typing import Any, Literal

from py3langid.langid import MODEL_FILE, LanguageIdentifier

Lang = Literal["ko", "en"]
# How prompts name each language to the model.
LANGUAGE_NAMES: dict[str, str] = {"ko": "Korean (한국어)", "en": "English"}

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_HAN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str) -> Lang:
    """'ko' when the text has a meaningful share of Hangul, else 'en'."""
    hangul = len(_HANGUL.findall(text))
    latin = len(_LATIN.findall(text))
    return "ko" if hangul and hangul * 3 >= latin else "en"


def script_drift(text: str, expected: Lang) -> bool:
    """True when a reply drifted into another script (Chinese/Japanese characters, or no Hangul for ko)."""
    foreign = len(_HAN.findall(text)) + len(_KANA.findall(text))
    if foreign >= 2:
        return True
    if expected == "ko":
        return len(_HANGUL.findall(text)) == 0 and len(text.strip()) > 0
    return False


# Below these a short reply ("Hi, Sunny!", "Sure! Bori!") is too little text to name its language.
_MIN_WORDS_TO_IDENTIFY = 5
_OTHER_LANGUAGE_CONFIDENCE = 0.5


@cache
def _identifier() -> LanguageIdentifier:
    """langid.py's model (shipped in the py3langid package), loaded once per process (about 1 s)."""
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(_LATIN_LANGUAGES))
    return identifier


# English and the Latin-script languages a small multilingual model drifts into. Limited on purpose:
# with all 97 of langid's languages, casual fan English ("good night yuna sleep well") reads as
# Nigerian Pidgin.
_LATIN_LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "nl", "id", "ms", "tl", "vi", "tr", "pl", "sv", "ro")


def other_latin_language(text: str) -> str | None:
    """The ISO code of the language a Latin-script text is written in when that is confidently not
    English ("Hola, Arin! Soy Haneul Seo..." -> "es"), else None (English, unsure, or too short).
    Names and Hangul are left in: they lower the confidence, never raise another language's."""
    if len(_LATIN_WORD.findall(text)) < _MIN_WORDS_TO_IDENTIFY:
        return None
    language, probability = _identifier().classify(text)
    return language if language != "en" and probability >= _OTHER_LANGUAGE_CONFIDENCE else None


_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")


def in_other_language(text: str, expected: Lang) -> bool:
    """True when a text with letters is written in another language than `expected`: Korean without
    Hangul, mostly the other language's letters, or for English another Latin-script language.
    (Chinese or Japanese characters inside the right language are a script drift, `script_drift`.)"""
    if not re.search(r"[A-Za-z\uac00-\ud7a3]", text):
        return False
    if expected == "ko" and not _HANGUL.search(text):
        return True
    if detect_language(text) != expected:
        return True
    return expected == "en" and other_latin_language(text) is not None


def language_drift(text: str, expected: Lang) -> bool:
    """True when a reply is not in the expected language: another script (`script_drift`), or for
    English another Latin-script language (Spanish, French, ...)."""
    if script_drift(text, expected):
        return True
    return expected == "en" and other_latin_language(text) is not None


# One Kiwi (Korean morphological analyser, model from PyPI) per process, shared by the speech-level
# check, the CRM readability check and the fan-fact check; its tokenizer is not documented as
# thread-safe, hence the lock.
KIWI_LOCK = threading.Lock()


@cache
def korean_analyzer() -> Any:
    from kiwipiepy import Kiwi  # loaded on first use (about a second)

    return Kiwi()


def korean_morphemes(text: str) -> list[Any]:
    """Kiwi's tokens of `text` (each with `.form`, `.tag`, `.start`, `.end`)."""
    with KIWI_LOCK:
        return list(korean_analyzer().tokenize(text))
