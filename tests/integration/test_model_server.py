"""The real embedded model server path: factory -> ChatOpenAI -> llama.cpp server."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from personagraph.nodes.routing import IntentDecision
from personagraph.serving.local_server import LocalModelServer
from personagraph.serving.models import ModelUnavailableError, chat_model, invoke_text, structured
from personagraph.serving.settings import get_settings

pytestmark = pytest.mark.integration


class Rating(BaseModel):
    score: int = Field(ge=1, le=7)
    reason: str = Field(max_length=200)


def test_text_reply_and_streaming(real_model_env: dict[str, str]) -> None:
    reply = invoke_text("chat", [HumanMessage(content="Say hello in one short sentence.")])
    assert isinstance(reply.content, str) and reply.content.strip()
    chunks = [
        c.content
        for c in chat_model("chat", max_tokens=24).stream([HumanMessage(content="Count: one, two,")])
    ]
    assert len(chunks) > 3, "the server should stream token by token"


def test_structured_output_is_schema_constrained(real_model_env: dict[str, str]) -> None:
    decision = structured(
        "router",
        IntentDecision,
        [
            SystemMessage(content="Classify the fan message."),
            HumanMessage(content="When did your first album come out?"),
        ],
    )
    assert decision.intent in ("smalltalk", "knowledge", "story", "personal")
    rating = structured("judge", Rating, [HumanMessage(content="Rate pizza from 1 to 7 and say why.")])
    assert 1 <= rating.score <= 7


def test_json_schema_response_format_is_rejected_by_llamacpp(
    real_model_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the backend matters: vLLM-style json_schema gets HTTP 500 from llama.cpp, reported clearly."""
    monkeypatch.setenv("LLM_BACKEND", "vllm")
    get_settings.cache_clear()
    with pytest.raises(ModelUnavailableError, match="HTTP 500"):
        structured("router", Rating, [HumanMessage(content="Rate pizza.")])


def test_server_down_gives_clear_error(
    model_server: LocalModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personagraph.serving.processes import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("LLM_BASE_URL", url)
    monkeypatch.setenv("LLM_MAX_RETRIES", "0")
    get_settings.cache_clear()
    with pytest.raises(ModelUnavailableError) as excinfo:
        invoke_text("chat", [HumanMessage(content="hi")])
    # The user's text is short; the URL and what to configure are in the error's detail (and the log).
    message, detail = str(excinfo.value), excinfo.value.detail
    assert url not in message and "try again" in message
    assert url in detail and "LLM_BASE_URL" in detail
