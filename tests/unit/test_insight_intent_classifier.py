"""The trained intent classifier and how the router combines it with the keyword guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from personagraph.insight import intent_classifier as ic
from personagraph.insight.lexicon import INTENTS, KeywordGuess, keyword_intent


def test_trains_on_the_shipped_questions_and_predicts_known_intents() -> None:
    assert [p.name for p in ic.train_paths()] == [
        "intent_train.jsonl",
        "intent_train_author5.jsonl",
        "intent_train_blind2.jsonl",
        "intent_train_blind3.jsonl",
        "intent_train_more.jsonl",
    ]
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


def test_decide_rules() -> None:
    lookup = KeywordGuess("customer_lookup", True, [], ["C00042"])
    assert ic.decide(lookup, ("strategy", 0.99), ["vip"]) is lookup  # an id in the text decides
    words = KeywordGuess("segment_profile", True, ["vip"], [])
    # The classifier's intent stands; segments named in words count, the model's are not added.
    assert ic.decide(words, ("strategy", 0.9), ["loyal"]) == KeywordGuess("strategy", True, ["vip"], [])
    assert ic.decide(words, ("strategy", 0.3), []) == KeywordGuess("strategy", False, ["vip"], [])
    unnamed = KeywordGuess("out_of_scope", False, [], [])
    # No segment in the words: the segment model's, and the result is sure only with a segment.
    assert ic.decide(unnamed, ("segment_profile", 0.8), ["regular"]) == KeywordGuess(
        "segment_profile", True, ["regular"], []
    )
    assert ic.decide(unnamed, ("segment_profile", 0.8), []) == KeywordGuess("segment_profile", False, [], [])
    one = KeywordGuess("segment_comparison", False, ["new"], [])
    assert ic.decide(one, ("segment_comparison", 0.7), ["new", "occasional"]).segments == [
        "new",
        "occasional",
    ]
    # "Lookup" without an id in the text is impossible: the words' intent, unsure.
    assert ic.decide(unnamed, ("customer_lookup", 0.9), []) == KeywordGuess("out_of_scope", False, [], [])


def test_segment_model_finds_segments_the_words_miss() -> None:
    model = ic.trained()
    assert model is not None
    rows = [r for p in ic.train_paths() for r in ic.parse_rows(p.read_text(encoding="utf-8"), str(p))]
    named = [(r.question, r.segments[0]) for r in rows if r.segments and len(r.segments) == 1][:50]
    # Trained on these very questions, it must name their segment first (a sanity check of the labels
    # and the multi-label fit, not a measure of generalisation: `--cv` is that).
    found = model.segments([question for question, _ in named])
    assert sum(bool(f) and f[0] == segment for f, (_, segment) in zip(found, named, strict=True)) >= 45


def test_cross_validation_reports_each_router() -> None:
    rows = [r for p in ic.train_paths() for r in ic.parse_rows(p.read_text(encoding="utf-8"), str(p))]
    result = ic.cross_validate(rows[::6], folds=3)
    assert result["n"] == len(rows[::6]) and result["folds"] == 3
    for key in ("intent_words", "intent_classifier", "intent_combined", "scope_words", "scope_combined"):
        assert 0.0 <= result[key] <= 1.0
    # Words alone cannot name segments they have no word for; the combined router must not be worse.
    assert result["scope_combined"] >= result["scope_words"] - 0.05


def test_without_training_files_the_words_decide(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    from personagraph.serving.settings import get_settings

    get_settings.cache_clear()
    guess = keyword_intent("What are VIP customers like?")
    assert ic.trained() is None and ic.combine("What are VIP customers like?", guess) is guess
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("question", "segments"),
    [
        ("탑티어 고객들 요즘 뭐 사?", ["vip"]),
        ("찐팬들한테 보낼 문구", ["loyal"]),
        ("이탈각 보이는 고객 대응", ["at_risk"]),
        ("잠수탄 고객 다시 부르려면?", ["dormant"]),
        ("뜨내기 손님 특징", ["occasional"]),
        ("how do first-timers differ from whales?", ["new", "vip"]),
        ("customers who ghosted us last year", ["dormant"]),
    ],
)
def test_team_nicknames_name_their_segment(question: str, segments: list[str]) -> None:
    from personagraph.insight.lexicon import find_segments

    assert find_segments(question) == segments


def test_other_companies_are_a_feature_not_a_verdict() -> None:
    from personagraph.insight.lexicon import names_other_company

    assert names_other_company("올리브영 VIP는 뭘 사?")
    assert names_other_company("What does Sephora's loyalty program offer?")
    assert names_other_company("경쟁사 대비 우리 VIP 객단가")
    assert not names_other_company("우리 VIP 고객들 뭐 사?")
    assert not names_other_company("카톡으로 보낼 신규 고객 문구")  # a channel, not a company
    # The router weighs it with the rest: another company's customers are out of scope, ours stay ours.
    model = ic.trained()
    assert model is not None
    assert model.predict(["올리브영 VIP 고객들은 뭘 많이 사?"])[0][0] == "out_of_scope"
    assert model.predict(["how do we stop our VIPs from drifting to competitors?"])[0][0] == "strategy"
