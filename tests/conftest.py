"""Test environment: offline, no telemetry, every test's state under a temporary home."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

OFFLINE_ENV = {
    "LANGSMITH_TRACING": "false",
    "LANGSMITH_TEST_TRACKING": "false",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "1",
    "ANONYMIZED_TELEMETRY": "False",
}
os.environ.update(OFFLINE_ENV)
# Settings from a developer's .env or shell must not leak into tests.
for _key in list(os.environ):
    if _key.startswith(
        ("LLM_", "DATABASE_URL", "REDIS_URL", "STORE_URL", "CHROMA_URL", "LOCAL_MODEL", "WORKER_ID")
    ):
        del os.environ[_key]
# Tests script the router model's intent call; tests of the trained chat intent classifier (the
# product's default, "hybrid") set CHAT_INTENT_ROUTER themselves.
os.environ["CHAT_INTENT_ROUTER"] = "router"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Fresh settings and a temporary PERSONAGRAPH_HOME for every test."""
    from personagraph.memory.vectors import vector_client
    from personagraph.serving.settings import get_settings

    monkeypatch.setenv("PERSONAGRAPH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no stray .env from the repo root
    get_settings.cache_clear()
    vector_client.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()
    vector_client.cache_clear()
