"""The local services the app starts take a generated key/password (issue 16): the real local Redis
and the real embedded model server refuse a client without it, and the secret is on no command
line and in no repr."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from langchain_core.messages import HumanMessage

from personagraph.memory.redis_server import LocalRedis
from personagraph.serving.local_server import LocalModelServer
from personagraph.serving.settings import get_settings
from tests.integration.conftest import descendants

pytestmark = pytest.mark.integration


def _command_lines(supervisor_pid: int) -> str:
    """The command lines of a service's supervisor and everything below it (what `ps` shows)."""
    own = (Path("/proc") / str(supervisor_pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return " ".join([own, *descendants(supervisor_pid).values()])


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv("LOCAL_REDIS_PASSWORD", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_local_redis_refuses_clients_without_its_password(clean_settings: pytest.MonkeyPatch) -> None:
    with LocalRedis() as server, LocalRedis() as other:
        assert server.password and server.password != other.password  # a new one per start
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        wrong = redis.Redis(host="127.0.0.1", port=server.port, password=other.password, socket_timeout=2)
        with pytest.raises(redis.exceptions.AuthenticationError):
            wrong.ping()
        assert redis.Redis.from_url(server.url).ping()  # the URL carries it
        assert server.password not in repr(server) + server.describe()
        assert server.service is not None and server.service.process is not None
        assert server.password not in _command_lines(server.service.process.pid)
        leftovers = Path(tempfile.gettempdir()).glob("personagraph-redis-*.conf")
        assert all(server.password not in p.read_text() for p in leftovers)  # removed once up


def test_local_redis_uses_the_configured_password(clean_settings: pytest.MonkeyPatch) -> None:
    clean_settings.setenv("LOCAL_REDIS_PASSWORD", 'p@ss "word" \\ /:')
    get_settings.cache_clear()
    with LocalRedis() as server:
        assert server.password == 'p@ss "word" \\ /:'
        assert redis.Redis.from_url(server.url).ping()
        assert redis.Redis(host="127.0.0.1", port=server.port, password=server.password).ping()


def test_embedded_model_server_refuses_requests_without_its_key(model_server: LocalModelServer) -> None:
    models = f"{model_server.base_url}/models"
    assert httpx.get(models, timeout=10).status_code == 401
    assert httpx.get(models, headers={"Authorization": "Bearer EMPTY"}, timeout=10).status_code == 401
    chat = httpx.post(
        f"{model_server.base_url}/chat/completions", timeout=10,
        json={"model": model_server.alias, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
    )  # fmt: skip
    assert chat.status_code == 401
    assert httpx.get(models, headers=model_server.auth_headers, timeout=10).status_code == 200
    assert model_server.api_key not in repr(model_server)
    assert model_server.service is not None and model_server.service.process is not None
    assert model_server.api_key not in _command_lines(model_server.service.process.pid)


def test_the_client_sends_the_key_through_settings(real_model_env: dict[str, str]) -> None:
    from personagraph.serving.models import invoke_text

    assert real_model_env["LLM_API_KEY"]
    reply = invoke_text("chat", [HumanMessage(content="Say hi.")])
    assert isinstance(reply.content, str)
