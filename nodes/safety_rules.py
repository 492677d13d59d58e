"""Layer 1 of input safety: normalised rule matching in Korean and English.

Normalisation defeats the usual tricks: spacing ("시 발", "f u c k"), leetspeak ("sh1t"), zero-width
characters, full-width letters, repeated letters ("fuuuck") and decomposed Hangul jamo.
Rules live in data/safety/rules.yaml.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from serving.settings import get_settings

_ZERO_WIDTH = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_REPEATS = re.compile(r"(.)\1{2,}")


@dataclass(frozen=True)
class RuleHit:
    category: str
    pattern: str
    matched: str


def normalise(text: str) -> tuple[str, str]:
    """(spaced, compact) normal forms of a text."""
    text = unicodedata.normalize("NFKC", text)  # full-width -> ascii; jamo ㅅ -> conjoining jamo
    text = unicodedata.normalize("NFC", _ZERO_WIDTH.sub("", text)).lower()
    text = _REPEATS.sub(r"\1\1", text)
    leet = " ".join(word.translate(_LEET) if re.search(r"[a-z]", word) else word for word in text.split())
    spaced = re.sub(r"\s+", " ", leet).strip()
    compact = _NON_WORD.sub("", spaced)
    # Single letters separated by spaces or dots ("f u c k", "시 발") only join in the compact form.
    return spaced, compact


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


def rules_path() -> Path:
    return get_settings().data_dir / "safety" / "rules.yaml"


def match_rules(text: str, path: Path | None = None) -> list[RuleHit]:
    spaced, compact = normalise(text)
    hits = []
    for category, form, pattern in _compiled(path or rules_path()):
        found = pattern.search(spaced if form == "spaced" else compact)
        if found:
            hits.append(RuleHit(category=category, pattern=pattern.pattern, matched=found.group(0)))
    return hits
