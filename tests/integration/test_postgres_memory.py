"""Threads and long-term memory in a real Postgres (DATABASE_URL): the official PostgresSaver and
PostgresStore with a pgvector index, shared by processes.

The Postgres server is the session's; each test writes under its own thread ids, user ids and run
ids, so tests never see each other's rows. Chat models are scripted fakes (no model server).
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypedDict

import psycopg
import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.postgres import PostgresStore

from personagraph.accounts.identity import Caller
from personagraph.memory import persistence
from personagraph.memory.fan_memory import add_memory, memories_namespace
from personagraph.memory.persistence import make_checkpointer, make_store
from personagraph.prompts import persona_chat as prompts
from personagraph.services.chat import ChatService, validate_request
from personagraph.services.twins.executor import BatchOptions
from personagraph.services.twins.interviews import create_interview_run, run_interviews
from personagraph.services.twins.store import open_run, run_folder
from personagraph.serving.models import use_models
from personagraph.serving.postgres_server import LocalPostgres
from personagraph.serving.settings import REPO_ROOT, get_settings
from personagraph.twins.guides import guide_from_data
from tests.fakes import scripted
from tests.unit.twins_support import LOCAL, people_from

pytestmark = pytest.mark.integration
FIXTURES = REPO_ROOT / "tests" / "fixtures"
SMALLTALK = '{"intent": "smalltalk", "search_query": ""}'


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def database(postgres_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DATABASE_URL pointing at the session's Postgres (REDIS_URL and STORE_URL unset); this
    process's pools are closed after the test."""
    monkeypatch.setenv("DATABASE_URL", postgres_server.url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("STORE_URL", raising=False)
    get_settings.cache_clear()
    yield postgres_server.url
    persistence.close_pools()
    get_settings.cache_clear()


@pytest.fixture
def tiny_persona(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DATA_DIR with only the `tiny` test persona and the shipped safety rules."""
    from personagraph.personas.model import load_persona, load_story, load_world

    root = tmp_path / "data"
    shutil.copytree(FIXTURES / "personas" / "tiny", root / "personas" / "tiny")
    shutil.copytree(REPO_ROOT / "data" / "safety", root / "safety")
    monkeypatch.setenv("DATA_DIR", str(root))
    get_settings.cache_clear()
    for cache in (load_persona, load_world, load_story):
        cache.cache_clear()
    return root


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def as_another_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the factories open new pools and run setup again, as a second process would; the
    pools of the objects made so far stay open until the test ends."""
    first = list(persistence._POOLS.values())

    def close_first() -> None:
        for pool in first:
            pool.close()

    request.addfinalizer(close_first)
    monkeypatch.setattr(persistence, "_POOLS", {})
    monkeypatch.setattr(persistence, "_SET_UP", set())


# --- the checkpointer ------------------------------------------------------------------------------------


class Counter(TypedDict):
    seen: list[str]


def add_word(state: Counter) -> dict[str, list[str]]:
    return {"seen": [*state["seen"], f"word{len(state['seen'])}"]}


def counter_graph(checkpointer: Any) -> Any:
    builder = StateGraph(Counter)
    builder.add_node("add_word", add_word)
    builder.add_edge(START, "add_word")
    builder.add_edge("add_word", END)
    return builder.compile(checkpointer=checkpointer)


def test_checkpoints_round_trip_through_postgres(
    database: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    saver, again = make_checkpointer(), make_checkpointer()
    assert isinstance(saver, PostgresSaver) and isinstance(again, PostgresSaver)
    assert again.conn is saver.conn  # one pool per process and URL
    config: Any = {"configurable": {"thread_id": unique("round-trip")}}
    graph = counter_graph(saver)
    graph.invoke({"seen": []}, config)
    graph.invoke(None, config)  # continues from the checkpoint: nothing new to run
    graph.update_state(config, {"seen": ["word0", "word1"]})

    as_another_process(request, monkeypatch)
    other = make_checkpointer()
    assert isinstance(other, PostgresSaver) and other.conn is not saver.conn
    state = counter_graph(other).get_state(config)
    assert state.values == {"seen": ["word0", "word1"]}
    assert len(list(other.list(config))) == len(list(saver.list(config))) >= 3
    thread_id = config["configurable"]["thread_id"]
    assert rows(database, "select count(*) from checkpoints where thread_id = %s", thread_id)[0][0] >= 3
    other.delete_thread(thread_id)
    assert saver.get_tuple(config) is None


def test_replicas_starting_together_create_the_tables_once(database: str) -> None:
    """Four workers set up a fresh database at the same moment: no duplicate-type error from racing
    migrations, and no hang (the store's CREATE INDEX CONCURRENTLY waits for every open transaction)."""
    name = unique("fresh").replace("-", "_")
    fresh = database.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    start = threading.Barrier(4)

    def start_replica(_: int) -> tuple[str, str]:
        start.wait(timeout=30)
        return type(persistence.postgres_store(fresh)).__name__, type(
            persistence.postgres_checkpointer(fresh)
        ).__name__

    try:
        with ThreadPoolExecutor(max_workers=4) as workers:
            futures = [workers.submit(start_replica, i) for i in range(4)]
            made = [f.result(timeout=120) for f in futures]
        assert made == [("PostgresStore", "PostgresSaver")] * 4
        assert rows(fresh, "select count(*) from store_migrations")[0][0] > 0
    finally:
        persistence.close_pools()
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- two app processes, one fan ------------------------------------------------------------------------------


def router_for(name: str) -> Any:
    """The router role: intent routing, profile extraction ("name") and summaries."""

    def answer(messages: list[BaseMessage]) -> str:
        system = str(messages[0].content)
        if prompts.PROFILE_SYSTEM[:30] in system:
            return json.dumps({"name": name})
        if prompts.SUMMARY_SYSTEM[:30] in system:
            return "They talked."
        return SMALLTALK

    return scripted(answer)


def test_two_app_processes_continue_one_fan_conversation(
    database: str,
    tiny_persona: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fan = Caller(unique("fan"))
    thread = unique("thread")
    first = ChatService()  # make_checkpointer() and make_store(): Postgres
    assert isinstance(first.checkpointer, PostgresSaver) and isinstance(first.store, PostgresStore)
    as_another_process(request, monkeypatch)
    second = ChatService()
    assert second.checkpointer.conn is not first.checkpointer.conn  # type: ignore[attr-defined]

    def turn(service: ChatService, message: str, reply: str, thread_id: str = thread) -> Any:
        chat = scripted(reply)
        with use_models({"router": router_for("Minji"), "chat": chat}):
            result = service.send(
                fan, validate_request(message=message, thread_id=thread_id, persona_id="tiny")
            )
        assert result.error is None, result.error
        return chat

    turn(first, "Hi! I'm Minji and I grow tomatoes on my balcony.", "Hi Minji!")
    chat = turn(second, "Do you remember what I grow?", "Tomatoes, of course!")
    # The second process drafted with the first one's turn in the thread and its profile in the prompt.
    drafted = chat.calls[0]["messages"]
    assert any("tomatoes on my balcony" in str(m.content) for m in drafted[1:])
    assert "- the fan's name: Minji" in str(drafted[-1].content)
    turn(first, "Great memory!", "Thanks!")

    for service in (first, second):
        history = [str(m.content) for m in service.history(fan, thread)]
        assert history == [
            "Hi! I'm Minji and I grow tomatoes on my balcony.", "Hi Minji!",
            "Do you remember what I grow?", "Tomatoes, of course!",
            "Great memory!", "Thanks!",
        ]  # fmt: skip
        assert [t["thread_id"] for t in service.threads(fan)] == [thread]
        assert service.get_profile(fan, "tiny")["name"] == "Minji"
        texts = {m["text"] for m in service.memories(fan, "tiny")}
        assert "Hi! I'm Minji and I grow tomatoes on my balcony." in texts
    # A new thread on the second process still knows the fan (long-term memory in the store).
    fresh = turn(second, "Hello again", "Hello Minji!", thread_id=unique("thread"))
    assert "- the fan's name: Minji" in str(fresh.calls[0]["messages"][-1].content)
    assert second.get_profile(Caller(unique("stranger")), "tiny") == {}  # another account sees nothing


# --- semantic search (pgvector) ----------------------------------------------------------------------------

MEMORIES = {
    "food": "My favourite food is kimchi stew, my mum makes it every Sunday.",
    "cats": "나는 고양이 두 마리를 키워요. 이름은 보리와 콩이에요.",
    "work": "I work night shifts as a nurse in Busan.",
    "birthday": "제 생일은 5월 3일이에요.",
    "guitar": "I play the guitar every weekend with friends.",
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("우리 집 반려동물 이름 기억나?", "cats"),
        ("What do I like to eat?", "food"),
        ("내 생일이 언제였지?", "birthday"),
    ],
)
def test_memory_search_is_semantic_in_postgres(database: str, query: str, expected: str) -> None:
    store = make_store()
    assert isinstance(store, PostgresStore)
    user = unique("fan")
    namespace = memories_namespace(user, "tiny")
    for key, text in MEMORIES.items():
        add_memory(store, user, "tiny", text, key)
    found = store.search(namespace, query=query, limit=3)
    assert found[0].key == expected, [(i.key, i.score) for i in found]
    assert found[0].score is not None and found[0].score > found[-1].score  # type: ignore[operator]
    # The vectors are pgvector rows of the packaged embeddings' size.
    prefix = ".".join(namespace)
    assert rows(
        database, "select count(*), min(vector_dims(embedding)) from store_vectors where prefix = %s", prefix
    )[0] == (len(MEMORIES), 384)


# --- twin interview runs --------------------------------------------------------------------------------------

GUIDE = guide_from_data(
    {
        "id": "g",
        "title": "Tea habits",
        "questions": [{"id": "q1", "text": "How do you drink tea?"}, {"id": "q2", "text": "Why tea?"}],
    }
)
SUFFICIENT = {"verdict": "sufficient", "follow_up": ""}


def test_interview_run_checkpoints_live_in_postgres(database: str) -> None:
    people = people_from(3)
    calls = {"n": 0}

    def twin_reply(messages: list[BaseMessage]) -> str:
        calls["n"] += 1
        if calls["n"] == 4:  # p1's second answer: the process dies mid-interview
            raise RuntimeError("killed")
        return f"answer {calls['n']}"

    with use_models({"twin": scripted(twin_reply), "router": scripted(SUFFICIENT)}):
        run_id = create_interview_run(LOCAL, GUIDE, people, BatchOptions(concurrency=1), run_id=unique("run"))
        with pytest.raises(RuntimeError, match="killed"):
            run_interviews(LOCAL, run_id, progress=False)
    with open_run(LOCAL, run_id) as store:
        threads = str(store.meta("checkpoint_threads"))
        assert store.interviewed() == {"p0"}
    assert threads.startswith(f"{run_id}:") and len(threads) > len(run_id) + 8  # unique per run
    assert not (run_folder(run_id) / "checkpoints.sqlite").exists()
    # p0 finished and was stored (its checkpoints deleted); p1 stopped after its first answer.
    in_postgres = {
        r[0]
        for r in rows(database, "select thread_id from checkpoints where thread_id like %s", f"{run_id}:%")
    }
    assert f"{threads}:p1" in in_postgres and f"{threads}:p0" not in in_postgres

    twin = scripted("later answer")
    with use_models({"twin": twin, "router": scripted(SUFFICIENT)}):
        summary = run_interviews(LOCAL, run_id, progress=False)
    assert summary.ok == summary.stored == 3
    with open_run(LOCAL, run_id) as store:
        transcripts = {t["person_id"]: t for t in store.transcripts()}
    answers = [e["answer"] for e in transcripts["p1"]["transcript"]["transcript"]]
    assert answers == ["answer 3", "later answer"]  # resumed from its Postgres checkpoint
    assert rows(database, "select count(*) from checkpoints where thread_id like %s", f"{run_id}:%") == [(0,)]
