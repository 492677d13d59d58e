"""Which checkpointer and store the settings choose, the errors for a bad or unreachable DATABASE_URL,
and langgraph.json's store index (Studio's memory search) matching the app's. Postgres itself is
exercised in tests/integration/test_postgres_memory.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import Embeddings
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.sqlite import SqliteStore

from personagraph.memory import persistence
from personagraph.memory.embeddings import DIMS
from personagraph.memory.persistence import DatabaseUnavailableError, make_checkpointer, make_store
from personagraph.serving.processes import free_port
from personagraph.serving.settings import REPO_ROOT, get_settings

SECRET = "pw-never-shown"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set persistence variables (the others unset) and reset the cached settings."""

    def set_env(**values: str) -> None:
        for name in ("DATABASE_URL", "REDIS_URL", "STORE_URL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    return set_env


@pytest.fixture
def fake_postgres(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record the Postgres saver/store the factories would make (no server needed)."""
    made: list[tuple[str, str]] = []

    def checkpointer(url: str) -> str:
        made.append(("checkpointer", url))
        return "postgres-saver"

    def store(url: str, setting: str = "DATABASE_URL") -> str:
        made.append(("store", setting))
        return "postgres-store"

    monkeypatch.setattr(persistence, "postgres_checkpointer", checkpointer)
    monkeypatch.setattr(persistence, "postgres_store", store)
    return made


def test_sqlite_is_the_default(env: Any, isolated_home: Path) -> None:
    env()
    saver = make_checkpointer()
    store = make_store()
    assert isinstance(saver, SqliteSaver) and isinstance(store, SqliteStore)
    assert {"checkpoints.sqlite", "store.sqlite"} <= {p.name for p in (isolated_home / "state").iterdir()}


def test_database_url_wins_over_redis_for_the_checkpointer(env: Any, fake_postgres: list[Any]) -> None:
    url = f"postgresql://u:{SECRET}@127.0.0.1:5432/db"
    env(DATABASE_URL=url, REDIS_URL="redis://127.0.0.1:6379/0")
    assert make_checkpointer() == "postgres-saver"
    assert make_store() == "postgres-store"
    assert fake_postgres == [("checkpointer", url), ("store", "DATABASE_URL")]


def test_store_url_wins_over_database_url_for_the_store(
    env: Any, fake_postgres: list[Any], tmp_path: Path
) -> None:
    env(DATABASE_URL="postgres://u@127.0.0.1/db", STORE_URL=f"sqlite:///{tmp_path / 'explicit.sqlite'}")
    assert isinstance(make_store(), SqliteStore)
    assert (tmp_path / "explicit.sqlite").is_file()
    env(DATABASE_URL="postgres://u@127.0.0.1/db", STORE_URL="postgresql://other@127.0.0.1/mem")
    assert make_store() == "postgres-store"
    assert fake_postgres == [("store", "STORE_URL")]


@pytest.mark.parametrize("url", [f"mysql://u:{SECRET}@db/x", f"sqlite:///{SECRET}.db", "localhost:5432"])
def test_a_database_url_that_is_not_postgres_is_refused(env: Any, url: str) -> None:
    env(DATABASE_URL=url)
    for factory in (make_checkpointer, make_store):
        with pytest.raises(
            ValueError, match=r"^DATABASE_URL=.*allowed schemes are postgresql://, postgres://"
        ) as caught:
            factory()
        assert f":{SECRET}@" not in str(caught.value)


def test_a_bad_store_url_is_refused_without_its_password(env: Any) -> None:
    env(STORE_URL=f"mongodb://u:{SECRET}@db/x")
    with pytest.raises(ValueError, match=r"^STORE_URL=mongodb://u:\*\*\*@db/x: allowed schemes are redis://"):
        make_store()


def test_postgres_that_does_not_answer_is_a_clear_error(env: Any) -> None:
    url = f"postgresql://personagraph:{SECRET}@127.0.0.1:{free_port()}/personagraph"
    env(DATABASE_URL=url)
    for factory in (make_checkpointer, make_store):
        with pytest.raises(DatabaseUnavailableError) as caught:
            factory()
        message = str(caught.value)
        assert message.startswith(
            "DATABASE_URL: cannot connect to Postgres at postgresql://personagraph:***@"
        )
        assert "refused" in message.lower()
        assert SECRET not in message and caught.value.__cause__ is None and caught.value.__suppress_context__
    assert url not in persistence._POOLS  # nothing half-open is kept (other tests may hold pools of theirs)


def test_langgraph_json_store_index_is_the_apps() -> None:
    """`langgraph dev` loads `embed` as a file path (relative to where it runs: the repository root)."""
    config = json.loads((REPO_ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert config["env"] == ".env"  # optional: `langgraph dev` starts without the file
    index = config["store"]["index"]
    app = persistence.store_index_config()
    assert index["dims"] == app["dims"] == DIMS
    assert index["fields"] == app["fields"] == ["text"]
    path, name = index["embed"].rsplit(":", 1)
    spec = importlib.util.spec_from_file_location("studio_embeddings", REPO_ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    embeddings = getattr(module, name)
    assert isinstance(embeddings, Embeddings)  # an instance: a class would be called as a function
    assert type(embeddings).__name__ == type(app["embed"]).__name__ == "E5Embeddings"
    assert len(embeddings.embed_query("팬 메모리")) == DIMS
