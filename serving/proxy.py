"""The stack's reverse proxy: one address in front of the app replicas (`personagraph stack proxy`).

- `/api/...`, `/health`, `/ready`, `/docs`, `/openapi.json`: round robin, one replica per request
  (their state lives in the databases, so any replica answers the same);
- everything else is the Gradio app, whose queue and sign-in live in one process's memory: a browser
  sticks to one replica through a cookie the proxy sets (`personagraph_replica`), and moves to another
  replica (signing in again) when that one is down;
- a replica that refuses the connection is skipped: the request goes to the next one; when none
  answers the proxy says 502;
- responses stream through unbuffered (Server-Sent Events: chat tokens, the Gradio queue); each one
  names the replica that answered in the `x-personagraph-worker` header.

The client's address goes to the replica in X-Forwarded-For (uvicorn there trusts it from the
proxy's address: FORWARDED_ALLOW_IPS), so per-address limits such as failed sign-ins stay per client.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from personagraph.serving.stack import STATELESS_PATHS, STATELESS_PREFIXES, STICKY_COOKIE, WORKER_HEADER

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Headers of one hop only (RFC 9110 7.6.1), never forwarded; `host` is forwarded so the replica builds
# links to the proxy's address.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
     "trailer", "transfer-encoding", "upgrade"}
)  # fmt: skip
HOP_BY_HOP_RAW = frozenset(name.encode() for name in HOP_BY_HOP)
FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"})
COOKIE_ATTRIBUTES = "Path=/; HttpOnly; SameSite=Lax"
BUFFER_BODY_BYTES = 1024 * 1024  # request bodies up to this size are read first (retried on another replica)


@dataclass(frozen=True)
class Upstream:
    name: str  # the replica's name (its WORKER_ID), shown in the x-personagraph-worker header
    url: str  # http://HOST:PORT, no path

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """NAME=URL (`app1=http://127.0.0.1:7861`)."""
        name, sep, url = text.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"--upstream {text!r}: expected NAME=http://HOST:PORT")
        return cls(name, url.rstrip("/"))


def is_stateless(path: str) -> bool:
    """Any replica answers these the same: balanced per request, never sticky."""
    return path in STATELESS_PATHS or path.startswith(STATELESS_PREFIXES)


class Balancer:
    """The order in which to try the replicas for one request."""

    def __init__(self, upstreams: Sequence[Upstream]):
        if not upstreams:
            raise ValueError("the proxy needs at least one upstream")
        names = [u.name for u in upstreams]
        if len(set(names)) != len(names):
            raise ValueError(f"upstream names must differ: {names}")
        self.upstreams = list(upstreams)
        self._next = 0  # one event loop: no lock needed

    def round_robin(self) -> list[Upstream]:
        """Every replica, starting with the next one in turn (the rest are fallbacks)."""
        start = self._next
        self._next = (self._next + 1) % len(self.upstreams)
        return self.upstreams[start:] + self.upstreams[:start]

    def sticky(self, pinned: str | None) -> list[Upstream]:
        """The pinned replica first (when it is one of ours), else round robin."""
        order = self.round_robin()
        for upstream in order:
            if upstream.name == pinned:
                return [upstream] + [u for u in order if u is not upstream]
        return order


def _request_headers(request: Request) -> list[tuple[str, str]]:
    connection_listed = {
        token.strip().lower() for token in request.headers.get("connection", "").split(",") if token.strip()
    }
    headers = [
        (name, value)
        for name, value in request.headers.items()
        if name not in HOP_BY_HOP and name not in connection_listed and name not in FORWARDED
    ]
    # This proxy is the edge: what a client claims in X-Forwarded-* is replaced, never trusted.
    if request.client is not None:
        headers.append(("x-forwarded-for", request.client.host))
    headers.append(("x-forwarded-proto", request.url.scheme))
    if "host" in request.headers:
        headers.append(("x-forwarded-host", request.headers["host"]))
    return headers


class _Body:
    """The request body as a stream for httpx, remembering whether any of it was sent (then no retry)."""

    def __init__(self, request: Request):
        self.request = request
        self.started = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        async for chunk in self.request.stream():
            if chunk:
                yield chunk


async def _body(request: Request) -> bytes | _Body | None:
    """Small bodies (JSON calls) in memory, so a request can go to the next replica whatever happened;
    larger ones (uploads) stream through."""
    length = request.headers.get("content-length")
    if length is None and "transfer-encoding" not in request.headers:
        return None
    if length is not None and length.isdigit() and int(length) <= BUFFER_BODY_BYTES:
        return await request.body()
    return _Body(request)


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "field": None, "reason": reason}}, status_code=status)


def create_proxy(upstreams: Sequence[Upstream], *, client: httpx.AsyncClient | None = None) -> Starlette:
    """The proxy as an ASGI app. `client` (tests) defaults to one made and closed with the app."""
    balancer = Balancer(upstreams)
    state: dict[str, httpx.AsyncClient] = {"client": client} if client is not None else {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if client is not None:
            yield
            return
        state["client"] = httpx.AsyncClient(
            # No read timeout: a reply streams for as long as the model writes.
            timeout=httpx.Timeout(connect=5.0, read=None, write=60.0, pool=30.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            trust_env=False,  # never through an HTTP(S)_PROXY from the environment
            follow_redirects=False,
        )
        try:
            yield
        finally:
            await state["client"].aclose()

    async def forward(request: Request) -> Response:
        http = state["client"]
        stateless = is_stateless(request.url.path)
        pinned = None if stateless else request.cookies.get(STICKY_COOKIE)
        order = balancer.round_robin() if stateless else balancer.sticky(pinned)
        target = request.scope.get("raw_path") or request.url.path.encode()
        path = target.decode("latin-1")
        if request.url.query:
            path += "?" + request.url.query
        headers = _request_headers(request)
        body = await _body(request)
        for upstream in order:
            outgoing = http.build_request(request.method, upstream.url + path, headers=headers, content=body)
            try:
                reply = await http.send(outgoing, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if isinstance(body, _Body) and body.started:
                    return _error(502, f"replica {upstream.name} went away while receiving the request")
                continue  # refused (down, restarting): try the next replica
            except httpx.HTTPError as exc:
                return _error(502, f"replica {upstream.name}: {type(exc).__name__}")
            return _stream(reply, upstream, set_cookie=not stateless and pinned != upstream.name)
        return _error(502, "no app replica answers")

    return Starlette(routes=[Route("/{path:path}", forward, methods=METHODS)], lifespan=lifespan)


def _stream(reply: httpx.Response, upstream: Upstream, *, set_cookie: bool) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in reply.aiter_raw():  # as they arrive: nothing is buffered
                yield chunk
        finally:
            await reply.aclose()

    response = StreamingResponse(chunks(), status_code=reply.status_code)
    connection_listed = {
        token.strip().lower().encode()
        for token in reply.headers.get("connection", "").split(",")
        if token.strip()
    }
    raw = [
        (name, value)
        for name, value in reply.headers.raw
        if name.lower() not in HOP_BY_HOP_RAW and name.lower() not in connection_listed
    ]
    raw.append((WORKER_HEADER.encode(), upstream.name.encode()))
    if set_cookie:
        raw.append((b"set-cookie", f"{STICKY_COOKIE}={upstream.name}; {COOKIE_ATTRIBUTES}".encode()))
    response.raw_headers = raw  # every upstream header as sent, repeated ones (set-cookie) included
    return response


def serve(host: str, port: int, upstreams: Sequence[Upstream]) -> None:
    """Run the proxy until interrupted."""
    import uvicorn

    names = ", ".join(f"{u.name} ({u.url})" for u in upstreams)
    print(f"proxy: http://{host}:{port}/ -> {names}", flush=True)
    # proxy_headers off: the proxy's own client address is the peer's, whatever headers claim.
    uvicorn.run(
        create_proxy(upstreams), host=host, port=port, log_level="warning", proxy_headers=False,
        timeout_graceful_shutdown=5,
    )  # fmt: skip
