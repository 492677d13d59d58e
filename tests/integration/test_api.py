"""The HTTP API on the real server (`personagraph app`: API + Gradio on one port, real embedded test
model): two accounts made with `personagraph accounts add` chat at the same time, and each sees only
their own threads, memories and profile."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import BIN, running_app

pytestmark = pytest.mark.integration
PASSWORD = "integration password 한글"
TURN_TIMEOUT_S = 240.0


def add_account(env: dict[str, str], user: str, role: str = "user") -> None:
    subprocess.run(
        [str(BIN / "personagraph"), "accounts", "add", user, "--role", role, "--password-stdin"],
        input=PASSWORD + "\n", text=True, env={**os.environ, **env}, check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def api_url(real_model_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The app with two accounts in the shared home; the accounts are removed afterwards, so the
    other integration tests (which use the same home) find the app open again."""
    accounts_db = Path(real_model_env["PERSONAGRAPH_HOME"]) / "accounts.sqlite"
    # The first app in a fresh shared home would build the knowledge index at start (a minute on a
    # busy 2-core machine); `prepare` builds it first, as setup does, so the start stays within limits.
    env = {**os.environ, **real_model_env}
    subprocess.run(
        [str(BIN / "personagraph"), "prepare"], env=env, check=True, capture_output=True, timeout=600
    )
    try:
        add_account(real_model_env, "alice")
        add_account(real_model_env, "bob")
        with running_app(["--host", "127.0.0.1"], real_model_env, tmp_path / "app.log") as url:
            yield url.rstrip("/")
    finally:
        accounts_db.unlink(missing_ok=True)


def sign_in(url: str, user: str) -> dict[str, str]:
    response = httpx.post(f"{url}/api/session", json={"user_id": user, "password": PASSWORD}, timeout=30)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def stream_turn(url: str, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """One turn as Server-Sent Events; returns the final event's data (asserting tokens came first)."""
    kinds: list[str] = []
    final: dict[str, Any] = {}
    with httpx.stream(
        "POST", f"{url}/api/chat/send", json={**body, "stream": True}, headers=headers, timeout=TURN_TIMEOUT_S
    ) as response:
        assert response.status_code == 200, response.read().decode()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
                kinds.append(event)
            elif line.startswith("data: ") and event == "final":
                final = json.loads(line.removeprefix("data: "))
    assert kinds[-1] == "final", kinds
    assert "token" in kinds, kinds
    return final


def json_turn(url: str, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}/api/chat/send", json=body, headers=headers, timeout=TURN_TIMEOUT_S)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_two_accounts_chat_at_once_and_see_only_their_own(api_url: str) -> None:
    url = api_url
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{url}/ready", timeout=30).status_code == 200
    assert httpx.get(f"{url}/api/chat/threads").status_code == 401
    assert httpx.get(f"{url}/docs").status_code == 200
    alice, bob = sign_in(url, "alice"), sign_in(url, "bob")
    assert httpx.get(f"{url}/api/me", headers=bob).json()["user_id"] == "bob"

    first = {"message": "Hi Yuna! I'm Alice and I love hiking.", "persona_id": "stella_yuna"}
    second = {"message": "Hi Yuna! I'm Bob and I collect stamps.", "persona_id": "stella_yuna"}
    with ThreadPoolExecutor(max_workers=2) as pool:
        alice_turn = pool.submit(stream_turn, url, alice, first)
        bob_turn = pool.submit(json_turn, url, bob, second)
        alice_thread, bob_thread = alice_turn.result()["thread_id"], bob_turn.result()["thread_id"]
    assert alice_thread and bob_thread and alice_thread != bob_thread
    # Alice continues her thread; Bob's stays as it was.
    follow_up = {"message": "What do you do on tour?", "thread_id": alice_thread}
    assert json_turn(url, alice, follow_up)["thread_id"] == alice_thread

    def thread_ids(headers: dict[str, str]) -> set[str]:
        response = httpx.get(f"{url}/api/chat/threads", headers=headers, timeout=30)
        return {t["thread_id"] for t in response.json()["threads"]}

    assert thread_ids(alice) == {alice_thread} and thread_ids(bob) == {bob_thread}
    history = httpx.get(f"{url}/api/chat/threads/{alice_thread}", headers=alice, timeout=30).json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant", "user", "assistant"]
    assert "Alice" in history["messages"][0]["content"]
    # Someone else's thread looks missing, whatever the route.
    assert httpx.get(f"{url}/api/chat/threads/{bob_thread}", headers=alice, timeout=30).status_code == 404
    taken = httpx.post(f"{url}/api/chat/threads/{bob_thread}/regenerate", headers=alice, timeout=30)
    assert taken.status_code == 404 and taken.json()["error"]["field"] == "thread_id"
    bob_history = httpx.get(f"{url}/api/chat/threads/{bob_thread}", headers=bob, timeout=30).json()
    assert len(bob_history["messages"]) == 2 and "Bob" in bob_history["messages"][0]["content"]

    # Memories and profile: each sees only what they told.
    def memories(headers: dict[str, str]) -> str:
        response = httpx.get(f"{url}/api/chat/profile/stella_yuna", headers=headers, timeout=30)
        return " ".join(m["text"] for m in response.json()["memories"])

    assert "Alice" in memories(alice) and "Bob" not in memories(alice)
    assert "Bob" in memories(bob) and "Alice" not in memories(bob)
    saved = httpx.put(
        f"{url}/api/chat/profile/stella_yuna", json={"profile": {"name": "Bob"}}, headers=bob, timeout=30
    )
    assert saved.status_code == 200, saved.text
    alice_view = httpx.get(f"{url}/api/chat/profile/stella_yuna", headers=alice, timeout=30).json()
    assert alice_view["profile"].get("name") != "Bob"
    forgot = httpx.delete(f"{url}/api/chat/profile/stella_yuna?threads=true", headers=bob, timeout=30)
    assert forgot.status_code == 200 and forgot.json()["deleted"]["threads"] == 1
    assert thread_ids(bob) == set() and thread_ids(alice) == {alice_thread}
    assert "Alice" in memories(alice)
