"""Issue 18's speed pieces that need no model: the embedded server's prompt cache flags, the draft's
context budget in tokens, and the latency benchmark's own arithmetic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from personagraph.memory.embeddings import token_count
from personagraph.nodes.draft import context_block
from personagraph.serving import local_server
from personagraph.serving.local_server import LocalModelServer, local_model_server


class _Process:
    """Stands in for the server process: records the command, starts nothing."""

    commands: list[list[str]] = []

    def __init__(self, name: str, command: list[str], **kwargs: Any):
        _Process.commands.append(command)

    def start(self, *args: Any, **kwargs: Any) -> None:
        pass


def _command(monkeypatch: pytest.MonkeyPatch, server: LocalModelServer) -> list[str]:
    monkeypatch.setattr(local_server, "ServiceProcess", _Process)
    _Process.commands = []
    server.start()
    return _Process.commands[-1]


def test_prompt_cache_flags_follow_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from personagraph.serving.settings import get_settings

    monkeypatch.setenv("LOCAL_MODEL_PROMPT_CACHE_MB", "256")
    get_settings.cache_clear()
    server = local_model_server(get_settings(), Path("model.gguf"), "local")
    command = _command(monkeypatch, server)
    at = command.index("--cache")
    assert command[at : at + 6] == ["--cache", "true", "--cache_type", "ram", "--cache_size", str(256 << 20)]


def test_no_prompt_cache_at_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    command = _command(monkeypatch, LocalModelServer(Path("model.gguf"), "local", prompt_cache_mb=0))
    assert "--cache" not in command


def test_prompt_cache_is_on_by_default() -> None:
    from personagraph.serving.settings import get_settings

    assert get_settings().local_model_prompt_cache_mb > 0


def _docs(*texts: str) -> Any:
    return {
        "retrieved": [
            {"text": t, "source": f"doc{i}", "category": "k", "score": 1.0} for i, t in enumerate(texts)
        ]
    }


def test_context_keeps_the_best_documents_whole_within_the_token_budget() -> None:
    best = "Yuna debuted with STELLA in 2021. " * 8
    second = "The lightstick is silver and blue. " * 8
    third = "A third document nobody needs. " * 40
    block = context_block(_docs(best, second, third), max_tokens=token_count(best) + token_count(second) + 30)
    assert best.strip() in block and second.strip() in block
    assert "third document" not in block  # under 40 tokens left: left out, not a stub


def test_a_document_over_the_budget_is_cut_on_a_word_boundary() -> None:
    text = " ".join(f"word{i}" for i in range(400))
    block = context_block(_docs(text), max_tokens=120)
    kept = block[block.index("word0") :].split(" …")[0]
    assert token_count(kept + " …") <= 120
    assert kept.split()[-1].startswith("word")  # whole words only
    assert "word399" not in block


def test_korean_context_is_counted_in_tokens() -> None:
    text = "별빛 응원봉은 은색과 파란색이에요. " * 80
    block = context_block(_docs(text), max_tokens=100)
    assert "별빛" in block and block.count("별빛") < 80


def test_no_documents_say_so() -> None:
    assert context_block({"retrieved": []}, max_tokens=400) == context_block({}, max_tokens=400)


# --- bench/chat_latency.py arithmetic ---------------------------------------------------------------


def test_prompt_tokens_read_from_the_server_log() -> None:
    from bench.chat_latency import prompt_tokens

    log = (
        "Llama.generate: 370 prefix-match hit, remaining 7 prompt tokens to eval\n"
        "llama_perf_context_print: prompt eval time =    4873.66 ms /     7 tokens (  696 ms per token)\n"
        "llama_perf_context_print: prompt eval time =    100.00 ms /   120 tokens (  1 ms per token)\n"
    )
    assert prompt_tokens(log) == (370 + 7 + 120, 7 + 120)
    assert prompt_tokens("") == (None, None)


def test_percentiles_and_summary() -> None:
    from bench.chat_latency import TurnRow, percentile, summarise

    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0], 95) == pytest.approx(1.95)
    assert percentile([], 50) is None
    rows = [
        TurnRow("p", 2, "knowledge", "knowledge", 2.0, 8.0, 7.0, {"draft:chat": 1}, 1.5, 900, 300, None, 40),
        TurnRow("p", 3, "smalltalk", "smalltalk", 4.0, 10.0, 9.0, {"draft:chat": 1, "memory_write:router": 1},
                3.0, 1000, 100, None, 50),
        TurnRow("p", 4, "story", "", None, 1.0, None, {}, None, None, None, "stopped", 0),
    ]  # fmt: skip
    summary = summarise(rows)
    assert summary["turns"] == 3 and summary["errors"] == 1
    assert summary["ttft_p50_s"] == 3.0
    assert summary["model_calls_per_turn"] == 1.5
    assert summary["model_calls_by_node_role"] == {"draft:chat": 1.0, "memory_write:router": 0.5}
    assert summary["prompt_tokens_evaluated_per_turn"] == 200
    assert summary["overhead_p50_s"] == 0.75  # (0.5 + 1.0) / 2
    assert summary["ttft_over_server_ttft_p50"] == pytest.approx(1.33, abs=0.01)


# --- no profile extraction for a lone question about the fan ---------------------------------------


@pytest.mark.parametrize(
    ("text", "states"),
    [
        ("Do you remember my name?", False),
        ("내가 어디 산다고 했는지 기억해?", False),
        ("제 이름 기억하세요?", False),
        ("My name is Minji!", True),
        ("내 이름은 민지야", True),
        ("Do you remember my name? It's Minji.", True),
    ],
)
def test_states_something(text: str, states: bool) -> None:
    from personagraph.nodes.memory_write import states_something

    assert states_something(text) is states


def test_a_question_about_the_fan_is_remembered_without_an_extraction_call(make_runtime) -> None:
    from langchain_core.messages import HumanMessage
    from langgraph.store.memory import InMemoryStore

    from personagraph.memory.fan_memory import memories_namespace
    from personagraph.nodes.memory_write import memory_write
    from personagraph.serving.models import use_models
    from tests.fakes import scripted

    store = InMemoryStore()
    extractor = scripted(AssertionError("no extraction expected"))
    with use_models({"router": extractor}):
        memory_write({"messages": [HumanMessage(content="Do you remember my name?", id="m0")]},
                     make_runtime(store=store))  # fmt: skip
    assert extractor.calls == []
    assert [i.value["text"] for i in store.search(memories_namespace("fan1", "tiny"))] == [
        "Do you remember my name?"
    ]


def test_the_next_turn_prompt_starts_with_what_was_warmed(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After each turn the service has the chat server read the next turn's stable prompt start
    (CHAT_PREWARM), and again at the turn's start (a new thread, or a previous turn run by another
    process); the turn's draft prompt must begin with exactly those messages, also when the history
    window moves (history_turns=2: it moves every turn), or the warm-up is wasted."""
    import threading

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.store.memory import InMemoryStore

    from personagraph.accounts.identity import Caller
    from personagraph.services import chat as chat_service
    from personagraph.serving.models import use_models
    from personagraph.serving.settings import get_settings
    from tests.fakes import scripted

    monkeypatch.setenv("CHAT_PREWARM", "on")
    get_settings.cache_clear()
    warmed: list[list[tuple[str, str]]] = []
    done = threading.Semaphore(0)

    def record(role: str, messages: list[Any]) -> bool:
        warmed.append([(m.type, str(m.content)) for m in messages])
        done.release()
        return True

    monkeypatch.setattr(chat_service, "warm_prompt", record)
    service = chat_service.ChatService(checkpointer=InMemorySaver(), store=InMemoryStore())
    # Different replies: a reply repeating the previous one is rejected as drift (repeats_message).
    chat = scripted(
        "Hi Pebbler, nice to hear from you!",
        "Practice ran late today, but I'm happy.",
        "Dance class tomorrow starts at nine.",
        "Sleep well and see you soon!",
    )
    router = scripted(lambda messages: '{"intent": "smalltalk", "search_query": ""}')
    fan = Caller("fan1")
    with use_models({"chat": chat, "router": router}):
        for n, text in enumerate(
            ["hello there", "how was your day?", "what do you eat?", "see you tomorrow"]
        ):
            request = chat_service.validate_request(message=text, thread_id="t1", persona_id="tiny")
            result = service.send(fan, request, history_turns=2)
            assert result.error is None, result.error
            assert done.acquire(timeout=10) and done.acquire(timeout=10), "not two warm-ups a turn"
            sent = [(m.type, str(m.content)) for m in chat.calls[-1]["messages"]]
            # The two warm-ups run in threads (either may be recorded first): the one at the turn's
            # start is what the draft begins with, and it is what the previous turn warmed after it.
            this_turn, earlier = warmed[2 * n : 2 * n + 2], warmed[2 * n - 2 : 2 * n]
            began = [prefix for prefix in this_turn if sent[: len(prefix)] == prefix]
            assert began, "the draft does not begin with what was warmed"
            if n > 0:
                assert began[0] in earlier
    assert len(warmed) == 8 and ("ai", "Sleep well and see you soon!") in [w[-1] for w in warmed[-2:]]


def test_no_warm_up_call_for_test_models_or_when_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_core.messages import HumanMessage

    from personagraph.serving.models import use_models, warm_prompt
    from personagraph.serving.settings import get_settings
    from tests.fakes import scripted

    chat = scripted("x")
    monkeypatch.setenv("CHAT_PREWARM", "on")
    get_settings.cache_clear()
    with use_models({"chat": chat}):
        assert warm_prompt("chat", [HumanMessage(content="hi")]) is False
    assert chat.calls == []
    monkeypatch.setenv("CHAT_PREWARM", "off")
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")  # would fail if it were called
    get_settings.cache_clear()
    assert warm_prompt("chat", [HumanMessage(content="hi")]) is False
