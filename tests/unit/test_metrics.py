"""Metrics from a fake graph run: turn, node, first-token, tokens, model errors and safety blocks, each
with fixed labels only; the scrape-time gauges; and /metrics with and without METRICS_TOKEN."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, TypedDict

import httpx
import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langgraph.graph import END, START, StateGraph
from prometheus_client import generate_latest

from personagraph.api import metrics as metrics_api
from personagraph.api.errors import install_error_handlers
from personagraph.serving import metrics
from personagraph.serving.metrics import REGISTRY, install_observer, model_error_kind
from personagraph.serving.models import ModelError, stream_text, use_models
from personagraph.serving.settings import get_settings
from tests.fakes import ScriptedChatModel

SECRET_TEXT = "my secret fan message 010-1234-5678"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class State(TypedDict, total=False):
    text: str
    reply: str
    blocks: list[dict[str, Any]]


def _check(state: State) -> dict[str, Any]:
    blocks = [
        {"stage": "input", "category": "sexual", "safe": False, "message_id": "m1"},
        {"stage": "output", "category": "speech_level", "safe": True},  # a style note, not a block
        {"stage": "output", "category": SECRET_TEXT, "safe": False},  # not a known label: "other"
    ]
    return {"blocks": blocks}


def _draft(state: State) -> dict[str, Any]:
    return {"reply": "".join(stream_text("drafter", [HumanMessage(state["text"])]))}


def _graph(name: str = "persona_chat") -> Any:
    builder = StateGraph(State)
    builder.add_node("input_safety", _check)
    builder.add_node("draft", _draft)
    builder.add_edge(START, "input_safety")
    builder.add_edge("input_safety", "draft")
    builder.add_edge("draft", END)
    return builder.compile(name=name)


@pytest.fixture
def drafter() -> Iterator[ScriptedChatModel]:
    install_observer()
    model = ScriptedChatModel(script=["Hello there friend."], metadata={"role": "drafter"})
    with use_models({"drafter": model}):
        yield model


def test_a_graph_run_counts_turn_nodes_first_token_tokens_and_blocks(drafter: ScriptedChatModel) -> None:
    before = {
        "turns": value("personagraph_turn_seconds_count", graph="persona_chat"),
        "draft": value("personagraph_node_seconds_count", graph="persona_chat", node="draft"),
        "first": value("personagraph_time_to_first_token_seconds_count", graph="persona_chat", stage="model"),
        "out": value("personagraph_model_tokens_total", role="drafter", kind="output"),
        "calls": value("personagraph_model_calls_total", role="drafter"),
        "input": value("personagraph_safety_blocks_total", stage="input", category="sexual"),
        "other": value("personagraph_safety_blocks_total", stage="output", category="other"),
    }
    result = _graph().invoke({"text": SECRET_TEXT})
    assert result["reply"] == "Hello there friend."
    assert value("personagraph_turn_seconds_count", graph="persona_chat") == before["turns"] + 1
    assert value("personagraph_node_seconds_count", graph="persona_chat", node="draft") == before["draft"] + 1
    assert value("personagraph_node_seconds_count", graph="persona_chat", node="input_safety") >= 1
    first = value("personagraph_time_to_first_token_seconds_count", graph="persona_chat", stage="model")
    assert first == before["first"] + 1
    # The fake streams without a usage report: its chunks count as output tokens.
    assert value("personagraph_model_tokens_total", role="drafter", kind="output") > before["out"]
    assert value("personagraph_model_calls_total", role="drafter") == before["calls"] + 1
    assert value("personagraph_safety_blocks_total", stage="input", category="sexual") == before["input"] + 1
    assert value("personagraph_safety_blocks_total", stage="output", category="other") == before["other"] + 1
    assert value("personagraph_safety_blocks_total", stage="output", category="speech_level") == 0
    # Label values only: sample values (timestamps, sums) are numbers that may contain any digits.
    labels = [v for family in REGISTRY.collect() for sample in family.samples for v in sample.labels.values()]
    assert not [v for v in labels if "secret" in v or "1234" in v or "010" in v]


def test_usage_reported_by_the_server_counts_input_and_output() -> None:
    before_in = value("personagraph_model_tokens_total", role="judge", kind="input")
    message = AIMessage("x", usage_metadata={"input_tokens": 7, "output_tokens": 3, "total_tokens": 10})
    # A usage report on the reply: ChatOpenAI puts it on the message (usage_metadata).
    run_id = uuid.uuid4()
    observer = install_observer()
    observer.on_chat_model_start(None, [[]], run_id=run_id, metadata={"role": "judge"})
    observer.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]), run_id=run_id)
    assert value("personagraph_model_tokens_total", role="judge", kind="input") == before_in + 7
    assert value("personagraph_model_tokens_total", role="judge", kind="output") >= 3


def test_a_failing_model_counts_a_model_error_and_a_turn_error() -> None:
    install_observer()
    failing = ScriptedChatModel(script=[ConnectionError("refused")], metadata={"role": "drafter"})
    before_errors = value("personagraph_model_errors_total", role="drafter", kind="connection")
    before_turns = value("personagraph_turn_errors_total", graph="crm_message", kind="model")
    with use_models({"drafter": failing}), pytest.raises(ModelError):
        _graph("crm_message").invoke({"text": "hi"})
    assert value("personagraph_model_errors_total", role="drafter", kind="connection") == before_errors + 1
    assert value("personagraph_turn_errors_total", graph="crm_message", kind="model") == before_turns + 1


def test_runs_outside_the_known_graphs_are_not_turns(drafter: ScriptedChatModel) -> None:
    _graph("my_experiment").invoke({"text": "hi"})
    assert value("personagraph_turn_seconds_count", graph="my_experiment") == 0
    assert "my_experiment" not in generate_latest(REGISTRY).decode()


def test_model_error_kinds() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    assert model_error_kind(openai.APITimeoutError(request=request)) == "timeout"  # type: ignore[arg-type]
    assert model_error_kind(openai.APIConnectionError(request=request)) == "connection"  # type: ignore[arg-type]
    response = httpx.Response(502, request=request)
    assert model_error_kind(openai.InternalServerError("bad", response=response, body=None)) == "http_5xx"  # type: ignore[arg-type]
    assert model_error_kind(ValueError("x")) == "other"


def test_labels_come_from_fixed_vocabularies() -> None:
    assert metrics.label("draft") == "draft"
    assert metrics.label("Alice Kim") == "other" and metrics.label("a@b.c") == "other"
    assert metrics.role_label("drafter") == "drafter" and metrics.role_label("alice") == "other"


def test_scrape_time_sources_queue_depth_and_stream_lag() -> None:
    metrics.set_queue_source("twin_run", lambda: {"queued": 2, "running": 1})

    def broken() -> dict[str, float]:
        raise ConnectionError("database down")

    metrics.set_queue_source("crm_batch", broken)  # a failing source is left out, not fatal
    metrics.set_lag_source(lambda: {"lag": 5, "pending": 2})
    try:
        assert value("personagraph_queue_depth", kind="twin_run", stage="queued") == 2
        assert value("personagraph_queue_depth", kind="twin_run", stage="running") == 1
        assert (
            REGISTRY.get_sample_value("personagraph_queue_depth", {"kind": "crm_batch", "stage": "queued"})
            is None
        )
        assert value("personagraph_insight_stream_lag") == 5
        assert value("personagraph_insight_stream_pending") == 2
    finally:
        metrics.set_queue_source("twin_run", None)
        metrics.set_queue_source("crm_batch", None)
        metrics.set_lag_source(None)


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(metrics_api.router)
    metrics_api.install(app)

    @app.get("/boom")
    def boom() -> None:
        raise FileNotFoundError("/secret/path")

    return app


def test_metrics_endpoint_counts_api_errors_and_needs_the_token_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    before = value("personagraph_api_errors_total", kind="not_found", status="404")
    assert client.get("/nothing-here").status_code == 404
    assert client.get("/boom").status_code == 500
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert "personagraph_turn_seconds" in response.text
    assert value("personagraph_api_errors_total", kind="not_found", status="404") == before + 1
    assert value("personagraph_api_errors_total", kind="internal", status="500") >= 1
    monkeypatch.setenv("METRICS_TOKEN", "scrape-me-please")
    get_settings.cache_clear()
    try:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"})
        assert ok.status_code == 200 and "scrape-me-please" not in ok.text
    finally:
        monkeypatch.delenv("METRICS_TOKEN")
        get_settings.cache_clear()
