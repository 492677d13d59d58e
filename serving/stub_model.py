"""A stub OpenAI-compatible model server: fixed, configurable latency and canned replies, no model.

Why: load benchmarks and fault tests need a model server that is fast, deterministic and cheap on
CPU, whose own latency is known (so the overhead of everything else can be measured), and that can
be killed like a real one. It is not a model: it never reads the prompt except to find a marker and
a JSON schema.

    python -m personagraph.serving.stub_model --port 8001 --first-token-delay 0.2 --tokens-per-s 50

    with StubModelServer(first_token_delay_s=0.2, tokens_per_s=50) as stub:
        os.environ.update(stub.env())      # every role now calls the stub
        ...
        stub.stats()["records"]            # per-request timing, as the stub saw it

Replies
- Plain text calls get `reply_tokens` words (at most the request's max tokens) in short sentences,
  Korean words when the last user message has Hangul. A marker found in the last user message
  (`MARKER`, e.g. "pgm00a3001f") is echoed as the first word, so a benchmark can check that no fan
  sees another fan's text and can attribute each request to a turn.
- Structured calls (a `response_format` carrying a JSON schema, or the "matching this JSON schema"
  system message of `serving.models.structured`) get a minimal valid instance of the schema:
  required properties only, first enum value, bounds and minLength/minItems met, $ref followed.

Timing: the first token comes `first_token_delay_s` after the request, then one token every
1/`tokens_per_s` s (a text reply counts one token per word; a JSON reply one per 4 characters).
A non-streaming reply comes whole at the time the last token would have. With both set to 0 the
stub answers at once. `GET /stats` returns the config and one record per request (kind, marker,
tokens, planned and measured seconds); `DELETE /stats` clears them; `POST /config` changes the
timing (or makes every call fail with `fail_status`) without a restart.

The process exits by itself when the process that started it is gone (`--parent PID`), so a killed
test run leaves no stub behind. The stub accepts any API key.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from personagraph.serving.processes import free_port

MODEL_NAME = "stub"
# What a benchmark puts in a fan's message for the stub to echo: "pgm" and 8 hex digits. Letters
# break the digit runs (never a phone or ID number to the output checks); one word, any language.
MARKER = re.compile(r"\bpgm[0-9a-f]{8}\b")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_SCHEMA_MESSAGE = "matching this JSON schema:"
_EN_WORDS = [
    "thank",
    "you",
    "so",
    "much",
    "for",
    "the",
    "lovely",
    "message",
    "it",
    "really",
    "made",
    "my",
    "day",
    "today",
    "I",
    "was",
    "just",
    "thinking",
    "about",
    "our",
    "last",
    "show",
    "and",
    "how",
    "much",
    "fun",
    "it",
    "was",
    "with",
    "everyone",
    "there",
    "let",
    "us",
    "keep",
    "sharing",
    "good",
    "moments",
    "together",
    "and",
    "take",
    "care",
    "of",
    "yourself",
]
_KO_WORDS = [
    "메시지",
    "정말",
    "고마워요",
    "오늘",
    "하루가",
    "더",
    "즐거워졌어요",
    "지난",
    "공연",
    "생각하면",
    "아직도",
    "설레요",
    "다",
    "같이",
    "좋은",
    "추억",
    "많이",
    "만들어요",
    "항상",
    "건강",
    "잘",
    "챙기세요",
    "우리",
    "또",
    "만나요",
]
SENTENCE_WORDS = 8  # a period after every 8 words: the chat's sentence gate releases sentences
MAX_RECORDS = 200_000


@dataclass
class StubConfig:
    """How the stub answers; changed at run time by `POST /config`."""

    first_token_delay_s: float = 0.2
    tokens_per_s: float = 50.0
    reply_tokens: int = 40
    fail_status: int = 0  # when non-zero, every chat completion answers this HTTP status

    def seconds_for(self, tokens: int) -> float:
        """The stub's own latency for a reply of `tokens` tokens (first token, then the rest)."""
        rest = (tokens - 1) / self.tokens_per_s if self.tokens_per_s > 0 and tokens > 1 else 0.0
        return self.first_token_delay_s + rest


@dataclass
class Record:
    """One chat completion as the stub served it (seconds measured from the request's arrival)."""

    id: int
    kind: str  # "text" | "structured"
    stream: bool
    marker: str
    tokens: int
    planned_s: float
    started: float  # time.time() at arrival
    first_token_s: float = 0.0
    total_s: float = 0.0
    disconnected: bool = False


@dataclass
class StubState:
    config: StubConfig
    records: list[Record] = field(default_factory=list)
    next_id: int = 1
    in_flight: int = 0
    max_in_flight: int = 0


# --- replies ------------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """A message's text (OpenAI content is a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def find_marker(messages: list[dict[str, Any]]) -> str:
    """The last marker in the last user message ("" when none)."""
    found = MARKER.findall(last_user_text(messages))
    return found[-1] if found else ""


def requested_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a call asks for: from `response_format` (vLLM/OpenAI `json_schema`, or
    llama.cpp's `json_object` + `schema`), else from `serving.models.structured`'s system message."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
            schema = fmt["json_schema"].get("schema")
            if isinstance(schema, dict):
                return schema
        if isinstance(fmt.get("schema"), dict):
            return dict(fmt["schema"])
    for message in body.get("messages") or []:
        text = _text_of(message.get("content"))
        if message.get("role") == "system" and _SCHEMA_MESSAGE in text:
            tail = text[text.index(_SCHEMA_MESSAGE) + len(_SCHEMA_MESSAGE) :]
            start = tail.find("{")
            try:
                schema = json.loads(tail[start:]) if start != -1 else None
            except json.JSONDecodeError:
                continue
            if isinstance(schema, dict):
                return schema
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return {"type": "object"}
    return None


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 50:
        ref = str(schema["$ref"])
        node: Any = root
        for part in ref.removeprefix("#/").split("/") if ref.startswith("#/") else []:
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**node, **extra} if isinstance(node, dict) else extra
        seen += 1
    return schema


def minimal_instance(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """A small value valid against `schema` (the subset pydantic emits: types, enum/const, bounds,
    required, $defs/$ref, anyOf/oneOf/allOf, minItems, string formats); patterns are not honoured."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if depth > 30:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            chosen = next((o for o in options if _resolve(o, root).get("type") != "null"), options[0])
            return minimal_instance(chosen, root, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            merged["required"] = [*merged.get("required", []), *part.get("required", [])]
            merged["properties"] = {**merged.get("properties", {}), **part.get("properties", {})}
            merged.update({k: v for k, v in part.items() if k not in ("required", "properties")})
        return minimal_instance(merged, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties", {})
        return {
            name: minimal_instance(properties.get(name, {}), root, depth + 1)
            for name in schema.get("required", [])
        }
    if kind == "array":
        count = int(schema.get("minItems", 0))
        prefix = list(schema.get("prefixItems", []))
        items = [minimal_instance(p, root, depth + 1) for p in prefix[:count]]
        raw_items = schema.get("items")
        item_schema = _resolve(raw_items if isinstance(raw_items, dict) else {}, root)
        choices = list(item_schema.get("enum", []))
        while len(items) < count:
            if schema.get("uniqueItems") and choices:
                items.append(choices[len(items) % len(choices)])
            elif schema.get("uniqueItems") and item_schema.get("type") in ("integer", "number"):
                items.append(minimal_instance(item_schema, root, depth + 1) + len(items))
            elif schema.get("uniqueItems") and item_schema.get("type", "string") == "string":
                items.append(f"{minimal_instance(item_schema, root, depth + 1)}{len(items)}")
            else:
                items.append(minimal_instance(item_schema, root, depth + 1))
        return items
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(schema)


def _number(schema: Mapping[str, Any], integer: bool) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    if schema.get("exclusiveMinimum") is not None:
        low = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    if schema.get("exclusiveMaximum") is not None:
        high = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    value: float = 0
    if low is not None and value < low:
        value = math.ceil(low) if integer else low
    if high is not None and value > high:
        value = math.floor(high) if integer else high
    return int(value) if integer else float(value)


def _string(schema: Mapping[str, Any]) -> str:
    formats = {
        "date": "2026-01-01",
        "date-time": "2026-01-01T00:00:00Z",
        "time": "00:00:00",
        "uuid": "00000000-0000-4000-8000-000000000000",
        "uri": "https://example.org/",
        "email": "fan@example.org",
    }
    if schema.get("format") in formats:
        return formats[str(schema["format"])]
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    text = "ok"
    if len(text) < low:
        text = text + "k" * (low - len(text))
    if high is not None and len(text) > int(high):
        text = text[: max(int(high), low)]
    return text


def text_reply(messages: list[dict[str, Any]], tokens: int, marker: str) -> list[str]:
    """`tokens` words (the marker first when there is one), a period after every few, as stream pieces."""
    korean = bool(_HANGUL.search(last_user_text(messages)))
    vocabulary = _KO_WORDS if korean else _EN_WORDS
    # Where in the vocabulary a reply starts follows the conversation, so the next turn's reply is not
    # the last one again (the chat's output check rejects a reply that repeats the previous one).
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).digest()
    start = int.from_bytes(digest[:4], "big") % len(vocabulary)
    words = [marker] if marker else []
    while len(words) < tokens:
        words.append(vocabulary[(start + len(words) - bool(marker)) % len(vocabulary)])
    words = words[: max(tokens, 1)]
    pieces: list[str] = []
    for i, word in enumerate(words):
        if i % SENTENCE_WORDS == 0 and not korean:
            word = word[:1].upper() + word[1:] if word != marker else word
        end = (i + 1) % SENTENCE_WORDS == 0 or i == len(words) - 1
        pieces.append(("" if i == 0 else " ") + word + ("." if end else ""))
    return pieces


def json_pieces(value: Any) -> list[str]:
    """The JSON text cut into 4-character pieces (about one token each)."""
    text = json.dumps(value, ensure_ascii=False)
    return [text[i : i + 4] for i in range(0, len(text), 4)] or [text]


def plan(body: Mapping[str, Any], config: StubConfig) -> tuple[str, list[str], str]:
    """(kind, reply pieces, marker) for one request."""
    messages = list(body.get("messages") or [])
    marker = find_marker(messages)
    schema = requested_schema(body)
    if schema is not None:
        return "structured", json_pieces(minimal_instance(schema)), marker
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or config.reply_tokens
    return "text", text_reply(messages, min(config.reply_tokens, int(limit)), marker), marker


# --- HTTP ---------------------------------------------------------------------------------------------

STATE = web.AppKey("state", StubState)


def _chunk(request_id: str, created: int, delta: dict[str, Any], finish: str | None) -> bytes:
    payload = {
        "id": request_id, "object": "chat.completion.chunk", "created": created, "model": MODEL_NAME,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }  # fmt: skip
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    chars = sum(len(_text_of(m.get("content"))) for m in body.get("messages") or [])
    return max(1, chars // 4)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    arrived, started = time.perf_counter(), time.time()
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return web.json_response(
            {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}}, status=400
        )
    config = state.config
    if config.fail_status:
        error = {"message": "stub configured to fail", "type": "server_error", "code": config.fail_status}
        return web.json_response({"error": error}, status=config.fail_status)
    kind, pieces, marker = plan(body, config)
    record = Record(
        id=state.next_id, kind=kind, stream=bool(body.get("stream")), marker=marker, tokens=len(pieces),
        planned_s=config.seconds_for(len(pieces)), started=started,
    )  # fmt: skip
    state.next_id += 1
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    request_id, created = f"chatcmpl-stub-{record.id}", int(started)
    usage = _usage(_prompt_tokens(body), len(pieces))

    async def until(offset_s: float) -> None:
        wait = arrived + offset_s - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)

    def offset(i: int) -> float:  # when piece i is due
        step = 1.0 / config.tokens_per_s if config.tokens_per_s > 0 else 0.0
        return config.first_token_delay_s + i * step

    try:
        if not record.stream:
            await until(offset(len(pieces) - 1))
            record.first_token_s = record.total_s = time.perf_counter() - arrived
            message = {"role": "assistant", "content": "".join(pieces)}
            return web.json_response({
                "id": request_id, "object": "chat.completion", "created": created, "model": MODEL_NAME,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
                "usage": usage,
            })  # fmt: skip
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            await response.write(_chunk(request_id, created, {"role": "assistant", "content": ""}, None))
            for i, piece in enumerate(pieces):
                await until(offset(i))
                await response.write(_chunk(request_id, created, {"content": piece}, None))
                if i == 0:
                    record.first_token_s = time.perf_counter() - arrived
            await response.write(_chunk(request_id, created, {}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                final = {
                    "id": request_id, "object": "chat.completion.chunk", "created": created,
                    "model": MODEL_NAME, "choices": [], "usage": usage,
                }  # fmt: skip
                await response.write(f"data: {json.dumps(final)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            record.disconnected = True  # the client went away mid-stream
        record.total_s = time.perf_counter() - arrived
        return response
    finally:
        state.in_flight -= 1
        if not record.total_s:
            record.total_s = time.perf_counter() - arrived
        state.records.append(record)
        if len(state.records) > MAX_RECORDS:
            del state.records[: len(state.records) - MAX_RECORDS]


async def models(request: web.Request) -> web.Response:
    entry = {"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "personagraph"}
    return web.json_response({"object": "list", "data": [entry]})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "pid": os.getpid()})


async def stats(request: web.Request) -> web.Response:
    """Config and per-request records; `?since=ID` returns only records with a larger id."""
    state = request.app[STATE]
    since = int(request.query.get("since", "0"))
    return web.json_response({
        "config": asdict(state.config), "requests": state.next_id - 1, "in_flight": state.in_flight,
        "max_in_flight": state.max_in_flight, "pid": os.getpid(),
        "records": [asdict(r) for r in state.records if r.id > since],
    })  # fmt: skip


async def clear_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.records.clear()
    state.max_in_flight = state.in_flight
    return web.json_response({"cleared": True})


async def set_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    changes = await request.json()
    fields = asdict(state.config)
    unknown = set(changes) - set(fields)
    if unknown:
        return web.json_response({"error": f"unknown settings: {sorted(unknown)}"}, status=400)
    state.config = StubConfig(**{**fields, **changes})
    return web.json_response(asdict(state.config))


def build_app(config: StubConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = StubState(config=config)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    app.router.add_delete("/stats", clear_stats)
    app.router.add_post("/config", set_config)
    return app


def _exit_with_parent(parent_pid: int) -> None:
    """Exit at once when the process that started us is gone (the stub must never outlive a test run)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.25)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m personagraph.serving.stub_model", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--first-token-delay", type=float, default=0.2, help="seconds before the first token")
    parser.add_argument(
        "--tokens-per-s", type=float, default=50.0, help="tokens per second after it (0: no wait)"
    )
    parser.add_argument("--reply-tokens", type=int, default=40, help="words in a text reply")
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    args = parser.parse_args(argv)
    if args.parent:
        _exit_with_parent(args.parent)
    config = StubConfig(args.first_token_delay, args.tokens_per_s, args.reply_tokens)
    print(f"stub model server on http://{args.host}:{args.port}/v1 ({config})", flush=True)
    web.run_app(build_app(config), host=args.host, port=args.port, print=None, access_log=None, backlog=1024)
    return 0


# --- the process, for tests and benchmarks ---------------------------------------------------------------


class StubModelServerError(RuntimeError):
    pass


class StubModelServer:
    """The stub in a child process on a free (or the given) loopback port.

    `process` is the server process itself (no supervisor between), so a test can SIGKILL it
    (`kill()`) and `start()` it again on the same port.
    """

    def __init__(
        self,
        first_token_delay_s: float = 0.2,
        tokens_per_s: float = 50.0,
        reply_tokens: int = 40,
        port: int | None = None,
    ):
        self.config = StubConfig(first_token_delay_s, tokens_per_s, reply_tokens)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def __repr__(self) -> str:
        return f"StubModelServer(port={self.port}, {self.config})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT/v1, the OpenAI base URL."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise StubModelServerError("the stub model server is not running")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def env(self) -> dict[str, str]:
        """Environment variables that point every role at this stub."""
        return {
            "LLM_BASE_URL": self.base_url,
            "LLM_MODEL": MODEL_NAME,
            "LLM_API_KEY": "stub",
            "LLM_BACKEND": "vllm",
        }

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout_s: float = 30.0) -> StubModelServer:
        if self.running:
            raise StubModelServerError(f"{self!r} is already running")
        fd, name = tempfile.mkstemp(prefix="personagraph-stub-model-", suffix=".log")
        self.log_path = Path(name)
        command = [
            sys.executable, "-m", "personagraph.serving.stub_model", "--port", str(self.port),
            "--first-token-delay", str(self.config.first_token_delay_s),
            "--tokens-per-s", str(self.config.tokens_per_s), "--reply-tokens", str(self.config.reply_tokens),
            "--parent", str(os.getpid()),
        ]  # fmt: skip
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise StubModelServerError(
                    f"the stub model server did not start on port {self.port}:\n{tail}"
                )
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL the server (a crash, for fault tests); `start()` brings it back on the same port."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def stats(self, since: int = 0) -> dict[str, Any]:
        """The stub's config and per-request records (see `GET /stats`)."""
        reply = httpx.get(f"{self.url}/stats", params={"since": since}, timeout=30.0)
        reply.raise_for_status()
        return dict(reply.json())

    def clear_stats(self) -> None:
        httpx.delete(f"{self.url}/stats", timeout=10.0).raise_for_status()

    def configure(self, **changes: float) -> dict[str, Any]:
        """Change the running stub's timing (first_token_delay_s, tokens_per_s, reply_tokens, fail_status)."""
        reply = httpx.post(f"{self.url}/config", json=changes, timeout=10.0)
        reply.raise_for_status()
        for key, value in changes.items():
            setattr(self.config, key, value)
        return dict(reply.json())

    def __enter__(self) -> StubModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
