"""One JSON error shape for every failure of the HTTP API: `{"error": {"status", "field", "reason"}}`.

Services raise plain Python errors (an `AccessError` with its HTTP status, a ValueError whose
message starts with the field, a ModelError when the model server is down); the handlers here turn
each kind into its status code, so no route has to translate errors itself and a client can always
read `error.field` and `error.reason`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.exceptions import HTTPException as StarletteHTTPException

from personagraph.accounts.identity import AccessError, TooManyAttemptsError
from personagraph.insight.source import RedisNotConfiguredError
from personagraph.services.twins.selections import UploadTooLargeError
from personagraph.serving.models import ModelError
from personagraph.serving.redact import user_error

log = logging.getLogger(__name__)

# "field: reason" (the convention of every ValueError in the product), e.g. "profile.name: too long".
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]\-]{0,80}): (.+)$", re.DOTALL)


class PayloadTooLargeError(ValueError):
    """A request body or upload over its limit (413); the message names the field and the limit."""


class ServiceUnavailableError(RuntimeError):
    """A part of the app that is not configured or not ready (503)."""


def split_field(message: str) -> tuple[str | None, str]:
    """("field", "reason") from a "field: reason" message; (None, message) when it names no field."""
    match = _FIELD_PREFIX.match(message.strip())
    if match is None:
        return None, message.strip()
    return match.group(1), match.group(2).strip()


def error_response(
    status: int, reason: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": status, "field": field, "reason": reason}}, status_code=status, headers=headers
    )


def _from_message(status: int, exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    field, reason = split_field(str(exc))
    carried = getattr(exc, "field", None)  # CrmInputError and friends carry their field
    if isinstance(carried, str) and carried:
        field = carried
    return error_response(status, reason or "the request could not be completed", field, headers)


def _validation_field(error: Any) -> str:
    # ("body", "message") -> "message"; ("query", "threads") -> "threads"; ("path", "run_id") -> "run_id"
    if error.get("type") == "json_invalid":
        return "body"  # its loc is the character position
    parts = [
        str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header", "form", "file")
    ]
    return ".".join(parts) or "body"


async def _access_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AccessError)
    headers = None
    if isinstance(exc, TooManyAttemptsError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return _from_message(exc.status, exc, headers)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if not errors:
        return error_response(400, "the request is not valid")
    first = errors[0]
    reason = str(first.get("msg", "not valid")).removeprefix("Value error, ")
    if len(errors) > 1:
        others = "; ".join(
            f"{_validation_field(e)}: {str(e.get('msg', '')).removeprefix('Value error, ')}"
            for e in errors[1:]
        )
        reason = f"{reason} (also {others})"
    return error_response(400, reason, _validation_field(first))


async def _value_error(request: Request, exc: Exception) -> JSONResponse:
    too_large = isinstance(exc, (PayloadTooLargeError, UploadTooLargeError))
    return _from_message(413 if too_large else 400, exc)


async def _permission_error(request: Request, exc: Exception) -> JSONResponse:
    # A path outside the caller's folders (serving.safe_paths.PathOutsideError).
    return _from_message(403, exc)


async def _model_error(request: Request, exc: Exception) -> JSONResponse:
    return _from_message(503, exc, {"Retry-After": "10"})


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    # A part that is not configured or not reachable (insight without a live Redis, Redis down).
    return _from_message(503, exc, {"Retry-After": "10"})


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    # The client's message names the server's address: the log keeps it, the user gets the gist.
    reason = user_error(log, exc, "the live customer data (Redis) is not reachable")
    return error_response(503, reason, None, {"Retry-After": "10"})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    # FastAPI's and Starlette's own 400s are about a body they cannot read (not UTF-8, a broken
    # multipart form): name it, as the handlers above name the field of every other 400.
    field = "body" if exc.status_code == 400 else None
    return error_response(exc.status_code, str(exc.detail), field, headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Never leak internals (paths, addresses, class names, other accounts' data) in a 500; the server
    # log has the traceback, credentials removed.
    return error_response(
        500, user_error(log, exc, f"internal error in {request.method} {request.url.path}", "try again later")
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; the most specific class wins (Starlette walks the exception's MRO)."""
    app.add_exception_handler(AccessError, _access_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(ValueError, _value_error)
    app.add_exception_handler(PermissionError, _permission_error)
    app.add_exception_handler(ModelError, _model_error)
    app.add_exception_handler(ServiceUnavailableError, _unavailable)
    app.add_exception_handler(RedisNotConfiguredError, _unavailable)  # insight data that needs a live Redis
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
