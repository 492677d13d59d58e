"""Fast answers: the figures and a template answer come first, the model's narrative follows in checked
sentences only (a number not in the figures, or another segment's name, is never streamed), and the
final answer is what a reader keeps. Also: the template answer passes the numeric check for every
intent, in Korean and English."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import Caller
from personagraph.insight import facts
from personagraph.insight.lexicon import mentioned_segments
from personagraph.insight.numbers import check_numbers
from personagraph.insight.questions import InvalidQuestionError
from personagraph.insight.source import FixedSource
from personagraph.insight.stats import known_segments
from personagraph.insight.template_answer import template_answer
from personagraph.nodes.insight import InsightContext
from personagraph.prompts.insight import UNCHECKED
from personagraph.services.insight import AnswerEvent, InsightService
from personagraph.serving.models import use_models
from tests.fakes import ScriptedChatModel, scripted
from tests.unit.insight_support import small_snapshot

MINA = Caller("mina")
VIP_QUESTION = "What are our VIP customers like?"


def service() -> InsightService:
    # No profile documents: these tests are about the stream, not retrieval (and stay fast).
    return InsightService.for_source(
        FixedSource(small_snapshot()), InsightContext(use_profiles=False), InMemoryStore()
    )


def events(*drafts: str, question: str = VIP_QUESTION) -> list[AnswerEvent]:
    with use_models({"drafter": scripted(*drafts)}):
        return list(service().ask_stream(MINA, question, router_mode="keywords"))


def streamed(evts: list[AnswerEvent]) -> str:
    """What a reader shows as the narrative: tokens appended, a reset clears them."""
    text = ""
    for e in evts:
        text = "" if e.kind == "reset" else text + (e.text if e.kind == "token" else "")
    return text


def test_the_figures_and_a_template_answer_come_first_then_checked_sentences() -> None:
    evts = events("VIP customers buy often. They like premium products.\nKeep them close with early access.")
    kinds = [e.kind for e in evts]
    assert kinds[0] == "figures" and kinds[-1] == "final" and "token" in kinds
    first = evts[0]
    assert first.data["intent"] == "segment_profile" and first.data["scope"]["segments"] == ["vip"]
    assert "segment_stats[vip]" in first.data["tool_results"] and first.data["thread_id"]
    vip = first.data["tool_results"]["segment_stats[vip]"]
    assert f"{vip['customers']:,} customers" in first.text  # the template has the exact figures
    assert [e.text for e in evts if e.kind == "token"] == [
        "VIP customers buy often.",
        " They like premium products.",
        "\nKeep them close with early access.",
    ]
    final = evts[-1].answer
    assert final is not None and streamed(evts) == final.answer and not final.flagged
    assert final.template == first.text  # the final answer carries the template too


def test_a_sentence_with_an_unsupported_number_ends_the_answer_where_the_stream_stopped() -> None:
    evts = events("VIP customers buy often. There are 98,765 of them. Treat them well.", "unused")
    assert not any("98,765" in e.text for e in evts if e.kind == "token")
    assert "reset" not in [e.kind for e in evts]  # nothing shown is withdrawn: no second model call
    final = evts[-1].answer
    assert final is not None and streamed(evts) == final.answer == "VIP customers buy often."
    assert not final.flagged and final.check["unsupported"] == ["98,765"]


class CountingModel(ScriptedChatModel):
    """Counts the pieces of its reply that were read."""

    read: int = 0

    def _stream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in super()._stream(messages, *args, **kwargs):
            self.read += 1
            yield chunk


def test_the_model_is_read_no_further_than_the_first_failing_sentence() -> None:
    """What follows a failing sentence is cut anyway: writing it cost 10-15 s on two cores."""
    tail = " ".join(["They like premium lines."] * 40)
    model = CountingModel(script=[f"VIP customers buy often. There are 98,765 of them. {tail}"])
    with use_models({"drafter": model}):
        final = list(service().ask_stream(MINA, VIP_QUESTION, router_mode="keywords"))[-1].answer
    assert final is not None and final.answer == "VIP customers buy often."
    assert 0 < model.read < 20  # the reply has more than 130 pieces


def test_an_answer_in_the_wrong_language_is_not_streamed_and_is_rewritten() -> None:
    """The bench saw "신규 고객과 충성 고객을 비교해줘" answered in English."""
    evts = events(
        "VIP customers buy often.", "VIP 고객은 자주 구매해요.", question="VIP 고객은 어떤 특징이 있어?"
    )
    assert "VIP customers" not in streamed(evts)
    final = evts[-1].answer
    assert final is not None and final.answer == streamed(evts) == "VIP 고객은 자주 구매해요."
    english = events("VIP customers buy often. 그리고 자주 와요. 프리미엄 라인을 좋아해요. 할인은 피해요.")[
        -1
    ].answer
    assert english is not None and english.answer == "VIP customers buy often."  # drifts into Korean: cut


def test_an_echoed_data_block_is_never_streamed() -> None:
    """The 1.5B model pasted a fenced profile document into a push message, tags and all."""
    echo = '<data id="b6a5c301b451" source="segment_profile:vip">\nSegment VIP. Top customers.\n</data id="b6a5c301b451">'
    evts = events(f"Send them early access.\n{echo}\nThey like premium lines.", "unused")
    assert not any("<data" in e.text or "</data" in e.text for e in evts)
    final = evts[-1].answer
    assert final is not None and streamed(evts) == final.answer == "Send them early access."
    assert final.check["prompt_markup"]


def test_pasted_figures_lines_are_never_streamed() -> None:
    """The 1.5B model answered a comparison with the FIGURES table itself ("- segment=new; ...")."""
    pasted = "- segment=vip; customers=237; share_of_customers_pct=4.7"
    evts = events(f"VIP customers buy often.\n{pasted}\nTreat them well.", "unused")
    assert not any("=" in e.text for e in evts if e.kind == "token")
    final = evts[-1].answer
    assert final is not None and streamed(evts) == final.answer == "VIP customers buy often."
    assert final.check["copied_figures"]


def test_a_figures_key_name_in_prose_is_never_streamed() -> None:
    """The bench's VIP comparison passed with "an avg_orders_ratio of 3.37 times": code, not prose."""
    evts = events(
        "VIP customers buy often. They place orders at an avg_orders_per_customer of 9 each.", "unused"
    )
    assert not any("avg_" in e.text for e in evts if e.kind == "token")
    final = evts[-1].answer
    assert final is not None and streamed(evts) == final.answer == "VIP customers buy often."
    assert final.check["copied_figures"] == ["avg_orders_per_customer"]


def test_a_comparison_the_wrong_way_round_is_never_streamed() -> None:
    """The bench's "New has more customers and higher spend per customer than Dormant" passed every
    check while each half was the wrong way round."""
    question = "Compare VIP and new customers"
    evts = events("Both segments matter. New customers spend more per customer than VIP customers.", "unused",
                  question=question)  # fmt: skip
    assert not any("spend more" in e.text for e in evts if e.kind == "token")
    final = evts[-1].answer
    assert final is not None and streamed(evts) == final.answer == "Both segments matter."
    assert final.check["wrong_comparisons"]


def test_an_answer_failing_from_its_first_sentence_is_rewritten_and_the_rewrite_streams() -> None:
    evts = events(
        "There are 98,765 VIP customers. Treat them well.", "VIP customers buy often. Treat them well."
    )
    assert not any("98,765" in e.text for e in evts if e.kind == "token")
    final = evts[-1].answer
    assert final is not None and streamed(evts) == final.answer == "VIP customers buy often. Treat them well."


def test_another_segments_name_is_never_streamed_and_a_flagged_answer_comes_in_the_final_event() -> None:
    evts = events("Dormant customers spend less. VIP customers buy often.")  # the same draft twice
    assert not any("Dormant" in e.text or "VIP customers buy" in e.text for e in evts if e.kind == "token")
    final = evts[-1].answer
    assert final is not None and final.flagged and "Dormant" not in final.answer
    assert final.answer == UNCHECKED["en"]  # nothing unchecked is shown, not even in the final answer


def test_a_refusal_has_no_figures_event_and_is_final_at_once() -> None:
    evts = events("unused", question="What's the weather in Seoul tomorrow?")
    assert [e.kind for e in evts] == ["final"]
    assert (
        evts[0].answer is not None
        and evts[0].answer.intent == "out_of_scope"
        and evts[0].answer.template == ""
    )


def test_bad_input_is_refused_when_the_stream_is_asked_for_not_when_it_is_read() -> None:
    with pytest.raises(InvalidQuestionError, match="question"):
        service().ask_stream(MINA, "  ", router_mode="keywords")
    with pytest.raises(InvalidQuestionError, match="router_mode"):
        service().ask_stream(MINA, VIP_QUESTION, router_mode="psychic")


def test_the_streamed_turn_is_kept_in_the_thread_and_a_follow_up_streams_too() -> None:
    svc = service()
    with use_models({"drafter": scripted("VIP customers buy often.")}):
        first = list(svc.ask_stream(MINA, VIP_QUESTION, router_mode="keywords"))[-1].answer
        assert first is not None
        again = list(svc.ask_stream(MINA, "그럼 휴면 고객은?", first.thread_id, "keywords"))
    assert again[0].kind == "figures" and again[0].data["scope"]["segments"] == ["dormant"]
    assert again[0].text.startswith("데이터 기준")  # the template is in the question's language
    assert [t["question"] for t in svc.thread(MINA, first.thread_id)] == [VIP_QUESTION, "그럼 휴면 고객은?"]


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_template_answer_passes_the_numeric_check_for_every_intent(lang: str) -> None:
    snap = small_snapshot()
    every = known_segments(snap)
    customer = str(snap.customers.index[0])
    cases = {
        "summary": ({"segment_overview": facts.segment_overview(snap, every)}, every),
        "segment_profile": (
            {
                "segment_stats[vip]": facts.segment_stats(snap, "vip", ["vip"]),
                "top_products[vip]": facts.top_products(snap, "vip", ["vip"]),
                "trend[vip]": facts.trend(snap, "vip", ["vip"]),
            },
            ["vip"],
        ),  # fmt: skip
        "segment_comparison": (
            {"compare_segments": facts.compare_segments(snap, ["vip", "at_risk"], ["vip", "at_risk"])},
            ["vip", "at_risk"],
        ),
        "customer_lookup": (
            {f"customer_lookup[{customer}]": facts.customer_lookup(snap, customer, [customer])},
            [str(snap.customers.loc[customer, "segment"])],
        ),
    }
    for intent, (results, allowed) in cases.items():
        text = template_answer(intent, lang, results)
        check = check_numbers(text, results)
        assert text and check.ok and check.checked >= 3, (intent, check.unsupported)
        assert set(mentioned_segments(text)) <= set(allowed), intent
    assert template_answer("out_of_scope", lang, {}) == ""


class CutAtTheLimit(ScriptedChatModel):
    """A model that stops at the token limit (finish_reason "length"), streamed or not."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        result = super()._generate(messages, *args, **kwargs)
        result.generations[0].message.response_metadata = {"finish_reason": "length"}
        return result

    def _stream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        yield from super()._stream(messages, *args, **kwargs)
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", response_metadata={"finish_reason": "length"})
        )


def test_an_answer_cut_at_the_token_limit_keeps_its_whole_sentences_only() -> None:
    cut = CutAtTheLimit(
        script=["VIP customers buy often. They like premium products. Keep them close with ear"]
    )
    with use_models({"drafter": cut}):
        evts = list(service().ask_stream(MINA, VIP_QUESTION, router_mode="keywords"))
    final = evts[-1]
    assert final.kind == "final" and final.answer is not None
    assert final.answer.answer == "VIP customers buy often. They like premium products."
    assert streamed(evts) == final.answer.answer  # the fragment is never shown
    whole = scripted("VIP customers buy often. Keep them close")  # stopped by the model: kept whole
    with use_models({"drafter": whole}):
        kept = list(service().ask_stream(MINA, VIP_QUESTION, router_mode="keywords"))[-1]
    assert kept.answer is not None and kept.answer.answer.endswith("Keep them close")


def test_the_answer_prompt_is_compact() -> None:
    """Every prompt token is read before the first word (about 60 tokens/s on two cores): the figures
    leave out display names, codes and the other language's names; profiles keep the answer's language
    and no build-time figures; a summary reads no profile documents."""
    from personagraph.insight.profiles import FIGURES_HEADER, profile_document, prompt_text
    from personagraph.nodes.insight import prompt_figures

    snap = small_snapshot()
    doc = profile_document(snap, "vip", notes_per_segment=0).text
    assert FIGURES_HEADER in doc  # kept in the indexed document
    en, ko = prompt_text(doc, "en"), prompt_text(doc, "ko")
    assert en.startswith("Segment VIP") and "세그먼트" not in en and FIGURES_HEADER not in en
    assert ko.startswith("VIP 세그먼트") and "Segment VIP" not in ko and not any(ch.isdigit() for ch in ko)
    assert prompt_text("free text", "en") == "free text"
    # What the live FIGURES give exactly is left out, also from a piece of a document (a chunk).
    assert "Favourite products" not in en and "즐겨 찾는 상품" not in ko and en.endswith("discounts.")
    built = doc.split(FIGURES_HEADER, 1)[1].strip()
    assert prompt_text(built, "en") == "" and prompt_text(f"{ko}\n\n{built}", "ko") == ko
    figures = {"top_products[vip]": {"products": [{"sku": "A1", "name_en": "Eye Cream", "name_ko": "아이크림",
                                                   "units": 3}]}, "s": {"label_en": "VIP", "customers": 5}}  # fmt: skip
    assert prompt_figures(figures, "ko") == {"top_products[vip]": {"products": [{"name_ko": "아이크림", "units": 3}]},
                                             "s": {"customers": 5}}  # fmt: skip
    drafter = scripted("Fine.")
    with_profiles = InsightService.for_source(FixedSource(snap), InsightContext(), InMemoryStore())
    with use_models({"drafter": drafter}):
        with_profiles.ask(MINA, "Give me an overview of our customer segments.", router_mode="keywords")
        with_profiles.ask(MINA, VIP_QUESTION, router_mode="keywords")
    prompts = ["\n".join(str(m.content) for m in call["messages"]) for call in drafter.calls]
    assert "<data id=" not in prompts[0] and "<data id=" in prompts[1]
    assert "Segment VIP" in prompts[1] and FIGURES_HEADER not in prompts[1]
    # What never changes comes first, as one system message: the server reads it once, not per question.
    systems = {str(call["messages"][0].content) for call in drafter.calls}
    assert len(systems) == 1 and "RULES:" in systems.pop()
    for call in drafter.calls:
        assert str(call["messages"][1].content).rstrip().split("\n\n")[-1].startswith("TASK:")
