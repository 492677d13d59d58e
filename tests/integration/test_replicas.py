"""Two app processes (`personagraph app`) on one Postgres + Redis + Chroma server and one model server:
requests alternate between them as a round-robin proxy would send them. A sign-in made on one is
valid on the other, a fan's conversation continues on either, and a survey run claimed by a process
that is then killed (SIGKILL: no clean-up) is taken over and finished by the other one."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from personagraph.memory.redis_server import LocalRedis
from personagraph.serving.postgres_server import LocalPostgres
from personagraph.serving.processes import app_process
from tests.integration.conftest import APP_START_LIMIT_S, BIN

pytestmark = pytest.mark.integration
PASSWORD = "replica password 한글"
USER = "replica_fan"
TURN_TIMEOUT_S = 240.0
LEASE_S = 4


def replica(
    env: dict[str, str], worker: str, log_path: Path
) -> AbstractContextManager[tuple[str, subprocess.Popen[bytes]]]:
    """One `personagraph app` replica with its WORKER_ID (shown as a run's `worker`)."""
    return app_process(env, log_path, worker=worker, start_timeout_s=APP_START_LIMIT_S)


@pytest.fixture
def stack_env(
    real_model_env: dict[str, str],
    postgres_server: LocalPostgres,
    redis_server: LocalRedis,
    chroma_server: str,
) -> dict[str, str]:
    env = {
        **real_model_env,
        "DATABASE_URL": postgres_server.url,
        "REDIS_URL": redis_server.url,
        "CHROMA_URL": chroma_server,
        "RUNS_LEASE_S": str(LEASE_S),
        "RUNS_RESUME_INTERVAL_S": "1",
    }
    full = {**os.environ, **env}
    # What a first start needs (the knowledge index now goes to the Chroma server), and the account,
    # created once in Postgres: both processes read it from there.
    subprocess.run(
        [str(BIN / "personagraph"), "prepare"], env=full, check=True, capture_output=True, timeout=600
    )
    added = subprocess.run(
        [str(BIN / "personagraph"), "accounts", "add", USER, "--role", "user", "--password-stdin"],
        input=PASSWORD + "\n", text=True, env=full, capture_output=True, check=False,
    )  # fmt: skip
    assert added.returncode == 0 or "exists" in added.stderr, added.stderr
    return env


def until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what}")


def test_two_replicas_share_sessions_conversations_and_runs(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    with (
        replica(stack_env, "replica-a", tmp_path / "a.log") as (url_a, process_a),
        replica(stack_env, "replica-b", tmp_path / "b.log") as (url_b, _),
    ):
        # A session made on A is valid on B.
        signed_in = httpx.post(
            f"{url_a}/api/session", json={"user_id": USER, "password": PASSWORD}, timeout=30
        )
        assert signed_in.status_code == 201, signed_in.text
        auth = {"Authorization": f"Bearer {signed_in.json()['token']}"}
        assert httpx.get(f"{url_b}/api/me", headers=auth, timeout=30).json()["user_id"] == USER

        # A conversation started on A continues on B; either shows the whole thread.
        first = httpx.post(
            f"{url_a}/api/chat/send", headers=auth, timeout=TURN_TIMEOUT_S,
            json={"message": "Hi Yuna! My name is Dana and I play the cello.", "persona_id": "stella_yuna"},
        )  # fmt: skip
        assert first.status_code == 200, first.text
        thread_id = first.json()["thread_id"]
        second = httpx.post(
            f"{url_b}/api/chat/send", headers=auth, timeout=TURN_TIMEOUT_S,
            json={"message": "What did I say I play?", "thread_id": thread_id},
        )  # fmt: skip
        assert second.status_code == 200, second.text
        for url in (url_a, url_b):
            history = httpx.get(f"{url}/api/chat/threads/{thread_id}", headers=auth, timeout=30).json()
            assert [m["role"] for m in history["messages"]] == ["user", "assistant", "user", "assistant"]
            assert "cello" in history["messages"][0]["content"]
        memories = httpx.get(f"{url_b}/api/chat/profile/stella_yuna", headers=auth, timeout=30).json()
        assert (
            "Dana" in " ".join(m["text"] for m in memories["memories"])
            or memories["profile"].get("name") == "Dana"
        )

        # A survey run started on A (one person, 14 answers, paced so that it is still running when
        # A dies), visible on B.
        started = httpx.post(
            f"{url_a}/api/twins/runs", headers=auth, timeout=60,
            json={"kind": "survey", "template": "tam_en", "select": ["random:1:7"],
                  "options": {"concurrency": 1, "rate_per_s": 1.0}},
        )  # fmt: skip
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]

        def run_on(url: str) -> dict[str, Any]:
            response = httpx.get(f"{url}/api/twins/runs/{run_id}", headers=auth, timeout=30)
            assert response.status_code == 200, response.text
            return dict(response.json())

        until(lambda: run_on(url_b)["stored"] >= 2, 180, "the run stored its first answers (seen from B)")
        before_kill = run_on(url_b)
        assert before_kill["state"] == "running" and before_kill["active"], before_kill
        assert before_kill["worker"] == "replica-a", before_kill
        assert before_kill["stored"] < before_kill["expected"], (
            "the run finished before the kill: slow it more"
        )

        # A dies without any clean-up; its lease expires and B finishes the run.
        process_a.send_signal(signal.SIGKILL)
        process_a.wait(timeout=30)
        done = until(lambda: (info := run_on(url_b))["state"] == "done" and info, 300, "B finished the run")
        assert done["worker"] == "replica-b", done
        assert done["stored"] == done["expected"] == before_kill["expected"]
        results = httpx.get(f"{url_b}/api/twins/runs/{run_id}/results", headers=auth, timeout=60)
        assert results.status_code == 200, results.text
