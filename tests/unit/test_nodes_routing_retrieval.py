"""classify_intent with a scripted router, and retrieval per intent over the tiny persona."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.store.memory import InMemoryStore

from personagraph.memory.fan_memory import memories_namespace
from personagraph.memory.persistence import store_index_config
from personagraph.memory.vectors import vector_client
from personagraph.nodes.retrieval import retrieve
from personagraph.nodes.routing import classify_intent
from personagraph.personas.index import ensure_persona_index
from personagraph.serving.models import StructuredOutputError, use_models
from tests.fakes import scripted


def human(text: str) -> Any:
    return {"messages": [HumanMessage(content=text, id="m1")]}


# --- classify_intent -------------------------------------------------------------------------------


def test_classify_intent_uses_router_decision(make_runtime) -> None:
    router = scripted({"intent": "knowledge", "search_query": "debut"})
    with use_models({"router": router}):
        update = classify_intent(human("When did you debut?"), make_runtime())
    assert update == {"intent": "knowledge", "search_query": "debut"}
    (call,) = router.calls
    system, message = call["messages"][0], call["messages"][1]
    assert isinstance(system, SystemMessage)
    assert "Tiny" in system.content and "Main dancer" in system.content
    assert message.content == "When did you debut?"


def test_classify_intent_uses_configured_router_role(make_runtime) -> None:
    judge = scripted({"intent": "smalltalk"})
    with use_models({"judge": judge, "router": scripted(AssertionError("wrong role"))}):
        update = classify_intent(human("hi!"), make_runtime(router_role="judge"))
    assert update["intent"] == "smalltalk"
    assert len(judge.calls) == 1


def test_classify_intent_empty_query_falls_back_to_message(make_runtime) -> None:
    with use_models({"router": scripted({"intent": "story", "search_query": "   "})}):
        update = classify_intent(human("What happened at the audition?"), make_runtime())
    assert update == {"intent": "story", "search_query": "What happened at the audition?"}


@pytest.mark.parametrize(
    "text",
    [
        "Do you remember my name?",
        "Which of your songs did I say is my favourite?",
        "what do my friends call me?",
        "Do you remember which city I live in?",
        "내 최애 멤버가 누구라고 했지?",
        "제 햄스터 이름이 뭐였죠?",
        "내가 어디 산다고 했지?",
        "함장님, 저 기억하세요?",
    ],
)
def test_questions_about_the_fan_are_personal_without_the_model(make_runtime, text: str) -> None:
    router = scripted({"intent": "knowledge", "search_query": "x"})
    with use_models({"router": router}):
        assert classify_intent(human(text), make_runtime()) == {"intent": "personal", "search_query": text}
    assert router.calls == []


@pytest.mark.parametrize(
    "text",
    [
        "When did you debut?",
        "오늘 무대 기억해?",
        "유나 생일 언제야?",
        "do you remember your first stage?",
        "내 최애곡은 Lighthouse야",
    ],
)
def test_other_questions_still_go_to_the_router(make_runtime, text: str) -> None:
    router = scripted({"intent": "knowledge", "search_query": "x"})
    with use_models({"router": router}):
        assert classify_intent(human(text), make_runtime())["intent"] == "knowledge"
    assert len(router.calls) == 1


def test_classify_intent_unknown_intent_is_retried(make_runtime) -> None:
    router = scripted({"intent": "gossip", "search_query": "x"}, {"intent": "personal", "search_query": "me"})
    with use_models({"router": router}):
        assert classify_intent(human("anything new?"), make_runtime())["intent"] == "personal"
    assert "intent" in router.calls[1]["messages"][-1].content


def test_classify_intent_gives_up_with_structured_error(make_runtime) -> None:
    with use_models({"router": scripted("I think it's knowledge")}), pytest.raises(StructuredOutputError):
        classify_intent(human("hi"), make_runtime())


# --- retrieve -----------------------------------------------------------------------------------


def test_knowledge_intent_finds_the_right_document(make_runtime) -> None:
    state: Any = {"intent": "knowledge", "search_query": "debut single showcase"}
    update = retrieve(state, make_runtime(top_k=3))
    assert update["sources"][0] == "tiny/knowledge/debut_en.md"
    first = update["retrieved"][0]
    assert "Small Steps" in first["text"]
    assert first["category"] == "discography"
    assert update["sources"] == [d["source"] for d in update["retrieved"]]
    assert not any(s.startswith("tiny/story.yaml") for s in update["sources"])


def test_knowledge_intent_finds_korean_document(make_runtime) -> None:
    update = retrieve({"intent": "knowledge", "search_query": "강아지 콩이 산책"}, make_runtime(top_k=1))
    assert update["sources"] == ["tiny/knowledge/pet_ko.md"]


def test_story_intent_never_returns_events_after_current_index(make_runtime) -> None:
    _, story = ensure_persona_index(vector_client(), "tiny")
    assert story.count() == 3  # event 3 is indexed ...
    query = "secret comeback music video on a volcanic island with a giant turtle"
    update = retrieve({"intent": "story", "search_query": query}, make_runtime(top_k=4))
    # ... but never retrieved, however well it matches.
    assert sorted(update["sources"]) == ["tiny/story.yaml#1", "tiny/story.yaml#2"]
    assert all("turtle" not in d["text"] for d in update["retrieved"])
    assert {d["category"] for d in update["retrieved"]} == {"story"}


def test_story_intent_ranks_matching_event_first(make_runtime) -> None:
    update = retrieve(
        {"intent": "story", "search_query": "fire alarm midnight practice"}, make_runtime(top_k=1)
    )
    assert update["sources"] == ["tiny/story.yaml#2"]


def test_personal_intent_searches_the_fans_memories(make_runtime) -> None:
    store = InMemoryStore(index=store_index_config())
    mine = memories_namespace("fan1", "tiny")
    store.put(mine, "k-cat", {"text": "My cat is called Mochi and she sleeps all day"})
    store.put(mine, "k-exam", {"text": "I have a maths exam next Friday"})
    store.put(memories_namespace("fan2", "tiny"), "k-other", {"text": "My cat is called Luna"})
    update = retrieve({"intent": "personal", "search_query": "cat name"}, make_runtime(store=store))
    assert update["sources"][0] == "memory:k-cat"
    assert "memory:k-other" not in update["sources"]  # another fan's memory
    assert set(update["sources"]) == {"memory:k-cat", "memory:k-exam"}
    assert update["retrieved"][0]["category"] == "fan_memory"
    assert update["retrieved"][0]["text"].startswith("My cat is called Mochi")
    assert update["retrieved"][0]["score"] > update["retrieved"][1]["score"]


def test_personal_intent_does_not_touch_persona_index(make_runtime, monkeypatch) -> None:
    from personagraph.nodes import retrieval

    def fail(*args, **kwargs):
        raise AssertionError("personal intent must not search the persona's knowledge")

    monkeypatch.setattr(retrieval, "ensure_persona_index", fail)
    update = retrieve({"intent": "personal", "search_query": "x"}, make_runtime())
    assert update == {"retrieved": [], "sources": []}


def test_index_is_rebuilt_when_persona_files_change(make_runtime, data_dir) -> None:
    kb, _ = ensure_persona_index(vector_client(), "tiny")
    before = kb.count()
    (data_dir / "personas" / "tiny" / "knowledge" / "tour_en.md").write_text(
        "---\ntitle: Tour\ncategory: schedule\nlang: en\n---\n\nThe PEBBLE Pocket Tour visits Busan in May.",
        encoding="utf-8",
    )
    update = retrieve({"intent": "knowledge", "search_query": "Pocket Tour Busan"}, make_runtime(top_k=1))
    assert update["sources"] == ["tiny/knowledge/tour_en.md"]
    kb, _ = ensure_persona_index(vector_client(), "tiny")
    assert kb.count() == before + 1
