"""The embedded OpenAI-compatible model server (llama-cpp-python) on a free 127.0.0.1 port.

Started on first use when no base URL is configured, shared by every role in the process, and
stopped at exit. The client code path is the same as for vLLM.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from personagraph.serving.local_model import resolve_model_file
from personagraph.serving.settings import Settings, get_settings


class LocalServerError(RuntimeError):
    """The embedded model server could not start; the message includes the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalModelServer:
    """One `python -m llama_cpp.server` child process serving one GGUF under one alias."""

    def __init__(self, model_file: Path, alias: str, *, n_ctx: int = 4096, threads: int | None = None):
        self.model_file = model_file
        self.alias = alias
        self.n_ctx = n_ctx
        self.threads = threads
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise LocalServerError("the local model server is not running")
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 300.0) -> LocalModelServer:
        self.port = free_port()
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_file),
            "--model_alias", self.alias,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
        ]  # fmt: skip
        # llama-cpp-python defaults to half the cores for decoding and computes logits for every
        # prompt token; we use all cores and need logits for the last token only.
        threads = self.threads or os.cpu_count() or 1
        command += ["--n_threads", str(threads), "--n_threads_batch", str(threads), "--logits_all", "false"]
        # By default a waiting request cuts the running stream short; concurrent fans must queue instead.
        command += ["--interrupt_requests", "false"]
        fd, log_name = tempfile.mkstemp(prefix="personagraph-llm-", suffix=".log")
        self.log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_healthy(timeout_s)
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise LocalServerError(
                    f"local model server exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise LocalServerError(f"local model server not healthy after {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalModelServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_server: LocalModelServer | None = None
_lock = threading.Lock()


def ensure_local_server(settings: Settings | None = None) -> LocalModelServer:
    """Start the process-wide embedded server once (thread-safe) and stop it at exit."""
    global _server
    with _lock:
        if _server is not None and _server.process is not None and _server.process.poll() is None:
            return _server
        settings = settings or get_settings()
        model_file, alias = resolve_model_file(settings.local_model, settings.model_cache_dir)
        server = LocalModelServer(
            model_file, alias, n_ctx=settings.local_model_ctx, threads=settings.local_model_threads
        )
        server.start(timeout_s=settings.local_server_start_timeout_s)
        atexit.register(server.stop)
        _server = server
        return server


def stop_local_server() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None
