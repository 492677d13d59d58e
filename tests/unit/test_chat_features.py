"""Chat features on the real persona_chat graph with scripted models: Stop (keep or drop the partial
reply), edit and branch, regenerate keeping alternatives, feedback and its DPO export, generation
settings per request, and per-turn timings and token usage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import CLI_CALLER, Caller, ForbiddenError, NotFoundError
from personagraph.memory.feedback import feedback_counts
from personagraph.services.chat import (
    ChatService,
    InvalidRequestError,
    TurnEvent,
    validate_request,
    validate_settings,
)
from personagraph.serving.models import ModelUnavailableError, use_models
from tests.fakes import ScriptedChatModel, scripted

A, B = Caller("mina"), Caller("jun")
SMALLTALK = {"intent": "smalltalk", "search_query": ""}


@pytest.fixture
def service(data_dir: Path) -> ChatService:
    return ChatService(checkpointer=InMemorySaver(), store=InMemoryStore())


def request(message: str, thread_id: str = "t1", **fields: Any):
    return validate_request(message=message, thread_id=thread_id, persona_id="tiny", **fields)


def say(service: ChatService, caller: Caller, message: str, reply: str, thread_id: str = "t1") -> Any:
    with use_models({"router": scripted(SMALLTALK), "chat": scripted(reply)}):
        return service.send(caller, request(message, thread_id))


def contents(service: ChatService, caller: Caller = A, thread_id: str = "t1") -> list[str]:
    return [str(m.content) for m in service.history(caller, thread_id)]


def run(events: Any) -> list[TurnEvent]:
    return list(events)


# --- Stop: the fan keeps the partial reply or none ------------------------------------------------


def _stop_after_first_token(service: ChatService, events: Any, keep: bool) -> list[TurnEvent]:
    seen: list[TurnEvent] = []
    for event in events:
        seen.append(event)
        if event.kind == "token" and sum(e.kind == "token" for e in seen) == 1:
            assert service.stop(A, "t1", keep_partial=keep) is True
    return seen


def test_stop_keeping_the_partial_reply_keeps_what_was_shown(service: ChatService) -> None:
    say(service, A, "hello", "First reply!")
    story = "Once upon a time there was a fox. It ran far away. Then it came home. The end."
    with use_models({"router": scripted(SMALLTALK), "chat": scripted(story)}):
        events = _stop_after_first_token(
            service, service.stream_turn(A, request("tell me a story")), keep=True
        )
    final = events[-1]
    shown = "".join(e.text for e in events if e.kind == "token")
    assert final.kind == "final" and final.result is not None and final.result.stopped
    assert final.result.reply == shown and shown and shown != story
    assert contents(service) == ["hello", "First reply!", "tell me a story", shown]
    # Nothing of a stopped turn goes to long-term memory; the thread goes on normally.
    assert "tell me a story" not in [m["text"] for m in service.memories(A, "tiny")]
    assert say(service, A, "and then?", "Then we slept.").reply == "Then we slept."
    assert contents(service)[-2:] == ["and then?", "Then we slept."]


def test_stop_dropping_the_partial_reply_leaves_the_thread_as_it_was(service: ChatService) -> None:
    say(service, A, "hello", "First reply!")
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("One. Two. Three. Four.")}):
        events = _stop_after_first_token(service, service.stream_turn(A, request("count")), keep=False)
    assert events[-1].kind == "error" and events[-1].text == "stopped"
    assert contents(service) == ["hello", "First reply!"]


# --- edit and branch ------------------------------------------------------------------------------


def test_editing_an_earlier_message_branches_and_keeps_the_old_branch(service: ChatService) -> None:
    say(service, A, "I like cats", "Cats are lovely!")
    say(service, A, "what about dogs?", "Dogs too!")
    first_id = str(service.history(A, "t1")[0].id)
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Birds sing so well!")}):
        events = run(service.edit(A, "t1", first_id, "I like birds"))
    assert events[-1].kind == "final" and events[-1].result is not None
    assert events[-1].result.reply == "Birds sing so well!"
    assert contents(service) == ["I like birds", "Birds sing so well!"]

    branches = service.branches(A, "t1")
    assert len(branches) == 2 and [b["current"] for b in branches] == [True, False]
    old = branches[1]
    assert old["reply"] == "Dogs too!" and old["messages"] == 4
    # The earlier branch is still reachable: switch back to it, and forward again.
    service.switch_branch(A, "t1", old["branch_id"])
    assert contents(service) == ["I like cats", "Cats are lovely!", "what about dogs?", "Dogs too!"]
    assert [b["current"] for b in service.branches(A, "t1")].count(True) == 1
    new = next(b for b in service.branches(A, "t1") if b["reply"] == "Birds sing so well!")
    service.switch_branch(A, "t1", new["branch_id"])
    assert contents(service) == ["I like birds", "Birds sing so well!"]
    # A turn on the switched-to branch continues it.
    say(service, A, "what is your favourite bird?", "I love sparrows, they are so cute.")
    assert contents(service)[2:] == ["what is your favourite bird?", "I love sparrows, they are so cute."]


def test_editing_the_middle_keeps_the_turns_before_it(service: ChatService) -> None:
    say(service, A, "one", "reply one")
    say(service, A, "two", "reply two")
    say(service, A, "three", "reply three")
    second = str(service.history(A, "t1")[2].id)
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("reply TWO")}):
        run(service.edit(A, "t1", second, "TWO"))
    assert contents(service) == ["one", "reply one", "TWO", "reply TWO"]


def test_a_failed_edit_puts_the_thread_back(service: ChatService) -> None:
    say(service, A, "one", "reply one")
    say(service, A, "two", "reply two")
    before = [(m.id, m.content) for m in service.history(A, "t1")]
    down = ModelUnavailableError("the model server for role 'chat' did not answer")
    with use_models({"router": scripted(SMALLTALK), "chat": scripted(down)}):
        events = run(service.edit(A, "t1", str(before[0][0]), "uno"))
    assert events[-1].kind == "error"
    assert [(m.id, m.content) for m in service.history(A, "t1")] == before
    assert say(service, A, "three", "reply three").reply == "reply three"


def test_edit_errors_name_the_field(service: ChatService) -> None:
    say(service, A, "one", "reply one")
    reply_id = str(service.history(A, "t1")[1].id)
    with pytest.raises(NotFoundError, match="message_id: thread 't1' has no fan message"):
        service.edit(A, "t1", reply_id, "x")  # a reply, not a fan message
    with pytest.raises(InvalidRequestError, match="message_id: "):
        service.edit(A, "t1", "../x", "x")
    first = str(service.history(A, "t1")[0].id)
    with pytest.raises(InvalidRequestError, match="message: must not be empty"):
        service.edit(A, "t1", first, "   ")
    with pytest.raises(NotFoundError):  # another account's thread looks missing
        service.edit(B, "t1", first, "x")
    with pytest.raises(NotFoundError):
        service.branches(B, "t1")
    branch = service.branches(A, "t1")[0]["branch_id"]
    with pytest.raises(NotFoundError):
        service.switch_branch(B, "t1", branch)
    with pytest.raises(NotFoundError, match="branch_id: thread 't1' has no branch"):
        service.switch_branch(A, "t1", "no-such-branch")


def test_regenerate_keeps_the_previous_reply_as_an_alternative(service: ChatService) -> None:
    say(service, A, "hello", "First reply!")
    first_reply = service.history(A, "t1")[1]
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Second reply!")}):
        run(service.regenerate(A, "t1"))
    messages = service.history(A, "t1")
    assert contents(service) == ["hello", "Second reply!"]
    alternatives = service.alternatives(A, "t1")
    assert alternatives[str(messages[1].id)] == [
        {"branch_id": alternatives[str(messages[1].id)][0]["branch_id"], "message_id": str(first_reply.id),
         "content": "First reply!"}
    ]  # fmt: skip
    # Going back to the first reply is a branch switch.
    service.switch_branch(A, "t1", alternatives[str(messages[1].id)][0]["branch_id"])
    assert contents(service) == ["hello", "First reply!"]


# --- feedback and DPO pairs -------------------------------------------------------------------------


def test_ratings_on_a_reply_and_its_alternative_make_a_dpo_pair(service: ChatService, tmp_path: Path) -> None:
    say(service, A, "hello", "Hi there, friend!")
    first = service.history(A, "t1")[1]
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Whatever.")}):
        run(service.regenerate(A, "t1"))
    second = service.history(A, "t1")[1]
    assert service.rate(A, "t1", str(second.id), "down", "  rude  ") == {
        "message_id": str(second.id), "rating": "down", "reason": "rude"
    }  # fmt: skip
    service.rate(A, "t1", str(first.id), "up")  # on the other branch: still rateable
    pairs = service.export_preferences(A)
    assert pairs == [{
        "prompt": [{"role": "user", "content": "hello"}],
        "chosen": [{"role": "assistant", "content": "Hi there, friend!"}],
        "rejected": [{"role": "assistant", "content": "Whatever."}],
    }]  # fmt: skip
    # The TRL conversational preference format: one JSON object per line, three keys.
    line = json.dumps(pairs[0], ensure_ascii=False)
    assert set(json.loads(line)) == {"prompt", "chosen", "rejected"}
    assert service.ratings(A, "t1") == {
        str(second.id): {"rating": "down", "reason": "rude"}, str(first.id): {"rating": "up", "reason": ""}
    }  # fmt: skip
    assert feedback_counts(service.store) == {"up": 1, "down": 1, "with_reason": 1, "pairs": 1, "accounts": 1}
    # A new rating replaces the old; "none" takes it back.
    service.rate(A, "t1", str(second.id), "none")
    assert service.export_preferences(A) == []


def test_feedback_is_per_account(service: ChatService) -> None:
    say(service, A, "안녕", "안녕하세요!")
    reply = str(service.history(A, "t1")[1].id)
    with pytest.raises(NotFoundError):
        service.rate(B, "t1", reply, "up")
    service.rate(A, "t1", reply, "up", "목소리가 좋아요")
    assert service.ratings(B) == {}
    assert service.ratings(A)[reply] == {"rating": "up", "reason": "목소리가 좋아요"}
    with pytest.raises(ForbiddenError, match="all_accounts"):
        service.export_preferences(Caller("boss", "admin"), all_accounts=True)  # a remote admin
    assert service.export_preferences(CLI_CALLER, all_accounts=True) == []  # no pair yet, but allowed
    # Forget me deletes the fan's ratings of that persona.
    assert service.forget(A, "tiny")["feedback"] == 1
    assert service.ratings(A) == {}


@pytest.mark.parametrize(
    ("rating", "reason", "message_id", "expected"),
    [
        ("meh", "", None, "rating: 'meh' is not allowed; use one of up, down, none"),
        ("up", "x" * 501, None, "reason: is 501 characters; the maximum is 500"),
        ("up", "", "", "message_id: give the id of the reply"),
    ],
)
def test_rating_errors_name_the_field(
    service: ChatService, rating: str, reason: str, message_id: str | None, expected: str
) -> None:
    say(service, A, "hello", "Hi!")
    reply = str(service.history(A, "t1")[1].id) if message_id is None else message_id
    with pytest.raises(InvalidRequestError, match=expected):
        service.rate(A, "t1", reply, rating, reason)
    fan_message = str(service.history(A, "t1")[0].id)
    with pytest.raises(NotFoundError, match="message_id: thread 't1' has no reply"):
        service.rate(A, "t1", fan_message, "up")


# --- generation settings and turn stats -------------------------------------------------------------


def test_generation_settings_reach_the_drafting_model_only(service: ChatService) -> None:
    router, chat = scripted(SMALLTALK), ScriptedChatModel(script=["Hi there, friend."])
    with use_models({"router": router, "chat": chat}):
        service.send(A, request("hello", temperature=0.2, top_p=0.9, max_tokens=64))
    assert chat.calls[-1]["kwargs"] | {} == {"temperature": 0.2, "top_p": 0.9, "max_tokens": 64} | {
        k: v for k, v in chat.calls[-1]["kwargs"].items() if k not in ("temperature", "top_p", "max_tokens")
    }
    assert all("temperature" not in call["kwargs"] for call in router.calls)
    # Left out: the role's own settings (nothing passed).
    with use_models({"router": scripted(SMALLTALK), "chat": chat}):
        service.send(A, request("how was your day today?"))
    assert "temperature" not in chat.calls[-1]["kwargs"]
    # Regenerate and edit take settings too.
    with use_models({"router": scripted(SMALLTALK), "chat": chat}):
        run(service.regenerate(A, "t1", settings=validate_settings(temperature=1.5)))
    assert chat.calls[-1]["kwargs"]["temperature"] == 1.5


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"temperature": 3}, "temperature: Input should be less than or equal to 2 (got 3; allowed: 0 to 2"),
        ({"temperature": -0.1}, "temperature: Input should be greater than or equal to 0"),
        ({"top_p": 0}, "top_p: Input should be greater than 0 (got 0; allowed: above 0, up to 1"),
        ({"top_p": 1.5}, "top_p: Input should be less than or equal to 1"),
        (
            {"max_tokens": 0},
            "max_tokens: Input should be greater than or equal to 1 (got 0; allowed: a whole",
        ),
        ({"max_tokens": 5000}, "max_tokens: Input should be less than or equal to 4096"),
        ({"max_tokens": 1.5}, "max_tokens: Input should be a valid integer"),
        ({"temperature": "hot"}, "temperature: Input should be a valid number"),
        ({"temperature": True}, "temperature: must be a number, not true/false"),
        ({"temperature": float("nan")}, "temperature: Input should be a finite number"),
        ({"seed": 1}, "seed: not a request field"),
    ],
)
def test_bad_generation_settings_name_the_field_and_range(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        validate_request(message="hi", **fields)
    assert expected in str(err.value)
    if "seed" not in fields:
        with pytest.raises(InvalidRequestError, match=expected.split(":")[0]):
            validate_settings(**fields)


def test_each_turn_reports_node_timings_and_token_usage(service: ChatService) -> None:
    result = say(service, A, "hello", "Hi there!")
    timings, usage = result.timings, result.usage
    assert {"input_safety", "classify_intent", "draft", "output_safety", "respond", "memory_write"} <= set(
        timings["nodes"]
    )
    assert all(seconds >= 0 for seconds in timings["nodes"].values())
    assert timings["total_s"] >= timings["first_token_s"] >= 0
    assert usage["model_calls"] == len(usage["calls"]) >= 2
    draft = next(c for c in usage["calls"] if c["node"] == "draft")
    assert draft["output_tokens"] >= 1 and draft["seconds"] >= 0
    assert result.message_id == str(service.history(A, "t1")[1].id)
    assert result.turn_id == str(service.history(A, "t1")[0].id)


# --- the command line -------------------------------------------------------------------------------


def test_cli_chat_settings_and_feedback_export(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from personagraph.cli.main import main

    chat = ScriptedChatModel(script=["Hi there, friend."])
    with use_models({"router": scripted(SMALLTALK), "chat": chat}):
        code = main(
            ["chat", "--message", "hello", "--persona", "tiny", "--thread", "c1", "--temperature", "0.4"]
        )
    assert code == 0 and chat.calls[-1]["kwargs"]["temperature"] == 0.4
    assert "first text" in capsys.readouterr().err
    assert main(["chat", "--message", "hello", "--persona", "tiny", "--top-p", "2"]) == 2
    assert "top_p: Input should be less than or equal to 1" in capsys.readouterr().err

    service = ChatService()  # the CLI's own persistence (PERSONAGRAPH_HOME of the test)
    first = service.history(CLI_CALLER, "c1")[1]
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Go away.")}):
        run(service.regenerate(CLI_CALLER, "c1"))
    service.rate(CLI_CALLER, "c1", str(first.id), "up")
    service.rate(CLI_CALLER, "c1", str(service.history(CLI_CALLER, "c1")[1].id), "down", "rude")
    out_file = tmp_path / "pairs.jsonl"
    assert main(["feedback", "export", "--out", str(out_file), "--persona", "tiny"]) == 0
    pairs = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    assert pairs == [{
        "prompt": [{"role": "user", "content": "hello"}],
        "chosen": [{"role": "assistant", "content": "Hi there, friend."}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }]  # fmt: skip
    capsys.readouterr()
    assert main(["feedback", "stats"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "up": 1, "down": 1, "with_reason": 1, "pairs": 1, "accounts": 1
    }  # fmt: skip
