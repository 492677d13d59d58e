"""Language detection and script drift (small models drift from Korean into Chinese)."""

from __future__ import annotations

import pytest

from personagraph.serving.language import detect_language, language_drift, script_drift


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("안녕하세요! 오늘 콘서트 정말 좋았어요", "ko"),
        ("Hi Yuna, how was the concert?", "en"),
        ("유나야 Polaris 너무 좋아", "ko"),  # Korean sentence with an English title
        ("I love 유나 so much, she is the best singer ever", "en"),  # English sentence, one Korean word
        ("ㅋㅋㅋㅋ", "ko"),  # compatibility jamo only
        ("", "en"),
        ("123 !!! 🎉", "en"),
    ],
)
def test_detect_language(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize(
    ("text", "expected", "drift"),
    [
        ("오늘도 고마워, 별빛! ✨", "ko", False),
        ("오늘도 고마워, 별빛! 我很高兴见到你", "ko", True),  # Chinese characters
        ("I am so happy to see you", "ko", True),  # no Hangul at all for a Korean reply
        ("今日はありがとう", "en", True),  # Japanese kana and kanji
        ("Thanks for coming, Starlight!", "en", False),
        ("Thanks, 별빛!", "en", False),  # a Korean word in English is not drift
        ("고마워 中", "ko", False),  # one stray character is tolerated
        ("   ", "ko", False),  # empty reply is not drift (the output check catches it)
    ],
)
def test_script_drift(text: str, expected: str, drift: bool) -> None:
    assert script_drift(text, expected) is drift  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected", "drift"),
    [
        # Seen in the memory eval: an English fan got Spanish.
        ("Hola, Arin! Soy Haneul Seo, el capitán de la nave Mireu. Mi nombre es Haneul Seo.", "en", True),
        ("Bonjour mon ami, comment ça va aujourd'hui?", "en", True),
        ("Olá Arin, bem-vindo à nave, meu amigo!", "en", True),
        ("I remember your name, Arin. Welcome aboard the Mireu, crew member!", "en", False),
        ("good night starlight, sleep well and dream of the Lighthouse tour", "en", False),
        ("Hola, Arin!", "en", False),  # too short to name a language: not drift
        ("Hola, Arin! Soy Haneul Seo, el capitán de la nave Mireu.", "ko", True),  # no Hangul
        ("오늘도 고마워, 별빛!", "ko", False),
    ],
)
def test_language_drift(text: str, expected: str, drift: bool) -> None:
    assert language_drift(text, expected) is drift  # type: ignore[arg-type]
