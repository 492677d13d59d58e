"""Checkpointer (thread state) and store (long-term memory) factories.

| need          | default (no setup)        | when configured                                   |
|---------------|---------------------------|---------------------------------------------------|
| checkpointer  | SQLite file               | REDIS_URL: official Redis saver, per-thread TTL   |
| store         | SQLite file + vector index| STORE_URL=redis://... or postgresql://...         |

The store indexes the `text` field of every item with the packaged multilingual embeddings, so
long-term memories are searchable semantically.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.base import BaseStore, IndexConfig
from langgraph.store.sqlite import SqliteStore

from personagraph.memory.embeddings import DIMS, E5Embeddings
from personagraph.serving.settings import Settings, get_settings


def store_index_config() -> IndexConfig:
    return {"dims": DIMS, "embed": E5Embeddings(), "fields": ["text"]}


def _sqlite(path: str) -> sqlite3.Connection:
    # One connection shared by the app's threads; the savers serialise access with their own locks.
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


def _sqlite_with_extensions(path: str) -> sqlite3.Connection:
    """A connection that can load sqlite-vec (Python builds without extension loading are common)."""
    import pysqlite3.dbapi2 as sqlite_ext

    conn = sqlite_ext.connect(path, check_same_thread=False, isolation_level=None)
    return conn  # type: ignore[no-any-return]


def make_checkpointer(settings: Settings | None = None) -> BaseCheckpointSaver[Any]:
    """SQLite checkpointer by default; the Redis checkpointer (with TTL) when REDIS_URL is set."""
    settings = settings or get_settings()
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
    """Long-term memory store with semantic search: SQLite by default, Redis or Postgres by STORE_URL."""
    settings = settings or get_settings()
    url = settings.store_url
    if url and url.startswith(("redis://", "rediss://")):
        from langgraph.store.redis import RedisStore
        from redis import Redis

        redis_store = RedisStore(Redis.from_url(url), index=store_index_config())  # type: ignore[arg-type]
        redis_store.setup()
        return redis_store
    if url and url.startswith(("postgres://", "postgresql://")):
        try:
            from langgraph.store.postgres import PostgresStore
            from psycopg import Connection
            from psycopg.rows import dict_row
        except ImportError as exc:
            raise RuntimeError(
                "STORE_URL is a Postgres URL but the Postgres store is not installed: "
                "pip install langgraph-checkpoint-postgres 'psycopg[binary]'"
            ) from exc
        conn = Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        pg_store = PostgresStore(conn, index=store_index_config())  # type: ignore[arg-type]
        pg_store.setup()
        return pg_store
    if url and not url.startswith("sqlite"):
        raise ValueError(f"STORE_URL={url!r}: allowed schemes are redis://, postgresql://, sqlite:///PATH")
    path = url.removeprefix("sqlite:///") if url else str(settings.state_dir / "store.sqlite")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    sqlite_store = SqliteStore(_sqlite_with_extensions(path), index=store_index_config())  # type: ignore[arg-type]
    sqlite_store.setup()
    return sqlite_store
