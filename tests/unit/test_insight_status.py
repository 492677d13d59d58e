"""The insight status (the tab's status line, the service's status and segment figures) shows the
data's origin without credentials, and the live consumers' health: state, restarts, last error in
short, dead letters; a failed read shows a short text and logs the details."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import Caller
from personagraph.insight.consumer import consumer_error_text
from personagraph.insight.source import LiveDemoSource, RedisSource
from personagraph.insight.store import Snapshot
from personagraph.services.insight import InsightService
from personagraph.ui.insight_tab import InsightPanel
from tests.unit.insight_support import small_snapshot

MINA = Caller("mina")
URL = "redis://:s3cret-pass@10.0.0.5:6379/0"
HEALTH = {"name": "demo", "state": "restarting", "restarts": 2, "last_error": "lost the connection to Redis",
          "last_error_at": time.time(), "applied": 10, "dead_lettered": 3}  # fmt: skip


class LiveWithPassword(RedisSource):
    """A live source whose URL holds a password (nothing is read from Redis)."""

    def __init__(self) -> None:
        super().__init__(URL)
        self.snap = small_snapshot()

    def read(self) -> Snapshot:
        return self.snap

    def segment_sizes(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.snap.customers["segment"].value_counts().items()}

    def orders_applied(self) -> int | None:
        return 42

    def model(self) -> Any:
        return None

    def consumer_status(self) -> dict[str, Any] | None:
        return {"consumers": [HEALTH], "dead_letters": 7, "dead_letter_stream": "insight:orders:dead"}


def service() -> InsightService:
    return InsightService.for_source(LiveWithPassword(), store=InMemoryStore())


def test_the_status_line_has_no_password_and_shows_the_consumers_health() -> None:
    status, *_ = InsightPanel(service()).refresh(MINA)
    assert "s3cret" not in status
    assert "redis://:***@10.0.0.5:6379/0" in status
    assert "consumer demo: restarting" in status and "restarted 2×" in status
    assert "lost the connection to Redis" in status and "dead-lettered: 7" in status


def test_the_service_status_and_figures_have_no_password() -> None:
    svc = service()
    status = svc.status(MINA)
    assert status["consumer"]["dead_letters"] == 7 and status["consumer"]["consumers"][0]["restarts"] == 2
    assert status["orders_applied"] == 42
    for shown in (status, svc.segment_stats(MINA)):
        assert "s3cret" not in json.dumps(shown, default=str)


def test_the_demo_source_describes_itself_without_a_password() -> None:
    demo = LiveDemoSource.__new__(LiveDemoSource)  # not started: only its description
    demo.url, demo.rate = URL, 20.0
    assert "s3cret" not in demo.describe() and ":***@" in demo.describe()


def test_a_failed_read_shows_a_short_text_and_logs_the_details(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(LiveWithPassword):
        def segment_sizes(self) -> dict[str, int]:
            raise ConnectionError(f"cannot reach {URL}")

    panel = InsightPanel(InsightService.for_source(Broken(), store=InMemoryStore()))
    with caplog.at_level(logging.ERROR, logger="personagraph.ui.insight_tab"):
        status, *_ = panel.refresh(MINA)
    assert status.startswith("**Data unavailable:** the customer data could not be read")
    assert "ConnectionError" not in status and "10.0.0.5" not in status and "s3cret" not in status
    assert "ConnectionError" in caplog.text and "redis://:***@10.0.0.5" in caplog.text
    assert "s3cret" not in caplog.text


def test_consumer_errors_are_shown_as_their_kind() -> None:
    import redis

    assert (
        consumer_error_text(redis.ConnectionError(f"Error 111 connecting to {URL}"))
        == "lost the connection to Redis"
    )
    assert (
        consumer_error_text(redis.ResponseError("OOM command not allowed")) == "Redis refused a command (OOM)"
    )
    assert consumer_error_text(KeyError("s3cret")) == "unexpected error in the consumer"
