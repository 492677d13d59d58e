"""InsightService: each service answers from its own data source (no process global), opened once
on first use; typed answers; segment readings for the charts; Redis operations need Redis."""

from __future__ import annotations

import pytest

from personagraph.insight.questions import InvalidQuestionError
from personagraph.insight.settings import get_insight_settings
from personagraph.insight.source import FixedSource, InsightSource, RedisNotConfiguredError
from personagraph.insight.store import Snapshot
from personagraph.services.insight import InsightAnswer, InsightService
from personagraph.serving.models import use_models
from tests.fakes import scripted
from tests.unit.insight_support import small_snapshot, snapshot_of

VIP_QUESTION = "What are our VIP customers like?"


def vip_count(snap: Snapshot) -> int:
    return int((snap.customers["segment"] == "vip").sum())


def ask(service: InsightService, question: str = VIP_QUESTION) -> InsightAnswer:
    with use_models({"drafter": scripted("Here is what the data says.")}):
        return service.ask(question, "keywords")


def test_two_services_never_see_each_others_data() -> None:
    first, second = small_snapshot(), snapshot_of(200, 3000, seed=2)
    assert vip_count(first) != vip_count(second)  # the check below can tell them apart
    one = InsightService.for_source(FixedSource(first))
    other = InsightService.for_source(FixedSource(second))
    for service, snap in [(one, first), (other, second), (one, first)]:
        out = ask(service)
        assert out.tool_results["segment_stats[vip]"]["customers"] == vip_count(snap)


def test_the_answer_is_typed_and_keeps_the_graphs_keys() -> None:
    out = ask(InsightService.for_source(FixedSource(small_snapshot())))
    assert isinstance(out, InsightAnswer)
    assert (out.intent, out.router) == ("segment_profile", "keywords")
    assert out.scope == {"segments": ["vip"], "customers": []}
    assert out.figures and out.check["ok"] and not out.flagged and out.error is None
    assert {"question", "answer", "intent", "scope", "tool_results", "figures", "check"} <= set(out.as_dict())


def test_a_refusal_has_empty_figures_and_no_check() -> None:
    service = InsightService.for_source(FixedSource(small_snapshot()))
    out = ask(service, "What's the weather in Seoul tomorrow?")
    assert out.intent == "out_of_scope" and out.tool_results == {} and out.check == {} and out.retrieved == []


def test_bad_input_names_the_field() -> None:
    service = InsightService.for_source(FixedSource(small_snapshot()))
    with pytest.raises(InvalidQuestionError, match="router_mode"):
        service.ask(VIP_QUESTION, "psychic")
    with pytest.raises(InvalidQuestionError, match="question"):
        service.ask("   ", "keywords")


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

    service = InsightService(open_source)
    assert opened == []  # building a service (the app's tab) starts nothing
    ask(service)
    reading = service.segment_reading()
    assert len(opened) == 1
    assert sum(reading.sizes.values()) == len(reading.segments) == len(reading.rfm)
    assert reading.orders_applied is None and reading.description == "fixed"
    service.close()
    assert opened[0].closed


def test_redis_operations_need_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RedisNotConfiguredError, match="Redis"):
        InsightService.for_source(FixedSource(small_snapshot())).load_history()
    monkeypatch.delenv("INSIGHT_REDIS_URL", raising=False)
    get_insight_settings.cache_clear()
    try:
        with pytest.raises(RedisNotConfiguredError, match="INSIGHT_REDIS_URL"):
            InsightService.redis()
    finally:
        get_insight_settings.cache_clear()
