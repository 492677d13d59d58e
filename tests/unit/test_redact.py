"""serving.redact: credentials out of URLs and free text; short error texts for users, details to the
log; and the places that show errors (model errors, the API's 500s and Redis outages) use it."""

from __future__ import annotations

import logging

import httpx
import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.messages import HumanMessage
from redis.exceptions import ConnectionError as RedisConnectionError

from personagraph.api.errors import install_error_handlers
from personagraph.serving.models import ModelUnavailableError, invoke_text, use_models
from personagraph.serving.redact import redact_text, redact_url, user_error
from tests.fakes import scripted


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
        ("redis://default:s3cret@cache:6380/1", "redis://default:***@cache:6380/1"),
        ("rediss://user:p%40ss@h", "rediss://user:***@h"),
        ("https://s3cret@llm.internal/v1", "https://***@llm.internal/v1"),
        ("http://h/v1?api_key=s3cret&model=x", "http://h/v1?api_key=***&model=x"),
        ("postgresql://app:s3cret@db/x?sslmode=require", "postgresql://app:***@db/x?sslmode=require"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_urls_keys_and_tokens() -> None:
    text = redact_text(
        "ConnectError: http://ops:s3cret@10.0.0.5:8000/v1 failed; password=s3cret "
        "Authorization: Bearer s3cret-token-123 key sk-s3cretS3cretS3cret"
    )
    assert "s3cret" not in text
    assert "http://ops:***@10.0.0.5:8000/v1" in text  # the address stays for whoever reads the log


def test_user_error_is_short_and_logs_the_details(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.redact")
    try:
        raise ConnectionRefusedError("redis://:s3cret@10.0.0.5:6379/0 refused")
    except ConnectionRefusedError as exc:
        with caplog.at_level(logging.ERROR, logger="test.redact"):
            text = user_error(log, exc, "the data could not be read")
    assert text.startswith("the data could not be read; try again")
    assert "10.0.0.5" not in text and "ConnectionRefusedError" not in text
    assert "ConnectionRefusedError" in caplog.text and "redis://:***@10.0.0.5:6379/0" in caplog.text
    assert "Traceback" in caplog.text and "s3cret" not in caplog.text


def test_a_model_server_down_error_names_no_url_or_class_and_the_log_has_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = httpx.Request("POST", "http://10.0.0.5:8000/v1/chat/completions")
    down = openai.APIConnectionError(request=request)  # type: ignore[arg-type]
    with (
        use_models({"chat": scripted(down)}),
        caplog.at_level(logging.WARNING),
        pytest.raises(ModelUnavailableError) as info,
    ):
        invoke_text("chat", [HumanMessage(content="hi")])
    shown = str(info.value)
    assert "did not answer" in shown and "try again" in shown
    assert "http" not in shown and "APIConnectionError" not in shown and "Error" not in shown
    assert "APIConnectionError" in caplog.text


def app_raising(exc: Exception) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise exc

    return TestClient(app, raise_server_exceptions=False)


def test_an_unexpected_api_error_is_a_short_500_and_the_log_has_the_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = app_raising(KeyError("redis://:s3cret@10.0.0.5:6379/0"))
    with caplog.at_level(logging.ERROR, logger="personagraph.api.errors"):
        response = client.get("/boom")
    assert response.status_code == 500
    reason = response.json()["error"]["reason"]
    assert reason.startswith("internal error") and "server log" in reason
    assert "KeyError" not in reason and "10.0.0.5" not in reason and "s3cret" not in reason
    assert (
        "KeyError" in caplog.text and "redis://:***@10.0.0.5" in caplog.text and "s3cret" not in caplog.text
    )


def test_redis_down_is_a_503_without_the_servers_address(caplog: pytest.LogCaptureFixture) -> None:
    client = app_raising(RedisConnectionError("Error 111 connecting to 10.0.0.5:6379. Connection refused."))
    with caplog.at_level(logging.ERROR, logger="personagraph.api.errors"):
        response = client.get("/boom")
    assert response.status_code == 503 and response.headers["retry-after"] == "10"
    reason = response.json()["error"]["reason"]
    assert "Redis" in reason and "10.0.0.5" not in reason and "Error 111" not in reason
    assert "10.0.0.5:6379" in caplog.text
