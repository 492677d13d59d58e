"""Fault tests: a service dies or the disk fills while the app works, on real processes and real files.

Each test breaks one thing in the middle of real work and then checks three things: the caller got
a clear error (or never noticed: a transparent retry), nothing is corrupted or lost or stored twice
(the chat thread has no half reply and no orphan fan message; a batch has every answer exactly
once), and the next request works once the service is back.

1. the model server (the stub, `personagraph.serving.stub_model`) SIGKILLed mid-stream of a chat turn;
2. the model server killed mid-batch (a twin survey run), then `resume`;
3. Redis restarted mid-conversation (REDIS_URL checkpointer);
4. Postgres restarted mid-conversation (DATABASE_URL: threads, store, accounts);
5. an app replica (`personagraph app`) SIGKILLed mid-turn, the other serves the thread's next turn;
6. the disk full during a batch (a small tmpfs; RLIMIT_FSIZE where mount is refused).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from personagraph.accounts.store import AccountStore
from personagraph.api.app import create_app
from personagraph.memory.redis_server import LocalRedis
from personagraph.services.chat import ChatService
from personagraph.services.twins.executor import BatchOptions, RunStorageFullError
from personagraph.services.twins.store import open_run, run_info, run_path
from personagraph.services.twins.surveys import create_survey_run, run_survey
from personagraph.serving.models import use_models
from personagraph.serving.postgres_server import LocalPostgres
from personagraph.serving.settings import REPO_ROOT, get_settings
from personagraph.serving.stub_model import StubModelServer
from personagraph.twins.surveys import load_survey
from tests.fakes import scripted
from tests.integration.conftest import BIN
from tests.integration.faults_disk import MountRefusedError, rerun_in_namespace, small_disk
from tests.unit.twins_support import LOCAL, answer_bot, people_from

pytestmark = pytest.mark.integration

BRAND_FILE = REPO_ROOT / "data" / "surveys" / "brand_en.yaml"
BRAND = load_survey(BRAND_FILE)


def until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what}")


@pytest.fixture
def stub() -> Iterator[StubModelServer]:
    """A fast stub model server (its own process, SIGKILLable), stopped after the test."""
    with StubModelServer(first_token_delay_s=0.05, tokens_per_s=200, reply_tokens=20) as server:
        yield server


# --- 2. the model server killed mid-batch -------------------------------------------------------------


def _stored_keys(db_file: Path) -> list[tuple[str, str]]:
    if not db_file.is_file():
        return []
    with sqlite3.connect(db_file, timeout=10) as conn:
        try:
            return conn.execute("SELECT person_id, question_id FROM twin_answers").fetchall()
        except sqlite3.OperationalError:  # the run file is still being created
            return []


def test_model_server_killed_mid_batch_stops_the_run_clearly_and_resume_completes_it(
    stub: StubModelServer, tmp_path: Path
) -> None:
    env = {**os.environ, **stub.env(), "PERSONAGRAPH_HOME": str(tmp_path / "home")}
    env.pop("DATABASE_URL", None)
    run_id = "faults-batch"
    survey = [str(BIN / "personagraph"), "survey", "--survey", str(BRAND_FILE), "--no-progress",
              "--concurrency", "2", "--retries", "1", "--out", str(tmp_path / "out")]  # fmt: skip
    db_file = tmp_path / "home" / "runs" / run_id / "results.sqlite"
    stub.configure(first_token_delay_s=0.2)  # slow enough that the kill comes mid-batch on any machine
    with (tmp_path / "batch.log").open("w+") as log:
        batch = subprocess.Popen(
            [*survey, "--select", "random:12:3", "--run-id", run_id],
            env=env,
            stdout=log,
            stderr=log,
            text=True,
        )
        try:
            until(
                lambda: len(_stored_keys(db_file)) >= 6 or batch.poll() is not None, 120, "6 answers stored"
            )
            assert batch.poll() is None, "the batch finished before the kill: slow the stub down"
            stub.kill()
            batch.wait(timeout=120)
        finally:
            if batch.poll() is None:
                batch.kill()
        log.seek(0)
        output = log.read()
    # A clear error: the run stopped because the model server is gone, and says how to go on.
    assert batch.returncode == 1, output
    assert f"--resume {run_id}" in output and "model" in output.lower(), output
    before = _stored_keys(db_file)
    assert len(before) == len(set(before)) and len(before) >= 6
    summary_before = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    assert summary_before["stored"] == len(before) < summary_before["expected"], summary_before

    # The server is back: resume asks only what is missing, and nothing is stored twice.
    stub.config.first_token_delay_s = 0.02  # the restarted stub answers fast
    stub.start()
    stub.clear_stats()
    resumed = subprocess.run(
        [*survey, "--resume", run_id], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    after = _stored_keys(db_file)
    assert summary["stored"] == summary["ok"] == summary["expected"] == len(after) == len(set(after)), summary
    assert set(before) <= set(after)
    assert len(stub.stats()["records"]) == summary["expected"] - len(before)  # no stored answer asked again


# --- 6. the disk full during a batch ---------------------------------------------------------------------


def _answer_keys(run_id: str) -> list[tuple[str, str]]:
    with open_run(LOCAL, run_id) as store:
        return [(a.person_id, a.question_id) for a in store.answers()]


def test_disk_full_mid_batch_stops_with_a_clear_error_and_resumes_after_space_is_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    with ExitStack() as stack:
        try:
            disk = stack.enter_context(small_disk(tmp_path / "home", "8m"))
        except MountRefusedError as refused:  # not root: the same test in a user + mount namespace
            rerun = rerun_in_namespace(request.node.nodeid, REPO_ROOT)
            if rerun is None:
                pytest.skip(f"no small file system to fill: {refused}; `unshare -rm` is refused too")
            assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-2000:]
            return
        monkeypatch.setenv("PERSONAGRAPH_HOME", str(disk.path))
        monkeypatch.delenv("DATABASE_URL", raising=False)  # runs in SQLite files under the home
        get_settings.cache_clear()
        people = people_from(150)
        run = create_survey_run(LOCAL, BRAND, people, BatchOptions(concurrency=2, retries=0))
        assert run.expected > 1000  # far more than the room left below

        disk.fill(room=256 * 1024)
        with (
            use_models({"twin": scripted(answer_bot(BRAND, people))}),
            pytest.raises(RunStorageFullError) as stopped,
        ):
            run_survey(LOCAL, run.run_id, progress=False)
        message = str(stopped.value)
        assert "disk is full" in message and str(run_path(run.run_id)) in message, message
        assert "resume" in message

        # Nothing corrupt: the file is whole, every stored answer is there once.
        with sqlite3.connect(run_path(run.run_id)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        before = _answer_keys(run.run_id)
        assert 0 < len(before) < run.expected, len(before)
        assert len(before) == len(set(before))

        # Space freed: the run resumes here (the same process), asks only what is missing, and finishes.
        disk.free()
        asked: list[tuple[str, str]] = []
        with use_models({"twin": scripted(answer_bot(BRAND, people, log=asked))}):
            summary = run_survey(LOCAL, run.run_id, progress=False)
        assert summary.stopped is None and summary.stored == summary.ok == run.expected, summary
        after = _answer_keys(run.run_id)
        assert len(after) == len(set(after)) == run.expected
        assert set(before) <= set(after) and not set(before) & set(asked)
        assert max(Counter(asked).values()) == 1
        info = run_info(LOCAL, run.run_id)
        assert (info["state"], info["active"], info["stored"]) == ("done", False, run.expected), info
    get_settings.cache_clear()


# --- chat over the HTTP API (in this process) on real servers ------------------------------------------

PERSONA = "stella_yuna"
PASSWORD = "fault password 한글"


@contextmanager
def chat_api(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app's HTTP API (create_app, no Gradio) with `env` set, in this process."""
    from personagraph.memory.vectors import vector_client

    for key in ("DATABASE_URL", "REDIS_URL", "STORE_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    vector_client.cache_clear()
    app = create_app(AccountStore(bcrypt_rounds=4), ChatService())
    with TestClient(app) as client:
        yield client
    get_settings.cache_clear()
    vector_client.cache_clear()


def sse_events(lines: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


def send(client: TestClient, message: str, thread_id: str | None = None, **headers: str) -> dict[str, Any]:
    body = {"message": message, "persona_id": PERSONA, **({"thread_id": thread_id} if thread_id else {})}
    reply = client.post("/api/chat/send", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def thread_messages(client: TestClient, thread_id: str, **headers: str) -> list[tuple[str, str]]:
    reply = client.get(f"/api/chat/threads/{thread_id}", headers=headers)
    assert reply.status_code == 200, reply.text
    return [(m["role"], m["content"]) for m in reply.json()["messages"]]


def remembered(client: TestClient, **headers: str) -> dict[str, Any]:
    reply = client.get(f"/api/chat/profile/{PERSONA}", headers=headers)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


# --- 1. the model server killed mid-stream of a chat turn -------------------------------------------


def test_model_server_killed_mid_stream_gives_a_clear_error_and_leaves_the_thread_whole(
    stub: StubModelServer, shared_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chat_api(
        {**stub.env(), "PERSONAGRAPH_HOME": str(shared_home / "faults-stub")}, monkeypatch
    ) as client:
        first = send(client, "Hi Yuna! My name is Dana and I play the cello. pgm0000a001")
        thread_id = first["thread_id"]
        history = thread_messages(client, thread_id)
        memory = remembered(client)
        assert [role for role, _ in history] == ["user", "assistant"]

        # The next reply streams slowly; the server dies while it streams.
        stub.configure(tokens_per_s=4)
        requests_before = stub.stats()["requests"]

        def kill_mid_stream() -> None:
            until(lambda: stub.stats()["in_flight"] >= 1 and stub.stats()["requests"] > requests_before, 120,
                  "a model call of the second turn")  # fmt: skip
            time.sleep(0.5)
            stub.kill()

        killer = threading.Thread(target=kill_mid_stream, daemon=True)
        killer.start()
        body = {"message": "Tell me about your day! pgm0000a002", "thread_id": thread_id, "stream": True}
        with client.stream("POST", "/api/chat/send", json=body) as response:
            if response.status_code == 200:
                events = sse_events(response.iter_lines())
                kind, data = events[-1]
                status, reason = data["status"], data["reason"]
                assert kind == "error", events
            else:  # failed before its first event: a plain JSON error
                response.read()
                status, reason = response.status_code, response.json()["error"]["reason"]
        killer.join(timeout=60)
        assert not stub.running
        # A clear error: the model server, worth a retry (503), not "internal error".
        assert status == 503 and "model server" in reason, (status, reason)

        # Not corrupted: no half reply, no orphan fan message, no memory of the failed turn.
        assert thread_messages(client, thread_id) == history
        assert remembered(client) == memory

        # The server is back: the same message (the fan's retry) works.
        stub.start()
        stub.configure(tokens_per_s=200)
        retried = send(client, "Tell me about your day! pgm0000a002", thread_id)
        assert retried["reply"] and "pgm0000a002" in retried["reply"]
        assert [role for role, _ in thread_messages(client, thread_id)] == ["user", "assistant"] * 2


# --- 3. Redis restarted mid-conversation ---------------------------------------------------------------


def test_redis_restart_mid_conversation_loses_nothing_and_the_next_turn_works(
    stub: StubModelServer, shared_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis keeps its data across a restart (an RDB file written at shutdown), on the same port.
    redis = LocalRedis(data_dir=tmp_path / "redis", password="fault-test-" + os.urandom(8).hex())
    env = {**stub.env(), "PERSONAGRAPH_HOME": str(shared_home / "faults-stub")}
    with redis, chat_api({**env, "REDIS_URL": redis.url}, monkeypatch) as client:
        first = send(client, "Hi Yuna! I am Dana, I play the cello. pgm0000b001")
        thread_id = first["thread_id"]
        history = thread_messages(client, thread_id)
        assert [role for role, _ in history] == ["user", "assistant"]

        redis.stop()
        redis.start()

        # The checkpointer's client reconnects: the thread is whole and goes on.
        assert thread_messages(client, thread_id) == history
        second = send(client, "What do I play? pgm0000b002", thread_id)
        assert "pgm0000b002" in second["reply"]
        assert thread_messages(client, thread_id)[:2] == history
        assert [role for role, _ in thread_messages(client, thread_id)] == ["user", "assistant"] * 2


# --- 4. Postgres restarted mid-conversation -------------------------------------------------------------


def restart_postgres(postgres: LocalPostgres) -> None:
    """Stop the server as an operator does (`pg_ctl stop -m fast`: open sessions are cut), start it again."""
    from personagraph.serving import postgres_server as pg

    assert postgres.data_dir is not None
    ids = pg._system_user_ids() if pg._as_root() else None
    command = [str(pg.postgres_bin() / "pg_ctl"), "-D", str(postgres.data_dir), "stop", "-m", "fast", "-w"]
    subprocess.run(pg._as_server_user(command, ids), check=True, capture_output=True, timeout=120)
    postgres.stop()  # its supervisor, which saw the server exit
    postgres.start()


def test_postgres_restart_mid_conversation_loses_nothing_and_the_next_request_works(
    stub: StubModelServer, shared_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personagraph.memory.persistence import close_pools

    postgres = LocalPostgres(data_dir=tmp_path / "pg")  # a data folder: it outlives a restart
    env = {**stub.env(), "PERSONAGRAPH_HOME": str(shared_home / "faults-stub")}
    try:
        with postgres, chat_api({**env, "DATABASE_URL": postgres.url}, monkeypatch) as client:
            accounts = AccountStore(bcrypt_rounds=4)
            accounts.add("fault_fan", PASSWORD)
            signed_in = client.post("/api/session", json={"user_id": "fault_fan", "password": PASSWORD})
            assert signed_in.status_code == 201, signed_in.text
            auth = {"Authorization": f"Bearer {signed_in.json()['token']}"}
            first = send(client, "Hi Yuna! My name is Dana and I play the cello. pgm0000c001", **auth)
            thread_id = first["thread_id"]
            history = thread_messages(client, thread_id, **auth)
            memory = remembered(client, **auth)
            assert [role for role, _ in history] == ["user", "assistant"]

            restart_postgres(postgres)

            # Pools reconnect: the token (accounts), the thread (checkpointer), the memory (store).
            assert client.get("/api/me", headers=auth).json()["user_id"] == "fault_fan"
            assert thread_messages(client, thread_id, **auth) == history
            assert remembered(client, **auth) == memory
            second = send(client, "What do I play? pgm0000c002", thread_id, **auth)
            assert "pgm0000c002" in second["reply"]
            assert [role for role, _ in thread_messages(client, thread_id, **auth)] == [
                "user",
                "assistant",
            ] * 2
            again = client.post("/api/session", json={"user_id": "fault_fan", "password": PASSWORD})
            assert again.status_code == 201, again.text
            accounts.close()
    finally:
        close_pools()  # the pools of this server's URL: later tests use other servers


# --- 5. an app replica SIGKILLed mid-turn ---------------------------------------------------------------


def whole_exchanges(messages: list[dict[str, Any]]) -> bool:
    """user, assistant, user, assistant, ...: no fan message without its reply, no reply alone."""
    roles = [m["role"] for m in messages]
    return len(roles) % 2 == 0 and roles == ["user", "assistant"] * (len(roles) // 2)


def test_a_replica_killed_mid_turn_leaves_the_turn_absent_or_whole_and_the_other_serves_the_thread(
    stub: StubModelServer,
    postgres_server: LocalPostgres,
    chroma_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.integration.test_replicas import replica

    env = {
        **stub.env(),
        "DATABASE_URL": postgres_server.url,
        "CHROMA_URL": chroma_server,
        "PERSONAGRAPH_HOME": str(tmp_path / "home"),
    }
    subprocess.run(
        [str(BIN / "personagraph"), "prepare"], env={**os.environ, **env}, check=True, capture_output=True,
        timeout=600,
    )  # fmt: skip
    user = f"fault_fan_{os.urandom(4).hex()}"  # the session's Postgres outlives this test
    monkeypatch.setenv("DATABASE_URL", postgres_server.url)
    get_settings.cache_clear()
    accounts = AccountStore(bcrypt_rounds=4)
    accounts.add(user, PASSWORD)
    accounts.close()
    get_settings.cache_clear()
    with (
        replica(env, "replica-a", tmp_path / "a.log") as (url_a, process_a),
        replica(env, "replica-b", tmp_path / "b.log") as (url_b, _),
    ):
        signed_in = httpx.post(
            f"{url_a}/api/session", json={"user_id": user, "password": PASSWORD}, timeout=30
        )
        assert signed_in.status_code == 201, signed_in.text
        auth = {"Authorization": f"Bearer {signed_in.json()['token']}"}
        first = httpx.post(
            f"{url_a}/api/chat/send", headers=auth, timeout=120,
            json={"message": "Hi Yuna! I am Dana and I play the cello. pgm0000d001", "persona_id": PERSONA},
        )  # fmt: skip
        assert first.status_code == 200, first.text
        thread_id = first.json()["thread_id"]

        # The second turn, on A, streams slowly; A is SIGKILLed while it runs.
        stub.configure(tokens_per_s=4)
        requests_before = stub.stats()["requests"]
        outcome: dict[str, Any] = {}

        def second_turn() -> None:
            body = {"message": "Tell me about your day! pgm0000d002", "thread_id": thread_id, "stream": True}
            try:
                with httpx.stream(
                    "POST", f"{url_a}/api/chat/send", headers=auth, json=body, timeout=120
                ) as r:
                    outcome["events"] = list(r.iter_lines())
            except httpx.HTTPError as exc:
                outcome["error"] = exc

        caller = threading.Thread(target=second_turn, daemon=True)
        caller.start()
        until(lambda: stub.stats()["requests"] > requests_before and stub.stats()["in_flight"] >= 1, 120,
              "a model call of the second turn")  # fmt: skip
        time.sleep(0.5)
        process_a.send_signal(signal.SIGKILL)
        process_a.wait(timeout=30)
        caller.join(timeout=60)
        assert "error" in outcome or not any("event: final" in line for line in outcome["events"]), outcome
        stub.configure(tokens_per_s=200)

        # B serves the thread: the killed turn is absent or whole, and the next turn works.
        history = httpx.get(f"{url_b}/api/chat/threads/{thread_id}", headers=auth, timeout=30).json()
        assert whole_exchanges(history["messages"]), history
        assert len(history["messages"]) in (2, 4), history
        third = httpx.post(
            f"{url_b}/api/chat/send", headers=auth, timeout=120,
            json={"message": "What do I play? pgm0000d003", "thread_id": thread_id},
        )  # fmt: skip
        assert third.status_code == 200, third.text
        assert "pgm0000d003" in third.json()["reply"]
        after = httpx.get(f"{url_b}/api/chat/threads/{thread_id}", headers=auth, timeout=30).json()
        assert whole_exchanges(after["messages"]), after
        assert after["messages"][: len(history["messages"])] == history["messages"]
        assert after["messages"][-2]["content"].endswith("pgm0000d003")
