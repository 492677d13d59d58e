"""Chat features end to end against a real OpenAI-compatible server (the stub, in its own process)
and the real SQLite checkpointer and store: generation settings reach the server, token usage comes
back from it, regenerate keeps an alternative, ratings export as a DPO pair, an edit branches the
thread on disk, and Stop keeps the partial reply. The stub's text does not matter here."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from personagraph.accounts.identity import Caller
from personagraph.serving.stub_model import StubModelServer

REPO = Path(__file__).resolve().parents[2]
FAN = Caller("mina")


@pytest.fixture
def stub() -> Iterator[StubModelServer]:
    with StubModelServer(first_token_delay_s=0.0, tokens_per_s=0.0, reply_tokens=12) as server:
        yield server


@pytest.fixture
def service(stub: StubModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from personagraph.memory.vectors import vector_client
    from personagraph.personas.model import load_persona, load_story, load_world
    from personagraph.services.chat import ChatService
    from personagraph.serving.settings import get_settings

    data = tmp_path / "data"
    shutil.copytree(REPO / "tests" / "fixtures" / "personas" / "tiny", data / "personas" / "tiny")
    shutil.copytree(REPO / "data" / "safety", data / "safety")
    for key, value in {
        **stub.env(),
        "PERSONAGRAPH_HOME": str(tmp_path / "home"),
        "DATA_DIR": str(data),
    }.items():
        monkeypatch.setenv(key, value)
    caches = (get_settings, vector_client, load_persona, load_world, load_story)
    for cache in caches:
        cache.cache_clear()
    yield ChatService()  # the default persistence: SQLite files in the home
    for cache in caches:
        cache.cache_clear()


def test_chat_features_against_a_real_server_and_sqlite(service: object, stub: StubModelServer) -> None:
    from personagraph.services.chat import ChatService, validate_request, validate_settings

    assert isinstance(service, ChatService)
    request = validate_request(message="I like cats a lot", thread_id="t1", persona_id="tiny", max_tokens=4)
    first = service.send(FAN, request)
    assert first.error is None, first.error
    # max_tokens reached the server: the stub writes at most that many words.
    assert 0 < len(first.reply.split()) <= 4
    draft = next(c for c in first.usage["calls"] if c["node"] == "draft")
    assert draft["reported"] and draft["input_tokens"] > 0 and draft["output_tokens"] <= 4
    assert first.timings["nodes"]["draft"] > 0

    events = list(service.regenerate(FAN, "t1", settings=validate_settings(max_tokens=6, temperature=1.2)))
    second = events[-1].result
    assert second is not None and second.error is None and len(second.reply.split()) <= 6
    alternatives = service.alternatives(FAN, "t1")[second.message_id]
    assert [a["message_id"] for a in alternatives] == [first.message_id]
    service.rate(FAN, "t1", first.message_id, "up")
    service.rate(FAN, "t1", second.message_id, "down", "too short")
    pairs = service.export_preferences(FAN)
    assert len(pairs) == 1 and pairs[0]["prompt"] == [{"role": "user", "content": "I like cats a lot"}]

    turn = service.history(FAN, "t1")[0]
    edited = list(service.edit(FAN, "t1", str(turn.id), "I like birds a lot"))[-1].result
    assert edited is not None and edited.error is None
    assert [str(m.content) for m in service.history(FAN, "t1")][0] == "I like birds a lot"
    assert len(service.branches(FAN, "t1")) == 3
    # A new service on the same files (another process, a restart) sees the same branches.
    again = ChatService()
    old = next(
        b
        for b in again.branches(FAN, "t1")
        if b["fan_message"] == "I like cats a lot" and b["current"] is False
    )
    again.switch_branch(FAN, "t1", old["branch_id"])
    assert str(again.history(FAN, "t1")[0].content) == "I like cats a lot"

    # Stop keeping the partial reply: a slow reply, stopped after its first checked sentence.
    stub.configure(tokens_per_s=20.0, reply_tokens=60)
    shown = []
    for event in again.stream_turn(
        FAN, validate_request(message="tell me a long story", thread_id="t1", persona_id="tiny")
    ):
        shown.append(event)
        if event.kind == "token" and sum(e.kind == "token" for e in shown) == 1:
            assert again.stop(FAN, "t1", keep_partial=True)
    final = shown[-1]
    assert final.kind == "final" and final.result is not None and final.result.stopped
    assert str(again.history(FAN, "t1")[-1].content) == final.result.reply
