"""`personagraph stack up|status|down` end to end, with the small test model (SmolLM2-135M).

Real processes on free loopback ports: Postgres, Redis, a Chroma server, the embedded model server,
`personagraph prepare`, two app replicas and the proxy, owned by the stack's background supervisor.
Checked: the proxy answers /health and /ready, spreads requests over both replicas and pins the
Gradio app to one (moving it when that replica is gone), `stack status` shows every service, no
secret is printed or written outside the mode-600 files, and `stack down` leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from personagraph.serving.stack import (
    REPLICAS,
    STICKY_COOKIE,
    WORKER_HEADER,
    StackPaths,
    StackState,
    pid_alive,
    read_state,
)
from tests.integration.conftest import descendants

pytestmark = pytest.mark.integration
PERSONAGRAPH = str(Path(sys.executable).parent / "personagraph")
UP_LIMIT_S = 600  # the goal is about 90 s; a loaded 2-core machine takes longer (prepare builds indexes)


def _stack(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLM_MAX_TOKENS": "32"}
    return subprocess.run(
        [PERSONAGRAPH, "stack", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackPaths, StackState, str]]:
    """A running stack (module scope); yields (paths, state at start, the output of `stack up`)."""
    home = tmp_path_factory.mktemp("stack-home")
    paths = StackPaths(home)
    up = _stack("up", "--home", str(home), "--free-ports", "--model", "smollm2-135m",
                "--timeout", str(UP_LIMIT_S), timeout=UP_LIMIT_S + 60)  # fmt: skip
    try:
        assert up.returncode == 0, f"{up.stdout}\n{up.stderr}"
        state = read_state(paths)
        assert state is not None and state.status == "ready"
        yield paths, state, up.stdout + up.stderr
    finally:
        state = read_state(paths)
        _stack("down", "--home", str(home))
        if state is not None and pid_alive(state.supervisor_pid):  # never leave a stack behind
            os.killpg(state.supervisor_pid, signal.SIGKILL)


def _worker(reply: httpx.Response) -> str:
    assert reply.status_code == 200, reply.text
    return reply.headers[WORKER_HEADER]


def test_proxy_spreads_api_requests_and_pins_the_app(stack: tuple[StackPaths, StackState, str]) -> None:
    paths, state, _ = stack
    proxy = state.proxy_url
    with httpx.Client(base_url=proxy, timeout=30.0, trust_env=False) as client:
        workers = [_worker(client.get("/health")) for _ in range(4)]
        assert set(workers) == set(REPLICAS)  # round robin over both replicas
        assert workers[0] != workers[1]
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"

        page = client.get("/")  # the Gradio app: pinned with a cookie
        pinned = _worker(page)
        assert client.cookies.get(STICKY_COOKIE) == pinned
        assert {_worker(client.get("/config")) for _ in range(3)} == {pinned}

    status = _stack("status", "--home", str(paths.home))
    assert status.returncode == 0, status.stdout + status.stderr
    for name in ("postgres", "redis", "chroma", "model", *REPLICAS, "proxy"):
        assert f"  {name} " in status.stdout and "running" in status.stdout


def test_nothing_secret_is_printed_or_left_in_readable_files(
    stack: tuple[StackPaths, StackState, str],
) -> None:
    paths, _, output = stack
    secrets = [f.read_text().strip() for f in paths.secrets.iterdir()]
    assert len(secrets) == 3
    status = _stack("status", "--home", str(paths.home), "--json")
    readable = [output, status.stdout, paths.state.read_text(), (paths.logs / "supervisor.log").read_text()]
    for secret in secrets:
        assert not any(secret in text for text in readable)
        assert secret in paths.env_file.read_text()  # the replicas' settings, for CLI commands
    for private in (paths.env_file, paths.state, *paths.secrets.iterdir()):
        assert private.stat().st_mode & 0o077 == 0, private


def test_a_replica_that_is_gone_is_skipped(stack: tuple[StackPaths, StackState, str]) -> None:
    paths, state, _ = stack
    gone, other = REPLICAS
    os.kill(state.services[gone].pid or 0, signal.SIGTERM)  # its process supervisor stops the replica
    deadline = time.monotonic() + 60
    while pid_alive(state.services[gone].pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    pinned_to_gone = {STICKY_COOKIE: gone}
    with httpx.Client(
        base_url=state.proxy_url, timeout=30.0, trust_env=False, cookies=pinned_to_gone
    ) as client:
        assert {_worker(client.get("/health")) for _ in range(3)} == {other}
        moved = client.get("/")
        assert _worker(moved) == other  # the browser moves (and signs in again)
        assert moved.cookies[STICKY_COOKIE] == other
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = _stack("status", "--home", str(paths.home))
        if "exited" in status.stdout:
            break
        time.sleep(0.5)
    assert status.returncode == 1 and "exited" in status.stdout


def test_stack_down_stops_every_process(stack: tuple[StackPaths, StackState, str]) -> None:
    paths, state, _ = stack
    processes = descendants(state.supervisor_pid)
    assert len(processes) >= 6, processes  # postgres, redis, chroma, model, a replica, the proxy, ...
    down = _stack("down", "--home", str(paths.home))
    assert down.returncode == 0, down.stdout + down.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(pid_alive(p) for p in [state.supervisor_pid, *processes]):
        time.sleep(0.2)
    left = {pid: command for pid, command in processes.items() if pid_alive(pid)}
    assert not pid_alive(state.supervisor_pid) and not left, left
    assert not paths.state.exists()
    assert _stack("status", "--home", str(paths.home)).returncode == 1
