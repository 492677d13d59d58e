"""The HTTP API with FastAPI's TestClient and fake services: sign-in and tokens, the caller from the
token only, one JSON error shape for every status, Server-Sent Events, size limits, health and
readiness, and a route list the authorization tests can read."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from personagraph.accounts.identity import Caller, ForbiddenError, NotFoundError
from personagraph.accounts.store import AccountStore, SignInThrottle
from personagraph.api.app import PUBLIC_ROUTES, api_routes, create_app
from personagraph.api.limits import max_json_bytes
from personagraph.insight.source import RedisNotConfiguredError
from personagraph.personas.cards import max_card_bytes
from personagraph.services.chat import ChatRequest, InvalidRequestError, TurnEvent, TurnResult
from personagraph.serving.models import ModelUnavailableError, use_models
from personagraph.serving.settings import REPO_ROOT, get_settings
from personagraph.twins.surveys import load_survey
from tests.fakes import scripted
from tests.unit.twins_support import answer_bot, people_from, pilot_run

PASSWORD = "a long enough password"


class FakeChat:
    """The ChatService interface (caller first), with threads owned by their caller."""

    def __init__(self) -> None:
        self.threads_by_id: dict[str, tuple[str, list[AnyMessage]]] = {}
        self.profiles: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail_with: Exception | None = None
        self.fail_event: str | None = None

    def _owned(self, caller: Caller, thread_id: str) -> list[AnyMessage]:
        owner, messages = self.threads_by_id.get(thread_id, (caller.user_id, []))
        if owner != caller.user_id:
            raise NotFoundError(f"thread_id: you have no thread {thread_id!r}")
        return messages

    def stream_turn(self, caller: Caller, request: ChatRequest) -> Iterator[TurnEvent]:
        messages = self._owned(caller, request.thread_id)
        if self.fail_with is not None:
            raise self.fail_with
        if self.fail_event is not None:
            yield TurnEvent("error", self.fail_event)
            return
        reply = f"안녕, {caller.user_id}!"
        yield TurnEvent("token", reply[:3])
        yield TurnEvent("reset")
        yield TurnEvent("token", reply)
        messages += [HumanMessage(request.message, id="h1"), AIMessage(reply, id="a1")]
        self.threads_by_id[request.thread_id] = (caller.user_id, messages)
        yield TurnEvent("final", reply, TurnResult(reply=reply, thread_id=request.thread_id, intent="chat"))

    def regenerate(
        self, caller: Caller, thread_id: str, persona_id: str | None = None, settings: Any = None
    ) -> Iterator[TurnEvent]:
        messages = self._owned(caller, thread_id)
        if not messages:
            raise InvalidRequestError(f"thread_id: thread {thread_id!r} has no fan message to regenerate")
        yield TurnEvent("final", "again", TurnResult(reply="again", thread_id=thread_id))

    def stop(self, caller: Caller, thread_id: str, keep_partial: bool = False) -> bool:
        self._owned(caller, thread_id)
        return False

    def alternatives(self, caller: Caller, thread_id: str) -> dict[str, list[dict[str, str]]]:
        return {}

    def ratings(self, caller: Caller, thread_id: str | None = None) -> dict[str, dict[str, str]]:
        return {}

    def threads(self, caller: Caller) -> list[dict[str, Any]]:
        return [{"thread_id": t} for t, (owner, _) in self.threads_by_id.items() if owner == caller.user_id]

    def history(self, caller: Caller, thread_id: str) -> list[AnyMessage]:
        return list(self._owned(caller, thread_id))

    def get_profile(self, caller: Caller, persona_id: str) -> dict[str, Any]:
        return self.profiles.get((caller.user_id, persona_id), {})

    def memories(self, caller: Caller, persona_id: str) -> list[dict[str, Any]]:
        return []

    def update_profile(self, caller: Caller, persona_id: str, profile: dict[str, Any]) -> dict[str, Any]:
        if "age" in profile:
            raise InvalidRequestError("profile.age: unknown field; allowed: name, nickname")
        self.profiles[(caller.user_id, persona_id)] = profile
        return profile

    def forget(self, caller: Caller, persona_id: str, threads: bool = False) -> dict[str, int]:
        return {"profile": int(self.profiles.pop((caller.user_id, persona_id), None) is not None)}

    def personas(self, caller: Caller) -> list[str]:
        return ["stella_yuna"]

    def import_card(
        self,
        caller: Caller,
        data: bytes,
        overwrite: bool = False,
        persona_id: str | None = None,
        public: bool = False,
    ) -> str:
        if public and not caller.admin:
            raise ForbiddenError("public: only an admin can import a card for every account")
        json.loads(data)
        return persona_id or "seren_moss"

    def export_card(self, caller: Caller, persona_id: str) -> dict[str, Any]:
        if persona_id == "stella_yuna":
            return {"spec": "chara_card_v2", "data": {"name": "Yuna"}}
        raise NotFoundError(f"persona_id: no persona {persona_id!r}")


class FakeInsight:
    def ingest_order(self, caller: Caller, order: dict[str, Any]) -> dict[str, Any]:
        if not caller.admin:
            raise ForbiddenError("orders: only an admin may ingest orders")
        if order.get("order_id") == "no-redis":
            raise RedisNotConfiguredError("this needs the live state in Redis, not the stored history")
        return {"accepted": True}

    def segment_stats(self, caller: Caller) -> dict[str, Any]:
        return {"segments": {"vip": {"customers": 12}}}


@pytest.fixture
def accounts(tmp_path: Path) -> AccountStore:
    store = AccountStore(
        tmp_path / "accounts.sqlite", throttle=SignInThrottle(max_failures=3), bcrypt_rounds=4
    )
    store.add("alice", PASSWORD)
    store.add("bob", PASSWORD)
    store.add("boss", PASSWORD, role="admin")
    return store


@pytest.fixture
def chat() -> FakeChat:
    return FakeChat()


@pytest.fixture
def client(accounts: AccountStore, chat: FakeChat) -> TestClient:
    app = create_app(accounts, chat, FakeInsight(), None, ready_checks={"model": lambda: None})  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False)


def sign_in(client: TestClient, user_id: str) -> dict[str, str]:
    response = client.post("/api/session", json={"user_id": user_id, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def assert_error(response: Any, status: int, field: str | None = None, reason: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"status", "field", "reason"} and error["status"] == status
    assert error["field"] == field and reason in error["reason"]
    return dict(error)


def sse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_every_route_needs_a_token_unless_public(client: TestClient) -> None:
    for route in api_routes(client.app):  # type: ignore[arg-type]
        if route.name in PUBLIC_ROUTES:
            continue
        method = sorted(route.methods or {"GET"})[0]
        path = route.path.replace("{fmt}", "json").replace("{", "").replace("}", "")
        response = client.request(method, path)
        assert_error(response, 401, "Authorization")
        assert response.headers["www-authenticate"] == "Bearer"
    bad = client.get("/api/me", headers={"Authorization": "Bearer pgt_not-a-token"})
    assert_error(bad, 401, None, "unknown, revoked or expired")
    assert_error(client.get("/api/me", headers={"Authorization": "Basic abc"}), 401, "Authorization")


def test_routes_are_named_tagged_and_unique(client: TestClient) -> None:
    routes = api_routes(client.app)  # type: ignore[arg-type]
    names = [r.name for r in routes]
    assert len(names) == len(set(names)) and all(isinstance(r, APIRoute) and r.tags for r in routes)
    assert set(names) >= PUBLIC_ROUTES
    groups = {tag for r in routes for tag in r.tags}
    assert groups == {"health", "session", "chat", "personas", "twins", "crm", "insight"}
    assert client.get("/docs").status_code == 200
    assert "/api/chat/send" in client.get("/openapi.json").json()["paths"]


def test_sign_in_me_and_sign_out(client: TestClient) -> None:
    headers = sign_in(client, "alice")
    assert client.get("/api/me", headers=headers).json() == {
        "user_id": "alice",
        "role": "user",
        "accounts": True,
    }
    assert client.delete("/api/session", headers=headers).json()["revoked"] is True
    assert_error(client.get("/api/me", headers=headers), 401)
    wrong = client.post("/api/session", json={"user_id": "alice", "password": "not it"})
    assert_error(wrong, 401, None, "wrong user id or password")


def test_sign_in_is_throttled_with_retry_after(client: TestClient) -> None:
    for _ in range(3):
        assert client.post("/api/session", json={"user_id": "bob", "password": "guess"}).status_code == 401
    locked = client.post("/api/session", json={"user_id": "bob", "password": PASSWORD})
    assert_error(locked, 429, None, "too many failed sign-ins")
    assert int(locked.headers["retry-after"]) > 0


def test_api_tokens_are_per_account(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    created = client.post("/api/tokens", json={"name": "laptop"}, headers=alice)
    assert created.status_code == 201
    token = {"Authorization": f"Bearer {created.json()['token']}"}
    assert client.get("/api/me", headers=token).json()["user_id"] == "alice"
    assert_error(client.post("/api/tokens", json={"name": "laptop"}, headers=alice), 409, "name")
    assert_error(client.post("/api/tokens", json={"name": "../x"}, headers=alice), 400, "name")
    names = [t["name"] for t in client.get("/api/tokens", headers=alice).json()["tokens"]]
    assert sorted(names) == ["laptop", "session"]
    bob = sign_in(client, "bob")
    assert_error(client.delete("/api/tokens/laptop", headers=bob), 404, "name")  # not bob's
    assert client.get("/api/me", headers=token).status_code == 200
    assert client.delete("/api/tokens/laptop", headers=alice).json() == {"revoked": "laptop"}
    assert_error(client.get("/api/me", headers=token), 401)


def test_chat_send_as_json_and_the_thread_is_the_callers(client: TestClient) -> None:
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    sent = client.post("/api/chat/send", json={"message": "hi", "thread_id": "t-alice"}, headers=alice)
    assert sent.status_code == 200
    assert sent.json()["reply"] == "안녕, alice!" and sent.json()["thread_id"] == "t-alice"
    assert client.get("/api/chat/threads", headers=alice).json()["threads"] == [{"thread_id": "t-alice"}]
    assert client.get("/api/chat/threads", headers=bob).json()["threads"] == []
    history = client.get("/api/chat/threads/t-alice", headers=alice).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    for method, path, body in [
        ("GET", "/api/chat/threads/t-alice", None),
        ("POST", "/api/chat/send", {"message": "mine now", "thread_id": "t-alice"}),
        ("POST", "/api/chat/threads/t-alice/regenerate", {}),
        ("POST", "/api/chat/threads/t-alice/stop", None),
    ]:
        assert_error(client.request(method, path, json=body, headers=bob), 404, "thread_id")
    assert client.post("/api/chat/threads/t-alice/regenerate", headers=alice).json()["reply"] == "again"


def test_chat_send_streams_server_sent_events(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    with client.stream("POST", "/api/chat/send", json={"message": "hi", "stream": True}, headers=alice) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        thread_id = r.headers["x-thread-id"]
        events = sse_events(r.read().decode())
    assert [kind for kind, _ in events] == ["token", "reset", "token", "final"]
    assert events[2][1] == {"text": "안녕, alice!"}
    assert events[-1][1]["reply"] == "안녕, alice!" and events[-1][1]["thread_id"] == thread_id
    accept = client.post(
        "/api/chat/send", json={"message": "hi"}, headers={**alice, "Accept": "text/event-stream"}
    )
    assert sse_events(accept.text)[-1][0] == "final"


def test_chat_errors_have_one_shape(client: TestClient, chat: FakeChat) -> None:
    alice = sign_in(client, "alice")
    assert_error(client.post("/api/chat/send", json={}, headers=alice), 400, "message", "required")
    smuggled = client.post("/api/chat/send", json={"message": "hi", "user_id": "bob"}, headers=alice)
    assert_error(smuggled, 400, "user_id", "Extra inputs")
    assert_error(client.post("/api/chat/send", json={"message": "  "}, headers=alice), 400, "message")
    unknown = client.post("/api/chat/send", json={"message": "hi", "persona_id": "../x"}, headers=alice)
    assert_error(unknown, 400, "persona_id")
    not_json = client.post(
        "/api/chat/send", content=b"{not", headers={**alice, "Content-Type": "application/json"}
    )
    assert_error(not_json, 400, "body", "JSON")
    bad_profile = client.put("/api/chat/profile/stella_yuna", json={"profile": {"age": 3}}, headers=alice)
    assert_error(bad_profile, 400, "profile.age", "unknown field")

    chat.fail_with = ModelUnavailableError("model server for role 'chat' at http://x is unreachable")
    down = client.post("/api/chat/send", json={"message": "hi", "stream": True}, headers=alice)
    assert_error(down, 503, None, "unreachable")
    chat.fail_with = None
    chat.fail_event = "model server for role 'chat' is unreachable; retry"
    assert_error(client.post("/api/chat/send", json={"message": "hi"}, headers=alice), 503, None, "retry")
    chat.fail_event = None
    chat.fail_with = RuntimeError("secret internals at /srv/x")
    crash = client.post("/api/chat/send", json={"message": "hi"}, headers=alice)
    reason = assert_error(crash, 500, None, "internal error")["reason"]
    assert "secret" not in reason and "RuntimeError" not in reason


def test_profile_read_edit_forget(client: TestClient) -> None:
    alice, bob = sign_in(client, "alice"), sign_in(client, "bob")
    saved = client.put("/api/chat/profile/stella_yuna", json={"profile": {"name": "Alice"}}, headers=alice)
    assert saved.json()["profile"] == {"name": "Alice"}
    assert client.get("/api/chat/profile/stella_yuna", headers=alice).json()["profile"] == {"name": "Alice"}
    assert client.get("/api/chat/profile/stella_yuna", headers=bob).json()["profile"] == {}
    forgot = client.delete("/api/chat/profile/stella_yuna?threads=true", headers=alice)
    assert forgot.json()["deleted"] == {"profile": 1}
    assert client.get("/api/chat/profile/stella_yuna", headers=alice).json()["profile"] == {}


def test_personas_import_export_and_size_limit(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    assert client.get("/api/personas", headers=alice).json() == {"personas": ["stella_yuna"]}
    card = {"spec": "chara_card_v2", "data": {"name": "Seren"}}
    files = {"file": ("card.json", json.dumps(card).encode(), "application/json")}
    imported = client.post("/api/personas/import", files=files, headers=alice)
    assert imported.status_code == 201 and imported.json() == {"persona_id": "seren_moss"}
    named = client.post("/api/personas/import", files=files, data={"persona_id": "seren2"}, headers=alice)
    assert named.json() == {"persona_id": "seren2"}
    public = client.post("/api/personas/import", files=files, data={"public": "true"}, headers=alice)
    assert_error(public, 403, "public")
    assert client.get("/api/personas/stella_yuna/card", headers=alice).json()["spec"] == "chara_card_v2"
    assert_error(client.get("/api/personas/nobody/card", headers=alice), 404, "persona_id")
    huge = {"file": ("card.png", b"\0" * (max_card_bytes() + 100_000), "image/png")}
    assert_error(client.post("/api/personas/import", files=huge, headers=alice), 413, "file")
    empty = {"file": ("card.json", b"", "application/json")}
    assert_error(client.post("/api/personas/import", files=empty, headers=alice), 400, "file")


def test_json_bodies_over_the_limit_get_413(client: TestClient) -> None:
    alice = sign_in(client, "alice")
    body = json.dumps({"message": "x" * (max_json_bytes() + 1)})
    too_big = client.post(
        "/api/chat/send", content=body, headers={**alice, "Content-Type": "application/json"}
    )
    assert_error(too_big, 413, "body")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit still holds while reading
        yield b'{"message": "'
        for _ in range(max_json_bytes() // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    streamed = client.post(
        "/api/chat/send", content=chunks(), headers={**alice, "Content-Type": "application/json"}
    )
    assert_error(streamed, 413, "body")


def test_roles_and_missing_services(client: TestClient) -> None:
    alice, boss = sign_in(client, "alice"), sign_in(client, "boss")
    assert_error(client.post("/api/insight/orders", json={"order_id": "o1"}, headers=alice), 403, "orders")
    assert client.post("/api/insight/orders", json={"order_id": "o1"}, headers=boss).status_code == 202
    no_redis = client.post("/api/insight/orders", json={"order_id": "no-redis"}, headers=boss)
    assert_error(no_redis, 503, None, "live state in Redis")
    assert client.get("/api/insight/segments", headers=alice).json()["segments"]["vip"]["customers"] == 12
    no_crm = client.post("/api/crm/batch", json={"rows": [{"persona": 0}]}, headers=alice)
    assert_error(no_crm, 503, "crm", "not configured")


def test_health_and_readiness(accounts: AccountStore, chat: FakeChat) -> None:
    def broken() -> None:
        raise ConnectionError("http://10.0.0.5:8000 refused")

    app = create_app(accounts, chat, ready_checks={"model": broken, "accounts": lambda: None})  # type: ignore[arg-type]
    client = TestClient(app)
    assert client.get("/health").json() == {"status": "ok"}
    not_ready = client.get("/ready")
    assert not_ready.status_code == 503 and not_ready.headers["retry-after"]
    assert not_ready.json()["checks"] == {"model": "failing", "accounts": "ok"}
    assert "10.0.0.5" not in not_ready.text  # no internals for callers who are not signed in
    ok = TestClient(create_app(accounts, chat, ready_checks={"model": lambda: None}))  # type: ignore[arg-type]
    assert ok.get("/ready").json() == {"status": "ready", "checks": {"model": "ok"}}


def test_open_mode_is_the_local_person(tmp_path: Path, chat: FakeChat) -> None:
    accounts = AccountStore(tmp_path / "open.sqlite", bcrypt_rounds=4)
    client = TestClient(create_app(accounts, chat, ready_checks={}))  # type: ignore[arg-type]
    assert client.get("/api/me").json() == {"user_id": "local", "role": "admin", "accounts": False}
    assert client.post("/api/chat/send", json={"message": "hi"}).json()["reply"] == "안녕, local!"
    assert_error(client.post("/api/session", json={"user_id": "x", "password": "y"}), 403, "user_id")
    assert_error(client.post("/api/tokens", json={"name": "x"}), 403, "tokens")


def test_twin_runs_over_http_belong_to_their_creator(client: TestClient, accounts: AccountStore) -> None:
    alice, bob, boss = sign_in(client, "alice"), sign_in(client, "bob"), sign_in(client, "boss")
    people = people_from(2)
    uploads = get_settings().uploads_dir / "alice"
    uploads.mkdir(parents=True)
    rows = "".join(f'{p.id},"{p.profile}"\n' for p in people)
    (uploads / "people.csv").write_text("id,profile\n" + rows, encoding="utf-8")
    body = {"kind": "survey", "template": "brand_en", "select": ["source:people.csv"], "run_id": "r-alice"}
    outside = client.post("/api/twins/runs", json={**body, "select": ["source:/etc/passwd"]}, headers=alice)
    assert_error(outside, 403, "source", "upload folder")
    assert_error(
        client.post("/api/twins/runs", json={**body, "template": "../x"}, headers=alice), 400, "template"
    )
    bad_options = client.post("/api/twins/runs", json={**body, "options": {"concurrency": 0}}, headers=alice)
    assert_error(bad_options, 400, "options.concurrency")
    assert_error(
        client.post("/api/twins/runs", json={**body, "select": ["source:people.csv"]}, headers=bob), 400
    )

    brand = load_survey(REPO_ROOT / "data" / "surveys" / "brand_en.yaml")
    with use_models({"twin": scripted(answer_bot(brand, people))}):
        started = client.post("/api/twins/runs", json=body, headers=alice)
        assert started.status_code == 202, started.text
        assert started.json()["run_id"] == "r-alice"
        deadline = 200
        while client.get("/api/twins/runs/r-alice", headers=alice).json()["state"] in ("created", "running"):
            deadline -= 1
            assert deadline > 0, "the run did not finish"
            time.sleep(0.05)
    info = client.get("/api/twins/runs/r-alice", headers=alice).json()
    assert info["state"] == "done" and info["stored"] == info["expected"] > 0
    assert [r["run_id"] for r in client.get("/api/twins/runs", headers=alice).json()["runs"]] == ["r-alice"]
    assert client.get("/api/twins/runs", headers=bob).json()["runs"] == []
    assert [r["run_id"] for r in client.get("/api/twins/runs", headers=boss).json()["runs"]] == ["r-alice"]
    for method, path in [
        ("GET", "/api/twins/runs/r-alice"),
        ("GET", "/api/twins/runs/r-alice/results"),
        ("GET", "/api/twins/runs/r-alice/exports/csv"),
        ("POST", "/api/twins/runs/r-alice/cancel"),
        ("DELETE", "/api/twins/runs/r-alice"),
    ]:
        assert_error(client.request(method, path, headers=bob), 404, "run_id")
    summary = client.get("/api/twins/runs/r-alice/results", headers=alice).json()["summary"]
    assert summary["questions"]
    csv = client.get("/api/twins/runs/r-alice/exports/csv", headers=boss)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.startswith("run_id,") and "p1" in csv.text
    assert client.get("/api/twins/runs/r-alice/exports/xlsx", headers=alice).content[:2] == b"PK"
    assert_error(client.get("/api/twins/runs/r-alice/exports/transcripts", headers=alice), 400, "fmt")
    assert_error(client.get("/api/twins/runs/r-alice/exports/pdf", headers=alice), 400, "fmt")
    assert client.delete("/api/twins/runs/r-alice", headers=alice).json() == {"deleted": "r-alice"}
    assert_error(client.get("/api/twins/runs/r-alice", headers=alice), 404, "run_id")


def test_a_run_is_calibrated_over_http_by_its_owner(client: TestClient, tmp_path: Path) -> None:
    alice, bob, boss = sign_in(client, "alice"), sign_in(client, "bob"), sign_in(client, "boss")
    run_id, pilot = pilot_run(Caller("alice"), tmp_path / "pack")
    url = f"/api/twins/runs/{run_id}/calibrate"

    def upload(headers: dict[str, str], policy: str = "median", data: bytes | None = None) -> Any:
        files = {"pilot_file": ("pilot.csv", pilot.read_bytes() if data is None else data, "text/csv")}
        return client.post(url, headers=headers, files=files, data={"policy": policy})

    assert_error(upload(bob), 404, "run_id")
    assert not (get_settings().uploads_dir / "bob").exists()  # nothing kept of a refused upload
    assert_error(upload(alice, "best"), 400, "policy", "allowed: mode, median, mean, draw")
    assert_error(upload(alice, data=b""), 400, "pilot_file", "empty")
    assert_error(upload(alice, data=b"twin_id,lik\n999,3\n"), 400, "pilot_file", "no row")
    done = upload(alice)
    assert done.status_code == 200, done.text
    summary = done.json()
    assert summary["result_mode"] == "calibrated" and summary["policy"] == "median"
    assert summary["pilot_people"] == 30 and summary["people_calibrated"] == 10
    assert str(tmp_path) not in done.text and "uploads" not in done.text  # no server path
    results = client.get(f"/api/twins/runs/{run_id}/results", headers=alice).json()["summary"]
    assert results["result_mode"] == "calibrated"
    csv = client.get(f"/api/twins/runs/{run_id}/exports/csv", headers=alice).text
    assert "result_mode" in csv.splitlines()[0] and ",calibrated" in csv
    assert upload(boss, "mode").json()["policy"] == "mode"  # an admin may; it replaces alice's


def test_the_gradio_app_is_mounted_behind_the_api(accounts: AccountStore, chat: FakeChat) -> None:
    import gradio as gr

    with gr.Blocks() as ui:
        gr.Markdown("hello")
    client = TestClient(create_app(accounts, chat, ui=ui, ready_checks={}))  # type: ignore[arg-type]
    assert client.get("/health").json() == {"status": "ok"}  # the API's routes win
    assert_error(client.get("/api/me"), 401, "Authorization")
    page = client.get("/", follow_redirects=False)
    assert page.status_code in (200, 302, 307) and "gradio" in (page.text + str(page.headers)).lower()
    assert client.get("/config").status_code in (200, 401)  # Gradio's, behind its sign-in
    assert client.post("/login", data={"username": "alice", "password": "wrong"}).status_code == 400
    assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 200


class FakeCrm:
    def run(self, caller: Caller, raw: dict[str, Any]) -> dict[str, Any]:
        from personagraph.crm.inputs import CrmInputError

        if raw["persona"] == 9:
            raise CrmInputError("persona", "9 is not allowed; allowed: 0 (Luxury Lover), ...")
        return {"status": "passed", "message": f"for {caller.user_id}", "request": raw}

    def run_batch(self, caller: Caller, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"row": i, "status": "passed"} for i, _ in enumerate(rows, start=1)]


def test_crm_routes(accounts: AccountStore, chat: FakeChat) -> None:
    client = TestClient(create_app(accounts, chat, None, FakeCrm(), ready_checks={}))  # type: ignore[arg-type]
    alice = sign_in(client, "alice")
    request = {"persona": "Budget Seeker", "brand": "lumiere", "product": "lum-01", "stage_index": 1,
               "style_index": "Question hook", "is_event": True}  # fmt: skip
    sent = client.post("/api/crm/messages", json=request, headers=alice).json()
    assert (
        sent["message"] == "for alice"
        and sent["request"]["is_event"] == 1
        and sent["request"]["channel"] == "sms"
    )
    assert_error(
        client.post("/api/crm/messages", json={**request, "persona": 9}, headers=alice), 400, "persona"
    )
    assert_error(
        client.post("/api/crm/messages", json={**request, "colour": "red"}, headers=alice), 400, "colour"
    )
    batch = client.post("/api/crm/batch", json={"rows": [request, request]}, headers=alice).json()
    assert [r["row"] for r in batch["results"]] == [1, 2]
    over = [request] * (get_settings().crm_batch_max_rows + 1)
    assert_error(
        client.post("/api/crm/batch", json={"rows": over}, headers=alice), 400, "rows", "CRM_BATCH_MAX_ROWS"
    )
    assert_error(client.get("/api/insight/segments", headers=alice), 503, "insight", "not configured")
