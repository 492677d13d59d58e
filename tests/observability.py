"""Test helpers for logs and traces shared by the unit and integration tests."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from personagraph.serving.logs import configure_logging
from personagraph.serving.settings import get_settings
from personagraph.serving.tracing import configure_tracing
from tests.langsmith_recorder import LangSmithRecorder


@contextmanager
def json_logs(level: str) -> Iterator[io.StringIO]:
    """Root logging as JSON lines into a buffer at `level`; the earlier handlers are restored after."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging("json", level, stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def log_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """The JSON objects logged into `buffer` (lines that are not JSON are skipped)."""
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]


@contextmanager
def langsmith_recording(monkeypatch: pytest.MonkeyPatch, project: str) -> Iterator[LangSmithRecorder]:
    """LangSmith pointed at a local recorder for the block; tracing is off again after it, so later
    tests in this process never trace to a stopped recorder."""
    with LangSmithRecorder() as recorder:
        monkeypatch.setenv("LANGSMITH_ENDPOINT", recorder.url)
        monkeypatch.setenv("LANGSMITH_PROJECT", project)
        yield recorder
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    get_settings.cache_clear()
    configure_tracing()
