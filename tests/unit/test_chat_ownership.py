"""Chat data belongs to the signed-in account: threads, Stop, profile and memories, imported cards.

User A and user B share one ChatService (as they share one server). Nothing of A's may reach B:
not by thread id, not through Regenerate, not through Stop or Forget, not in a persona list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import (
    CLI_CALLER,
    Caller,
    ConflictError,
    ForbiddenError,
    NotFoundError,
)
from personagraph.memory.fan_memory import memories_namespace
from personagraph.personas.model import UnknownPersonaError, load_persona
from personagraph.services.chat import ChatService, InvalidRequestError, TurnEvent, validate_request
from personagraph.serving.models import ModelUnavailableError, use_models
from personagraph.serving.safe_paths import PathOutsideError
from personagraph.serving.settings import get_settings
from tests.fakes import scripted

A, B, ADMIN = Caller("mina"), Caller("jun.park@shop"), Caller("boss", "admin")
SMALLTALK = {"intent": "smalltalk", "search_query": ""}


@pytest.fixture
def service(data_dir: Path) -> ChatService:
    return ChatService(checkpointer=InMemorySaver(), store=InMemoryStore())


def request(message: str, thread_id: str = "t1", persona_id: str = "tiny"):
    return validate_request(message=message, thread_id=thread_id, persona_id=persona_id)


def card(name: str = "Mira Vale", description: str = "Mira bakes bread in a lighthouse.") -> dict[str, Any]:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {"name": name, "description": description, "personality": "cheerful", "scenario": "",
                 "first_mes": "Morning, {{user}}!", "mes_example": ""},
    }  # fmt: skip


# --- threads ------------------------------------------------------------------------------------


def test_another_accounts_thread_id_reaches_nothing(service: ChatService) -> None:
    chat = scripted("Hi Mina!", "Hello stranger!")
    with use_models({"router": scripted(SMALLTALK), "chat": chat}):
        service.send(A, request("my phone is 010-1234-5678"))
        # B sends to the same thread id: B gets a thread of their own, and the model sees none of A's words.
        assert service.send(B, request("what did she say?")).reply == "Hello stranger!"
    seen = [str(m.content) for m in chat.calls[-1]["messages"]]
    assert not any("010-1234-5678" in text or "Hi Mina!" in text for text in seen)
    assert [m.content for m in service.history(A, "t1")] == ["my phone is 010-1234-5678", "Hi Mina!"]
    assert [m.content for m in service.history(B, "t1")] == ["what did she say?", "Hello stranger!"]
    assert [t["thread_id"] for t in service.threads(A)] == ["t1"]
    assert [t["title"] for t in service.threads(B)] == ["what did she say?"]


def test_b_cannot_read_regenerate_stop_or_list_as_thread(service: ChatService) -> None:
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Hi Mina!")}):
        service.send(A, request("hello", thread_id="a-only"))
    before = [(m.id, m.content) for m in service.history(A, "a-only")]
    for who in (B, ADMIN):  # chat is private: admins get no override either
        with pytest.raises(NotFoundError, match="thread_id: no thread 'a-only'"):
            service.history(who, "a-only")
        with pytest.raises(NotFoundError):
            service.regenerate(who, "a-only")
        with pytest.raises(NotFoundError):
            service.stop(who, "a-only")
        assert service.threads(who) == []
    assert [(m.id, m.content) for m in service.history(A, "a-only")] == before


def test_b_cannot_read_or_forget_as_profile(service: ChatService) -> None:
    router = scripted(SMALLTALK, {"name": "Mina", "facts": ["lives in Busan"]})
    with use_models({"router": router, "chat": scripted("Nice to meet you!")}):
        service.send(A, request("I'm Mina from Busan"))
    assert service.get_profile(A, "tiny")["name"] == "Mina"
    for who in (B, ADMIN):
        assert service.get_profile(who, "tiny") == {}
        assert service.memories(who, "tiny") == []
        assert service.forget(who, "tiny", threads=True) == {
            "profile": 0, "memories": 0, "summaries": 0, "threads": 0, "feedback": 0,
        }  # fmt: skip
        service.update_profile(who, "tiny", {"name": "Someone else"})
    assert service.get_profile(A, "tiny")["name"] == "Mina"
    assert [m["text"] for m in service.memories(A, "tiny")] == ["I'm Mina from Busan"]
    assert service.history(A, "t1")


def test_the_fan_cannot_be_overridden_through_the_context(service: ChatService) -> None:
    with pytest.raises(InvalidRequestError, match="user_id: set by the caller"):
        service.stream_turn(B, request("hi"), user_id="mina")


@pytest.mark.parametrize("bad", ["../x", "a\n", "..", "a/b", "", " t1"])
def test_bad_thread_ids_are_rejected_naming_the_field(service: ChatService, bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="thread_id: "):
        validate_request(message="hi", thread_id=bad, persona_id="tiny")
    for call in (service.history, service.stop, service.regenerate):
        with pytest.raises(InvalidRequestError, match="thread_id: "):
            call(A, bad)


@pytest.mark.parametrize("bad", ["../x", "a\n", "..", "tiny/../tiny", "-x"])
def test_bad_persona_ids_are_rejected_naming_the_field(service: ChatService, bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="persona_id: "):
        validate_request(message="hi", persona_id=bad)
    for call in (service.get_profile, service.memories, service.forget):
        with pytest.raises(InvalidRequestError, match="persona_id: "):
            call(A, bad)
    with pytest.raises(ValueError, match="persona_id: "):
        service.export_card(A, bad)


@pytest.mark.parametrize("bad", ["../x", "a\n", "..", "a/b"])
def test_a_caller_with_an_unusable_id_gets_nothing(service: ChatService, bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="user_id: "):
        service.threads(Caller(bad))


# --- Stop ---------------------------------------------------------------------------------------


def _stop_after_first_token(
    service: ChatService, caller: Caller, events: Any, thread_id: str
) -> list[TurnEvent]:
    seen = []
    for event in events:
        seen.append(event)
        if event.kind == "token" and len([e for e in seen if e.kind == "token"]) == 1:
            assert service.stop(caller, thread_id) is True
    return seen


def test_stop_rolls_the_turn_back_and_leaves_the_thread_usable(service: ChatService) -> None:
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("First reply!")}):
        service.send(A, request("hello"))
    before = [(m.id, m.content) for m in service.history(A, "t1")]
    long_reply = "one two three four five six seven eight nine ten"
    with use_models({"router": scripted(SMALLTALK), "chat": scripted(long_reply)}):
        events = _stop_after_first_token(service, A, service.stream_turn(A, request("tell me a story")), "t1")
    assert events[-1].kind == "error" and events[-1].text == "stopped"
    assert events[-1].result is not None and events[-1].result.error == "stopped"
    assert [(m.id, m.content) for m in service.history(A, "t1")] == before
    assert service.graph.get_state({"configurable": {"thread_id": "mina/t1"}}).next == ()
    assert "tell me a story" not in [m["text"] for m in service.memories(A, "tiny")]
    assert service.stop(A, "t1") is False  # nothing running now
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Next!")}):
        assert service.send(A, request("still there?")).reply == "Next!"
    assert [m.content for m in service.history(A, "t1")] == ["hello", "First reply!", "still there?", "Next!"]


def test_stop_is_per_account_and_thread(service: ChatService) -> None:
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("one two three four five")}):
        service.send(B, request("hello"))  # B has a thread "t1" of their own
        events = []
        for event in service.stream_turn(A, request("hi")):
            events.append(event)
            if event.kind == "token" and len(events) == 1:
                assert service.stop(B, "t1") is False  # B's "t1" is not running: A's turn goes on
    assert events[-1].kind == "final"


def test_stopped_regeneration_keeps_the_previous_exchange(service: ChatService) -> None:
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("First reply!")}):
        service.send(A, request("hello"))
    before = [(m.id, m.content) for m in service.history(A, "t1")]
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("a b c d e f g h")}):
        events = _stop_after_first_token(service, A, service.regenerate(A, "t1"), "t1")
    assert events[-1].kind == "error" and events[-1].text == "stopped"
    assert [(m.id, m.content) for m in service.history(A, "t1")] == before


def test_a_turn_abandoned_by_its_consumer_is_rolled_back(service: ChatService) -> None:
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("a b c d e f g h")}):
        events = service.stream_turn(A, request("hello"))
        assert next(e for e in events if e.kind == "token")
        assert service.stop(A, "t1") is True  # running until the consumer lets go
        events.close()  # type: ignore[attr-defined]  # the SSE client went away
    assert service.history(A, "t1") == []
    assert service.stop(A, "t1") is False


def test_a_second_turn_in_a_busy_thread_is_refused(service: ChatService) -> None:
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("a b c d e f g h")}):
        events = service.stream_turn(A, request("hello"))
        next(e for e in events if e.kind == "token")
        with pytest.raises(ConflictError, match="thread_id: a reply is still being written"):
            service.stream_turn(A, request("and another thing"))
        rest = list(events)
    assert rest[-1].kind == "final"


def test_a_failed_turn_is_still_reported_not_stopped(service: ChatService) -> None:
    down = ModelUnavailableError("model server for role 'chat' is unreachable")
    with use_models({"router": scripted(SMALLTALK), "chat": scripted(down)}):
        result = service.send(A, request("hello"))
    assert result.error is not None and "unreachable" in result.error
    assert service.history(A, "t1") == []


# --- personas and cards -------------------------------------------------------------------------


def test_an_imported_card_is_its_owners(service: ChatService) -> None:
    persona_id = service.import_card(B, json.dumps(card()).encode())
    assert persona_id == "mira_vale" and load_persona(persona_id).owner == "jun.park@shop"
    assert service.personas(B) == ["mira_vale", "tiny"]
    assert service.personas(A) == ["tiny"]
    assert service.personas(ADMIN) == ["mira_vale", "tiny"]
    assert service.shared_personas() == ["tiny"]
    with pytest.raises(UnknownPersonaError, match="persona_id: unknown persona 'mira_vale'") as err:
        service.stream_turn(A, request("hi", persona_id="mira_vale"))
    assert "known personas: tiny" in str(err.value) and err.value.status == 404
    for call in (service.export_card, service.persona):
        with pytest.raises(NotFoundError):
            call(A, "mira_vale")
    assert service.export_card(B, "mira_vale")["data"]["name"] == "Mira Vale"
    assert "owner" not in json.dumps(service.export_card(ADMIN, "mira_vale"))
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Morning!")}):
        assert service.send(B, request("hi", persona_id="mira_vale")).reply == "Morning!"


def test_a_name_taken_by_another_account_gets_a_distinct_id(service: ChatService) -> None:
    service.import_card(B, card())
    mine = service.import_card(A, card(description="My own Mira."))
    assert mine.startswith("mira_vale_") and mine != "mira_vale"
    assert load_persona("mira_vale").biography == "Mira bakes bread in a lighthouse."  # B's untouched
    assert service.personas(A) == [mine, "tiny"]
    # Importing again is the caller's own persona: refused without overwrite, replaced with it.
    with pytest.raises(ConflictError, match="already exists"):
        service.import_card(A, card())
    assert service.import_card(A, card(description="Changed."), overwrite=True) == mine
    assert load_persona(mine).biography == "Changed."


def test_an_explicit_id_of_another_account_is_refused(service: ChatService) -> None:
    service.import_card(B, card())
    with pytest.raises(ConflictError, match="persona_id: 'mira_vale' is taken"):
        service.import_card(A, card(), persona_id="mira_vale")
    with pytest.raises(NotFoundError):
        service.import_card(A, card(description="Hijacked."), persona_id="mira_vale", overwrite=True)
    assert load_persona("mira_vale").biography == "Mira bakes bread in a lighthouse."
    # An admin may replace it; it stays B's.
    service.import_card(ADMIN, card(description="Fixed by an admin."), persona_id="mira_vale", overwrite=True)
    assert load_persona("mira_vale").owner == "jun.park@shop"


def test_shipped_personas_cannot_be_replaced(service: ChatService) -> None:
    for who in (A, ADMIN, CLI_CALLER):
        with pytest.raises(ForbiddenError, match="built-in persona"):
            service.import_card(who, card(name="Tiny"), overwrite=True)
        with pytest.raises(ConflictError):
            service.import_card(who, card(), persona_id="tiny")
    assert load_persona("tiny").kind == "artist"


def test_public_cards_are_for_admins_to_import(service: ChatService) -> None:
    with pytest.raises(ForbiddenError, match="public: only an admin"):
        service.import_card(A, card(), public=True)
    assert service.import_card(ADMIN, card(), public=True) == "mira_vale"
    assert load_persona("mira_vale").owner is None
    assert service.personas(A) == service.personas(B) == ["mira_vale", "tiny"]
    with pytest.raises(ForbiddenError, match="shared with every account"):
        service.import_card(A, card(description="Mine now."), overwrite=True)


def test_card_files_are_read_only_from_the_callers_upload_folder(
    service: ChatService, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "card.json"
    outside.parent.mkdir()
    outside.write_text(json.dumps(card()), encoding="utf-8")
    with pytest.raises(PathOutsideError, match="file: files must be in your upload folder"):
        service.import_card(A, str(outside))
    uploads = get_settings().uploads_dir
    b_file = uploads / "jun.park@shop" / "card.json"
    b_file.parent.mkdir(parents=True)
    b_file.write_text(json.dumps(card()), encoding="utf-8")
    with pytest.raises(PathOutsideError):
        service.import_card(A, str(b_file))  # another account's upload
    with pytest.raises(PathOutsideError):
        service.import_card(A, "../jun.park@shop/card.json")
    assert service.import_card(B, "card.json") == "mira_vale"  # relative to B's own folder
    # The terminal operator (the CLI) may name any file.
    assert service.import_card(CLI_CALLER, outside, persona_id="mira_cli") == "mira_cli"
    assert load_persona("mira_cli").owner == "local"


def test_memories_of_a_removed_persona_can_still_be_forgotten(service: ChatService) -> None:
    service.store.put(memories_namespace("mina", "gone"), "k", {"text": "old words", "at": "x"})
    assert service.forget(A, "gone")["memories"] == 1


def test_account_ids_with_dots_get_their_own_store_labels(service: ChatService) -> None:
    from personagraph.memory.fan_memory import fan_label

    assert fan_label("mina") == "mina" and fan_label("mina.kim@shop") == "mina%2Ekim@shop"
    assert len({fan_label(x) for x in ("a.b", "a%2Eb", "a%252Eb", "a_b")}) == 4
    service.update_profile(Caller("a.b"), "tiny", {"name": "Dotted"})
    assert service.get_profile(Caller("a_b"), "tiny") == {}
    assert service.get_profile(Caller("a.b"), "tiny")["name"] == "Dotted"
