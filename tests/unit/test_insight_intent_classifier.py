"""The trained intent classifier and how the router combines it with the keyword guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from insight import intent_classifier as ic
from insight.lexicon import INTENTS, KeywordGuess, keyword_intent


def test_trains_on_the_shipped_questions_and_predicts_known_intents() -> None:
    assert [p.name for p in ic.train_paths()] == ["intent_train.jsonl"]
    model = ic.trained()
    assert model is not None and ic.trained() is model  # cached by content
    for question in ("VIP 고객한테 보낼 푸시 문구 써줘", "Draft an SMS for our lapsed customers"):
        intent, probability = model.predict([question])[0]
        assert intent in INTENTS and 0.0 <= probability <= 1.0


def test_bad_training_line_names_file_and_line() -> None:
    with pytest.raises(ValueError, match=r"f\.jsonl:2: bad training question"):
        ic.parse_rows(
            '{"question": "hi", "intent": "summary"}\n{"question": "x", "intent": "chat"}', "f.jsonl"
        )


def test_combine_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    def fixed(intent: str, probability: float) -> None:
        monkeypatch.setattr(ic, "predict", lambda question: (intent, probability))

    lookup = KeywordGuess("customer_lookup", True, [], ["C00042"])
    fixed("strategy", 0.99)
    assert ic.combine("C00042?", lookup) is lookup  # an id in the text decides
    sure = KeywordGuess("segment_profile", True, ["vip"], [])
    fixed("strategy", 0.7)
    assert ic.combine("q", sure) is sure  # not sure enough to override confident words
    fixed("strategy", 0.9)
    assert ic.combine("q", sure).intent == "strategy" and ic.combine("q", sure).segments == ["vip"]
    unsure = KeywordGuess("segment_profile", False, ["vip"], [])
    fixed("message_drafting", 0.55)
    assert ic.combine("q", unsure) == KeywordGuess("message_drafting", True, ["vip"], [])
    fixed("message_drafting", 0.3)
    assert ic.combine("q", unsure) is unsure
    no_scope = KeywordGuess("summary", False, [], [])
    fixed("strategy", 0.95)
    assert ic.combine("q", no_scope) is no_scope  # no segment named: the words decide
    vague = KeywordGuess("segment_profile", False, [], [])
    assert ic.combine("q", vague) == KeywordGuess("strategy", False, [], [])  # scope unknown: still unsure


def test_without_training_files_the_words_decide(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    from serving.settings import get_settings

    get_settings.cache_clear()
    guess = keyword_intent("What are VIP customers like?")
    assert ic.trained() is None and ic.combine("What are VIP customers like?", guess) is guess
    get_settings.cache_clear()
