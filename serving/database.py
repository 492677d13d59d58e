"""The app's relational database: a SQLite file (zero setup) or Postgres (DATABASE_URL), one small API.

    db = connect(settings.database_url or settings.personagraph_home / "accounts.sqlite")
    db.executescript(SCHEMA)
    row = db.execute("select role from accounts where user_id = ?", (user_id,)).fetchone()
    with db.transaction() as tx:
        tx.execute("insert into tokens(digest, user_id) values (?, ?)", (digest, user_id))

SQL is written once, with `?` placeholders and SQL that both dialects accept (`INSERT ... ON CONFLICT
(...) DO NOTHING / DO UPDATE SET x = excluded.x`, `TEXT`, `INTEGER`, `REAL`); for Postgres the
placeholders become `%s`. Results are read at once (`Result`), so no cursor outlives its connection.

Postgres connections come from one pool per URL and process (`psycopg_pool.ConnectionPool`,
autocommit), shared by every `Database` on that URL; SQLite gets one connection per `Database`,
with writes serialised by a lock (SQLite allows one writer at a time anyway).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgres"]
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
POOL_MAX_SIZE = 20
SCHEMA_LOCK = 0x70676163  # any number, the same in every process: the advisory lock of schema changes


def is_postgres_url(target: str | Path | None) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


@dataclass
class Result:
    """The rows of one statement (tuples) and how many rows it changed."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowcount: int = -1

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self.rows)


class Executor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


def _to_postgres(sql: str) -> str:
    # Our SQL has no literal "?" or "%"; placeholders become psycopg's.
    return sql.replace("%", "%%").replace("?", "%s")


class Database:
    """A SQLite file or a Postgres database; see the module docstring."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """One statement in its own transaction."""
        with self.transaction() as tx:
            return tx.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.transaction() as tx:
            tx.executemany(sql, rows)

    def executescript(self, script: str) -> None:
        """Statements separated by ";" and no parameters (schemas). On Postgres they run under one
        advisory lock: replicas starting together create tables one at a time (two concurrent
        `create table if not exists` of one table can fail with a unique violation)."""
        with self.transaction() as tx:
            if self.dialect == "postgres":
                tx.execute("select pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
            for statement in script.split(";"):
                if statement.strip():
                    tx.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[Executor]:  # pragma: no cover - overridden
        raise NotImplementedError
        yield

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class _SqliteExecutor:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        cursor = self.conn.execute(sql, tuple(params))
        return Result(cursor.fetchall(), cursor.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, [tuple(row) for row in rows])


class SqliteDatabase(Database):
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Executor]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteExecutor(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    def describe(self) -> str:
        return f"SQLite file {self.path}"


class _PostgresExecutor:
    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        cursor = self.conn.execute(_to_postgres(sql) if params else sql, tuple(params) if params else None)
        rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
        return Result(rows, cursor.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(_to_postgres(sql), [tuple(row) for row in rows])


_POOLS: dict[str, Any] = {}
_POOLS_LOCK = threading.Lock()


def _pool(url: str) -> Any:
    """The process's connection pool for `url` (opened on first use, closed at exit)."""
    from psycopg_pool import ConnectionPool

    with _POOLS_LOCK:
        pool = _POOLS.get(url)
        if pool is None:
            # `check`: a connection Postgres dropped (a restart, a failover) is replaced before it is
            # handed out, so the first request after a restart works instead of failing.
            pool = ConnectionPool(
                url, min_size=1, max_size=POOL_MAX_SIZE, kwargs={"autocommit": True}, open=True, timeout=30,
                check=ConnectionPool.check_connection,
            )  # fmt: skip
            _POOLS[url] = pool
        return pool


def close_pools() -> None:
    """Close every pool this process opened (tests; the app leaves them to the process's exit)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


class PostgresDatabase(Database):
    dialect: Dialect = "postgres"

    def __init__(self, url: str):
        self.url = url
        self._pool = _pool(url)

    @contextmanager
    def transaction(self) -> Iterator[Executor]:
        with self._pool.connection() as conn, conn.transaction():
            yield _PostgresExecutor(conn)

    def close(self) -> None:
        """Nothing to do: the pool is shared by every Database on this URL in the process."""

    def describe(self) -> str:
        from personagraph.serving.redact import redact_url

        return f"Postgres {redact_url(self.url)}"


def connect(target: str | Path) -> Database:
    """Postgres for a postgresql:// URL, else a SQLite file at the path."""
    if is_postgres_url(target):
        return PostgresDatabase(str(target))
    if isinstance(target, str) and "://" in target:
        raise ValueError(
            f"DATABASE_URL: allowed schemes are {', '.join(POSTGRES_SCHEMES)} (or unset for SQLite)"
        )
    return SqliteDatabase(Path(target))
