"""`personagraph chat` end to end in a subprocess, against the real model server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from personagraph.accounts.identity import CLI_CALLER
from personagraph.services.chat import ChatService
from personagraph.serving.settings import get_settings

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).parent / "personagraph")


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def test_chat_continues_a_thread(real_model_env: dict[str, str]) -> None:
    first = run_cli(real_model_env, "chat", "--message", "Hi Yuna! I'm Minji.", "--thread", "cli-t1")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip()
    second = run_cli(real_model_env, "chat", "--message", "What's new with you?", "--thread", "cli-t1")
    assert second.returncode == 0, second.stderr
    get_settings.cache_clear()
    history = ChatService().history(CLI_CALLER, "cli-t1")  # the CLI is the `local` operator
    assert [m.type for m in history] == ["human", "ai", "human", "ai"]
    assert history[0].content == "Hi Yuna! I'm Minji."


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--message", "   "], "message"),
        (["--message", "x" * 2001], "message"),
        (["--message", "hi", "--persona", "nobody"], "persona"),
        (["--message", "hi", "--thread", "bad thread id!"], "thread_id"),
    ],
)
def test_bad_input_is_a_clear_error(real_model_env: dict[str, str], args: list[str], field: str) -> None:
    result = run_cli(real_model_env, "chat", *args)
    assert result.returncode == 2
    assert field in result.stderr and "Traceback" not in result.stderr


def test_model_server_down_keeps_thread_usable(real_model_env: dict[str, str]) -> None:
    ok = run_cli(real_model_env, "chat", "--message", "Hello there!", "--thread", "cli-down")
    assert ok.returncode == 0, ok.stderr
    down = {**real_model_env, "LLM_BASE_URL": "http://127.0.0.1:9/v1", "LLM_MAX_RETRIES": "0"}
    failed = run_cli(down, "chat", "--message", "Are you there?", "--thread", "cli-down")
    assert failed.returncode == 1
    assert "http://127.0.0.1:9/v1" in failed.stderr and "retry" in failed.stderr
    assert "Traceback" not in failed.stderr
    retried = run_cli(real_model_env, "chat", "--message", "Are you there?", "--thread", "cli-down")
    assert retried.returncode == 0, retried.stderr
    get_settings.cache_clear()
    history = ChatService().history(CLI_CALLER, "cli-down")
    assert [m.type for m in history] == ["human", "ai", "human", "ai"]


def test_prepare_builds_every_index_a_first_start_needs(
    real_model_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new home after `prepare`: the CRM index is there and current, so the first CRM message
    embeds nothing (building it at that message took 40 s on 2 cores)."""
    from personagraph.crm.catalog import load_catalog
    from personagraph.crm.index import INDEX_VERSION, PRODUCTS, REVIEWS, TONE, ensure_crm_index
    from personagraph.memory.vectors import chroma_client

    env = {**real_model_env, "PERSONAGRAPH_HOME": str(tmp_path / "home")}
    prepared = run_cli(env, "prepare")
    assert prepared.returncode == 0, prepared.stderr
    catalog = load_catalog()
    assert f"{len(catalog.reviews)} reviews" in prepared.stdout, prepared.stdout
    monkeypatch.setenv("PERSONAGRAPH_HOME", env["PERSONAGRAPH_HOME"])
    get_settings.cache_clear()
    client = chroma_client()
    assert {PRODUCTS, REVIEWS, TONE} <= {c.name for c in client.list_collections()}
    reviews = client.get_collection(REVIEWS)
    assert (reviews.metadata or {}).get("fingerprint") == f"{catalog.fingerprint}-v{INDEX_VERSION}"
    assert reviews.count() == len(catalog.reviews)
    assert ensure_crm_index(client, catalog).reviews.id == reviews.id  # current: not rebuilt
    get_settings.cache_clear()
