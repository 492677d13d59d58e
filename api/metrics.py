"""`GET /metrics` (Prometheus text) and the request id of every HTTP request.

    install(app, ui=blocks, insight=insight)   # create_app does it, before Gradio is mounted

/metrics is in PUBLIC_ROUTES (no account token): its labels carry no personal data (serving/metrics.py).
When METRICS_TOKEN is set it needs `Authorization: Bearer <METRICS_TOKEN>` instead (401 otherwise),
for a server reachable beyond a private network.

`RequestIdMiddleware` (pure ASGI, so the ContextVar it sets is the one the route, the streamed body
and LangGraph's node threads inherit) takes a valid `X-Request-ID` header or makes a new id, returns it
in the response's `X-Request-ID`, counts error statuses, and logs one line per request.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import gradio as gr
from fastapi import APIRouter, FastAPI, Header
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from personagraph.accounts.identity import NotSignedInError
from personagraph.services.crm_jobs import jobs_db
from personagraph.services.insight import InsightService
from personagraph.services.twins.store import active_run_counts
from personagraph.serving.logs import REQUEST_ID_HEADER, new_request_id, request_id_var, valid_request_id
from personagraph.serving.metrics import (
    REGISTRY,
    install_observer,
    record_api_error,
    set_lag_source,
    set_queue_source,
)
from personagraph.serving.settings import get_settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])  # operations endpoints, beside /health and /ready

DB_QUEUE_CACHE_S = 10.0  # twin runs and CRM batches are counted in the database at most this often


@router.get("/metrics", name="metrics", response_class=Response)
def metrics(authorization: Annotated[str | None, Header()] = None) -> Response:
    """Prometheus metrics in the text format (see the README's "Metrics, logs, tracing and fault tests")."""
    token = get_settings().metrics_token
    if token is not None and token.get_secret_value():
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token.get_secret_value()):
            raise NotSignedInError("Authorization: /metrics needs `Bearer <METRICS_TOKEN>`")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class RequestIdMiddleware:
    """Sets the request id for the request's context, echoes it, counts errors, logs the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", []) if k == b"x-request-id"), b"")
        request_id = valid_request_id(given.decode("latin-1")) or new_request_id()
        # Set in this task's context and not reset: the task ends with the request, and the 500
        # handler (outside this middleware) still logs with the id.
        request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = int(message["status"]), True
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
                record_api_error(status)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not responded:  # answered by the server-error handler outside this middleware
                record_api_error(500)
            raise
        finally:
            path = str(scope.get("path", ""))
            level = logging.INFO if path.startswith("/api/") else logging.DEBUG
            seconds = time.perf_counter() - started
            log.log(level, "%s %s %d %.3f s", scope.get("method", ""), path, status, seconds,
                    extra={"method": scope.get("method"), "path": path, "status": status,
                           "duration_s": round(seconds, 4)})  # fmt: skip


def gradio_queue(ui: gr.Blocks) -> Callable[[], Mapping[str, float]]:
    """The Gradio app's events waiting and running (its queue, once the server started it)."""

    def read() -> Mapping[str, float]:
        queue: Any = getattr(ui, "_queue", None)
        if queue is None:
            return {}
        running = queue.get_active_worker_count() if getattr(queue, "active_jobs", None) is not None else 0
        return {"queued": len(queue), "running": running}

    return read


def cached(read: Callable[[], Mapping[str, float]], seconds: float) -> Callable[[], Mapping[str, float]]:
    """`read` at most once per `seconds` (database counts on every scrape would cost too much)."""
    lock = threading.Lock()
    last: list[Any] = [0.0, {}]

    def get() -> Mapping[str, float]:
        with lock:
            if time.monotonic() - last[0] >= seconds:
                last[:] = [time.monotonic(), dict(read())]
            return dict(last[1])

    return get


def crm_batches() -> Mapping[str, float]:
    rows = (
        jobs_db()
        .execute(
            "SELECT state, COUNT(*) FROM crm_batches WHERE state IN ('created', 'running') GROUP BY state"
        )
        .rows
    )
    counts = {str(state): int(n) for state, n in rows}
    return {"queued": counts.get("created", 0), "running": counts.get("running", 0)}


def install(app: FastAPI, *, ui: gr.Blocks | None = None, insight: InsightService | None = None) -> None:
    """The request-id middleware, the run observer and the scrape-time sources (the /metrics route is
    one of the app's ROUTERS)."""
    install_observer()
    app.add_middleware(RequestIdMiddleware)  # added last: the outermost of the app's middleware
    set_queue_source("twin_run", cached(active_run_counts, DB_QUEUE_CACHE_S))
    set_queue_source("crm_batch", cached(crm_batches, DB_QUEUE_CACHE_S))
    set_queue_source("gradio", gradio_queue(ui) if ui is not None else None)
    set_lag_source(getattr(insight, "stream_lag", None))  # test fakes of the service have none
