"""ChatService: reading, editing and forgetting what a persona remembers about a fan, and Regenerate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import Caller, NotFoundError
from personagraph.memory.fan_memory import memories_namespace, profile_namespace
from personagraph.services.chat import ChatService, InvalidRequestError, validate_request
from personagraph.serving.models import ModelUnavailableError, use_models
from personagraph.ui.app import greeting, render_details
from tests.fakes import scripted

FAN1, FAN2 = Caller("fan1"), Caller("fan2")
PROFILE = {"name": "Minji", "favourite_song": "Small Steps", "facts": ["lives in Busan"]}


@pytest.fixture
def service(data_dir: Path) -> ChatService:
    return ChatService(checkpointer=InMemorySaver(), store=InMemoryStore())


def request(message: str, thread_id: str = "t1"):
    return validate_request(message=message, thread_id=thread_id, persona_id="tiny")


def smalltalk():
    return scripted({"intent": "smalltalk", "search_query": ""})


def test_profile_written_by_a_turn_can_be_read(service: ChatService) -> None:
    router = scripted({"intent": "smalltalk", "search_query": ""}, {"name": "Minji", "facts": ["likes tea"]})
    with use_models({"router": router, "chat": scripted("Nice to meet you, Minji!")}):
        service.send(FAN1, request("Hi, I'm Minji and I like tea"))
    profile = service.get_profile(FAN1, "tiny")
    assert profile["name"] == "Minji" and profile["facts"] == ["likes tea"]
    assert [m["text"] for m in service.memories(FAN1, "tiny")] == ["Hi, I'm Minji and I like tea"]
    assert service.get_profile(FAN2, "tiny") == {}


def test_update_profile_validates_and_replaces(service: ChatService) -> None:
    saved = service.update_profile(FAN1, "tiny", {**PROFILE, "nickname": "  ", "facts": ["a", "a", " b "]})
    assert saved["name"] == "Minji" and "nickname" not in saved
    assert saved["facts"] == ["a", "b"] and saved["updated_at"]
    assert service.get_profile(FAN1, "tiny") == saved

    # JSON text from the UI editor works too; the edit replaces the whole profile.
    service.update_profile(FAN1, "tiny", '{"nickname": "MJ"}')
    assert {k: v for k, v in service.get_profile(FAN1, "tiny").items() if k != "updated_at"} == {
        "nickname": "MJ"
    }
    # An empty profile deletes it.
    assert service.update_profile(FAN1, "tiny", {}) == {}
    assert service.store.get(profile_namespace("fan1", "tiny"), "profile") is None


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({"colour": "blue"}, "profile.colour: unknown field; allowed: name, nickname"),
        ({"name": "x" * 61}, "profile.name: String should have at most 60 characters"),
        ({"facts": "likes tea"}, "profile.facts: Input should be a valid list"),
        ({"facts": ["x" * 301]}, "profile.facts: each fact must be at most 300 characters"),
        ("{broken", "profile: not valid JSON"),
        ("[1]", "profile: must be a JSON object; got list"),
    ],
)
def test_update_profile_errors_name_the_field(service: ChatService, profile: Any, expected: str) -> None:
    service.update_profile(FAN1, "tiny", PROFILE)
    with pytest.raises(InvalidRequestError) as err:
        service.update_profile(FAN1, "tiny", profile)
    assert expected in str(err.value)
    assert service.get_profile(FAN1, "tiny")["name"] == "Minji"  # unchanged


def test_bad_ids_are_rejected(service: ChatService) -> None:
    with pytest.raises(InvalidRequestError, match="user_id: 'fan 1' is not a valid id"):
        service.get_profile(Caller("fan 1"), "tiny")
    with pytest.raises(InvalidRequestError, match=r"persona_id: '\.\./tiny' is not a valid id"):
        service.forget(FAN1, "../tiny")


def test_forget_deletes_profile_memories_and_summaries_of_that_persona_only(service: ChatService) -> None:
    store = service.store
    service.update_profile(FAN1, "tiny", PROFILE)
    for i in range(130):  # more than one page of the store's search
        store.put(memories_namespace("fan1", "tiny"), f"m{i}", {"text": f"memory {i}", "at": f"{i:03d}"})
    store.put(("summaries", "fan1", "tiny"), "s1", {"text": "summary", "at": "x"})
    # Another persona's and another fan's memories stay.
    service.update_profile(FAN1, "other", PROFILE)
    store.put(memories_namespace("fan1", "other"), "keep", {"text": "keep me"})
    store.put(memories_namespace("fan2", "tiny"), "keep", {"text": "keep me too"})

    with use_models({"router": smalltalk(), "chat": scripted("Hi!")}):
        service.send(FAN1, request("hello", thread_id="t-forget"))
    counts = service.forget(FAN1, "tiny")
    assert counts == {"profile": 1, "memories": 130, "summaries": 1, "threads": 0, "feedback": 0}
    assert service.get_profile(FAN1, "tiny") == {} and service.memories(FAN1, "tiny") == []
    assert store.search(("summaries", "fan1", "tiny")) == []
    assert service.get_profile(FAN1, "other")["name"] == "Minji"
    assert [i.key for i in store.search(memories_namespace("fan1", "other"))] == ["keep"]
    assert [i.key for i in store.search(memories_namespace("fan2", "tiny"))] == ["keep"]
    assert service.history(FAN1, "t-forget")  # sessions are kept unless asked
    nothing = {"profile": 0, "memories": 0, "summaries": 0, "threads": 0, "feedback": 0}
    assert service.forget(FAN1, "tiny") == nothing


def test_forget_with_threads_deletes_the_sessions_with_that_persona(service: ChatService) -> None:
    with use_models({"router": smalltalk(), "chat": scripted("Hi!")}):
        service.send(FAN1, request("hello", thread_id="t-a"))
        service.send(FAN1, request("hello again", thread_id="t-b"))
    assert service.forget(FAN1, "tiny", threads=True)["threads"] == 2
    for thread_id in ("t-a", "t-b"):  # deleted: the thread ids are unknown now
        with pytest.raises(NotFoundError):
            service.history(FAN1, thread_id)
    assert service.threads(FAN1) == []


def test_regenerate_replaces_the_last_reply(service: ChatService) -> None:
    chat = scripted("First reply!", "Second reply!", "Another take!")
    with use_models({"router": smalltalk(), "chat": chat}):
        service.send(FAN1, request("hello"))
        service.send(FAN1, request("how are you?"))
        events = list(service.regenerate(FAN1, "t1"))
    assert [e.kind for e in events][-1] == "final"
    assert "".join(e.text for e in events if e.kind == "token") == "Another take!"
    assert events[-1].result is not None and events[-1].result.reply == "Another take!"
    history = service.history(FAN1, "t1")
    assert [m.content for m in history] == ["hello", "First reply!", "how are you?", "Another take!"]
    assert [type(m) for m in history] == [HumanMessage, AIMessage, HumanMessage, AIMessage]
    # The model saw the conversation without the old reply.
    seen = [str(m.content) for m in chat.calls[-1]["messages"]]
    assert "how are you?" in seen and "First reply!" in seen
    assert not any("Second reply!" in text for text in seen)


def test_regenerate_does_not_duplicate_the_fans_memory(service: ChatService) -> None:
    intent, profile = {"intent": "smalltalk", "search_query": ""}, {"name": "Minji"}
    router = scripted(intent, profile, intent, profile)
    with use_models({"router": router, "chat": scripted("Hi Minji!", "Hello Minji!")}):
        service.send(FAN1, request("I'm Minji"))
        events = list(service.regenerate(FAN1, "t1", persona_id="tiny"))
    assert events[-1].kind == "final"
    assert [m["text"] for m in service.memories(FAN1, "tiny")] == ["I'm Minji"]
    assert service.history(FAN1, "t1")[-1].content == "Hello Minji!"


def test_failed_regeneration_keeps_the_previous_exchange(service: ChatService) -> None:
    with use_models({"router": smalltalk(), "chat": scripted("First reply!")}):
        service.send(FAN1, request("hello"))
    before = [(m.id, m.content) for m in service.history(FAN1, "t1")]
    down = ModelUnavailableError("model server for role 'chat' is unreachable")
    with use_models({"router": smalltalk(), "chat": scripted(down)}):
        events = list(service.regenerate(FAN1, "t1"))
    assert [e.kind for e in events] == ["error"] and "unreachable" in events[0].text
    assert [(m.id, m.content) for m in service.history(FAN1, "t1")] == before
    config: Any = {"configurable": {"thread_id": "fan1/t1"}}
    assert service.graph.get_state(config).next == ()
    with use_models({"router": smalltalk(), "chat": scripted("Next!")}):
        assert service.send(FAN1, request("still there?")).reply == "Next!"
    assert [m.content for m in service.history(FAN1, "t1")] == [
        "hello",
        "First reply!",
        "still there?",
        "Next!",
    ]


def test_regenerate_with_nothing_to_redo_is_an_error(service: ChatService) -> None:
    with pytest.raises(NotFoundError, match="thread_id: no thread 'empty'"):
        service.regenerate(FAN1, "empty", persona_id="tiny")
    down = ModelUnavailableError("model server for role 'chat' is unreachable")
    with use_models({"router": smalltalk(), "chat": scripted(down)}):
        assert service.send(FAN1, request("hello", thread_id="empty")).error  # rolled back: no message left
    with pytest.raises(InvalidRequestError, match="thread_id: thread 'empty' has no fan message"):
        service.regenerate(FAN1, "empty", persona_id="tiny")


def test_greeting_for_new_and_returning_fans(service: ChatService, data_dir: Path) -> None:
    persona_yaml = data_dir / "personas" / "tiny" / "persona.yaml"
    persona_yaml.write_text(
        persona_yaml.read_text(encoding="utf-8")
        + 'returning_greeting:\n  ko: "{name}, 다시 왔네!"\n  en: "{name}, welcome back!"\n',
        encoding="utf-8",
    )
    from personagraph.personas.model import load_persona

    load_persona.cache_clear()
    assert greeting("tiny", "en") == "Hi Pebbler!"
    assert greeting("tiny", "ko") == "Hi Pebbler!"  # no Korean greeting: the English one
    assert greeting("tiny", "en", {"name": "Minji"}) == "Minji, welcome back!"
    assert greeting("tiny", "ko", {"nickname": "MJ", "name": "Minji"}) == "MJ, 다시 왔네!"
    assert greeting("tiny", "ko", {"facts": ["likes tea"]}) == "조약돌, 다시 왔네!"


def test_turn_details_render_readably() -> None:
    details = (
        '{"intent": "knowledge", "sources": ["tiny/knowledge/debut_en.md"], "retrieved": [{"source": '
        '"tiny/knowledge/debut_en.md", "category": "history", "score": 0.81, "text": "Debut single"}], '
        '"blocks": [{"stage": "output", "category": "personal_data", "reason": "contains a phone number", '
        '"layer": "output_check"}]}'
    )
    text = render_details(details)
    assert "`knowledge`" in text and "`tiny/knowledge/debut_en.md` (history, score 0.81)" in text
    assert "draft reply blocked: **personal_data** — contains a phone number" in text
    assert "passed every check" in render_details('{"intent": "smalltalk", "sources": [], "blocks": []}')
    assert render_details("{}") == "_No turn yet._"
