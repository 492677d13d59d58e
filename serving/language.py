"""Language detection and script-drift checks (small models may switch from Korean to Chinese)."""

from __future__ import annotations

import re
from typing import Literal

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
