"""Checkpointer (thread state) and store (long-term memory) factories.

| need          | default (no setup)         | when configured (first match wins)                          |
|---------------|----------------------------|-------------------------------------------------------------|
| checkpointer  | SQLite file                | DATABASE_URL: PostgresSaver; REDIS_URL: Redis saver (TTL)   |
| store         | SQLite file + vector index | STORE_URL (redis://, postgresql://, sqlite:///PATH);        |
|               |                            | DATABASE_URL: PostgresStore with a pgvector index           |

The store indexes the `text` field of every item with the packaged multilingual embeddings
(`store_index_config`), so long-term memories are searchable semantically on every backend;
`langgraph.json` points Studio's store at the same `embeddings` object.

Postgres: the official `PostgresSaver` and `PostgresStore`. Every saver and store a process makes
for one URL share one `psycopg_pool.ConnectionPool` (autocommit, prepare_threshold=0, dict rows;
at most POOL_MAX_SIZE connections, each checked before it is handed out), so Gradio workers and
API requests use them from many threads, and `make_checkpointer()` may be called per request
without opening connections. Tables are created (`setup()`) once per process and URL, under a
Postgres advisory lock, so replicas starting together do not race on the migrations. The pools are
closed at process exit (an `atexit` hook); one left open only holds idle connections, which
Postgres drops when the process ends. Thread ids and store namespaces are the only partitioning:
processes on one database share every thread and memory, which is what lets replicas take turns.
"""

from __future__ import annotations

import atexit
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.base import BaseStore, IndexConfig
from langgraph.store.sqlite import SqliteStore

from personagraph.memory.embeddings import DIMS, E5Embeddings
from personagraph.serving.database import POSTGRES_SCHEMES
from personagraph.serving.redact import redact_text, redact_url
from personagraph.serving.settings import Settings, get_settings

if TYPE_CHECKING:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.store.postgres import PostgresStore
    from psycopg import Connection
    from psycopg.rows import DictRow
    from psycopg_pool import ConnectionPool

STORE_SCHEMES = ("redis://", "rediss://", *POSTGRES_SCHEMES, "sqlite:///PATH")
POOL_MAX_SIZE = 20  # per process and URL; two replicas stay far below Postgres's default of 100
CONNECT_TIMEOUT_S = 10
SETUP_WAIT_S = 120.0  # how long a process waits for another one creating the tables
_SETUP_LOCK_KEY = 0x5047_4D45  # pg_advisory_lock key held while the tables are created ("PGME")

# The store's embeddings (the packaged multilingual e5): `langgraph.json`'s store.index.embed names it.
embeddings = E5Embeddings()


class DatabaseUnavailableError(RuntimeError):
    """Postgres did not answer; the message names the setting, the URL without its password, the reason."""


def store_index_config() -> IndexConfig:
    return {"dims": DIMS, "embed": embeddings, "fields": ["text"]}


def database_url(settings: Settings) -> str | None:
    """DATABASE_URL when set (a ValueError naming it and the allowed schemes when it is not Postgres)."""
    url = settings.database_url
    if not url:
        return None
    if not url.startswith(POSTGRES_SCHEMES):
        raise ValueError(
            f"DATABASE_URL={redact_url(url)}: allowed schemes are {', '.join(POSTGRES_SCHEMES)} "
            "(or leave it unset for SQLite files under PERSONAGRAPH_HOME)"
        )
    return url


# --- Postgres ------------------------------------------------------------------------------------------

_POOLS: dict[str, ConnectionPool[Connection[DictRow]]] = {}
_SET_UP: set[tuple[str, str]] = set()  # (what, url) whose tables this process has created
_LOCK = threading.Lock()
_atexit_registered = False


def _check_reachable(url: str, setting: str) -> None:
    """A clear error, without the password, when Postgres does not answer (instead of a pool timeout)."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S):
            pass
    except psycopg.Error as exc:
        reason = redact_text(str(exc).strip())
        raise DatabaseUnavailableError(
            f"{setting}: cannot connect to Postgres at {redact_url(url)}: {reason}"
        ) from None


def postgres_pool(url: str, setting: str = "DATABASE_URL") -> ConnectionPool[Connection[DictRow]]:
    """This process's pool for `url`, opened on first use (DatabaseUnavailableError when Postgres does
    not answer then); shared by every saver and store made for the URL, closed at exit."""
    global _atexit_registered
    from psycopg import Connection
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    with _LOCK:
        pool = _POOLS.get(url)
        if pool is not None and not pool.closed:
            return pool
        _check_reachable(url, setting)
        pool = cast(
            "ConnectionPool[Connection[DictRow]]",
            ConnectionPool(
                url,
                connection_class=Connection,
                kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
                min_size=1,
                max_size=POOL_MAX_SIZE,
                check=ConnectionPool.check_connection,  # a connection Postgres dropped is replaced
                name="personagraph-langgraph",
                open=True,
            ),
        )
        _POOLS[url] = pool
        if not _atexit_registered:
            atexit.register(close_pools)
            _atexit_registered = True
        return pool


def close_pools() -> None:
    """Close every pool of this module (at exit; tests). Savers and stores made before stop working."""
    with _LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
        _SET_UP.clear()
    for pool in pools:
        pool.close()


def _setup_once(what: str, url: str, target: PostgresSaver | PostgresStore) -> None:
    """`target.setup()` once per process and URL, under an advisory lock shared by all processes.

    The lock is polled (`pg_try_advisory_lock`), not waited for: the store's migrations run
    CREATE INDEX CONCURRENTLY, which waits for every open transaction, and a session blocked in
    `pg_advisory_lock` is one, so two processes setting up at once would wait for each other forever.
    """
    with _LOCK:
        if (what, url) in _SET_UP:
            return
    pool = postgres_pool(url)
    with pool.connection() as conn:
        deadline = time.monotonic() + SETUP_WAIT_S
        while not _try_lock(conn):
            if time.monotonic() > deadline:
                raise DatabaseUnavailableError(
                    f"DATABASE_URL: another process has been creating the LangGraph tables in "
                    f"{redact_url(url)} for over {SETUP_WAIT_S:.0f} s (advisory lock {_SETUP_LOCK_KEY})"
                )
            time.sleep(0.1)
        try:
            target.setup()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))
    with _LOCK:
        _SET_UP.add((what, url))


def _try_lock(conn: Connection[DictRow]) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (_SETUP_LOCK_KEY,)).fetchone()
    return bool(row and row["locked"])


def postgres_checkpointer(url: str) -> PostgresSaver:
    from langgraph.checkpoint.postgres import PostgresSaver

    saver = PostgresSaver(postgres_pool(url))
    _setup_once("checkpoints", url, saver)
    return saver


def postgres_store(url: str, setting: str = "DATABASE_URL") -> PostgresStore:
    from langgraph.store.postgres import PostgresStore
    from langgraph.store.postgres.base import PostgresIndexConfig

    index = cast(PostgresIndexConfig, {**store_index_config(), "distance_type": "cosine"})
    store = PostgresStore(postgres_pool(url, setting), index=index)
    _setup_once("store", url, store)
    return store


# --- SQLite ----------------------------------------------------------------------------------------------


def _sqlite(path: str) -> sqlite3.Connection:
    # One connection shared by the app's threads; the savers serialise access with their own locks.
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


def _sqlite_with_extensions(path: str) -> sqlite3.Connection:
    """A connection that can load sqlite-vec (Python builds without extension loading are common)."""
    import pysqlite3.dbapi2 as sqlite_ext

    conn = sqlite_ext.connect(path, check_same_thread=False, isolation_level=None)
    return conn  # type: ignore[no-any-return]


# --- the factories --------------------------------------------------------------------------------------


def make_checkpointer(settings: Settings | None = None) -> BaseCheckpointSaver[Any]:
    """PostgresSaver when DATABASE_URL is set, else the Redis saver (with TTL) when REDIS_URL is set,
    else a SQLite file under PERSONAGRAPH_HOME."""
    settings = settings or get_settings()
    url = database_url(settings)
    if url:
        return postgres_checkpointer(url)
    if settings.redis_url:
        from langgraph.checkpoint.redis import RedisSaver

        saver = RedisSaver(
            redis_url=settings.redis_url,
            ttl={"default_ttl": settings.checkpoint_ttl_minutes, "refresh_on_read": True},
        )
        saver.setup()
        return saver
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    saver_sqlite = SqliteSaver(_sqlite(str(settings.state_dir / "checkpoints.sqlite")))
    saver_sqlite.setup()
    return saver_sqlite


def make_store(settings: Settings | None = None) -> BaseStore:
    """Long-term memory store with semantic search: STORE_URL when set (Redis, Postgres or a SQLite
    file), else PostgresStore with pgvector when DATABASE_URL is set, else a SQLite file."""
    settings = settings or get_settings()
    url = settings.store_url
    if url and not url.startswith((*STORE_SCHEMES[:-1], "sqlite")):
        raise ValueError(f"STORE_URL={redact_url(url)}: allowed schemes are {', '.join(STORE_SCHEMES)}")
    if url and url.startswith(("redis://", "rediss://")):
        from langgraph.store.redis import RedisStore
        from redis import Redis

        redis_store = RedisStore(Redis.from_url(url), index=store_index_config())  # type: ignore[arg-type]
        redis_store.setup()
        return redis_store
    if url and url.startswith(POSTGRES_SCHEMES):
        return postgres_store(url, "STORE_URL")
    database = database_url(settings)
    if not url and database:
        return postgres_store(database)
    path = url.removeprefix("sqlite:///") if url else str(settings.state_dir / "store.sqlite")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    sqlite_store = SqliteStore(_sqlite_with_extensions(path), index=store_index_config())  # type: ignore[arg-type]
    sqlite_store.setup()
    return sqlite_store
