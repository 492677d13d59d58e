"""Request-size limits of the HTTP API and the app: a body over its limit is answered 413 before any
route reads it; and the client address of a sign-in through the app's login form, for the throttle.

The body of every request is read here first, up to its limit, and then handed to the route
unchanged; nothing past the limit is kept in memory. A Content-Length over the limit is refused
without reading. Card uploads get the card limit (CARD_MAX_BYTES plus room for the multipart
framing); a catalog, an order export or a twin run's pilot answers up to UPLOAD_MAX_BYTES a file; the app's own file uploads keep Gradio's limit (`max_file_size`, UPLOAD_MAX_BYTES);
everything else (JSON, the app's events, its login form) gets API_MAX_JSON_BYTES.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from personagraph.accounts.store import sign_in_client
from personagraph.api.errors import PayloadTooLargeError, error_response
from personagraph.personas.cards import max_card_bytes
from personagraph.serving.settings import get_settings

MULTIPART_SLACK_BYTES = 64 * 1024
UPLOAD_PATHS = ("/api/personas/import",)
# File uploads of the API other than cards (a catalog, an order export): UPLOAD_MAX_BYTES.
FILE_PATHS = ("/api/crm/catalogs", "/api/insight/datasets")
FILE_PATH_PATTERNS = (re.compile(r"^/api/twins/runs/[^/]+/calibrate$"),)  # a run's pilot answers
# The mounted Gradio app's file routes: Gradio streams them to disk under its own `max_file_size`.
GRADIO_FILE_ROUTES = ("/gradio_api/upload", "/gradio_api/process_recording")
# The Gradio login form (POST): its sign-ins are throttled per client address too.
LOGIN_PATHS = ("/login", "/login/")


def max_json_bytes() -> int:
    """The largest JSON body (API_MAX_JSON_BYTES)."""
    return get_settings().api_max_json_bytes


def _is_file_upload(path: str) -> bool:
    path = path.rstrip("/")
    return path in FILE_PATHS or any(p.match(path) for p in FILE_PATH_PATTERNS)


def read_upload(upload: UploadFile, limit: int, too_large: str) -> bytes:
    """An uploaded file's bytes, reading at most one byte past `limit`: PayloadTooLargeError (413)
    with the message `too_large` (naming the field and the setting) when it is longer."""
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(too_large)
    return data


def body_limit(path: str) -> int | None:
    """The most bytes a request to `path` may send; None where another layer applies its own limit."""
    if path in UPLOAD_PATHS:
        return max_card_bytes() + MULTIPART_SLACK_BYTES
    if _is_file_upload(path):
        return get_settings().upload_max_bytes * 4 + MULTIPART_SLACK_BYTES  # up to four files per form
    if path.rstrip("/").endswith(GRADIO_FILE_ROUTES):
        return None  # Gradio's max_file_size (UPLOAD_MAX_BYTES), checked while it streams the file
    return max_json_bytes()


def _setting_of(path: str) -> str:
    if _is_file_upload(path):
        return "UPLOAD_MAX_BYTES"
    return "CARD_MAX_BYTES" if path in UPLOAD_PATHS else "API_MAX_JSON_BYTES"


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
        path = scope.get("path", "")
        field = "file" if path in UPLOAD_PATHS or _is_file_upload(path) else "body"
        reason = f"the request is larger than {limit} bytes ({_setting_of(path)})"
        response = error_response(413, reason, field)
        await response(scope, receive, send)


class SignInClientMiddleware:
    """Tell the account store which address a login-form sign-in comes from.

    Gradio calls its `auth` function with the user id and password only; the address set here (a
    context variable, read by `AccountStore.gradio_auth`) lets the throttle count failures per
    address as well as per account, as the HTTP API's sign-in does.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in LOGIN_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = sign_in_client.set(str(client[0]) if client else "")
        try:
            await self.app(scope, receive, send)
        finally:
            sign_in_client.reset(token)
