"""The trained chat intent classifier and how classify_intent uses it (issue 18: no model call before
the draft on the common path)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import HumanMessage

from personagraph.nodes.routing import classify_intent
from personagraph.personas import intent_classifier
from personagraph.personas.intent_classifier import (
    INTENTS,
    ChatIntentClassifier,
    LabelledMessage,
    build,
    parse_rows,
)
from personagraph.serving.models import use_models
from tests.fakes import scripted

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "chat" / "intent_train.jsonl"


@pytest.fixture
def shipped_classifier(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny persona's data folder plus the shipped training file, in hybrid mode."""
    (data_dir / "chat").mkdir()
    shutil.copy(SHIPPED, data_dir / "chat" / "intent_train.jsonl")
    monkeypatch.setenv("CHAT_INTENT_ROUTER", "hybrid")
    from personagraph.serving.settings import get_settings

    get_settings.cache_clear()
    return data_dir


def human(text: str) -> Any:
    return {"messages": [HumanMessage(content=text, id="m1")]}


def test_shipped_training_file_parses_with_every_intent_in_both_languages() -> None:
    rows = parse_rows(SHIPPED.read_text(encoding="utf-8"), str(SHIPPED))
    assert {r.intent for r in rows} == set(INTENTS)
    for intent in INTENTS:
        messages = [r.message for r in rows if r.intent == intent]
        assert any(any("가" <= ch <= "힣" for ch in m) for m in messages), intent
        assert any(m.isascii() for m in messages), intent


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"message": "hi", "intent": "gossip"}', "intent must be one of"),
        ('{"message": "", "intent": "smalltalk"}', "message must be"),
        ('{"intent": "smalltalk"}', "message"),
        ("not json", "bad training message"),
    ],
)
def test_bad_training_rows_name_file_and_line(line: str, problem: str) -> None:
    content = '{"message": "hello", "intent": "smalltalk"}\n' + line
    with pytest.raises(ValueError, match=problem) as error:
        parse_rows(content, "train.jsonl")
    assert "train.jsonl:2:" in str(error.value)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Who is the main dancer of STELLA?", "knowledge"),
        ("미르호 엔진은 누가 정비해요?", "knowledge"),
        ("유나야 오늘 기분 어때?", "smalltalk"),
        ("good night!! sleep well", "smalltalk"),
        ("What happened after the ambush at the gate?", "story"),
        ("I'm Jisoo and I live in Daejeon", "personal"),
    ],
)
def test_clear_messages_are_decided_without_the_model(shipped_classifier: Path, make_runtime, text: str, intent: str) -> None:  # fmt: skip
    router = scripted(AssertionError("the router model must not be asked"))
    with use_models({"router": router}):
        update = classify_intent(human(text), make_runtime())
    assert update == {"intent": intent, "search_query": text}
    assert router.calls == []


def test_an_unsure_classifier_asks_the_router_model(
    shipped_classifier: Path, make_runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intent_classifier, "CONFIDENT_PROBABILITY", 1.01)  # never sure
    from personagraph.nodes import routing

    monkeypatch.setattr(routing, "CONFIDENT_PROBABILITY", 1.01)
    router = scripted({"intent": "story", "search_query": "tour"})
    with use_models({"router": router}):
        assert classify_intent(human("How was the tour?"), make_runtime()) == {
            "intent": "story",
            "search_query": "tour",
        }
    assert len(router.calls) == 1


def test_classifier_mode_never_asks_the_model(
    shipped_classifier: Path, make_runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personagraph.nodes import routing
    from personagraph.serving.settings import get_settings

    monkeypatch.setattr(routing, "CONFIDENT_PROBABILITY", 1.01)
    monkeypatch.setenv("CHAT_INTENT_ROUTER", "classifier")
    get_settings.cache_clear()
    with use_models({"router": scripted(AssertionError("no model call"))}):
        assert classify_intent(human("hmm"), make_runtime())["intent"] in INTENTS


def test_router_mode_and_a_missing_training_file_use_the_model(data_dir: Path, make_runtime) -> None:
    # conftest sets CHAT_INTENT_ROUTER=router; the tiny data folder has no training file either.
    router = scripted({"intent": "knowledge", "search_query": "debut"})
    with use_models({"router": router}):
        assert classify_intent(human("Who is the main dancer?"), make_runtime())["intent"] == "knowledge"
    assert len(router.calls) == 1


def test_questions_about_the_fan_stay_personal_before_the_classifier(
    shipped_classifier: Path, make_runtime
) -> None:
    with use_models({"router": scripted(AssertionError("no model call"))}):
        update = classify_intent(human("What's my favourite song?"), make_runtime())
    assert update["intent"] == "personal"


def test_stored_arrays_answer_like_the_fitted_model() -> None:
    rows = parse_rows(SHIPPED.read_text(encoding="utf-8"), str(SHIPPED))
    fitted = build().fit(rows)
    arrays = {key: np.asarray(value) for key, value in fitted.to_arrays().items()}
    loaded = ChatIntentClassifier.from_arrays(arrays)
    texts = ["오늘 뭐 했어?", "Who wrote Orbit?", "내 이름 기억해?"]
    for (a, pa), (b, pb) in zip(fitted.predict(texts), loaded.predict(texts), strict=True):
        assert a == b and pa == pytest.approx(pb, abs=1e-9)
    assert loaded.to_arrays()["coef"].shape == arrays["coef"].shape  # stores again as it loaded


def test_a_tampered_cache_file_is_rejected() -> None:
    rows = [LabelledMessage(m, i) for m, i in [("hi", "smalltalk"), ("who wrote it", "knowledge"),
            ("what happened then", "story"), ("my name is Bo", "personal")] * 3]  # fmt: skip
    arrays = {key: np.asarray(value) for key, value in build().fit(rows).to_arrays().items()}
    arrays["coef"] = arrays["coef"][:, :-1]
    with pytest.raises(ValueError, match="coef"):
        ChatIntentClassifier.from_arrays(arrays)
    arrays["meta"] = np.frombuffer(json.dumps({"format": 99}).encode(), dtype=np.uint8)
    with pytest.raises(ValueError, match="version"):
        ChatIntentClassifier.from_arrays(arrays)
