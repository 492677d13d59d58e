"""LangSmith tracing: on only with `LANGSMITH_TRACING=true` and a key, with safe run metadata.

The langsmith client reads its configuration from the process environment, so a key kept in `.env`
(read by pydantic settings) never reached it. `ensure_tracing()` configures the client from the
settings once per process: with tracing on and a key, every LangChain run (graph runs, nodes, model
calls) is sent to `LANGSMITH_ENDPOINT` under `LANGSMITH_PROJECT`; otherwise tracing is switched off
explicitly, so a stray `LANGSMITH_TRACING=true` without a key never tries the network.

Run metadata (`run_config`, `trace_scope`) names the graph, the persona and the account by an opaque
id (a keyed hash of the user id: user ids are login names), never a name, an email or fan text. The
thread id LangChain would copy into the trace metadata from `configurable` contains the user id, so
it is replaced by an opaque one too. Tags are never set from user input.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig

from personagraph.serving.logs import current_request_id
from personagraph.serving.redact import redact_url
from personagraph.serving.settings import Settings, get_settings

log = logging.getLogger(__name__)
_lock = threading.Lock()
_configured: bool | None = None  # None: not yet; else whether tracing is on
_ACCOUNT_SALT = b"personagraph-account"


def tracing_wanted(settings: Settings) -> bool:
    """Tracing asked for (`LANGSMITH_TRACING=true`) and possible (a key is set)."""
    key = settings.langsmith_api_key.get_secret_value() if settings.langsmith_api_key else ""
    return settings.langsmith_tracing and bool(key.strip())


def configure_tracing(settings: Settings | None = None) -> bool:
    """Point the langsmith client at the configured endpoint, or switch tracing off; returns whether
    tracing is on. Safe to call again (after `get_settings.cache_clear()`, in tests)."""
    global _configured
    import langsmith
    from langsmith import utils as ls_utils

    settings = settings or get_settings()
    with _lock:
        if not tracing_wanted(settings):
            if settings.langsmith_tracing:
                log.warning("LANGSMITH_TRACING is on but no LANGSMITH_API_KEY is set: tracing stays off")
            langsmith.configure(enabled=False, client=None)
            _configured = False
            return False
        assert settings.langsmith_api_key is not None
        # The tracer of a run started in a worker thread reads the project from the environment.
        os.environ["LANGSMITH_PROJECT"] = settings.langsmith_project
        ls_utils.get_tracer_project.cache_clear()
        client = langsmith.Client(
            api_url=settings.langsmith_endpoint,
            api_key=settings.langsmith_api_key.get_secret_value(),
        )
        langsmith.configure(client=client, enabled=True, project_name=settings.langsmith_project)
        log.info(
            "LangSmith tracing on: project %r at %s",
            settings.langsmith_project,
            redact_url(settings.langsmith_endpoint),
        )
        _configured = True
        return True


def ensure_tracing() -> bool:
    """Configure tracing once per process (called where runs and model calls start)."""
    if _configured is None:
        return configure_tracing()
    return _configured


def flush_tracing(timeout_s: float = 30.0) -> None:
    """Send the runs still queued in the background (tests; shutdown), waiting at most `timeout_s`
    for an endpoint that does not answer."""
    if not _configured:
        return
    from langsmith import run_trees

    client = run_trees._CLIENT  # the client `configure_tracing` installed
    if client is not None:
        client.flush(timeout=timeout_s)


def account_ref(user_id: str) -> str:
    """An opaque, stable id for an account: a keyed hash of its user id (`LANGSMITH_ACCOUNT_KEY`
    makes it unguessable; without it the hash still hides the login name from a casual reader)."""
    secret = get_settings().langsmith_account_key
    key = secret.get_secret_value().encode() if secret else _ACCOUNT_SALT
    return "acct_" + hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:16]


def opaque_thread(thread_key: str) -> str:
    """The thread id shown in traces (groups a conversation's turns without naming the owner)."""
    return "thr_" + hmac.new(_ACCOUNT_SALT, thread_key.encode(), hashlib.sha256).hexdigest()[:16]


def trace_metadata(graph: str, user_id: str | None = None, persona: str | None = None) -> dict[str, Any]:
    """Metadata for a run: graph, persona, opaque account, request id. No names, emails or text."""
    metadata: dict[str, Any] = {"graph": graph}
    if persona:
        metadata["persona"] = persona
    if user_id:
        metadata["account"] = account_ref(user_id)
    request_id = current_request_id()
    if request_id:
        metadata["request_id"] = request_id
    return metadata


def run_config(
    config: RunnableConfig, graph: str, user_id: str | None = None, persona: str | None = None
) -> RunnableConfig:
    """`config` plus the trace metadata; the owner-scoped thread id is shown opaque in traces."""
    ensure_tracing()
    metadata = {**config.get("metadata", {}), **trace_metadata(graph, user_id, persona)}
    thread_id = config.get("configurable", {}).get("thread_id")
    if isinstance(thread_id, str):
        metadata["thread_id"] = opaque_thread(thread_id)
    return {**config, "metadata": metadata}


@contextmanager
def trace_scope(graph: str, user_id: str | None = None, persona: str | None = None) -> Iterator[None]:
    """Trace metadata for model calls made outside a graph (survey answers call `structured()`)."""
    ensure_tracing()
    if not _configured:
        yield
        return
    import langsmith

    # Nested scopes add to the outer one (a survey run's account stays on each answer's calls).
    outer = langsmith.get_tracing_context()["metadata"] or {}
    with langsmith.tracing_context(metadata={**outer, **trace_metadata(graph, user_id, persona)}):
        yield
