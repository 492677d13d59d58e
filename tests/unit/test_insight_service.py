"""InsightService: each service answers from its own data source (no process global), opened once
on first use; typed answers; segment readings for the charts; Redis operations need Redis.
Threads: a question is kept in a thread of the asker's own, a follow-up sees the previous turn, and
another account's thread is not found; changing the shop's data is for admins."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import CLI_CALLER, Caller, ForbiddenError, NotFoundError
from personagraph.insight.questions import InvalidQuestionError
from personagraph.insight.settings import get_insight_settings
from personagraph.insight.source import FixedSource, InsightSource, RedisNotConfiguredError
from personagraph.insight.store import Snapshot
from personagraph.services.insight import InsightAnswer, InsightService, InvalidOrderError
from personagraph.serving.models import use_models
from personagraph.serving.safe_paths import UnsafeIdError
from tests.fakes import scripted
from tests.unit.insight_support import small_snapshot, snapshot_of

VIP_QUESTION = "What are our VIP customers like?"
MINA = Caller("mina")
JUN = Caller("jun")
BOSS = Caller("boss", "admin")


def vip_count(snap: Snapshot) -> int:
    return int((snap.customers["segment"] == "vip").sum())


def ask(
    service: InsightService, question: str = VIP_QUESTION, caller: Caller = MINA, thread_id: str | None = None
) -> InsightAnswer:
    with use_models({"drafter": scripted("Here is what the data says.")}):
        return service.ask(caller, question, thread_id, "keywords")


def fixed(snap: Snapshot | None = None) -> InsightService:
    return InsightService.for_source(FixedSource(snap or small_snapshot()), store=InMemoryStore())


def test_two_services_never_see_each_others_data() -> None:
    first, second = small_snapshot(), snapshot_of(200, 3000, seed=2)
    assert vip_count(first) != vip_count(second)  # the check below can tell them apart
    one, other = fixed(first), fixed(second)
    for service, snap in [(one, first), (other, second), (one, first)]:
        out = ask(service)
        assert out.tool_results["segment_stats[vip]"]["customers"] == vip_count(snap)


def test_the_answer_is_typed_and_keeps_the_graphs_keys() -> None:
    out = ask(fixed())
    assert isinstance(out, InsightAnswer)
    assert (out.intent, out.router) == ("segment_profile", "keywords")
    assert out.scope == {"segments": ["vip"], "customers": []}
    assert out.figures and out.check["ok"] and not out.flagged and out.error is None
    assert {"question", "answer", "intent", "scope", "tool_results", "figures", "check"} <= set(out.as_dict())


def test_a_refusal_has_empty_figures_and_no_check() -> None:
    out = ask(fixed(), "What's the weather in Seoul tomorrow?")
    assert out.intent == "out_of_scope" and out.tool_results == {} and out.check == {} and out.retrieved == []


def test_bad_input_names_the_field() -> None:
    service = fixed()
    with pytest.raises(InvalidQuestionError, match="router_mode"):
        service.ask(MINA, VIP_QUESTION, router_mode="psychic")
    with pytest.raises(InvalidQuestionError, match="question"):
        service.ask(MINA, "   ", router_mode="keywords")
    with pytest.raises(UnsafeIdError, match="thread_id"):
        service.ask(MINA, VIP_QUESTION, "../jun", "keywords")
    assert service.threads(MINA) == []  # nothing was kept


class ClosableSource(FixedSource):
    def __init__(self, snap: Snapshot):
        super().__init__(snap)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_source_is_opened_once_on_first_use_and_closed_by_the_service() -> None:
    opened: list[ClosableSource] = []

    def open_source() -> InsightSource:
        opened.append(ClosableSource(small_snapshot()))
        return opened[-1]

    service = InsightService(open_source, store=InMemoryStore())
    assert opened == []  # building a service (the app's tab) starts nothing
    ask(service)
    reading = service.segment_reading(MINA)
    assert len(opened) == 1
    assert sum(reading.sizes.values()) == len(reading.segments) == len(reading.rfm)
    assert reading.orders_applied is None and reading.description == "fixed"
    service.close()
    assert opened[0].closed


def test_redis_operations_need_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RedisNotConfiguredError, match="Redis"):
        fixed().load_history(BOSS)
    monkeypatch.delenv("INSIGHT_REDIS_URL", raising=False)
    get_insight_settings.cache_clear()
    try:
        with pytest.raises(RedisNotConfiguredError, match="INSIGHT_REDIS_URL"):
            InsightService.redis()
    finally:
        get_insight_settings.cache_clear()


def test_a_question_is_kept_in_a_thread_of_the_askers_own() -> None:
    service = fixed()
    first = ask(service, VIP_QUESTION)
    assert first.thread_id and not first.follow_up
    assert [t["thread_id"] for t in service.threads(MINA)] == [first.thread_id]
    turns = service.thread(MINA, first.thread_id)
    assert [(t["question"], t["intent"]) for t in turns] == [(VIP_QUESTION, "segment_profile")]
    assert service.threads(JUN) == []
    with pytest.raises(NotFoundError):  # B cannot read A's thread ...
        service.thread(JUN, first.thread_id)
    with pytest.raises(NotFoundError):  # ... nor continue it (and learns nothing of it)
        ask(service, "and in Korean?", caller=JUN, thread_id=first.thread_id)
    with pytest.raises(NotFoundError):  # an admin reads the shop's data, not other people's threads
        service.thread(BOSS, first.thread_id)
    assert len(service.thread(MINA, first.thread_id)) == 1
    assert service.threads(Caller("min")) == service.threads(Caller("mina.x")) == []  # no prefix matches
    with pytest.raises(UnsafeIdError, match="thread_id"):
        service.thread(MINA, "x\n")


def test_a_follow_up_sees_the_previous_turn() -> None:
    service = fixed()
    first = ask(service, "이탈 위험 고객을 붙잡으려면 어떤 전략이 좋을까?")
    assert (first.intent, first.scope["segments"]) == ("strategy", ["at_risk"])
    drafter = scripted("Here is what the data says.")
    with use_models({"drafter": drafter}):
        again = service.ask(MINA, "and in English?", first.thread_id, "keywords")
        vip = service.ask(MINA, "그 중 VIP는?", first.thread_id, "keywords")
    # "and in English?" names nothing: the earlier intent and segment, answered in English
    assert again.follow_up and (again.intent, again.scope["segments"], again.lang) == (
        "strategy",
        ["at_risk"],
        "en",
    )
    assert "segment_stats[at_risk]" in again.tool_results
    prompt = str(drafter.calls[0]["messages"][-1].content)
    assert "이탈 위험 고객을 붙잡으려면" in prompt and "QUESTION: and in English?" in prompt
    # "그 중 VIP는?" names a segment and no intent words: the earlier intent for that segment
    assert vip.follow_up and (vip.intent, vip.scope["segments"]) == ("strategy", ["vip"])
    assert [t["question"] for t in service.thread(MINA, first.thread_id)] == [
        first.question,
        "and in English?",
        "그 중 VIP는?",
    ]
    # The same words outside a thread are a new question: no earlier turn to lean on
    alone = ask(service, "and in English?")
    assert not alone.follow_up and alone.intent == "out_of_scope" and alone.thread_id != first.thread_id


def test_a_new_question_in_a_thread_is_routed_on_its_own() -> None:
    service = fixed()
    first = ask(service, VIP_QUESTION)
    weather = ask(service, "What's the weather in Seoul tomorrow?", thread_id=first.thread_id)
    assert not weather.follow_up and weather.intent == "out_of_scope"


def test_segment_stats_are_plain_json_for_any_signed_in_caller() -> None:
    snap = small_snapshot()
    stats = fixed(snap).segment_stats(MINA)
    json.dumps(stats)  # the API returns it as is
    assert stats["customers"] == len(snap.customers) and stats["source"] == "fixed"
    assert sum(s["customers"] for s in stats["segments"]) == len(snap.customers)
    assert {s["segment"] for s in stats["segments"]} == set(snap.customers["segment"])
    assert stats["orders_applied"] is None and stats["model"] is None  # a fixed snapshot has no live model


ORDER: dict[str, Any] = {
    "order_id": "shop-1", "customer_id": "C00001", "items": [{"sku": "SK01", "qty": 1, "price": 18000}],
    "amount": 18000, "channel": "app", "ts": 1_750_000_000.0,
}  # fmt: skip


def test_ingesting_an_order_is_for_admins_and_names_a_bad_field(monkeypatch: pytest.MonkeyPatch) -> None:
    from personagraph.insight import source as sources
    from personagraph.services import insight as service_module

    published: list[tuple[str, list[Any]]] = []

    class LiveSource(sources.RedisSource):
        def __init__(self) -> None:  # no Redis: only what ingest_order touches
            sources.InsightSource.__init__(self)
            self.store = type("S", (), {"r": object()})()

        def bootstrap(self) -> None:
            pass

    def publish(client: object, stream: str, orders: list[Any]) -> list[str]:
        published.append((stream, orders))
        return ["1-0"]

    monkeypatch.setattr(service_module, "publish", publish)
    service = InsightService.for_source(LiveSource(), store=InMemoryStore())
    with pytest.raises(ForbiddenError):
        service.ingest_order(MINA, ORDER)
    assert published == []
    with pytest.raises(InvalidOrderError, match=r"^items\.0\.qty:"):
        service.ingest_order(BOSS, {**ORDER, "items": [{"sku": "SK01", "qty": 0, "price": 18000}]})
    with pytest.raises(InvalidOrderError, match="^discount:"):
        service.ingest_order(BOSS, {**ORDER, "discount": 5})
    with pytest.raises(InvalidOrderError, match="^customer_id:"):
        service.ingest_order(BOSS, {**ORDER, "customer_id": "../x"})
    out = service.ingest_order(BOSS, ORDER)
    assert out["order_id"] == "shop-1" and out["entry_id"] == "1-0"
    assert [(stream, [o.order_id for o in orders]) for stream, orders in published] == [
        (service.settings.stream, ["shop-1"])
    ]
    assert service.ingest_order(CLI_CALLER, ORDER)["customer_id"] == "C00001"


def test_changing_the_shops_data_is_for_admins() -> None:
    service = fixed()
    for change in (lambda c: service.load_history(c), lambda c: service.simulate(c, rate=1, seed=1, count=1),
                   lambda c: service.consume(c, "c1", seconds=0.1)):  # fmt: skip
        with pytest.raises(ForbiddenError):
            change(MINA)
        with pytest.raises(RedisNotConfiguredError):  # an admin gets past the check
            change(BOSS)
