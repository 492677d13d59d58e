"""JSON log lines, request ids (validated, echoed, generated), and the id and node names on the log lines
of graph nodes that LangGraph runs in its thread pool."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any, TypedDict

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langgraph.graph import END, START, StateGraph

from personagraph.api import metrics as metrics_api
from personagraph.serving.logs import (
    JsonFormatter,
    configure_logging,
    current_request_id,
    request_scope,
    valid_request_id,
)
from personagraph.serving.metrics import install_observer
from tests.observability import json_logs, log_lines

node_log = logging.getLogger("personagraph.test_nodes")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Root logging as JSON into a buffer (DEBUG), restored after."""
    with json_logs("DEBUG") as buffer:
        yield buffer


def test_request_ids_are_short_and_safe() -> None:
    assert valid_request_id("a1b2-c3d4_e5.f6:7") == "a1b2-c3d4_e5.f6:7"
    for bad in ("", "x" * 65, "has space", "new\nline", "<script>", "-leading", "ünï", None):
        assert valid_request_id(bad) is None


def test_json_formatter_writes_one_object_with_the_fields_and_no_secrets() -> None:
    record = logging.LogRecord(
        "personagraph.x", logging.WARNING, __file__, 1, "failed at %s", ("redis://:hunter2pw@h:1/0",), None
    )
    record.duration_s = 0.25
    record.user_text = "never logged"  # not an allowed extra field
    with request_scope("req-123"):
        line = json.loads(JsonFormatter().format(record))
    assert (
        line["level"] == "WARNING" and line["logger"] == "personagraph.x" and line["request_id"] == "req-123"
    )
    assert line["time"].endswith("+00:00") and line["duration_s"] == 0.25
    assert "hunter2pw" not in line["message"] and "user_text" not in line
    try:
        raise RuntimeError("boom http://u:hunter2pw@host/v1")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    error = json.loads(JsonFormatter().format(record))["error"]
    assert "RuntimeError" in error and "hunter2pw" not in error


def test_request_scope_sets_and_restores() -> None:
    assert current_request_id() is None
    with request_scope("bad id!") as rid:
        assert current_request_id() == rid and rid != "bad id!" and valid_request_id(rid)
    assert current_request_id() is None


class State(TypedDict, total=False):
    a: str
    b: str
    c: str


def _node(name: str) -> Any:
    def run(state: State) -> dict[str, Any]:
        node_log.info("inside %s on %s", name, threading.current_thread().name)
        return {name: current_request_id() or ""}

    run.__name__ = name
    return run


def _graph() -> Any:
    # Two nodes in one step: LangGraph runs them on its thread pool.
    builder = StateGraph(State)
    for name in ("a", "b", "c"):
        builder.add_node(name, _node(name))
    builder.add_edge(START, "a")
    builder.add_edge(START, "b")
    builder.add_edge(["a", "b"], "c")
    builder.add_edge("c", END)
    return builder.compile(name="persona_chat")


def test_the_request_id_reaches_nodes_in_the_thread_pool_with_graph_and_node(json_lines: io.StringIO) -> None:
    install_observer()
    with request_scope("turn-42"):
        result = _graph().invoke({})
    assert result == {"a": "turn-42", "b": "turn-42", "c": "turn-42"}
    inside = [line for line in log_lines(json_lines) if line["logger"] == "personagraph.test_nodes"]
    assert {(line["node"], line["graph"], line["request_id"]) for line in inside} == {
        ("a", "persona_chat", "turn-42"), ("b", "persona_chat", "turn-42"), ("c", "persona_chat", "turn-42"),
    }  # fmt: skip
    ends = [
        line
        for line in log_lines(json_lines)
        if line["logger"] == "personagraph.runs" and line.get("event") == "end"
    ]
    assert {line.get("node") for line in ends} >= {"a", "b", "c"}
    assert all(line["request_id"] == "turn-42" for line in ends)
    assert any(line.get("node") is None and line["graph"] == "persona_chat" for line in ends)  # the whole run


def _app() -> FastAPI:
    app = FastAPI()
    metrics_api.install(app)

    @app.get("/api/turn")
    def turn() -> dict[str, Any]:  # a sync route: Starlette runs it on a worker thread
        return _graph().invoke({})

    return app


def test_middleware_takes_a_valid_header_id_else_makes_one(json_lines: io.StringIO) -> None:
    client = TestClient(_app())
    given = client.get("/api/turn", headers={"X-Request-ID": "client-id-1"})
    assert given.headers["x-request-id"] == "client-id-1"
    assert given.json() == {"a": "client-id-1", "b": "client-id-1", "c": "client-id-1"}
    refused = client.get("/api/turn", headers={"X-Request-ID": "no good <id>"})
    made = refused.headers["x-request-id"]
    assert made != "no good <id>" and valid_request_id(made) and refused.json()["a"] == made
    access = [line for line in log_lines(json_lines) if line.get("path") == "/api/turn"]
    assert [line["request_id"] for line in access] == ["client-id-1", made]
    assert all(line["status"] == 200 for line in access)


def test_text_format_keeps_the_request_id() -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging("text", "INFO", stream=buffer)
    try:
        with request_scope("text-7"):
            node_log.info("hello")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "[text-7]" in buffer.getvalue() and "hello" in buffer.getvalue()
