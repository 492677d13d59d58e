"""The chat features over HTTP on the real ChatService (scripted models): generation settings with
errors naming the field, edit and branches, alternatives and ratings in the history, the DPO export,
and a turn's timings and usage in its result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.store import AccountStore
from personagraph.api.app import create_app
from personagraph.services.chat import ChatService
from personagraph.serving.models import use_models
from tests.fakes import ScriptedChatModel, scripted

PASSWORD = "correct horse battery"
SMALLTALK = {"intent": "smalltalk", "search_query": ""}


@pytest.fixture
def client(data_dir: Path, tmp_path: Path) -> TestClient:
    accounts = AccountStore(tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    accounts.add("alice", PASSWORD)
    accounts.add("bob", PASSWORD)
    chat = ChatService(checkpointer=InMemorySaver(), store=InMemoryStore())
    app = create_app(accounts, chat, None, None, ready_checks={"model": lambda: None})  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False)


def sign_in(client: TestClient, user_id: str) -> dict[str, str]:
    response = client.post("/api/session", json={"user_id": user_id, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def send(client: TestClient, headers: dict[str, str], reply: str, **body: Any) -> Any:
    with use_models({"router": scripted(SMALLTALK), "chat": scripted(reply)}):
        return client.post(
            "/api/chat/send", json={"persona_id": "tiny", "thread_id": "t1", **body}, headers=headers
        )


def test_generation_settings_over_http(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    chat = ScriptedChatModel(script=["Hi there, friend."])
    with use_models({"router": scripted(SMALLTALK), "chat": chat}):
        sent = client.post(
            "/api/chat/send",
            json={
                "message": "hello",
                "persona_id": "tiny",
                "temperature": 0.3,
                "top_p": 0.8,
                "max_tokens": 50,
            },
            headers=alice,
        )
    assert sent.status_code == 200, sent.text
    assert {k: chat.calls[-1]["kwargs"][k] for k in ("temperature", "top_p", "max_tokens")} == {
        "temperature": 0.3, "top_p": 0.8, "max_tokens": 50
    }  # fmt: skip
    result = sent.json()
    assert result["timings"]["nodes"]["draft"] >= 0 and result["usage"]["model_calls"] >= 2
    assert result["message_id"] and result["turn_id"] and result["stopped"] is False

    bad = send(client, alice, "x", message="hello", temperature=2.5)
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "temperature"
    assert "less than or equal to 2 (got 2.5; allowed: 0 to 2" in bad.json()["error"]["reason"]
    bad = send(client, alice, "x", message="hello", top_p=0)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "top_p"


def test_edit_branches_alternatives_and_ratings_over_http(client: TestClient) -> None:
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    assert send(client, alice, "Cats are lovely!", message="I like cats").status_code == 200
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Cats are the best, truly.")}):
        again = client.post("/api/chat/threads/t1/regenerate", json={"temperature": 1.0}, headers=alice)
    assert again.status_code == 200, again.text
    history = client.get("/api/chat/threads/t1", headers=alice).json()["messages"]
    reply = history[1]
    assert reply["content"] == "Cats are the best, truly."
    assert [a["content"] for a in reply["alternatives"]] == ["Cats are lovely!"] and reply["rating"] is None

    rated = client.post(
        "/api/chat/threads/t1/feedback", json={"message_id": reply["id"], "rating": "up", "reason": "따뜻해요"},
        headers=alice,
    )  # fmt: skip
    assert rated.status_code == 200 and rated.json()["rating"] == "up"
    other = reply["alternatives"][0]["message_id"]
    client.post("/api/chat/threads/t1/feedback", json={"message_id": other, "rating": "down"}, headers=alice)
    assert client.get("/api/chat/threads/t1", headers=alice).json()["messages"][1]["rating"] == {
        "rating": "up", "reason": "따뜻해요"
    }  # fmt: skip
    bad = client.post(
        "/api/chat/threads/t1/feedback", json={"message_id": other, "rating": "meh"}, headers=alice
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "rating"
    assert client.post(
        "/api/chat/threads/t1/feedback", json={"message_id": other, "rating": "up"}, headers=bob
    ).status_code == 404  # fmt: skip

    exported = client.get("/api/chat/feedback/export", headers=alice)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/jsonl")
    pairs = [json.loads(line) for line in exported.text.splitlines()]
    assert pairs == [{
        "prompt": [{"role": "user", "content": "I like cats"}],
        "chosen": [{"role": "assistant", "content": "Cats are the best, truly."}],
        "rejected": [{"role": "assistant", "content": "Cats are lovely!"}],
    }]  # fmt: skip
    assert client.get("/api/chat/feedback/export", headers=bob).text == ""

    fan_message = history[0]["id"]
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Birds sing so well!")}):
        edited = client.post(
            "/api/chat/threads/t1/edit",
            json={"message_id": fan_message, "message": "I like birds"},
            headers=alice,
        )
    assert edited.status_code == 200 and edited.json()["reply"] == "Birds sing so well!"
    branches = client.get("/api/chat/threads/t1/branches", headers=alice).json()["branches"]
    assert len(branches) == 3 and branches[0]["current"]
    back = next(b for b in branches if b["reply"] == "Cats are the best, truly.")
    switched = client.post(f"/api/chat/threads/t1/branches/{back['branch_id']}", headers=alice)
    assert [m["content"] for m in switched.json()["messages"]] == ["I like cats", "Cats are the best, truly."]
    assert client.get("/api/chat/threads/t1/branches", headers=bob).status_code == 404
    missing = client.post(
        "/api/chat/threads/t1/edit", json={"message_id": "nope", "message": "x"}, headers=alice
    )
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "message_id"
