"""Request-size limits of the HTTP API: a body over its limit is answered 413 before any route reads it.

The body of every `/api/` request is read here first, up to the limit, and then handed to the
route unchanged; nothing past the limit is kept in memory. A Content-Length over the limit is
refused without reading. Card uploads get the card limit (plus room for the multipart framing);
everything else, JSON, gets `MAX_JSON_BYTES`.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from personagraph.api.errors import error_response
from personagraph.personas.cards import MAX_CARD_BYTES

MAX_JSON_BYTES = 2 * 1024 * 1024  # a survey with every Twin-2K-500 question is about 120 kB
MULTIPART_SLACK_BYTES = 64 * 1024
UPLOAD_PATHS = ("/api/personas/import",)


def body_limit(path: str) -> int | None:
    """The most bytes a request to `path` may send; None for paths the API does not serve."""
    if not path.startswith("/api/"):
        return None  # the mounted Gradio app applies its own upload limit (max_file_size)
    if path in UPLOAD_PATHS:
        return MAX_CARD_BYTES + MULTIPART_SLACK_BYTES
    return MAX_JSON_BYTES


class BodyLimitMiddleware:
    """Pure ASGI middleware (works under streaming responses, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int | None] = body_limit):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope.get("path", "")) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as Starlette expects

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        field = "file" if scope.get("path") in UPLOAD_PATHS else "body"
        response = error_response(413, f"the request is larger than {limit} bytes", field)
        await response(scope, receive, send)
