"""serving.models: backend-specific structured output, validation retries, clear errors.

Two layers: `use_models` with scripted fakes for the retry logic, and a real `ChatOpenAI` whose
HTTP traffic goes to an `httpx.MockTransport`, to check what is actually sent to the server.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

import personagraph.serving.models as models
from personagraph.serving.models import (
    ModelError,
    ModelUnavailableError,
    StructuredOutputError,
    chat_model,
    extract_json,
    invoke_text,
    response_format_for,
    structured,
    use_models,
)
from personagraph.serving.settings import get_settings
from tests.fakes import scripted


class Rating(BaseModel):
    score: int = Field(ge=1, le=5)
    comment: str = ""


def env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


# --- response_format_for -------------------------------------------------------------------------


def test_response_format_llamacpp_is_json_object_with_schema() -> None:
    fmt = response_format_for("judge", Rating)
    assert fmt == {"type": "json_object", "schema": Rating.model_json_schema()}


def test_response_format_vllm_is_json_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, LLM_BASE_URL="http://gpu-box:8000/v1")
    fmt = response_format_for("judge", Rating)
    assert fmt == {
        "type": "json_schema",
        "json_schema": {"name": "Rating", "schema": Rating.model_json_schema()},
    }


def test_response_format_follows_the_roles_own_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, LLM_JUDGE_BASE_URL="http://gpu-box:8000/v1")
    assert response_format_for("judge", Rating)["type"] == "json_schema"  # type: ignore[index]
    assert response_format_for("router", Rating)["type"] == "json_object"  # type: ignore[index]


def test_response_format_is_none_for_overridden_roles() -> None:
    with use_models({"judge": scripted("{}")}):
        assert response_format_for("judge", Rating) is None
    assert response_format_for("judge", Rating) is not None


def test_a_grammar_goes_to_a_llamacpp_server_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_openai import ChatOpenAI

    def extra_body(**kwargs: Any) -> Any:
        model = chat_model("drafter", **kwargs)
        assert isinstance(model, ChatOpenAI)
        return model.extra_body

    env(monkeypatch, LLM_BASE_URL="http://cpu-box:8080/v1", LLM_BACKEND="llamacpp", LLM_MAX_TOKENS="64")
    assert extra_body(grammar="root ::= [a-z]+") == {"max_tokens": 64, "grammar": "root ::= [a-z]+"}
    assert extra_body() == {"max_tokens": 64}
    env(monkeypatch, LLM_BASE_URL="http://gpu-box:8000/v1", LLM_BACKEND="vllm")
    assert extra_body(grammar="root ::= [a-z]+") is None


# --- use_models ---------------------------------------------------------------------------------


def test_use_models_restores_previous_overrides() -> None:
    outer, inner = scripted("outer"), scripted("inner")
    with use_models({"chat": outer}):
        with use_models({"chat": inner, "judge": inner}):
            assert chat_model("chat") is inner
            assert chat_model("judge") is inner
        assert chat_model("chat") is outer
        assert "judge" not in models._overrides
    assert models._overrides == {}


# --- structured() with scripted fakes ------------------------------------------------------------


def ask(model, **kwargs: Any) -> Rating:
    with use_models({"judge": model}):
        return structured("judge", Rating, [HumanMessage(content="rate this")], **kwargs)


def test_structured_valid_first_time() -> None:
    model = scripted({"score": 4, "comment": "nice"})
    assert ask(model) == Rating(score=4, comment="nice")
    assert len(model.calls) == 1
    sent = model.calls[0]["messages"]
    assert sent[0].content == "rate this"
    assert isinstance(sent[-1], SystemMessage) and '"score"' in sent[-1].content  # schema shown


def test_structured_retries_invalid_json_with_the_error() -> None:
    model = scripted("score is four", {"score": 4})
    assert ask(model).score == 4
    assert len(model.calls) == 2
    retry = model.calls[1]["messages"]
    assert isinstance(retry[-2], AIMessage) and retry[-2].content == "score is four"
    assert isinstance(retry[-1], HumanMessage)
    assert "invalid" in str(retry[-1].content).lower()
    assert "Invalid JSON" in retry[-1].content  # pydantic's message for unparsable JSON


def test_structured_rejects_out_of_range_value_then_accepts_correction() -> None:
    model = scripted({"score": 9}, {"score": 5})
    assert ask(model).score == 5
    retry_prompt = model.calls[1]["messages"][-1].content
    assert "score" in retry_prompt
    assert "less than or equal to 5" in retry_prompt


def test_structured_missing_field_is_named_in_retry() -> None:
    model = scripted({"comment": "no score"}, {"score": 2})
    assert ask(model).score == 2
    assert "score: Field required" in model.calls[1]["messages"][-1].content


def test_structured_always_invalid_raises_naming_role_and_schema() -> None:
    model = scripted({"score": 0})
    with pytest.raises(StructuredOutputError) as info:
        ask(model)
    message = str(info.value)
    assert "'judge'" in message and "Rating" in message and "3 attempts" in message
    assert "greater than or equal to 1" in message
    assert json.loads(info.value.raw) == {"score": 0}
    assert len(model.calls) == 3
    assert isinstance(info.value, ModelError)


def test_structured_attempts_setting_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    env(monkeypatch, LLM_STRUCTURED_ATTEMPTS="2")
    model = scripted("nope")
    with pytest.raises(StructuredOutputError, match="2 attempts"):
        ask(model)
    assert len(model.calls) == 2


def test_structured_accepts_json_in_code_fences() -> None:
    model = scripted('```json\n{"score": 3, "comment": "ok"}\n```')
    assert ask(model) == Rating(score=3, comment="ok")
    assert len(model.calls) == 1


def test_structured_accepts_json_with_chatter_around_it() -> None:
    model = scripted('Sure! Here it is: {"score": 2} Hope that helps.')
    assert ask(model).score == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ('```json\n{"a": {"b": 2}}\n```', '{"a": {"b": 2}}'),
        ('```\n{"a": 1}\n```', '{"a": 1}'),
        ("no json here", "no json here"),
    ],
)
def test_extract_json(raw: str, expected: str) -> None:
    assert extract_json(raw) == expected


def test_invoke_text_passes_model_errors_through() -> None:
    boom = ModelUnavailableError("server at http://x is down")
    with use_models({"chat": scripted(boom)}), pytest.raises(ModelUnavailableError, match="http://x"):
        invoke_text("chat", [HumanMessage(content="hi")])


def test_invoke_text_maps_connection_errors() -> None:
    import openai

    request = httpx.Request("POST", "http://x/v1/chat/completions")
    error = openai.APIConnectionError(request=request)  # type: ignore[arg-type]
    with use_models({"chat": scripted(error)}), pytest.raises(ModelUnavailableError) as info:
        invoke_text("chat", [HumanMessage(content="hi")])
    assert "did not answer" in str(info.value) and "unreachable" in info.value.detail
    assert info.value.__cause__ is error


# --- a real ChatOpenAI over httpx.MockTransport -------------------------------------------------

Handler = Callable[[dict[str, Any]], httpx.Response]


def completion(content: str, model: str = "m") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    )


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    """Route every ChatOpenAI built by `chat_model` to a mock server; returns (requests, set_replies)."""
    requests: list[dict[str, Any]] = []
    replies: list[httpx.Response] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append({"url": str(request.url), "auth": request.headers.get("authorization"), **body})
        return replies[min(len(requests), len(replies)) - 1]

    client = httpx.Client(transport=httpx.MockTransport(handler))
    monkeypatch.setattr(models, "ChatOpenAI", functools.partial(ChatOpenAI, http_client=client))
    env(monkeypatch, LLM_BASE_URL="http://llm.test/v1", LLM_MODEL="base", LLM_MAX_RETRIES="0")

    def set_replies(*responses: httpx.Response) -> None:
        replies[:] = responses

    yield requests, set_replies
    client.close()


def test_real_client_sends_role_model_key_and_limits(server, monkeypatch: pytest.MonkeyPatch) -> None:
    requests, set_replies = server
    env(monkeypatch, LLM_CHAT_MODEL="chat-lora", LLM_CHAT_API_KEY="k-chat", LLM_MAX_TOKENS="77")
    set_replies(completion("Hello, Starlight!"))
    reply = invoke_text("chat", [HumanMessage(content="hi")])
    assert reply.content == "Hello, Starlight!"
    (sent,) = requests
    assert sent["url"] == "http://llm.test/v1/chat/completions"
    assert sent["model"] == "chat-lora"
    assert sent["auth"] == "Bearer k-chat"
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert 77 in (sent.get("max_tokens"), sent.get("max_completion_tokens"))
    assert "response_format" not in sent


def test_real_client_vllm_structured_sends_json_schema(server) -> None:
    requests, set_replies = server
    set_replies(completion('{"score": 7}'), completion('{"score": 3}'))
    result = structured("judge", Rating, [HumanMessage(content="rate")])
    assert result.score == 3
    assert len(requests) == 2
    first, second = requests
    assert first["temperature"] == 0.0
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["name"] == "Rating"
    assert first["response_format"]["json_schema"]["schema"] == Rating.model_json_schema()
    assert second["messages"][-2] == {"role": "assistant", "content": '{"score": 7}'}
    assert "less than or equal to 5" in second["messages"][-1]["content"]


def test_real_client_llamacpp_structured_sends_json_object_schema_and_max_tokens(
    server, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests, set_replies = server
    env(monkeypatch, LLM_BACKEND="llamacpp")
    set_replies(completion('{"score": 1}'))
    assert structured("router", Rating, [HumanMessage(content="rate")], max_tokens=40).score == 1
    (sent,) = requests
    assert sent["response_format"] == {"type": "json_object", "schema": Rating.model_json_schema()}
    # llama-cpp-python's server only reads `max_tokens` (it ignores `max_completion_tokens`).
    assert sent.get("max_tokens") == 40


def test_real_client_http_500_is_model_unavailable(server) -> None:
    _, set_replies = server
    set_replies(httpx.Response(500, json={"error": {"message": "CUDA out of memory"}}))
    with pytest.raises(ModelUnavailableError) as info:
        invoke_text("chat", [HumanMessage(content="hi")])
    message, detail = str(info.value), info.value.detail
    assert "HTTP 500" in message and "llm.test" not in message
    assert "http://llm.test/v1" in detail and "LLM_CHAT_MODEL" in detail


def test_real_client_http_404_in_structured_is_model_unavailable(server) -> None:
    _, set_replies = server
    set_replies(httpx.Response(404, json={"error": {"message": "model 'x' not found"}}))
    with pytest.raises(ModelUnavailableError, match="HTTP 404"):
        structured("judge", Rating, [HumanMessage(content="rate")])


def test_server_down_tells_the_user_briefly_and_logs_the_url_and_what_to_do(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A password in the server's URL: never shown, never logged.
    env(monkeypatch, LLM_BASE_URL="http://ops:s3cret@127.0.0.1:9/v1", LLM_MAX_RETRIES="0", LLM_TIMEOUT_S="5")
    with (
        caplog.at_level("WARNING", logger="personagraph.serving.models"),
        pytest.raises(ModelUnavailableError) as info,
    ):
        invoke_text("chat", [HumanMessage(content="hi")])
    message = str(info.value)
    assert message == "the model server for role 'chat' did not answer; try again in a moment"
    assert "127.0.0.1" not in message and "Error" not in message and "http" not in message
    logged = caplog.text
    assert "http://ops:***@127.0.0.1:9/v1" in logged and "ConnectionError" in logged
    assert "LLM_BASE_URL" in logged and "LLM_CHAT_BASE_URL" in logged
    assert "s3cret" not in logged and "s3cret" not in info.value.detail
