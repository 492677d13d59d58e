"""The embedded OpenAI-compatible model server (llama-cpp-python) on a free 127.0.0.1 port.

Started on first use when no base URL is configured, shared by every role in the process, and
stopped at exit; it never outlives the process (serving/processes.py), even one killed by a signal.
The client code path is the same as for vLLM.

The server takes requests only with its API key: LOCAL_SERVER_API_KEY when set, else a new random
key each start. The key reaches the server through its environment (not its command line) and the
clients through `serving.models` (`api_key_of`); it is never printed or logged.
"""

from __future__ import annotations

import atexit
import os
import secrets
import sys
import threading
from pathlib import Path

import httpx

from personagraph.serving.local_model import resolve_model_file
from personagraph.serving.processes import ServiceError, ServiceProcess, free_port
from personagraph.serving.settings import Settings, get_settings


class LocalServerError(ServiceError):
    """The embedded model server could not start; the message includes the end of its log."""


class LocalModelServer:
    """One `python -m llama_cpp.server` child process serving one GGUF under one alias."""

    def __init__(
        self,
        model_file: Path,
        alias: str,
        *,
        n_ctx: int = 4096,
        threads: int | None = None,
        api_key: str | None = None,
        logits_all: bool = False,
        prompt_cache_mb: int = 0,
    ):
        self.model_file = model_file
        self.prompt_cache_mb = prompt_cache_mb  # the RAM prompt cache (0: none), see `start`
        self.logits_all = logits_all  # token log-probabilities (twin answer distributions); slower prompts
        self.alias = alias
        self.n_ctx = n_ctx
        self.threads = threads
        self.port: int | None = None
        self.service: ServiceProcess | None = None
        self._configured_key = api_key
        self.api_key = ""  # set at each start: the configured key, or a new random one

    def __repr__(self) -> str:  # never shows the key
        return f"LocalModelServer(alias={self.alias!r}, port={self.port})"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise LocalServerError("the local model server is not running")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self.service is not None and self.service.running

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
        command += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
        command += ["--logits_all", "true" if self.logits_all else "false"]
        # By default a waiting request cuts the running stream short; concurrent fans must queue instead.
        command += ["--interrupt_requests", "false"]
        if self.prompt_cache_mb > 0:
            # The context reuses its longest common prefix with the previous call only; a chat turn's
            # calls alternate between prompts (draft, then profile extraction), so without a cache
            # the next draft re-reads its whole prompt. The RAM cache keeps each call's evaluated
            # state and restores the one sharing the longest prefix with a new prompt.
            command += [
                "--cache",
                "true",
                "--cache_type",
                "ram",
                "--cache_size",
                str(self.prompt_cache_mb << 20),
            ]
        self.api_key = self._configured_key or secrets.token_urlsafe(32)
        # llama_cpp.server reads API_KEY from its environment (its settings are pydantic-settings).
        self.service = ServiceProcess("llm", command, error=LocalServerError, env={"API_KEY": self.api_key})
        self.service.start(self._healthy, timeout_s, poll_s=0.25)
        return self

    def _healthy(self) -> bool:
        try:
            reply = httpx.get(f"{self.base_url}/models", headers=self.auth_headers, timeout=2.0)
        except httpx.HTTPError:
            return False
        return reply.status_code == 200

    def log_tail(self, lines: int = 20) -> str:
        return self.service.log_tail(lines) if self.service is not None else ""

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    def __enter__(self) -> LocalModelServer:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_server: LocalModelServer | None = None
_logprob_server: LocalModelServer | None = None  # the twin distributions' server (logits_all)
_lock = threading.Lock()


def local_model_server(
    settings: Settings, model_file: Path, alias: str, *, logits_all: bool = False
) -> LocalModelServer:
    """A (not yet started) server for `model_file` with the configured context, threads and key."""
    key = settings.local_server_api_key.get_secret_value() if settings.local_server_api_key else None
    return LocalModelServer(
        model_file, alias, n_ctx=settings.local_model_ctx, threads=settings.local_model_threads, api_key=key,
        logits_all=logits_all, prompt_cache_mb=settings.local_model_prompt_cache_mb,
    )  # fmt: skip


def ensure_local_server(settings: Settings | None = None, *, logprobs: bool = False) -> LocalModelServer:
    """Start the process-wide embedded server once (thread-safe) and stop it at exit.

    `logprobs=True` is a second server of the same model that returns token log-probabilities
    (llama-cpp-python needs `logits_all` for them, which slows every prompt): started only when a
    twin run reads answer distributions, so ordinary chat never pays for it.
    """
    global _server, _logprob_server
    with _lock:
        current = _logprob_server if logprobs else _server
        if current is not None and current.running:
            return current
        settings = settings or get_settings()
        model_file, alias = resolve_model_file(settings.local_model, settings.model_cache_dir)
        server = local_model_server(settings, model_file, alias, logits_all=logprobs)
        server.start(timeout_s=settings.local_server_start_timeout_s)
        atexit.register(server.stop)
        if logprobs:
            _logprob_server = server
        else:
            _server = server
        return server


def stop_local_server() -> None:
    global _server, _logprob_server
    with _lock:
        for server in (_server, _logprob_server):
            if server is not None:
                server.stop()
        _server = _logprob_server = None
