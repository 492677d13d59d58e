"""Start, wait for and stop local service processes (model server, Redis, ...) that never outlive us.

Every service runs under a small supervisor, `python -m personagraph.serving.processes`:

    this process --> supervisor --> service (llama_cpp.server, redis-server, ...)

- the supervisor stops the service when it is told to (SIGTERM/SIGINT) and when this process is
  gone, however it ended (SIGTERM, SIGKILL, a crash): it polls its parent pid;
- on Linux the service also gets SIGTERM from the kernel if the supervisor itself dies
  (PR_SET_PDEATHSIG).

Why not PR_SET_PDEATHSIG on the service directly: the kernel sends it when the *thread* that started
the child ends, and services are started lazily from worker threads (a LangGraph node, a batch
executor) that may end long before the process does. The supervisor starts its service from its only
thread, so there the signal means what it says.

This module imports only the standard library: the supervisor starts fast and loads nothing else.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

# How long a service gets to exit after SIGTERM before it is killed.
STOP_GRACE_S = 10.0
# How often the supervisor checks that its parent is still there.
PARENT_POLL_S = 0.25
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
SUPERVISOR_MODULE = "personagraph.serving.processes"


class ServiceError(RuntimeError):
    """A local service could not start; the message includes the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """One local service in a child process: started, waited for until `ready()`, stopped.

    The service's stdout and stderr go to a temporary log file, whose tail is in every start error.
    `env` adds variables to the service's environment (secrets go there, never on its command line,
    which every local user can read).
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        error: type[ServiceError] = ServiceError,
        env: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.command = command
        self.error = error
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None  # the supervisor
        self.log_path: Path | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, ready: Callable[[], bool], timeout_s: float, poll_s: float = 0.1) -> None:
        """Start the service and return once `ready()` is true; raise `error` if it exits or times out."""
        fd, log_name = tempfile.mkstemp(prefix=f"personagraph-{self.name}-", suffix=".log")
        self.log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", SUPERVISOR_MODULE, "--parent", str(os.getpid()), "--", *self.command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env} if self.env else None,
            )
        try:
            problem = self._wait_ready(ready, timeout_s, poll_s)
        except BaseException:  # Ctrl-C or a failing check while waiting: leave nothing running
            self.stop()
            raise
        if problem:
            tail = self.log_tail()
            self.stop()
            raise self.error(f"{problem}:\n{tail}")

    def _wait_ready(self, ready: Callable[[], bool], timeout_s: float, poll_s: float) -> str | None:
        """None once `ready()`; else why not (the service exited, or the time ran out)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return f"{self.name} exited with code {code}"
            if ready():
                return None
            time.sleep(poll_s)
        return f"{self.name} not ready after {timeout_s:.0f}s"

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the service (SIGTERM, then SIGKILL after the grace period) and remove its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # the supervisor stops the service, then exits
            try:
                self.process.wait(timeout=STOP_GRACE_S + 5)
            except subprocess.TimeoutExpired:
                self.process.kill()  # the service gets SIGTERM from PR_SET_PDEATHSIG
                self.process.wait(timeout=10)
        self.process = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None


def wait_http(url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until `url` answers below 500; fails early when `process` (the server) has exited."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"{url}: process exited with {process.returncode}")
        try:
            with opener.open(url, timeout=2.0) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def app_process(
    env: Mapping[str, str],
    log_path: Path,
    args: Sequence[str] = ("--host", "127.0.0.1"),
    worker: str | None = None,
    start_timeout_s: float = 90.0,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`personagraph app` on a free loopback port with `env` (and `WORKER_ID=worker`), until the block
    ends; yields (its URL without a trailing slash, the process). Used by the integration tests and the
    load benchmark; /health answers without sign-in once the API and Gradio listen."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "personagraph"), "app", *args, "--port", str(port)]
    child_env = {**os.environ, **env, **({"WORKER_ID": worker} if worker else {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=child_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/health", start_timeout_s, process)
            yield f"http://127.0.0.1:{port}", process
        finally:
            stop_process(process)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """preexec_fn: ask the kernel to SIGTERM this child when its parent (the supervisor) dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def supervise(command: list[str], parent_pid: int) -> int:
    """Run `command` until it exits; stop it on SIGTERM/SIGINT or when `parent_pid` is no longer our parent."""
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True  # acted on in the loop below, outside the signal handler

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Started from this process's only thread, so PR_SET_PDEATHSIG fires exactly when we die.
    child = subprocess.Popen(command, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    kill_at: float | None = None
    while True:
        try:
            code = child.wait(timeout=PARENT_POLL_S)
            return code if code >= 0 else 128 - code  # a signal N reads as 128 + N, like a shell
        except subprocess.TimeoutExpired:
            pass
        if kill_at is None and (stop_requested or os.getppid() != parent_pid):
            child.terminate()
            kill_at = time.monotonic() + STOP_GRACE_S
        elif kill_at is not None and time.monotonic() > kill_at:
            child.kill()


def main(argv: list[str]) -> int:
    """`python -m personagraph.serving.processes --parent PID -- COMMAND...`"""
    if len(argv) < 4 or argv[0] != "--parent" or argv[2] != "--":
        print("usage: python -m personagraph.serving.processes --parent PID -- COMMAND...", file=sys.stderr)
        return 2
    return supervise(argv[3:], int(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
