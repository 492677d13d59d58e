"""serving/tracing.py: when tracing turns on, what reaches the client, and the run metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from langsmith import utils as ls_utils

from personagraph.serving.logs import request_scope
from personagraph.serving.settings import get_settings
from personagraph.serving.tracing import (
    account_ref,
    configure_tracing,
    flush_tracing,
    opaque_thread,
    run_config,
    trace_scope,
)
from tests.langsmith_recorder import LangSmithRecorder
from tests.observability import langsmith_recording


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[LangSmithRecorder]:
    with langsmith_recording(monkeypatch, "unit-project") as rec:
        yield rec


def _tracing_on(monkeypatch: pytest.MonkeyPatch, key: str = "unit-key") -> None:
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", key)
    get_settings.cache_clear()
    assert configure_tracing()


def _add_one(x: int) -> int:
    return x + 1


def _metadata(run: dict[str, Any]) -> dict[str, Any]:
    return dict((run.get("extra") or {}).get("metadata") or {})


def test_account_ref_is_opaque_and_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = account_ref("jisoo.lee@example.com")
    assert ref == account_ref("jisoo.lee@example.com") and ref.startswith("acct_")
    assert "jisoo" not in ref and "example" not in ref
    assert ref != account_ref("someone-else")
    monkeypatch.setenv("LANGSMITH_ACCOUNT_KEY", "a-secret")
    get_settings.cache_clear()
    assert account_ref("jisoo.lee@example.com") != ref  # a key makes it unguessable


def test_run_config_metadata_has_no_personal_data() -> None:
    config = run_config({"configurable": {"thread_id": "jisoo/t-1"}}, "persona_chat", "jisoo", "stella_yuna")
    assert config["configurable"] == {"thread_id": "jisoo/t-1"}  # the checkpointer still gets the real key
    meta = config["metadata"]
    assert meta["graph"] == "persona_chat" and meta["persona"] == "stella_yuna"
    assert meta["account"] == account_ref("jisoo")
    # LangChain copies configurable values into trace metadata unless metadata holds the key already.
    assert meta["thread_id"] == opaque_thread("jisoo/t-1")
    assert "jisoo" not in repr(meta)
    assert "request_id" not in meta
    with request_scope("req-42"):
        assert run_config({}, "insight_qa")["metadata"]["request_id"] == "req-42"


def test_no_key_means_no_tracing_even_when_asked(
    recorder: LangSmithRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    get_settings.cache_clear()
    assert not configure_tracing()
    assert not ls_utils.tracing_is_enabled()
    RunnableLambda(_add_one, name="quiet").invoke(1, run_config({}, "persona_chat"))
    flush_tracing()
    assert recorder.requests == []


def test_key_from_dotenv_reaches_the_client(
    recorder: LangSmithRecorder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The working directory is tmp_path (tests/conftest.py): .env there is what settings read.
    monkeypatch.delenv("LANGSMITH_TRACING", raising=False)
    (tmp_path / ".env").write_text(
        "LANGSMITH_TRACING=true\nLANGSMITH_API_KEY=from-dotenv\n", encoding="utf-8"
    )
    get_settings.cache_clear()
    assert configure_tracing()
    RunnableLambda(_add_one, name="adder").invoke(1, run_config({}, "crm_message", "jisoo"))
    flush_tracing()
    assert recorder.api_keys == {"from-dotenv"}
    (run,) = recorder.runs_named("adder")
    assert run["session_name"] == "unit-project"
    assert _metadata(run)["graph"] == "crm_message"
    assert _metadata(run)["account"] == account_ref("jisoo")


def test_trace_scope_labels_model_calls_outside_graphs(
    recorder: LangSmithRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tracing_on(monkeypatch)
    model = GenericFakeChatModel(messages=iter([AIMessage(content="4")]), metadata={"role": "twin"})
    # A survey run's scope (with the run owner) around each answer's own scope, as in services/twins.
    with trace_scope("twin_survey", "jisoo"), trace_scope("twin_survey"):
        model.invoke([HumanMessage(content="how sure are you, 1-5?")])
    flush_tracing()
    (run,) = [r for r in recorder.all_runs() if r.get("run_type") == "llm"]
    assert _metadata(run)["graph"] == "twin_survey"
    assert _metadata(run)["role"] == "twin"
    assert _metadata(run)["account"] == account_ref("jisoo")
