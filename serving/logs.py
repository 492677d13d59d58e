"""Server logs as text or one JSON object per line, each tied to the request (and the graph node) it is about.

    configure_logging()                    # LOG_FORMAT=json|text, LOG_LEVEL (`personagraph app` does this)
    with request_scope("a1b2c3"): ...      # CLI, benchmarks: every line inside carries request_id

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`, `request_id`, and `graph` /
`node` when it was written inside a graph run, plus the few extra fields in `EXTRA_FIELDS` a caller
passed (`log.info(..., extra={"duration_s": 0.2})`) and `error` (the traceback) for exceptions.

The request id lives in a ContextVar, set by the HTTP middleware (api/metrics.py) from a valid
`X-Request-ID` header or a new random one. It reaches every node of the turn because the context is
copied wherever the work moves: Starlette runs sync routes and streamed bodies in worker threads with
a copy of the request's context, and LangGraph runs each sync node with a copy of the caller's.
The graph and node of a line are found from LangChain's current run config (see `run_labels`), never
from a ContextVar a callback would have to set and reset across threads.

Messages and tracebacks are passed through `redact_text`, so a URL with a password or a bearer token
in an exception never reaches the log; callers still must not log a fan's text or a secret.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from personagraph.serving.redact import redact_text

REQUEST_ID_HEADER = "X-Request-ID"
# Short, safe characters only: a header value is outside input and ends up in logs and traces.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")

request_id_var: ContextVar[str | None] = ContextVar("personagraph_request_id", default=None)

# Extra fields a log call may add to its JSON line (anything else passed in `extra` is left out, so a
# careless `extra={"message_text": ...}` cannot put a fan's words in the log).
EXTRA_FIELDS = ("duration_s", "status", "method", "path", "role", "kind", "stage", "category", "event")

# (graph, node) of the LangChain run a line is written in; set by serving/metrics.py's callback handler,
# which is the one that knows which run is which node (None until it is installed).
RunLabels = Callable[[], tuple[str | None, str | None]]
_run_labels: RunLabels | None = None


def valid_request_id(value: str | None) -> str | None:
    """The id if it is short (<= 64) and made of letters, digits and . _ : - only; else None."""
    if value is None or not _REQUEST_ID.match(value):
        return None
    return value


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


@contextmanager
def request_scope(request_id: str | None = None) -> Iterator[str]:
    """Run a block as one request: its log lines (and those of the graph nodes it runs) carry the id."""
    rid = valid_request_id(request_id) or new_request_id()
    token = request_id_var.set(rid)
    try:
        yield rid
    finally:
        request_id_var.reset(token)


def set_run_labels(lookup: RunLabels | None) -> None:
    """Where log lines find the graph and node they are written in (serving/metrics.py installs it)."""
    global _run_labels
    _run_labels = lookup


class ContextFilter(logging.Filter):
    """Adds `request_id`, `graph` and `node` to every record (explicit `extra` values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "graph", None) is None or getattr(record, "node", None) is None:
            graph, node = _run_labels() if _run_labels is not None else (None, None)
            if getattr(record, "graph", None) is None:
                record.graph = graph
            if getattr(record, "node", None) is None:
                record.node = node
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, graph, node, extras, error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for name in ("graph", "node"):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = redact_text(self.formatException(record.exc_info))
        elif record.stack_info:
            line["error"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with the request id (and graph/node) in brackets when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(where)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [str(v) for v in (getattr(record, "request_id", None), getattr(record, "graph", None),
                                  getattr(record, "node", None)) if v]  # fmt: skip
        record.where = f" [{' '.join(parts)}]" if parts else ""
        return redact_text(super().format(record))


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs (found again and replaced on a second call)."""


def configure_logging(
    fmt: str | None = None, level: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Send every logger's lines (uvicorn's too, through the root) to `stream` (stderr) as LOG_FORMAT.

    Idempotent: a second call replaces the handler of the first. Returns the handler (tests read it).
    """
    from personagraph.serving.settings import get_settings

    settings = get_settings()
    fmt = fmt or settings.log_format
    level = (level or settings.log_level).upper()
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that are chatty at INFO (one line per HTTP request to the model server) stay at WARNING.
    for name in ("httpx", "httpx2", "httpcore", "openai", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler
