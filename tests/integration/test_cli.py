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
