"""A turn commits or rolls back whole: messages, memories, profile and summary. Stored items are
keyed by the fan message's id, so a retry or a regeneration never stores anything twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import Caller
from personagraph.memory.fan_memory import summaries_namespace
from personagraph.nodes import memory_write as memory_write_module
from personagraph.prompts import persona_chat as prompts
from personagraph.services.chat import ChatService, validate_request
from personagraph.serving.models import ModelUnavailableError, use_models
from tests.fakes import scripted

FAN = Caller("fan1")
SMALLTALK = '{"intent": "smalltalk", "search_query": ""}'


@pytest.fixture
def service(data_dir: Path) -> ChatService:
    return ChatService(checkpointer=InMemorySaver(), store=InMemoryStore())


def request(message: str, thread_id: str = "t1") -> Any:
    return validate_request(message=message, thread_id=thread_id, persona_id="tiny")


def router(extraction: Any = '{"name": "Minji"}', summary: Any = "They talked.") -> Any:
    """Intent routing, profile extraction and the summary (one role): each answer or failure."""

    def answer(messages: list[BaseMessage]) -> str:
        system = str(messages[0].content)
        is_extraction = prompts.PROFILE_SYSTEM[:30] in system
        chosen = extraction if is_extraction else summary if prompts.SUMMARY_SYSTEM[:30] in system else None
        if isinstance(chosen, Exception):
            raise chosen
        return SMALLTALK if chosen is None else str(chosen)

    return scripted(answer)


def snapshot(service: ChatService) -> tuple[Any, ...]:
    return (
        [(m.id, m.content) for m in service.history(FAN, "t1")],
        sorted((m["key"], m["text"]) for m in service.memories(FAN, "tiny")),
        service.get_profile(FAN, "tiny"),
        [i.key for i in service.store.search(summaries_namespace("fan1", "tiny"))],
    )


def test_a_failed_extraction_changes_nothing_and_says_so(service: ChatService) -> None:
    with use_models({"router": router(), "chat": scripted("Hi Minji!")}):
        assert service.send(FAN, request("I'm Minji")).error is None
    before = snapshot(service)
    down = ModelUnavailableError("model server for role 'router' is unreachable; retry")
    with use_models({"router": router(extraction=down), "chat": scripted("Happy birthday!")}):
        result = service.send(FAN, request("my birthday is May 3"))
    assert result.error is not None
    assert result.error.startswith("Tiny could not update what they remember of this chat")
    assert "unreachable" in result.error
    assert snapshot(service) == before  # thread, memories, profile and summaries as they were


def test_a_retry_after_a_failure_stores_one_memory(service: ChatService) -> None:
    with use_models({"router": router(extraction="not json"), "chat": scripted("Hi!")}):
        assert service.send(FAN, request("I love cats")).error is not None
    assert service.memories(FAN, "tiny") == []
    with use_models({"router": router(extraction='{"facts": ["loves cats"]}'), "chat": scripted("Cats!")}):
        assert service.send(FAN, request("I love cats")).error is None
    assert [m["text"] for m in service.memories(FAN, "tiny")] == ["I love cats"]
    assert service.get_profile(FAN, "tiny")["facts"] == ["loves cats"]


def test_a_store_write_failing_midway_is_rolled_back(
    service: ChatService, monkeypatch: pytest.MonkeyPatch
) -> None:
    with use_models({"router": router(), "chat": scripted("Hi Minji!")}):
        service.send(FAN, request("I'm Minji"))
    before = snapshot(service)

    def broken(*args: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(memory_write_module, "write_profile", broken)  # after the memory was written
    with use_models({"router": router(extraction='{"nickname": "MJ"}'), "chat": scripted("Hi MJ!")}):
        result = service.send(FAN, request("call me MJ"))
    assert result.error is not None and result.error.startswith("internal error")
    assert snapshot(service) == before


def test_a_failed_summary_leaves_no_memory_or_profile(service: ChatService) -> None:
    with use_models({"router": router(), "chat": scripted("Hi!", "Hello!")}):
        service.send(FAN, request("hello"), history_turns=1)
        service.send(FAN, request("how are you"), history_turns=1)
    before = snapshot(service)
    failing = router(extraction='{"name": "Minji"}', summary=ModelUnavailableError("router down"))
    with use_models({"router": failing, "chat": scripted("Nice!")}):
        result = service.send(FAN, request("I'm Minji"), history_turns=1)
    assert result.error is not None and "router down" in result.error
    assert snapshot(service) == before


def test_items_are_keyed_by_the_fan_message_id(service: ChatService) -> None:
    with use_models({"router": router(), "chat": scripted("Hi!", "Hello!", "Hey!")}):
        for text in ("hello", "I'm Minji", "I like tea"):
            service.send(FAN, request(text), history_turns=1)
    fan_ids = {str(m.id): m.content for m in service.history(FAN, "t1") if m.type == "human"}
    memories = {m["key"]: m["text"] for m in service.memories(FAN, "tiny")}
    assert memories == {k: v for k, v in fan_ids.items() if v != "hello"}
    summaries = [i.key for i in service.store.search(summaries_namespace("fan1", "tiny"))]
    assert summaries and set(summaries) <= set(fan_ids)


def test_regenerate_overwrites_its_own_items(service: ChatService) -> None:
    with use_models({"router": router(), "chat": scripted("Hi!", "Hi Minji!", "Hello Minji!")}):
        service.send(FAN, request("hello"), history_turns=1)
        service.send(FAN, request("I'm Minji"), history_turns=1)
        first = snapshot(service)
        events = list(service.regenerate(FAN, "t1", history_turns=1))
    assert events[-1].kind == "final" and events[-1].text == "Hello Minji!"
    again = snapshot(service)
    assert [m["text"] for m in service.memories(FAN, "tiny")] == ["I'm Minji"]
    assert again[1] == first[1] and again[3] == first[3]  # the same keys: nothing added
    assert again[0][-2] == first[0][-2]  # the fan's message keeps its id


def test_a_failed_regeneration_restores_the_first_runs_items(service: ChatService) -> None:
    with use_models({"router": router(extraction='{"name": "Minji"}'), "chat": scripted("Hi Minji!")}):
        service.send(FAN, request("I'm Minji"))
    before = snapshot(service)
    down = ModelUnavailableError("router down")
    with use_models({"router": router(extraction=down), "chat": scripted("Hello Minji!")}):
        events = list(service.regenerate(FAN, "t1"))
    assert [e.kind for e in events][-1] == "error"
    assert snapshot(service) == before  # the memory under the message's id is still there
