"""`personagraph stack ...`: the whole local stack with one command, and the pieces its containers run.

personagraph stack up [--home DIR] [--model M] [--free-ports] [--insight]   start everything, print the URLs
personagraph stack status [--home DIR] [--json]      what runs (pids, ports, health)
personagraph stack down [--home DIR]                 stop everything
personagraph stack compose                           print deploy/compose.yaml (made from the same spec)
personagraph stack proxy --port P --upstream NAME=URL ...   the round-robin proxy (foreground)
personagraph stack serve-model --host H --port P [--model M]  the embedded model server (foreground)

`stack up` starts a background supervisor (`stack supervise`, in its own session) that owns every
service: Postgres, Redis, a Chroma server, the embedded model server, `personagraph prepare` once,
two app replicas and the proxy, all on 127.0.0.1 (serving/stack.py has the ports and variables).
Each service runs under serving/processes.py, so nothing outlives the supervisor; `stack down` is a
SIGTERM to it. Its files live in HOME/stack/: the state file, the secrets it generated once (mode
600), the data of Postgres, Redis and Chroma, logs, and stack.env (the replicas' settings, mode 600)
for running other commands against the stack: `set -a; . HOME/stack/stack.env; set +a`.
Exit codes: 0 ok, 1 the stack failed or is not running, 2 invalid input.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the stack's modules load when a stack command runs, not with every `personagraph` command
    from personagraph.serving import stack as spec

UP_TIMEOUT_S = 1800.0  # the first start may join the 1.1 GB model and build every index
APP_READY_TIMEOUT_S = 600.0
PREPARE_TIMEOUT_S = 1800.0


def add_stack_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "stack", help="the whole local stack: Postgres, Redis, Chroma, model, 2 app replicas, proxy"
    )
    sub = parser.add_subparsers(
        dest="stack_command", required=True, metavar="{up,down,status,compose,proxy,serve-model}"
    )
    home_help = (
        "the replicas' PERSONAGRAPH_HOME; the stack's files go in HOME/stack (default: PERSONAGRAPH_HOME)"
    )

    up = sub.add_parser(
        "up", help="start the stack in the background, wait until it is ready, print the URLs"
    )
    up.add_argument("--home", default=None, help=home_help)
    up.add_argument(
        "--model", default=None, help="embedded model: qwen2.5-coder-1.5b (default), smollm2-135m or a .gguf"
    )
    up.add_argument(
        "--free-ports", action="store_true", help="free loopback ports instead of 7860-7862, 5432, ..."
    )
    up.add_argument(
        "--insight", action="store_true", help="also load the insight history and run 2 consumers"
    )
    up.add_argument("--timeout", type=float, default=UP_TIMEOUT_S, help="seconds to wait for a ready stack")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop every process of the stack")
    down.add_argument("--home", default=None, help=home_help)
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="what runs: services, ports, pids, health")
    status.add_argument("--home", default=None, help=home_help)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    compose = sub.add_parser("compose", help="print deploy/compose.yaml, made from the stack's spec")
    compose.set_defaults(func=cmd_compose)

    proxy = sub.add_parser("proxy", help="run the round-robin proxy in front of the replicas (foreground)")
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=None, help="default: 7860 (the spec's proxy port)")
    proxy.add_argument("--upstream", action="append", required=True, metavar="NAME=URL",
                       help="a replica, e.g. app1=http://127.0.0.1:7861 (repeat)")  # fmt: skip
    proxy.set_defaults(func=cmd_proxy)

    model = sub.add_parser(
        "serve-model",
        help="run the embedded model server on a fixed address (foreground); key from LOCAL_SERVER_API_KEY",
    )
    model.add_argument("--host", default="127.0.0.1")
    model.add_argument("--port", type=int, default=None, help="default: 8080 (the spec's model port)")
    model.add_argument("--model", default=None, help="default: LOCAL_MODEL")
    model.set_defaults(func=cmd_serve_model)

    supervise = sub.add_parser("supervise", help="(internal) the background process of `stack up`")
    supervise.add_argument("--home", required=True)
    supervise.set_defaults(func=cmd_supervise)
    return parser


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _paths(home: str | None) -> spec.StackPaths:
    from personagraph.serving import stack as spec
    from personagraph.serving.settings import get_settings

    return spec.StackPaths(Path(home or get_settings().personagraph_home).expanduser().resolve())


def _local(command: list[str]) -> list[str]:
    """A spec command (`personagraph ...`) run with this Python, wherever the script is installed."""
    assert command[0] == "personagraph"
    return [sys.executable, "-m", "personagraph.cli", *command[1:]]


# --- stack up / down / status ------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from personagraph.serving import stack as spec
    from personagraph.serving.settings import get_settings

    paths = _paths(args.home)
    state = spec.read_state(paths)
    if state is not None and spec.is_stack_supervisor(state.supervisor_pid, paths):
        return _error(f"a stack already runs in {paths.home} ({state.proxy_url or state.status}); "
                      "`personagraph stack status` shows it, `personagraph stack down` stops it", 1)  # fmt: skip
    paths.state.unlink(missing_ok=True)  # left by a stack that died
    ports = spec.Ports.free() if args.free_ports else spec.Ports()
    busy = spec.busy_ports(ports.local())
    if busy:
        taken = ", ".join(f"{name} {port}" for name, port in busy.items())
        return _error(f"ports in use: {taken}; stop what uses them or run `stack up --free-ports`", 1)
    paths.make()
    plan = {
        "ports": asdict(ports),
        "model": args.model or get_settings().local_model,
        "insight": args.insight,
    }
    spec.write_private(paths.plan, json.dumps(plan))
    with (paths.logs / "supervisor.log").open("ab") as log:
        supervisor = subprocess.Popen(
            [*_local(["personagraph", "stack", "supervise"]), "--home", str(paths.home)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # detached: the stack outlives this command and its terminal
        )  # fmt: skip
    print(f"starting the stack in {paths.root} (supervisor pid {supervisor.pid})", flush=True)
    try:
        return _wait_up(paths, supervisor, args.timeout)
    except KeyboardInterrupt:
        spec.stop_supervisor(supervisor.pid)
        paths.state.unlink(missing_ok=True)
        print("interrupted: the stack was stopped", file=sys.stderr)
        return 130


def _wait_up(paths: spec.StackPaths, supervisor: subprocess.Popen[bytes], timeout_s: float) -> int:
    from personagraph.serving import stack as spec

    deadline = time.monotonic() + timeout_s
    shown_phase = ""
    shown: set[str] = set()
    while time.monotonic() < deadline:
        state = spec.read_state(paths)
        if state is not None and state.supervisor_pid == supervisor.pid:
            for name, service in state.services.items():
                if service.status == "running" and name not in shown:
                    shown.add(name)
                    print(f"    {name:<9} ready  {service.where}", flush=True)
            if state.phase != shown_phase and state.status == "starting":
                shown_phase = state.phase
                print(f"  {state.phase} ...", flush=True)
            if state.status == "ready":
                _print_ready(paths, state)
                return 0
            if state.status == "failed":
                supervisor.wait(timeout=120)
                paths.state.unlink(missing_ok=True)
                return _error(
                    f"the stack did not start: {state.error}\n(log: {paths.logs / 'supervisor.log'})", 1
                )
        if supervisor.poll() is not None:
            paths.state.unlink(missing_ok=True)
            tail = _tail(paths.logs / "supervisor.log")
            return _error(f"the stack's supervisor exited ({supervisor.returncode}):\n{tail}", 1)
        time.sleep(0.3)
    spec.stop_supervisor(supervisor.pid)
    paths.state.unlink(missing_ok=True)
    return _error(f"the stack was not ready after {timeout_s:.0f}s and was stopped; see {paths.logs}", 1)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _print_ready(paths: spec.StackPaths, state: spec.StackState) -> None:
    from personagraph.serving import stack as spec

    print(f"\nPersonaGraph stack ready (supervisor pid {state.supervisor_pid}):")
    print(f"  app and API      {state.proxy_url}/   (API docs {state.proxy_url}/docs)")
    print(f"  replicas         {', '.join(state.services[r].where for r in spec.REPLICAS)}")
    print(f"  state and logs   {paths.root}")
    print(
        f"  settings         {paths.env_file} (mode 600, has the secrets); for CLI commands against the stack:"
    )
    print(f"                   set -a; . {paths.env_file}; set +a")
    print("  `personagraph stack status` shows it, `personagraph stack down` stops it.")


def _probe(url: str) -> str:
    import httpx

    try:
        with httpx.Client(trust_env=False, timeout=3.0) as client:
            code = client.get(url).status_code
    except httpx.HTTPError as exc:
        return f"not answering ({type(exc).__name__})"
    return "ok" if code == 200 else f"HTTP {code}"


def cmd_status(args: argparse.Namespace) -> int:
    from personagraph.serving import stack as spec

    paths = _paths(args.home)
    try:
        state = spec.read_state(paths)
    except ValueError as exc:
        return _error(str(exc), 1)
    if state is None:
        print(f"no stack in {paths.home}")
        return 1
    alive = spec.is_stack_supervisor(state.supervisor_pid, paths)
    rows = []
    for name, service in state.services.items():
        status = service.status if service.status != "running" or spec.pid_alive(service.pid) else "exited"
        health = ""
        if alive and status == "running" and (name in spec.REPLICAS or name == "proxy"):
            health = _probe(f"http://127.0.0.1:{service.port}/health")
        rows.append({**asdict(service), "status": status, "health": health})
    summary = state.status if alive else f"not running (last state: {state.status})"
    if args.json:
        out = {"home": state.home, "supervisor_pid": state.supervisor_pid, "status": summary,
               "error": state.error, "proxy_url": state.proxy_url, "services": rows}  # fmt: skip
        print(json.dumps(out, indent=1))
    else:
        print(f"stack in {paths.root}: {summary} (supervisor pid {state.supervisor_pid})")
        if state.error:
            print(f"  error: {state.error}")
        for row in rows:
            health = f"  /health {row['health']}" if row["health"] else ""
            print(f"  {row['name']:<12} {row['status']:<8} port {row['port'] or '-':<6} pid {row['pid'] or '-':<8} "
                  f"{row['where']}{health}")  # fmt: skip
    ok = alive and state.status == "ready" and all(r["status"] == "running" for r in rows)
    return 0 if ok else 1


def cmd_down(args: argparse.Namespace) -> int:
    from personagraph.serving import stack as spec

    paths = _paths(args.home)
    try:
        state = spec.read_state(paths)
    except ValueError as exc:
        return _error(str(exc), 1)
    if state is None:
        print(f"no stack in {paths.home}")
        return 0
    if spec.is_stack_supervisor(state.supervisor_pid, paths):
        print(f"stopping the stack in {paths.root} (supervisor pid {state.supervisor_pid}) ...", flush=True)
        if not spec.stop_supervisor(state.supervisor_pid, timeout_s=120):
            print("it did not stop in time: killed", file=sys.stderr)
    paths.state.unlink(missing_ok=True)
    paths.plan.unlink(missing_ok=True)
    print("stack stopped")
    return 0


def cmd_compose(args: argparse.Namespace) -> int:
    from personagraph.serving import stack as spec

    sys.stdout.write(spec.render_compose())
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    from personagraph.serving import stack as spec
    from personagraph.serving.proxy import Upstream, serve

    try:
        upstreams = [Upstream.parse(text) for text in args.upstream]
    except ValueError as exc:
        return _error(str(exc), 2)
    try:
        serve(args.host, args.port or spec.Ports().proxy, upstreams)
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_serve_model(args: argparse.Namespace) -> int:
    """Exec llama_cpp.server on HOST:PORT, so signals (a stopped container, `stack down`) reach it."""
    from personagraph.serving import stack as spec
    from personagraph.serving.local_model import LocalModelError, resolve_model_file
    from personagraph.serving.settings import get_settings

    settings = get_settings()
    if settings.local_server_api_key is None:
        return _error("set LOCAL_SERVER_API_KEY: the key every client of this server must send", 2)
    try:
        model_file, alias = resolve_model_file(args.model or settings.local_model, settings.model_cache_dir)
    except LocalModelError as exc:
        return _error(str(exc), 2)
    threads = settings.local_model_threads or os.cpu_count() or 1
    port = args.port or spec.Ports().model
    argv = spec.model_server_argv(
        sys.executable, model_file, alias, args.host, port, settings.local_model_ctx, threads
    )
    print(f"serving {alias} at http://{args.host}:{port}/v1 (API key required)", flush=True)
    # llama_cpp.server reads API_KEY from its environment (never from its command line).
    os.execve(
        sys.executable, argv, {**os.environ, "API_KEY": settings.local_server_api_key.get_secret_value()}
    )
    return 1  # not reached


# --- the supervisor ----------------------------------------------------------------------------------


class _Stop(Exception):
    """SIGTERM, SIGINT or SIGHUP reached the supervisor: stop everything."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def cmd_supervise(args: argparse.Namespace) -> int:
    paths = _paths(args.home)
    code = Supervisor(paths).run()
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit now: a worker thread may still wait for a service that the stop already gave up on (its
    # process then sees us gone and stops it).
    os._exit(code)


class Supervisor:
    """Owns every process of the stack; writes HOME/stack/state.json as they start and stop."""

    def __init__(self, paths: spec.StackPaths):
        from personagraph.serving import stack as spec

        self.paths = paths
        plan = json.loads(paths.plan.read_text(encoding="utf-8"))
        self.ports = spec.Ports(**{**plan["ports"], "apps": tuple(plan["ports"]["apps"])})
        self.model: str = plan["model"]
        self.insight: bool = plan["insight"]
        self.state = spec.StackState(supervisor_pid=os.getpid(), home=str(paths.home), insight=self.insight)
        self._lock = threading.Lock()
        self._stops: list[tuple[str, Callable[[], None]]] = []  # in start order
        self._running: dict[str, Any] = {}  # name -> ServiceProcess, watched for exits

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, _raise_stop)
        code = 0
        try:
            self._write()
            self.start()
            self._update(status="ready", phase="ready")
            print(f"stack ready: {self.state.proxy_url}", flush=True)
            self.watch()
        except _Stop as stop:
            print(f"stopping ({stop})", flush=True)
        except Exception as exc:  # noqa: BLE001 - any failure: report it, stop what started
            print(f"stack failed: {type(exc).__name__}: {exc}", flush=True)
            self._update(status="failed", error=_short(exc))
            code = 1
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)  # the stop below must not be interrupted
            if code == 0:
                self._update(status="stopping")
            self.stop_all()
            if code == 0:
                self.paths.state.unlink(missing_ok=True)
        return code

    # state

    def _save(self) -> None:
        """Write the state file (the caller holds the lock)."""
        from personagraph.serving.stack import write_state

        write_state(self.paths, self.state)

    def _write(self) -> None:
        with self._lock:
            self._save()

    def _update(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self.state, key, value)
            self._save()

    def _started(self, name: str, port: int, where: str, service: Any, stop: Callable[[], None]) -> None:
        from personagraph.serving import stack as spec

        process = getattr(service, "process", None)
        log_path = getattr(service, "log_path", None)
        with self._lock:
            self._stops.append((name, stop))
            if process is not None:
                self._running[name] = service
            self.state.services[name] = spec.ServiceState(
                name=name, port=port, pid=process.pid if process is not None else None, where=where,
                status="running", log=str(log_path or ""),
            )  # fmt: skip
            self._save()

    # start

    def start(self) -> None:
        from personagraph.memory.redis_server import LocalRedis
        from personagraph.serving import stack as spec
        from personagraph.serving.chroma_server import LocalChroma
        from personagraph.serving.local_model import resolve_model_file
        from personagraph.serving.postgres_server import LocalPostgres
        from personagraph.serving.settings import get_settings

        settings = get_settings()
        paths, ports = self.paths, self.ports
        postgres_pw = spec.stack_secret(paths, "postgres.password")
        redis_pw = spec.stack_secret(paths, "redis.password")
        model_key = spec.stack_secret(paths, "model.key")
        _, alias = resolve_model_file(self.model, settings.model_cache_dir)  # joins the default model once
        self._update(model=alias, phase="starting postgres, redis, chroma and the model server")

        postgres = LocalPostgres(port=ports.postgres, data_dir=paths.data("postgres"), password=postgres_pw)
        redis_server = LocalRedis(port=ports.redis, data_dir=paths.data("redis"), password=redis_pw)
        chroma = LocalChroma(port=ports.chroma, path=paths.data("chroma"))
        model_url = f"http://127.0.0.1:{ports.model}/v1"

        def start_postgres() -> None:
            postgres.start()
            self._started("postgres", ports.postgres, postgres.describe(), postgres.service, postgres.stop)

        def start_redis() -> None:
            redis_server.start()
            self._started(
                "redis", ports.redis, redis_server.describe(), redis_server.service, redis_server.stop
            )

        def start_chroma() -> None:
            chroma.start()
            self._started("chroma", ports.chroma, chroma.describe(), chroma.service, chroma.stop)

        def start_model() -> None:
            command = [*_local(spec.model_command("127.0.0.1", ports.model)), "--model", self.model]
            self._service(
                "model", ports.model, command, {"LOCAL_SERVER_API_KEY": model_key},
                ready=lambda: _get_ok(f"{model_url}/models", {"Authorization": f"Bearer {model_key}"}),
                timeout_s=settings.local_server_start_timeout_s, where=f"{model_url} ({alias}, API key required)",
            )  # fmt: skip

        _all([start_postgres, start_redis, start_chroma, start_model])

        endpoints = spec.Endpoints(
            database_url=postgres.url, redis_url=redis_server.url, chroma_url=chroma.url,
            llm_base_url=model_url, llm_model=alias, llm_api_key=model_key, llm_backend="llamacpp",
            home=str(paths.home), forwarded_allow_ips="127.0.0.1",
        )  # fmt: skip
        spec.write_private(
            paths.env_file, "\n".join(spec.shell_exports(spec.app_environment(endpoints, "cli"))) + "\n"
        )

        self._update(phase="preparing (model file, classifiers, knowledge indexes in Chroma)")
        self._run_once(
            "prepare",
            _local(spec.PREPARE_COMMAND),
            spec.app_environment(endpoints, "prepare"),
            PREPARE_TIMEOUT_S,
        )

        self._update(phase="starting the app replicas")

        def start_replica(name: str, port: int) -> Callable[[], None]:
            url = f"http://127.0.0.1:{port}"
            return lambda: self._service(
                name, port, _local(spec.app_command("127.0.0.1", port)), spec.app_environment(endpoints, name),
                ready=lambda: _get_ok(f"{url}/ready"), timeout_s=APP_READY_TIMEOUT_S, where=f"{url}/",
            )  # fmt: skip

        _all([start_replica(name, port) for name, port in ports.replicas().items()])

        if self.insight:
            self._update(phase="loading the insight history into Redis")
            self._run_once("insight-load", _local(spec.INSIGHT_LOAD_COMMAND), spec.app_environment(endpoints, "insight-load"),
                           PREPARE_TIMEOUT_S)  # fmt: skip
            for consumer in spec.INSIGHT_CONSUMERS:
                name = f"insight-{consumer}"
                self._service(name, 0, _local(spec.insight_consume_command(consumer)), spec.app_environment(endpoints, name),
                              ready=lambda: True, timeout_s=30, where=f"consumer {consumer}")  # fmt: skip

        self._update(phase="starting the proxy")
        upstreams = {name: f"http://127.0.0.1:{port}" for name, port in ports.replicas().items()}
        proxy_url = f"http://127.0.0.1:{ports.proxy}"
        self._service(
            "proxy", ports.proxy, _local(spec.proxy_command("127.0.0.1", ports.proxy, upstreams)), {},
            ready=lambda: _get_ok(f"{proxy_url}/health"), timeout_s=60, where=f"{proxy_url}/",
        )  # fmt: skip

    def _service(
        self, name: str, port: int, command: list[str], env: dict[str, str], *,
        ready: Callable[[], bool], timeout_s: float, where: str,
    ) -> None:  # fmt: skip
        from personagraph.serving.processes import ServiceProcess

        service = ServiceProcess(name, command, env=env)
        service.start(ready, timeout_s, poll_s=0.25)
        self._started(name, port, where, service, service.stop)

    def _run_once(self, name: str, command: list[str], env: dict[str, str], timeout_s: float) -> None:
        log_path = self.paths.logs / f"{name}.log"
        with log_path.open("wb") as log:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **env}, timeout=timeout_s, check=False,
            )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"`{' '.join(command[2:])}` exited with {result.returncode}; see {log_path}")

    # run and stop

    def watch(self) -> None:
        """Until a signal: mark services that exited (shown by `stack status`)."""
        while True:
            time.sleep(1.0)
            with self._lock:
                exited = [
                    name for name, service in self._running.items()
                    if not service.running and self.state.services[name].status == "running"
                ]  # fmt: skip
            for name in exited:
                print(f"{name} exited; see `personagraph stack status`", flush=True)
                with self._lock:
                    self.state.services[name].status = "exited"
                    self._save()

    def stop_all(self) -> None:
        with self._lock:
            stops = list(reversed(self._stops))  # the proxy first, Postgres last
        for name, stop in stops:
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - stop the others all the same
                print(f"stopping {name}: {type(exc).__name__}: {exc}", flush=True)
            with self._lock:
                self.state.services[name].status = "stopped"
                self._save()


def _all(starts: list[Callable[[], None]]) -> None:
    """Run the starts at once; raise the first failure once every one has finished."""
    pool = ThreadPoolExecutor(max_workers=len(starts))
    try:
        futures = [pool.submit(start) for start in starts]
        errors = [f.exception() for f in futures]
    finally:
        pool.shutdown(wait=False)  # on a stop signal, do not wait for starts still running
    for error in errors:
        if error is not None:
            raise error


def _get_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    import httpx

    try:
        with httpx.Client(trust_env=False, timeout=3.0) as client:
            return client.get(url, headers=headers).status_code == 200
    except httpx.HTTPError:
        return False


def _short(exc: BaseException) -> str:
    """The first line of an error (service errors carry their log's tail; the log file has it all)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
