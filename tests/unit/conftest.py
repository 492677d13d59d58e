"""Unit-test fixtures: a tiny persona in a temporary data directory, and node runtimes."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.runtime import Runtime
from langgraph.store.memory import InMemoryStore

from personagraph.nodes.context import ChatContext

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPO_DATA = Path(__file__).resolve().parents[2] / "data"


def _clear_persona_caches() -> None:
    from personagraph.personas.model import load_persona, load_story, load_world
    from personagraph.serving.settings import get_settings

    get_settings.cache_clear()
    load_persona.cache_clear()
    load_world.cache_clear()
    load_story.cache_clear()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """DATA_DIR with only the `tiny` persona and the shipped safety rules."""
    root = tmp_path / "data"
    shutil.copytree(FIXTURES / "personas" / "tiny", root / "personas" / "tiny")
    shutil.copytree(REPO_DATA / "safety", root / "safety")
    monkeypatch.setenv("DATA_DIR", str(root))
    _clear_persona_caches()
    yield root
    _clear_persona_caches()


@pytest.fixture
def make_runtime(data_dir: Path) -> Callable[..., Runtime[ChatContext]]:
    """Runtime for calling one node directly: `make_runtime(store=..., **ChatContext fields)`."""

    def make(store: Any = None, **context: Any) -> Runtime[ChatContext]:
        context.setdefault("persona_id", "tiny")
        context.setdefault("user_id", "fan1")
        return Runtime(context=ChatContext(**context), store=store if store is not None else InMemoryStore())

    return make
