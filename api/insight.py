"""Customer insight over HTTP: questions (with follow-ups in a thread of yours; as one JSON answer or
as Server-Sent Events: the figures at once, then the narrative), segment figures, imported datasets
(a shop's order export: admins import, anyone signed in asks about them), and ingesting an order
(admins only: orders are the shop's shared data).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, Request, UploadFile, status
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from personagraph.accounts.identity import ForbiddenError
from personagraph.api.deps import CallerDep, InsightDep
from personagraph.api.limits import read_upload
from personagraph.api.streaming import SSE_MEDIA_TYPE, sse, wants_stream
from personagraph.insight.importer import MAX_BYTES, template_path
from personagraph.services.insight import AnswerEvent
from personagraph.serving.redact import user_error

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/insight", tags=["insight"])


class AskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="In Korean or English, e.g. 'VIP 고객은 어떤 특징이 있어?'")
    thread_id: str | None = Field(default=None, description="A follow-up in this thread of yours.")
    router_mode: str = Field(default="hybrid", description="hybrid, model or keywords")
    dataset: str | None = Field(
        default=None, description="An imported dataset (default: the shop's live data)."
    )
    stream: bool = Field(
        default=False, description="Answer with Server-Sent Events: figures, token, reset, final, error."
    )


def _event_data(event: AnswerEvent) -> dict[str, Any]:
    if event.kind == "figures":
        return {"template": event.text, **event.data}
    if event.kind == "final" and event.answer is not None:
        return event.answer.as_dict()
    return {"text": event.text} if event.kind == "token" else {}


def _sse(first: AnswerEvent, events: Iterator[AnswerEvent]) -> Iterator[str]:
    yield sse(first.kind, _event_data(first))
    try:
        for event in events:
            yield sse(event.kind, _event_data(event))
    except Exception as exc:  # noqa: BLE001 - the stream has started: the error is its last event
        yield sse("error", {"status": 500, "field": None,
                            "reason": user_error(log, exc, "the answer could not be finished", "try again")})  # fmt: skip


def answer_response(events: Iterator[AnswerEvent], stream: bool) -> Response | dict[str, Any]:
    """The answer's events as Server-Sent Events, or its final answer as one JSON object. The first
    event is read before the response starts, so a failure before it has its own status code."""
    first = next(events)
    if stream:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(_sse(first, events), media_type=SSE_MEDIA_TYPE, headers=headers)
    for event in (first, *events):
        if event.kind == "final" and event.answer is not None:
            return event.answer.as_dict()
    raise RuntimeError("the insight run ended without an answer")  # pragma: no cover


@router.post("/ask", name="insight_ask", response_model=None)
def ask(body: AskBody, request: Request, caller: CallerDep, insight: InsightDep) -> Response | dict[str, Any]:
    """An answer from the asked segment's figures only (every number in it is checked). With `stream`
    (or `Accept: text/event-stream`): Server-Sent Events, as /ask/stream."""
    events = insight.ask_stream(caller, body.question, body.thread_id, body.router_mode, body.dataset)
    return answer_response(events, wants_stream(request, body.stream))


@router.post("/ask/stream", name="insight_ask_stream", response_model=None)
def ask_stream(body: AskBody, caller: CallerDep, insight: InsightDep) -> Response | dict[str, Any]:
    """The answer as Server-Sent Events: `figures` at once (the template answer written from the exact
    figures, with intent, scope and the figures), then `token` (checked sentences of the model's
    narrative to append), `reset` (withdraw the narrative shown), and `final` (the whole answer, whose
    `answer` replaces the streamed narrative); `error` if it fails after it started."""
    events = insight.ask_stream(caller, body.question, body.thread_id, body.router_mode, body.dataset)
    return answer_response(events, True)


@router.get("/datasets", name="insight_datasets")
def datasets(caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """The imported datasets (ask about one with `dataset` in /ask)."""
    return {"datasets": insight.datasets(caller)}


@router.post("/datasets", name="insight_import_orders", status_code=status.HTTP_201_CREATED)
def import_orders(
    file: Annotated[UploadFile, File(description="The shop's order export (CSV, one row per order line).")],
    caller: CallerDep,
    insight: InsightDep,
    dataset: Annotated[str | None, Form(description="Name of the new dataset: a-z, 0-9, _ or -.")] = None,
    replace: Annotated[bool, Form(description="Replace a dataset of the same name.")] = False,
    skip_bad_rows: Annotated[
        bool, Form(description="Leave bad rows out (listed) instead of refusing.")
    ] = False,
    timezone: Annotated[str, Form(description="Time zone of times without an offset.")] = "Asia/Seoul",
) -> dict[str, Any]:
    """Import an order export as a new dataset and segment it (admins only). A bad row refuses the
    file with every problem named by row and column (the header is row 1)."""
    if not caller.admin:  # before reading a large upload
        raise ForbiddenError("import-orders: only an admin may change the shop's customer data")
    if not dataset:
        raise ValueError("dataset: required; name the new dataset (a-z, 0-9, _ or -)")
    data = read_upload(file, MAX_BYTES, f"file: over {MAX_BYTES:,} bytes; split the export")
    if not data:
        raise ValueError("file: the upload is empty; send the order export as CSV")
    imported = insight.import_orders(caller, data, dataset, filename=file.filename or "orders.csv",
                                     replace=replace, skip_bad_rows=skip_bad_rows, timezone=timezone)  # fmt: skip
    out = imported.as_dict()
    out.pop("path")  # the server's file system is not the caller's business
    return out


@router.get("/orders-template.csv", name="insight_orders_template")
def orders_template(caller: CallerDep) -> FileResponse:
    """An example order export with every column (English headers; Korean ones work too)."""
    return FileResponse(template_path(), media_type="text/csv", filename="orders_template.csv")


@router.get("/threads", name="insight_threads")
def threads(caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """Your question threads, newest first."""
    return {"threads": insight.threads(caller)}


@router.get("/threads/{thread_id}", name="insight_thread")
def thread(thread_id: str, caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """One of your threads: its questions and answers, oldest first."""
    return {"thread_id": thread_id, "turns": insight.thread(caller, thread_id)}


@router.get("/segments", name="insight_segments")
def segments(caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """Live segment sizes and figures."""
    return insight.segment_stats(caller)


@router.get("/status", name="insight_status")
def status_(caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """Where the data comes from (no credentials), live orders applied, and the live consumers: each
    one's state, restarts and last error (short), and the entries dead-lettered so far."""
    return insight.status(caller)


@router.post("/drift/accept", name="insight_accept_drift")
def accept_drift(caller: CallerDep, insight: InsightDep) -> dict[str, Any]:
    """Accept the refit held as drift (see `segments.held` in /status) as the new segment model and
    re-score every customer (admins only; 404 when none is held, 503 without the live state in Redis)."""
    return insight.accept_drift(caller)


@router.post("/orders", name="insight_order", status_code=status.HTTP_202_ACCEPTED)
def ingest_order(
    order: Annotated[dict[str, Any], Body(description="One order (JSON).")],
    caller: CallerDep,
    insight: InsightDep,
) -> dict[str, Any]:
    """Publish one order to the live stream (admins only; needs the live state in Redis)."""
    return insight.ingest_order(caller, order)
