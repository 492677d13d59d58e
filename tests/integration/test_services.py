"""persona_chat over real services: Redis checkpointer (with TTL), Chroma server, SQLite store."""

from __future__ import annotations

import httpx
import pytest
import redis

from personagraph.accounts.identity import CLI_CALLER
from personagraph.memory.persistence import make_checkpointer
from personagraph.memory.redis_server import LocalRedis
from personagraph.memory.vectors import chroma_client, search
from personagraph.personas.index import ensure_persona_index
from personagraph.services.chat import ChatService, validate_request
from personagraph.serving.settings import get_settings

pytestmark = pytest.mark.integration


def test_chat_threads_persist_in_redis_with_ttl(
    real_model_env: dict[str, str], redis_server: LocalRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("CHECKPOINT_TTL_MINUTES", "30")
    get_settings.cache_clear()
    service = ChatService(checkpointer=make_checkpointer())
    first = service.send(
        CLI_CALLER, validate_request(message="Hello! How are you today?", thread_id="redis-thread")
    )
    assert first.error is None and first.reply
    second = service.send(
        CLI_CALLER, validate_request(message="What did I just ask you?", thread_id="redis-thread")
    )
    assert second.error is None

    # A new service (a new process, in effect) sees the same thread from Redis.
    fresh = ChatService(checkpointer=make_checkpointer())
    history = fresh.history(CLI_CALLER, "redis-thread")
    assert [m.type for m in history] == ["human", "ai", "human", "ai"]
    client = redis.Redis.from_url(redis_server.url)
    keys = [k for k in client.scan_iter("checkpoint*") if b"redis-thread" in k]
    assert keys, "checkpoints are stored in Redis"
    ttls = [client.ttl(k) for k in keys]
    assert all(0 < t <= 30 * 60 for t in ttls), ttls


def test_knowledge_index_on_chroma_server(chroma_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHROMA_URL", chroma_server)
    get_settings.cache_clear()
    client = chroma_client()
    knowledge, _ = ensure_persona_index(client, "stella_yuna")
    listed = httpx.get(
        f"{chroma_server}/api/v2/tenants/default_tenant/databases/default_database/collections"
    ).json()
    assert "kb_stella_yuna" in {c["name"] for c in listed}, "the index lives on the Chroma server"
    assert knowledge.count() >= 10
    hits = search(knowledge, "데뷔 앨범", k=3)
    assert hits and any("discography" in str(h.metadata.get("source")) for h in hits)
    # Re-running is idempotent: same fingerprint, nothing rebuilt.
    again, _ = ensure_persona_index(chroma_client(), "stella_yuna")
    assert again.count() == knowledge.count()
