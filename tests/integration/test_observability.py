"""A real chat turn through the HTTP API (the app from `create_app`, the real ChatService and graph, the
stub model server as a separate process), then /metrics is scraped and the JSON log lines are read:
the turn is counted (turn, nodes, first token, tokens by role) and its request id is on the log lines
of its nodes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from personagraph.accounts.store import AccountStore
from personagraph.api.app import create_app
from personagraph.services.chat import ChatService
from personagraph.serving.stub_model import StubModelServer
from tests.observability import json_logs, log_lines

pytestmark = pytest.mark.integration
PASSWORD = "observability password"
REQUEST_ID = "obs-turn-0001"
# A marker the stub echoes (pgm + 8 hex): the fan's message, which must appear in no metric.
MESSAGE = "pgm00c0ffee 오늘 연습 어땠어?"


@pytest.fixture
def stub_env(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from personagraph.memory.vectors import vector_client
    from personagraph.serving.settings import get_settings

    with StubModelServer(first_token_delay_s=0.0, tokens_per_s=0.0, reply_tokens=20) as stub:
        env = {**stub.env(), "PERSONAGRAPH_HOME": str(shared_home)}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        vector_client.cache_clear()
        yield env
    get_settings.cache_clear()


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    with json_logs("INFO") as buffer:
        yield buffer


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def sample(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_chat_turn_is_counted_and_its_request_id_follows_every_node(
    stub_env: dict[str, str], json_log: io.StringIO, tmp_path: Path
) -> None:
    accounts = AccountStore(tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    accounts.add("fan", PASSWORD)
    app = create_app(accounts, ChatService(), ready_checks={"model": lambda: None})
    client = TestClient(app)
    token = client.post("/api/session", json={"user_id": "fan", "password": PASSWORD}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}

    before = samples(client.get("/metrics").text)
    response = client.post(
        "/api/chat/send",
        json={"message": MESSAGE, "stream": True},
        headers={**headers, "X-Request-ID": REQUEST_ID},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == REQUEST_ID
    assert "event: final" in response.text and "pgm00c0ffee" in response.text

    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    after = samples(scraped.text)
    turns = ("personagraph_turn_seconds_count", {"graph": "persona_chat"})
    assert sample(after, turns[0], **turns[1]) == sample(before, turns[0], **turns[1]) + 1
    assert sample(after, "personagraph_node_seconds_count", graph="persona_chat", node="draft") >= 1
    for stage in ("model", "reply"):
        name = "personagraph_time_to_first_token_seconds_count"
        assert sample(after, name, graph="persona_chat", stage=stage) > sample(
            before, name, graph="persona_chat", stage=stage
        )
    out = sum(
        sample(after, "personagraph_model_tokens_total", role=r, kind="output") for r in ("drafter", "chat")
    )
    assert out > 0
    assert "pgm00c0ffee" not in scraped.text and "fan" not in _label_values(scraped.text)

    lines = log_lines(json_log)
    mine = [line for line in lines if line.get("request_id") == REQUEST_ID]
    nodes = {line["node"] for line in mine if line.get("node")}
    assert len(nodes) >= 2 and "draft" in nodes, nodes
    assert all(line.get("graph") == "persona_chat" for line in mine if line.get("node"))
    assert any(line.get("path") == "/api/chat/send" and line.get("status") == 200 for line in mine)
    assert "pgm00c0ffee" not in json_log.getvalue()  # the fan's words are in no log line


def _label_values(text: str) -> set[str]:
    values: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample_ in family.samples:
            values |= set(sample_.labels.values())
    return values


def test_metrics_and_request_ids_need_no_model(tmp_path: Path) -> None:
    """/metrics answers on an app whose model was never called, and a bad X-Request-ID is replaced."""
    accounts = AccountStore(tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    app = create_app(accounts, ChatService.__new__(ChatService), ready_checks={})  # a service never used
    client = TestClient(app)
    response = client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert response.headers["x-request-id"] != "bad id with spaces"
    body: Any = client.get("/metrics").text
    assert "personagraph_queue_depth" in body
