"""Follow-up questions in an insight thread: which questions lean on the previous turn, how their
intent and scope are resolved, and what the router and drafter see of the earlier turn."""

from __future__ import annotations

from typing import Any

import pytest

from personagraph.graphs.insight_qa import graph
from personagraph.insight.followup import (
    PreviousTurn,
    previous_turn,
    reads_as_follow_up,
    requested_language,
    resolve_follow_up,
)
from personagraph.insight.lexicon import keyword_intent
from personagraph.insight.source import FixedSource
from personagraph.nodes.insight import InsightContext, InsightInput
from personagraph.serving.models import use_models
from tests.fakes import scripted
from tests.unit.insight_support import small_snapshot

STRATEGY: PreviousTurn = {
    "question": "How can we win back at-risk customers?", "answer": "Send a comeback coupon.", "lang": "en",
    "intent": "strategy", "scope": {"segments": ["at_risk"], "customers": []}, "before_segments": ["vip"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("question", "intent", "segments"),
    [
        ("and in Korean?", "strategy", ["at_risk"]),
        ("한국어로 다시 알려줘", "strategy", ["at_risk"]),
        ("Why?", "strategy", ["at_risk"]),
        ("그 중 VIP는?", "strategy", ["vip"]),  # one segment, no intent words: the earlier intent
        ("What about dormant customers?", "strategy", ["dormant"]),
        ("And compare them with loyal customers", "segment_comparison", ["at_risk", "loyal"]),  # them + loyal
        ("둘이 비교해봐", "segment_comparison", ["vip", "at_risk"]),  # the two segments of the last two turns
        (
            "그걸로 카톡 메시지 하나 써줘",
            "message_drafting",
            ["at_risk"],
        ),  # its own strong intent, the scope kept
        ("예산이 별로 없으면?", "strategy", ["at_risk"]),  # names nothing: the earlier intent and scope
        ("충성 고객 버전도요", "strategy", ["loyal"]),
    ],
)
def test_a_follow_up_takes_what_it_does_not_say_from_the_previous_turn(
    question: str, intent: str, segments: list[str]
) -> None:
    resolved = resolve_follow_up(question, keyword_intent(question), STRATEGY)
    assert resolved is not None and resolved.confident
    assert (resolved.intent, resolved.segments) == (intent, segments)


COMPARISON: PreviousTurn = {
    "question": "VIP랑 휴면 고객 비교해줘", "answer": "...", "lang": "ko", "intent": "segment_comparison",
    "scope": {"segments": ["vip", "dormant"], "customers": []}, "before_segments": [],
}  # fmt: skip


@pytest.mark.parametrize(
    ("question", "segments"),
    [
        ("그럼 신규 고객이랑 휴면 고객은?", ["new", "dormant"]),  # a new pair replaces the compared ones
        ("what about the at-risk and regular segments?", ["at_risk", "regular"]),
        ("신규 고객까지 넣어서 비교하면?", ["vip", "dormant", "new"]),  # one more joins them
    ],
)
def test_after_a_comparison_a_named_pair_replaces_it_and_one_segment_joins(
    question: str, segments: list[str]
) -> None:
    resolved = resolve_follow_up(question, keyword_intent(question), COMPARISON)
    assert resolved is not None and (resolved.intent, resolved.segments) == ("segment_comparison", segments)


def test_a_bare_regular_next_to_another_segment_is_the_regular_segment() -> None:
    assert set(keyword_intent("occasional vs regular: who spends more?").segments) == {
        "regular",
        "occasional",
    }


@pytest.mark.parametrize(
    "question",
    [
        "What's the weather in Seoul tomorrow?",
        "Compare VIP and loyal customers",
        "VIP 고객은 어때?",
        "아 그리고 내일 서울 날씨 어때?",
        "Also, can you recommend a movie for tonight?",
        "파이썬으로 정렬 함수 짜줘",
    ],
)
def test_a_new_question_is_not_a_follow_up(question: str) -> None:
    assert resolve_follow_up(question, keyword_intent(question), STRATEGY) is None


def test_nothing_to_follow_without_a_usable_previous_turn() -> None:
    words = keyword_intent("and in Korean?")
    assert resolve_follow_up("and in Korean?", words, None) is None
    refused = previous_turn({"question": "weather?", "intent": "out_of_scope", "scope": {}})
    assert refused is None and previous_turn({**STRATEGY, "error": "model down"}) is None
    kept = previous_turn({**STRATEGY, "answer": "x" * 5000, "router": "keywords"})
    assert kept is not None and len(kept["answer"]) == 800 and "router" not in kept


def test_language_requests() -> None:
    assert requested_language("and in Korean?") == "ko" and requested_language("영어로 해줘") == "en"
    assert requested_language("What are VIPs like?") is None
    assert reads_as_follow_up("한국어로") and not reads_as_follow_up("VIP 고객 특징")


def seen(model: Any) -> str:
    """Everything the model was sent on its first call."""
    return "\n".join(str(m.content) for m in model.calls[0]["messages"])


def run(question: str, previous: PreviousTurn | None, **models: Any) -> dict[str, Any]:
    inputs = InsightInput(question=question)
    if previous is not None:
        inputs["previous"] = previous
    with use_models(models):
        return graph.invoke(  # type: ignore[no-any-return]
            inputs,
            context=InsightContext(
                source=FixedSource(small_snapshot()), router_mode="model", use_profiles=False
            ),
        )


def test_the_router_model_sees_the_earlier_question_and_an_empty_scope_is_filled_from_it() -> None:
    router = scripted({"intent": "strategy", "segments": [], "customers": []})
    drafter = scripted("Send a comeback coupon to them.")
    out = run("Why?", STRATEGY, router=router, drafter=drafter)
    assert out["follow_up"] and out["router"] == "model"
    assert (out["intent"], out["scope"]["segments"]) == ("strategy", ["at_risk"])
    assert STRATEGY["question"] in seen(router)
    assert "EARLIER IN THIS CONVERSATION" in seen(drafter) and "Send a comeback coupon." in seen(drafter)


def test_without_a_follow_up_the_earlier_turn_is_not_shown() -> None:
    router = scripted({"intent": "segment_profile", "segments": ["vip"], "customers": []})
    drafter = scripted("VIPs buy often.")
    out = run("What are our VIP customers like?", STRATEGY, router=router, drafter=drafter)
    assert not out["follow_up"] and out["scope"]["segments"] == ["vip"]
    assert STRATEGY["question"] not in seen(router)
    assert "EARLIER IN THIS CONVERSATION" not in seen(drafter)


def test_studio_gets_an_input_schema_with_the_optional_previous_turn() -> None:
    """Pydantic builds no schema from a typing.TypedDict on Python 3.11: Studio would show no input form."""
    schema = graph.get_input_jsonschema()
    assert schema["required"] == ["question"] and set(schema["properties"]) == {"question", "previous"}
    assert "follow_up" in graph.get_output_jsonschema()["properties"]


# --- boundary customers across turns (issue 21) ---------------------------------------------------
NEAR_VIP: PreviousTurn = {
    "question": "VIP에 가까운 충성 고객은 누구야?", "answer": "...", "lang": "ko", "intent": "segment_profile",
    "scope": {"segments": ["loyal", "vip"], "customers": [], "boundary": ["vip"]}, "before_segments": [],
}  # fmt: skip
LOYAL: PreviousTurn = {
    "question": "What are our loyal customers like?", "answer": "...", "lang": "en", "intent": "strategy",
    "scope": {"segments": ["loyal"], "customers": []}, "before_segments": [],
}  # fmt: skip


@pytest.mark.parametrize(
    ("question", "intent", "segments", "boundary"),
    [
        ("그들에게 보낼 카톡 메시지 써줘", "message_drafting", ["loyal", "vip"], "vip"),  # the same customers
        ("what should we do about them?", "strategy", ["loyal", "vip"], "vip"),
        ("in English?", "segment_profile", ["loyal", "vip"], "vip"),
        (
            "그럼 이탈 위험에 가까운 고객은?",
            "segment_profile",
            ["at_risk"],
            "at_risk",
        ),  # a boundary of its own
        ("and the regulars about to become dormant?", "segment_profile", ["regular", "dormant"], "dormant"),
        ("둘이 비교해봐", "segment_comparison", ["loyal", "vip"], None),  # a comparison has no boundary
        ("그럼 휴면 고객은?", "segment_profile", ["dormant"], None),  # a named segment replaces the scope
    ],
)
def test_a_follow_up_keeps_or_replaces_the_boundary_scope(
    question: str, intent: str, segments: list[str], boundary: str | None
) -> None:
    resolved = resolve_follow_up(question, keyword_intent(question), NEAR_VIP)
    assert resolved is not None and resolved.confident
    assert (resolved.intent, resolved.segments, resolved.boundary) == (intent, segments, boundary)


def test_a_boundary_follow_up_carries_the_earlier_intent_and_narrows_to_the_earlier_group() -> None:
    narrowed = resolve_follow_up(
        "그 중 VIP에 가까운 고객은?", keyword_intent("그 중 VIP에 가까운 고객은?"), LOYAL
    )
    assert narrowed is not None
    assert (narrowed.intent, narrowed.segments, narrowed.boundary) == ("strategy", ["loyal", "vip"], "vip")
    alone = "Which loyal customers are close to VIP?"  # no follow-up words: a question of its own
    assert resolve_follow_up(alone, keyword_intent(alone), LOYAL) is None


def test_the_stored_boundary_reaches_the_next_turn() -> None:
    kept = previous_turn({**NEAR_VIP, "router": "keywords"})
    assert kept is not None and kept["scope"]["boundary"] == ["vip"]
    plain = previous_turn({**LOYAL})
    assert plain is not None and "boundary" not in plain["scope"]


def test_a_message_for_the_boundary_customers_gathers_their_figures() -> None:
    router = scripted({"intent": "message_drafting", "segments": [], "customers": []})
    out = run(
        "그들에게 보낼 카톡 메시지 써줘",
        NEAR_VIP,
        router=router,
        drafter=scripted("VIP 혜택을 미리 만나보세요."),
    )
    assert out["follow_up"] and out["intent"] == "message_drafting"
    assert out["scope"]["boundary"] == ["vip"] and "boundary_customers[vip]" in out["tool_results"]
    assert out["tool_results"]["boundary_customers[vip]"]["among"] == ["loyal"]
