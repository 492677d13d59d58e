"""A local stand-in for the LangSmith API that records what the langsmith client sends.

Tests point `LANGSMITH_ENDPOINT` at `LangSmithRecorder().url` to check tracing and experiments
without the network. It answers `/info`, accepts run ingestion (`/runs/multipart`, plain or zstd
compressed, `/runs/batch`, `POST /runs`, `PATCH /runs/{id}`) and keeps the runs merged by id; it
keeps datasets, examples, projects (sessions) and feedback well enough for `langsmith.evaluate`.
Every request is also kept (`requests`) so a test can assert that nothing was sent at all.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

INFO = {
    "version": "0.12.0",
    "license_expiration_time": None,
    "tenant_handle": "recorder",
    "batch_ingest_config": {
        "use_multipart_endpoint": True,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 4,
        "scale_down_nempty_trigger": 4,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
    },
    "instance_flags": {"zstd_compression_enabled": True, "dataset_examples_multipart_enabled": True},
}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _decode_body(headers: Any, body: bytes) -> bytes:
    if headers.get("Content-Encoding", "").lower() == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes, str]]:
    """(name, payload, content type) of each part of a multipart/form-data body."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        payload = part.get_payload(decode=True) or b""
        parts.append((str(name), bytes(payload), part.get_content_type()))
    return parts


class LangSmithRecorder:
    """A threaded HTTP server on a free loopback port; use as a context manager."""

    def __init__(self, info: dict[str, Any] | None = None) -> None:
        self.info = info or INFO
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.runs: dict[str, dict[str, Any]] = {}
        self.feedback: list[dict[str, Any]] = []
        self.datasets: dict[str, dict[str, Any]] = {}
        self.examples: dict[str, dict[str, Any]] = {}
        self.projects: dict[str, dict[str, Any]] = {}
        self.api_keys: set[str] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LangSmithRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LangSmithRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests read ---
    def runs_named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.runs.values() if r.get("name") == name]

    def all_runs(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.runs.values())

    # --- recording ---
    def _merge_run(self, op: str, run_id: str, field: str | None, value: Any) -> None:
        run = self.runs.setdefault(run_id, {"id": run_id})
        if field is None:
            run.update({k: v for k, v in value.items() if v is not None or k not in run})
        else:
            run[field] = value
        run.setdefault("_ops", []).append(op)

    def _ingest_multipart(self, content_type: str, body: bytes) -> None:
        with self.lock:
            for name, payload, _ in parse_multipart(content_type, body):
                pieces = name.split(".")
                if len(pieces) < 2:
                    continue
                op, ident, field = pieces[0], pieces[1], (pieces[2] if len(pieces) > 2 else None)
                if op in ("post", "patch"):
                    try:
                        value = json.loads(payload) if payload else {}
                    except ValueError:
                        value = payload.decode("utf-8", "replace")
                    self._merge_run(op, ident, field, value)
                elif op == "feedback":
                    self.feedback.append({"id": ident, **json.loads(payload)})

    def _ingest_batch(self, data: dict[str, Any]) -> None:
        with self.lock:
            for op in ("post", "patch"):
                for run in data.get(op) or []:
                    self._merge_run(op, str(run["id"]), None, run)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
                return

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return _decode_body(self.headers, self.rfile.read(length)) if length else b""

            def _json(self) -> Any:
                body = self._body()
                return json.loads(body) if body else {}

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._route("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._route("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._route("PATCH")

            def do_PUT(self) -> None:  # noqa: N802
                self._route("PUT")

            def do_DELETE(self) -> None:  # noqa: N802
                self._route("DELETE")

            def _route(self, method: str) -> None:
                url = urlsplit(self.path)
                path = url.path.rstrip("/")
                for prefix in ("/api/v1", "/v1/platform", "/platform"):
                    if path.startswith(prefix + "/"):
                        path = path[len(prefix) :]
                query = parse_qs(url.query)
                with recorder.lock:
                    recorder.requests.append((method, path))
                    key = self.headers.get("x-api-key")
                    if key:
                        recorder.api_keys.add(key)
                try:
                    self._dispatch(method, path, query)
                except Exception as exc:  # noqa: BLE001 - a recorder bug answers 500, visibly
                    self._send(500, {"detail": f"recorder: {type(exc).__name__}: {exc}"})

            def _dispatch(self, method: str, path: str, query: dict[str, list[str]]) -> None:
                parts = path.strip("/").split("/")
                if path == "/info":
                    return self._send(200, recorder.info)
                if path == "/runs/multipart" and method == "POST":
                    recorder._ingest_multipart(self.headers["Content-Type"], self._body())
                    return self._send(202, {})
                if path == "/runs/batch" and method == "POST":
                    recorder._ingest_batch(self._json())
                    return self._send(202, {})
                if path == "/runs" and method == "POST":
                    run = self._json()
                    recorder._ingest_batch({"post": [run]})
                    return self._send(202, {})
                if parts[0] == "runs" and len(parts) == 2 and method == "PATCH":
                    recorder._ingest_batch({"patch": [{**self._json(), "id": parts[1]}]})
                    return self._send(202, {})
                if parts[0] == "runs" and len(parts) == 2 and method == "GET":
                    with recorder.lock:
                        run = recorder.runs.get(parts[1])
                    return self._send(200 if run else 404, run or {"detail": "not found"})
                if parts[0] == "feedback" and method == "POST":
                    with recorder.lock:
                        recorder.feedback.append(self._json())
                    return self._send(200, recorder.feedback[-1])
                if parts[0] == "datasets":
                    return self._datasets(method, parts, query)
                if parts[0] == "examples":
                    return self._examples(method, parts, query)
                if parts[0] == "sessions":
                    return self._sessions(method, parts, query)
                return self._send(200, [] if method == "GET" else {})

            def _datasets(self, method: str, parts: list[str], query: dict[str, list[str]]) -> None:
                with recorder.lock:
                    if len(parts) == 1 and method == "POST":
                        data = self._json()
                        if any(d["name"] == data.get("name") for d in recorder.datasets.values()):
                            return self._send(409, {"detail": "dataset exists"})
                        dataset = {"id": str(uuid.uuid4()), "tenant_id": str(uuid.UUID(int=1)),
                                   "created_at": _now(), "modified_at": _now(), "data_type": "kv",
                                   "example_count": 0, "session_count": 0, **data}  # fmt: skip
                        recorder.datasets[dataset["id"]] = dataset
                        return self._send(200, dataset)
                    if len(parts) == 1 and method == "GET":
                        found = list(recorder.datasets.values())
                        for field in ("name", "id"):
                            if field in query:
                                found = [d for d in found if d[field] in query[field]]
                        return self._send(200, found)
                    known = recorder.datasets.get(parts[1])
                    if known is None:
                        return self._send(404, {"detail": "no dataset"})
                    dataset = known
                    if len(parts) == 2:
                        return self._send(200, dataset)
                    if parts[2] == "examples" and method == "POST":
                        return self._add_examples_multipart(dataset["id"])
                    if parts[2] == "version":
                        return self._send(200, {"as_of": _now(), "tags": []})
                    return self._send(200, [] if method == "GET" else {})

            def _add_examples_multipart(self, dataset_id: str) -> None:
                examples: dict[str, dict[str, Any]] = {}
                for name, payload, _ in parse_multipart(self.headers["Content-Type"], self._body()):
                    pieces = name.split(".")
                    example = examples.setdefault(pieces[0], {"id": pieces[0], "dataset_id": dataset_id})
                    value = json.loads(payload) if payload else {}
                    if len(pieces) == 1:
                        example.update(value)
                    elif pieces[1] in ("inputs", "outputs"):
                        example[pieces[1]] = value
                for example in examples.values():
                    example.setdefault("created_at", _now())
                    example.setdefault("modified_at", _now())
                    recorder.examples[example["id"]] = example
                self._send(201, {"example_ids": list(examples), "count": len(examples)})

            def _examples(self, method: str, parts: list[str], query: dict[str, list[str]]) -> None:
                with recorder.lock:
                    if method == "POST" and parts[-1] in ("bulk", "examples"):
                        data = self._json()
                        rows = data if isinstance(data, list) else [data]
                        made = []
                        for row in rows:
                            example = {"id": str(row.get("id") or uuid.uuid4()), "created_at": _now(),
                                       "modified_at": _now(), **row}  # fmt: skip
                            example["id"] = str(example["id"])
                            recorder.examples[example["id"]] = example
                            made.append(example)
                        return self._send(200, made if isinstance(data, list) else made[0])
                    if method == "GET" and len(parts) == 1:
                        found = list(recorder.examples.values())
                        if "dataset" in query:
                            found = [e for e in found if e.get("dataset_id") in query["dataset"]]
                        if "id" in query:
                            found = [e for e in found if e["id"] in query["id"]]
                        offset = int(query.get("offset", ["0"])[0])
                        limit = int(query.get("limit", ["100"])[0])
                        return self._send(200, found[offset : offset + limit])
                    if method == "DELETE":
                        for example_id in query.get("example_ids", []) + parts[1:]:
                            recorder.examples.pop(example_id, None)
                        return self._send(200, {})
                    if len(parts) == 2 and method == "GET":
                        one = recorder.examples.get(parts[1])
                        return self._send(200 if one else 404, one or {"detail": "no example"})
                    return self._send(200, {})

            def _sessions(self, method: str, parts: list[str], query: dict[str, list[str]]) -> None:
                with recorder.lock:
                    if len(parts) == 1 and method == "POST":
                        data = self._json()
                        project = {"id": str(data.get("id") or uuid.uuid4()),
                                   "tenant_id": str(uuid.UUID(int=1)), "start_time": _now(), **data}  # fmt: skip
                        project["id"] = str(project["id"])
                        recorder.projects[project["id"]] = project
                        return self._send(200, project)
                    if len(parts) == 1 and method == "GET":
                        found = list(recorder.projects.values())
                        if "name" in query:
                            found = [p for p in found if p.get("name") in query["name"]]
                        return self._send(200, found)
                    known = recorder.projects.get(parts[1])
                    if known is None:
                        return self._send(404, {"detail": "no project"})
                    project = known
                    if method == "PATCH":
                        project.update({k: v for k, v in self._json().items() if v is not None})
                    return self._send(200, project)

        return Handler
