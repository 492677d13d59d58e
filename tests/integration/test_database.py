"""serving.database: the same SQL on a SQLite file and on a real Postgres (LocalPostgres)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from personagraph.serving.database import Database, connect
from personagraph.serving.postgres_server import LocalPostgres

SCHEMA = """
CREATE TABLE IF NOT EXISTS {t} (k TEXT PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS {t}_log (k TEXT NOT NULL, note TEXT)
"""


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, str]]:
    table = "t_" + uuid.uuid4().hex[:12]
    if request.param == "sqlite":
        db = connect(tmp_path / "test.sqlite")
    else:
        server: LocalPostgres = request.getfixturevalue("postgres_server")
        db = connect(server.url)
    db.executescript(SCHEMA.format(t=table))
    yield db, table
    db.close()


def test_insert_upsert_and_select(database: tuple[Database, str]) -> None:
    db, t = database
    assert (
        db.execute(f"INSERT INTO {t}(k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING", ("a", "1")).rowcount
        == 1
    )
    assert (
        db.execute(f"INSERT INTO {t}(k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING", ("a", "2")).rowcount
        == 0
    )
    db.execute(
        f"INSERT INTO {t}(k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", ("a", "3")
    )
    assert db.execute(f"SELECT v FROM {t} WHERE k = ?", ("a",)).fetchone() == ("3",)
    assert db.execute(f"SELECT v FROM {t} WHERE k = ?", ("missing",)).fetchone() is None
    db.executemany(f"INSERT INTO {t}(k, v) VALUES (?, ?)", [("b", "한국어"), ("c", "50% off?")])
    assert db.execute(f"SELECT k, v FROM {t} ORDER BY k").fetchall() == [
        ("a", "3"),
        ("b", "한국어"),
        ("c", "50% off?"),
    ]


def test_a_failed_transaction_changes_nothing(database: tuple[Database, str]) -> None:
    db, t = database
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.execute(f"INSERT INTO {t}(k, v) VALUES (?, ?)", ("x", "1"))
        tx.execute(f"INSERT INTO {t}_log(k, note) VALUES (?, ?)", ("x", "made"))
        raise RuntimeError("boom")
    assert db.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
    assert db.execute(f"SELECT count(*) FROM {t}_log").fetchone() == (0,)


def test_concurrent_increments_are_not_lost(database: tuple[Database, str]) -> None:
    db, t = database
    db.execute(f"INSERT INTO {t}(k, v, n) VALUES (?, ?, ?)", ("counter", "", 0))

    def bump() -> None:
        for _ in range(20):
            db.execute(f"UPDATE {t} SET n = n + 1 WHERE k = ?", ("counter",))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db.execute(f"SELECT n FROM {t} WHERE k = ?", ("counter",)).fetchone() == (80,)


def test_other_url_schemes_are_refused_without_echoing_the_url() -> None:
    with pytest.raises(ValueError, match="DATABASE_URL: allowed schemes") as error:
        connect("mysql://user:secret@host/db")
    assert "secret" not in str(error.value)


def test_describe_hides_the_password(postgres_server: LocalPostgres) -> None:
    described = connect(postgres_server.url).describe()
    assert postgres_server.password not in described
    assert str(postgres_server.port) in described


def test_local_postgres_keeps_its_password_and_data_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    with LocalPostgres(data_dir=data) as first:
        url = first.url
        connect(url).executescript("CREATE TABLE kept (v TEXT)")
        connect(url).execute("INSERT INTO kept(v) VALUES (?)", ("still here",))
    assert (tmp_path / "pg.password").stat().st_mode & 0o077 == 0
    with LocalPostgres(port=first.port, data_dir=data) as second:
        assert second.url == url
        assert connect(url + "?application_name=second").execute("SELECT v FROM kept").fetchall() == [
            ("still here",)
        ]


def test_local_postgres_refuses_a_wrong_password(postgres_server: LocalPostgres) -> None:
    import psycopg

    wrong = postgres_server.url.replace(postgres_server.password, "wrong-password")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(wrong, connect_timeout=5).close()
