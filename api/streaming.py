"""A chat turn as an HTTP response: Server-Sent Events (`token`, `reset`, `final`, `error`) or one JSON.

Events carry only text that passed the output checks: `token` is one or more checked sentences to
append, `reset` withdraws what was shown (a checked replacement follows), and the reply in `final`
is what was streamed after the last `reset`. No model token is ever sent.

The first event is read before the response starts, so a refused request (someone else's thread,
a bad field, the model server down before any token) gets its own status code and JSON error
instead of a 200 stream that carries the error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from personagraph.api.errors import error_response
from personagraph.services.chat import STOPPED, TurnEvent, TurnResult

SSE_MEDIA_TYPE = "text/event-stream"


def wants_stream(request: Request, stream: bool) -> bool:
    """`"stream": true` in the body, or an `Accept: text/event-stream` header."""
    return stream or SSE_MEDIA_TYPE in request.headers.get("accept", "")


def result_json(result: TurnResult) -> dict[str, Any]:
    return {
        "thread_id": result.thread_id,
        "reply": result.reply,
        "intent": result.intent,
        "sources": list(result.sources),
        "blocks": list(result.blocks),
        "retrieved": list(result.retrieved),
        "message_id": result.message_id,
        "turn_id": result.turn_id,
        "stopped": result.stopped,
        "timings": dict(result.timings),
        "usage": dict(result.usage),
    }


def sse(event: str, data: Any) -> str:
    """One Server-Sent Event; `data` as one line of JSON (Korean kept as is)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _failure_status(text: str) -> int:
    # The service reports a failed turn as an event (the thread is rolled back): a stop (409, the
    # thread's owner stopped it), an unexpected error (500, the server's fault), or else the model
    # server (503, worth a retry).
    if text == STOPPED:
        return 409
    return 500 if text.startswith("internal error") else 503


def _event_data(event: TurnEvent) -> Any:
    if event.kind == "token":
        return {"text": event.text}
    if event.kind == "final" and event.result is not None:
        return result_json(event.result)
    if event.kind == "error":
        return {"status": _failure_status(event.text), "field": None, "reason": event.text}
    return {}


def _stream(events: Iterable[TurnEvent]) -> Iterator[str]:
    for event in events:
        yield sse(event.kind, _event_data(event))


def turn_response(events: Iterator[TurnEvent], *, stream: bool, thread_id: str | None = None) -> Response:
    """Run (the first step of) a turn now and answer with its stream or, at its end, its JSON result."""
    first = next(events, None)  # raises the service's refusal here, before the response starts
    if first is None:
        return error_response(500, "the turn ended without a result")
    if first.kind == "error":
        return error_response(_failure_status(first.text), first.text, None, {"Retry-After": "10"})
    if stream:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        if thread_id:
            headers["X-Thread-Id"] = thread_id
        return StreamingResponse(_stream(chain([first], events)), media_type=SSE_MEDIA_TYPE, headers=headers)
    for event in chain([first], events):
        if event.kind == "error":
            return error_response(_failure_status(event.text), event.text, None, {"Retry-After": "10"})
        if event.kind == "final" and event.result is not None:
            return JSONResponse(result_json(event.result))
    return error_response(500, "the turn ended without a result")
