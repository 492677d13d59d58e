"""insight_qa with fake models: intent routing, scope per intent, scoped figures, numeric check, errors."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from personagraph.graphs.insight_qa import graph
from personagraph.insight import facts
from personagraph.insight.lexicon import keyword_intent, mentioned_segments
from personagraph.insight.numbers import check_numbers
from personagraph.insight.questions import InvalidQuestionError
from personagraph.insight.source import FixedSource
from personagraph.insight.store import Snapshot
from personagraph.nodes.insight import InsightContext, figure_title, figures_text, prompt_figures
from personagraph.serving.models import use_models
from tests.fakes import scripted
from tests.unit.insight_support import small_snapshot


@pytest.fixture(scope="module")
def live() -> Snapshot:
    return small_snapshot()


def ask(snap: Snapshot, question: str, *, drafter: Any = "Here is what the data says.", router: Any = None,
        **context: Any) -> dict[str, Any]:  # fmt: skip
    """One run of the graph over `snap`, its source passed in the run's context (no global)."""
    context.setdefault("use_profiles", False)
    models = {"drafter": drafter if not isinstance(drafter, str) else scripted(drafter)}
    if router is not None:
        models["router"] = router
    with use_models(models):
        return graph.invoke(
            {"question": question}, context=InsightContext(source=FixedSource(snap), **context)
        )


@pytest.mark.parametrize(
    ("question", "intent", "segments"),
    [
        ("What are our VIP customers like?", "segment_profile", ["vip"]),
        ("휴면 고객은 어떤 특징이 있어?", "segment_profile", ["dormant"]),
        ("Compare loyal and at-risk customers", "segment_comparison", ["loyal", "at_risk"]),
        ("VIP와 신규 고객을 비교해줘", "segment_comparison", ["vip", "new"]),
        ("How can we win back at-risk customers?", "strategy", ["at_risk"]),
        ("이탈 위험 고객을 붙잡으려면 어떤 전략이 좋을까?", "strategy", ["at_risk"]),
        ("Write a push message for dormant customers", "message_drafting", ["dormant"]),
        ("신규 고객에게 보낼 문자 문구 작성해줘", "message_drafting", ["new"]),
        ("Give me an overview of all segments", "summary", []),
        ("세그먼트별 현황 요약해줘", "summary", []),
        ("Tell me about customer C00042", "customer_lookup", []),
        ("What's the weather in Seoul tomorrow?", "out_of_scope", []),
    ],
)
def test_keyword_pre_router(question: str, intent: str, segments: list[str]) -> None:
    guess = keyword_intent(question)
    assert (guess.intent, guess.segments) == (intent, segments)
    assert guess.confident


def test_mentioned_segments_needs_the_segment_noun() -> None:
    assert mentioned_segments("Keep them loyal with new products") == []
    assert mentioned_segments("Unlike dormant customers, loyal customers buy monthly") == ["loyal", "dormant"]


def test_profile_scope_limits_tools_to_the_named_segment(live: Snapshot) -> None:
    out = ask(live, "What are our VIP customers like?")
    assert out["intent"] == "segment_profile" and out["scope"] == {"segments": ["vip"], "customers": []}
    assert set(out["tool_results"]) == {"segment_stats[vip]", "top_products[vip]", "trend[vip]"}
    assert {r.get("segment") for r in out["tool_results"].values()} == {"vip"}
    vip = live.customers[live.customers["segment"] == "vip"]
    assert out["tool_results"]["segment_stats[vip]"]["customers"] == len(vip)
    assert out["tool_results"]["segment_stats[vip]"]["revenue_krw"] == int(vip["monetary"].sum())


def test_comparison_scope_has_both_segments_only(live: Snapshot) -> None:
    out = ask(live, "Compare loyal and dormant customers")
    assert out["scope"]["segments"] == ["loyal", "dormant"]
    assert list(out["tool_results"]) == ["compare_segments"]
    assert [s["segment"] for s in out["tool_results"]["compare_segments"]["segments"]] == ["loyal", "dormant"]


def test_summary_scope_is_every_segment(live: Snapshot) -> None:
    out = ask(live, "세그먼트별 현황 요약해줘", drafter="세그먼트 요약입니다.")
    assert sorted(out["scope"]["segments"]) == sorted(live.customers["segment"].unique())
    assert out["lang"] == "ko"


def test_customer_lookup_scope_is_the_customer(live: Snapshot) -> None:
    customer = live.customers.index[5]
    out = ask(live, f"Tell me about customer {customer}")
    assert out["scope"] == {"segments": [], "customers": [customer]}
    assert out["tool_results"][f"customer_lookup[{customer}]"]["orders"] == int(
        live.customers.loc[customer, "frequency"]
    )


def test_out_of_scope_refuses_without_tools(live: Snapshot) -> None:
    drafter = scripted("should not be called")
    out = ask(live, "What's the weather in Seoul tomorrow?", drafter=drafter)
    assert out["intent"] == "out_of_scope" and out["tool_results"] == {} and drafter.calls == []
    assert "only answer questions" in out["answer"]


def test_missing_segment_asks_which(live: Snapshot) -> None:
    router = scripted({"intent": "strategy", "segments": [], "customers": []})
    out = ask(live, "How should we plan next month's campaign?", router=router)
    assert out["intent"] == "strategy" and out["tool_results"] == {}
    assert "Which segment" in out["answer"]


def test_ambiguous_question_goes_to_the_router_model(live: Snapshot) -> None:
    router = scripted({"intent": "strategy", "segments": ["at_risk"], "customers": []})
    # No segment named: the keywords are not sure, so the router model decides.
    out = ask(live, "How do we get customers who drifted off to come back?", router=router)
    assert out["router"] == "model" and len(router.calls) == 1
    assert out["intent"] == "strategy" and out["scope"]["segments"] == ["at_risk"]
    assert set(out["tool_results"]) == {"segment_stats[at_risk]", "top_products[at_risk]", "trend[at_risk]"}


def test_router_model_error_falls_back_to_keywords(live: Snapshot) -> None:
    from personagraph.serving.models import ModelUnavailableError

    router = scripted(ModelUnavailableError("server down"))
    out = ask(
        live, "How do we get customers who stopped buying to come back?", router=router, router_mode="model"
    )
    assert out["router"].startswith("keywords (model error")
    assert out["answer"]


def test_unsupported_number_is_regenerated(live: Snapshot) -> None:
    def honest(messages: list[BaseMessage]) -> str:
        text = str(messages[-1].content)
        customers = live.customers[live.customers["segment"] == "vip"].shape[0]
        assert "not in FIGURES" in text  # the retry says what was wrong
        return f"The VIP segment has {customers:,} customers."

    drafter = scripted("VIP customers make up 97.3% of revenue.", honest)
    out = ask(live, "What are our VIP customers like?", drafter=drafter)
    assert len(drafter.calls) == 2
    assert out["check"]["ok"] and not out["flagged"]


def test_made_up_number_is_flagged_after_the_retry(live: Snapshot) -> None:
    drafter = scripted("VIP customers make up 97.3% of revenue.")
    out = ask(live, "What are our VIP customers like?", drafter=drafter)
    assert len(drafter.calls) == 2 and out["flagged"]
    assert out["check"]["unsupported"] == ["97.3%"]
    assert "could not be checked" in out["answer"] and "97.3" not in out["answer"]


def test_other_segment_mentions_are_removed(live: Snapshot) -> None:
    drafter = scripted("VIPs buy often. Unlike dormant customers, they are recent.")
    out = ask(live, "What are our VIP customers like?", drafter=drafter)
    assert out["check"]["leaked_segments"] == ["dormant"] and not out["flagged"]
    assert out["answer"] == "VIPs buy often." and len(drafter.calls) == 1  # cut, not rewritten


def test_drafter_error_gives_a_clear_message(live: Snapshot) -> None:
    from personagraph.serving.models import ModelUnavailableError

    out = ask(
        live, "What are our VIP customers like?", drafter=scripted(ModelUnavailableError("server down at x"))
    )
    assert out["error"] and "server down" in out["answer"] and out["flagged"]
    assert out["tool_results"]  # the exact figures are still there


def test_bad_question_names_the_field(live: Snapshot) -> None:
    with pytest.raises(InvalidQuestionError, match="question"):
        ask(live, "   ")
    with pytest.raises(InvalidQuestionError, match="router_mode"):
        ask(live, "VIP?", router_mode="magic")


def test_facts_refuse_targets_outside_scope(live: Snapshot) -> None:
    assert "outside" in facts.segment_stats(live, "dormant", ["vip"])["error"]
    assert "outside" in facts.customer_lookup(live, "C00001", ["C00002"])["error"]
    assert "outside" in facts.compare_segments(live, ["vip", "new"], ["vip"])["error"]
    overview = facts.segment_overview(live, ["vip"])
    assert [s["segment"] for s in overview["segments"]] == ["vip"]


def test_profiles_are_retrieved_for_the_scope_only(live: Snapshot) -> None:
    out = ask(
        live, "휴면 고객은 어떤 특징이 있어?", drafter="휴면 고객 설명입니다.", use_profiles=True, top_k=3
    )
    assert out["retrieved"] and {d["segment"] for d in out["retrieved"]} == {"dormant"}


def test_a_run_without_a_source_reads_the_default_source(
    live: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Studio and `langgraph dev` pass no source: the nodes fall back to the settings' source."""
    monkeypatch.setattr("personagraph.nodes.insight.default_source", lambda: FixedSource(live))
    with use_models({"drafter": scripted("Here is what the data says.")}):
        out = graph.invoke(
            {"question": "What are our VIP customers like?"}, context=InsightContext(use_profiles=False)
        )
    vip = live.customers[live.customers["segment"] == "vip"]
    assert out["tool_results"]["segment_stats[vip]"]["customers"] == len(vip)


def test_the_data_source_is_not_part_of_studios_context_schema() -> None:
    schema = graph.get_context_jsonschema()
    assert schema is not None and "router_mode" in schema["properties"]
    assert "source" not in schema["properties"]


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


@pytest.mark.parametrize("question", ["What are our VIP customers like?", "VIP와 신규 고객을 비교해줘"])
def test_the_prompts_figures_keep_every_value_next_to_its_name(live: Snapshot, question: str) -> None:
    out = ask(live, question)
    shown = prompt_figures(out["tool_results"], out["lang"])
    text = figures_text(shown)
    for name, result in shown.items():  # a segment's own result: its title names the segment
        leaves = _leaves({k: v for k, v in result.items() if not (k == "segment" and f"[{v}]" in name)})
        for leaf in leaves:
            assert (leaf if isinstance(leaf, str) else json.dumps(leaf)) in text
        assert text.count(f"{figure_title(name)}:") + text.count(f"{figure_title(name)},") >= 1
    # titled in words: the tools' names ("segment_stats[vip]") were copied into answers as citations
    assert not any(name in text for name in shown)
    if "top_products[vip]" in shown:  # a line per product in rank order, each value named, the first three
        products = out["tool_results"]["top_products[vip]"]["products"]
        assert "rank=" not in text and text.count("name_en=") == min(3, len(products)) == len(
            shown["top_products[vip]"]["products"]
        )
        assert text.index(products[0]["name_en"]) < text.index(products[min(2, len(products) - 1)]["name_en"])
    assert len(text) < len(json.dumps(shown, ensure_ascii=False, separators=(",", ":")))


def test_a_comparison_is_shown_in_sentences_naming_both_segments(live: Snapshot) -> None:
    """Its ratios' key names were copied into answers ("an avg_orders_ratio of 3.37"), a ratio below
    one ("0.05") read as nothing, and "신규 고객 대비 충성 고객 21.11배" was read backwards: each line
    is a sentence naming both segments, the larger one its subject."""
    for question, lang in [("Compare VIP and new customers", "en"), ("신규 고객과 VIP를 비교해줘", "ko")]:
        out = ask(live, question)
        text = figures_text(prompt_figures(out["tool_results"], lang))
        assert "first_vs_second" not in text and "_ratio" not in text
        new = "New" if lang == "en" else "신규 고객"
        side = [line for line in text.splitlines() if "VIP" in line and new in line and "=" not in line]
        assert len(side) == 5, text
        assert all(line.endswith(".") for line in side)
        ratios = re.findall(r"(\d+(?:\.\d+)?)(?: times|배)", "\n".join(side))
        assert ratios and all(float(r) >= 2 for r in ratios)
        rows = {r["segment"]: r for r in out["tool_results"]["compare_segments"]["segments"]}
        spend = side[0]  # the larger spender is the subject, named first
        first = "vip" if spend.index("VIP") < spend.index(new) else "new"
        other = "new" if first == "vip" else "vip"
        spend_key = "avg_spend_per_customer_krw"
        assert rows[first][spend_key] >= rows[other][spend_key]
        assert check_numbers("\n".join(side), out["tool_results"]).ok


@pytest.mark.parametrize(
    ("name", "title"),
    [("segment_stats[at_risk]", "At-risk figures"), ("top_products[vip]", "VIP top products"),
     ("trend[loyal]", "Loyal trend"), ("customer_lookup[C00012]", "customer C00012"),
     ("compare_segments", "comparison"), ("boundary_customers[vip]", "customers close to VIP"),
     ("some_new_tool[x]", "some_new_tool[x]")],
)  # fmt: skip
def test_each_result_is_titled_in_words(name: str, title: str) -> None:
    assert figure_title(name) == title


@pytest.mark.parametrize(
    ("question", "grammar"),
    [("What are our VIP customers like?", "PROSE_GRAMMAR"), ("VIP와 신규 고객을 비교해줘", "PROSE_GRAMMAR"),
     ("휴면 고객에게 보낼 푸시 메시지 써줘", "MESSAGE_GRAMMAR")],
)  # fmt: skip
def test_the_answer_is_decoded_under_its_intents_grammar(
    live: Snapshot, monkeypatch: pytest.MonkeyPatch, question: str, grammar: str
) -> None:
    """Prose answers are one paragraph without markdown; a message may have lines (title, body)."""
    from personagraph.nodes import insight as insight_nodes
    from personagraph.prompts import insight as insight_prompts

    calls: list[dict[str, Any]] = []
    real = insight_nodes.stream_text

    def recording(role: str, messages: list[BaseMessage], **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(role, messages, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(insight_nodes, "stream_text", recording)
    ask(live, question, router_mode="keywords")
    assert calls and all(c["grammar"] == getattr(insight_prompts, grammar) for c in calls)
    # prose may not break a line; a message may (title, body)
    assert '"\\n"' in insight_prompts.MESSAGE_GRAMMAR and '"\\n"' not in insight_prompts.PROSE_GRAMMAR
