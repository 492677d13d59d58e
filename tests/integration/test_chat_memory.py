"""Long-term memory across threads with the real embedded model; isolation of concurrent fans on Redis.

Each fan is a signed-in account (`Caller`): the service keeps their memories and threads apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from personagraph.accounts.identity import Caller
from personagraph.memory.fan_memory import memories_namespace, profile_namespace
from personagraph.memory.persistence import make_checkpointer
from personagraph.memory.redis_server import LocalRedis
from personagraph.nodes import draft as draft_node
from personagraph.services.chat import ChatService, validate_request
from personagraph.serving.local_server import LocalModelServer
from personagraph.serving.settings import get_settings

pytestmark = pytest.mark.integration
NAMES = ["Minji", "Jisoo", "Haerin", "Daniel", "Olivia", "Mateo", "Sakura", "Noah"]


def test_fan_is_remembered_in_a_new_thread(
    default_model_env: LocalModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the drafting model is given, recorded on its way to the real server.
    prompts: list[str] = []
    real_stream = draft_node.stream_text

    def recorded(role: Any, messages: list[BaseMessage], **settings: Any) -> Iterator[str]:
        prompts.append("\n".join(str(m.content) for m in messages))
        return real_stream(role, messages, **settings)

    monkeypatch.setattr(draft_node, "stream_text", recorded)
    service = ChatService()
    minji = Caller("fan-minji")
    told = service.send(
        minji,
        validate_request(
            message="Hi Yuna! My name is Minji and my favourite song is Polaris.", thread_id="memory-a"
        ),
    )
    assert told.error is None
    profile = service.store.get(profile_namespace("fan-minji", "stella_yuna"), "profile")
    assert profile is not None and "minji" in str(profile.value).lower()
    prompts.clear()
    asked = service.send(
        minji, validate_request(message="What is my name? Please say it.", thread_id="memory-b")
    )
    assert asked.error is None and asked.reply.strip()
    # The new thread's turn retrieved the fan's message from the memory store and gave the model the
    # name. Whether the 1.5B model's draft then says it is the model's part: its greedy reply differs
    # between CPUs (two CI runs), so it is measured by `python -m evals memory`, not asserted here.
    recalled = [
        service.store.get(memories_namespace("fan-minji", "stella_yuna"), source.removeprefix("memory:"))
        for source in asked.sources
        if source.startswith("memory:")
    ]
    assert any(item is not None and "Minji" in str(item.value) for item in recalled), asked.sources
    # Either the recall step answered from the notes (then the reply says the name, grounded in the
    # notes) or the draft did, with the name in every prompt it was given.
    if prompts:
        assert all("Minji" in prompt for prompt in prompts)
    else:
        assert "Minji" in asked.reply, asked.reply
    assert (
        service.history(minji, "memory-b")[0].content == "What is my name? Please say it."
    )  # a separate thread
    assert service.get_profile(Caller("someone-else"), "stella_yuna") == {}  # another account sees nothing


def test_eight_concurrent_fans_stay_isolated_on_redis(
    real_model_env: dict[str, str], redis_server: LocalRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("LLM_MAX_TOKENS", "32")
    get_settings.cache_clear()
    service = ChatService(checkpointer=make_checkpointer())

    def chat(name: str) -> str | None:
        request = validate_request(message=f"Hi! I'm {name} and I live in {name}ville.", thread_id="iso")
        return service.send(Caller(f"fan-{name}"), request).error  # the same thread id for everyone

    with ThreadPoolExecutor(max_workers=8) as pool:
        errors = list(pool.map(chat, NAMES))
    assert errors == [None] * 8, errors
    for name in NAMES:
        others = [n for n in NAMES if n != name]
        history = service.history(Caller(f"fan-{name}"), "iso")
        assert [m.type for m in history] == ["human", "ai"]
        assert name in history[0].content
        thread_text = " ".join(str(m.content) for m in history)
        assert not any(f"{other}ville" in thread_text for other in others)
        memories = service.store.search(memories_namespace(f"fan-{name}", "stella_yuna"), limit=10)
        assert memories and all(name in item.value["text"] for item in memories)
        profile = service.store.get(profile_namespace(f"fan-{name}", "stella_yuna"), "profile")
        if profile is not None:  # the tiny test model may extract nothing, but never another fan's data
            assert not any(other in str(profile.value) for other in others)
