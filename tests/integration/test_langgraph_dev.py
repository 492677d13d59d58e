"""Every graph of langgraph.json under `langgraph dev`, driven over its HTTP API (what Studio uses).

One server for the module, with no LLM_BASE_URL: the graphs start the embedded model server themselves
(SmolLM2-135M, fast on 2 cores), as they do for a Studio user. For each graph: the assistant's input,
output, state and context schemas (Studio's input form) and one run on a thread. Stopping the server
with SIGTERM must leave no model server behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import LangGraphDev, descendants, running_langgraph_dev, stop_process
from tests.unit.test_crm_graph import make_tiny_catalog

pytestmark = pytest.mark.integration

GRAPHS = ("persona_chat", "twin_interview", "insight_qa", "crm_message")
RUN_TIMEOUT_S = 300


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def wait_gone(pids: list[int], timeout_s: float = 15.0) -> list[int]:
    """The pids still running after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def model_server_pids(parent: int) -> list[int]:
    """The model server below `parent` and its supervisor (serving/processes.py)."""
    return [pid for pid, command in descendants(parent).items() if "llama_cpp.server" in command]


@pytest.fixture(scope="module")
def langgraph_dev(shared_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LangGraphDev]:
    tmp = tmp_path_factory.mktemp("langgraph-dev")
    env = {
        "LOCAL_MODEL": "smollm2-135m",  # the embedded server, started by the graph process itself
        "LLM_MAX_TOKENS": "64",
        "LLM_TEMPERATURE": "0",
        "PERSONAGRAPH_HOME": str(shared_home),
        "CRM_DATA_DIR": str(make_tiny_catalog(tmp / "crm")),  # three products: a fast index
        # insight_qa reads the generated history (no Redis): a small one is generated in seconds.
        "INSIGHT_CUSTOMERS": "300",
        "INSIGHT_ORDERS": "4000",
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(
            "INSIGHT_REDIS_URL", raising=False
        )  # (REDIS_URL and LLM_* are cleared in tests/conftest.py)
        with running_langgraph_dev(env, tmp / "server") as server:
            yield server
            # SIGTERM to `langgraph dev` once left the embedded model server running, orphaned.
            started = model_server_pids(server.process.pid)
            stop_process(server.process)  # SIGTERM (SIGKILL after 15 s)
            left = wait_gone(started)
            assert not left, f"model server(s) {left} outlived `langgraph dev`; log: {server.log_path}"


def assistant_id(server: LangGraphDev, graph_id: str) -> str:
    found = httpx.post(f"{server.url}/assistants/search", json={"graph_id": graph_id}, timeout=30)
    assert found.status_code == 200, found.text
    assistants = [a for a in found.json() if a["graph_id"] == graph_id]
    assert assistants, f"no assistant for {graph_id}"
    return str(assistants[0]["assistant_id"])


def run_on_thread(
    server: LangGraphDev, graph_id: str, graph_input: dict[str, Any], context: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run on a new thread, waited for: (the run's output, the thread's state afterwards)."""
    thread = httpx.post(f"{server.url}/threads", json={}, timeout=30).json()["thread_id"]
    body: dict[str, Any] = {"assistant_id": assistant_id(server, graph_id), "input": graph_input}
    if context is not None:
        body["context"] = context
    run = httpx.post(f"{server.url}/threads/{thread}/runs/wait", json=body, timeout=RUN_TIMEOUT_S)
    assert run.status_code == 200, run.text
    state = httpx.get(f"{server.url}/threads/{thread}/state", timeout=30).json()
    return run.json(), state


# Top-level properties each schema must have (supersets are fine: graphs may grow fields).
EXPECTED_SCHEMAS: dict[str, dict[str, set[str]]] = {
    "persona_chat": {
        "input_schema": {"messages"},
        "output_schema": {"messages", "intent", "safety", "sources"},
        "state_schema": {"messages", "intent", "safety", "retrieved", "draft"},
        "context_schema": {"persona_id", "user_id", "top_k"},
    },
    "twin_interview": {
        "input_schema": {"person_id", "profile", "guide"},
        "output_schema": {"transcript", "decisions", "done"},
        "state_schema": {"person_id", "guide", "transcript", "q_index", "pending"},
        "context_schema": {"interactive", "max_followups", "twin_role"},
    },
    "insight_qa": {
        "input_schema": {"question"},
        "output_schema": {"question", "answer", "intent"},
        "state_schema": {"question", "answer", "intent"},
        "context_schema": {"router_role", "drafter_role"},
    },
    "crm_message": {
        "input_schema": {"persona", "brand", "product", "stage_index", "style_index", "channel"},
        "output_schema": {"status", "error", "result"},
        "state_schema": {"brand", "product", "status", "result"},
        "context_schema": {"drafter_role", "stylist_role", "max_refine_rounds"},
    },
}


@pytest.mark.parametrize("graph_id", GRAPHS)
def test_schemas_come_back_for_studio(langgraph_dev: LangGraphDev, graph_id: str) -> None:
    """Null input/output schemas (typing.TypedDict on Python 3.11) leave Studio without an input form."""
    response = httpx.get(f"{langgraph_dev.url}/assistants/{assistant_id(langgraph_dev, graph_id)}/schemas")
    assert response.status_code == 200, response.text
    schemas = response.json()
    assert schemas["graph_id"] == graph_id
    for key, expected in EXPECTED_SCHEMAS[graph_id].items():
        schema = schemas[key]
        assert isinstance(schema, dict) and schema.get("type") == "object", f"{graph_id} {key}: {schema}"
        missing = expected - set(schema.get("properties", {}))
        assert not missing, f"{graph_id} {key} lacks {sorted(missing)}"


def test_persona_chat_run(langgraph_dev: LangGraphDev) -> None:
    output, _ = run_on_thread(
        langgraph_dev,
        "persona_chat",
        {"messages": [{"type": "human", "content": "Hi! How was your day?"}]},
        {"persona_id": "stella_yuna", "user_id": "studio-fan", "extract_profile": False},
    )
    messages = output["messages"]
    assert [m["type"] for m in messages] == ["human", "ai"]
    assert messages[-1]["content"].strip() and output["safety"]["safe"] is True
    assert output["intent"] and output.get("last_error") is None


def test_twin_interview_runs_until_its_first_interrupt(langgraph_dev: LangGraphDev) -> None:
    questions = ["How do you use AI tools in your work today?", "What worries you about them?"]
    guide = {
        "title": "AI at work",
        "questions": [{"id": f"q{i}", "text": q} for i, q in enumerate(questions, 1)],
    }
    profile = "Mina, 34, a nurse in Seoul who drafts her shift notes with a chatbot."
    output, state = run_on_thread(
        langgraph_dev,
        "twin_interview",
        {"person_id": "studio-1", "profile": profile, "guide": guide},
        {"interactive": True, "answer_max_tokens": 48},
    )
    # Interactive mode pauses in human_turn after the first answer; the run returns the interrupt.
    assert output["done"] is False and [t["question_id"] for t in output["transcript"]] == ["q1"]
    (paused,) = [i["value"] for i in output["__interrupt__"]]
    assert paused["question_id"] == "q1" and paused["question"] == questions[0]
    assert paused["answer"].strip() and paused["answer"] == output["transcript"][0]["answer"]
    assert paused["next_question"] == questions[1]
    assert state["next"] == ["human_turn"], "the thread waits for the person's reply"


def test_insight_qa_run_without_redis(langgraph_dev: LangGraphDev) -> None:
    output, _ = run_on_thread(
        langgraph_dev, "insight_qa", {"question": "How many customers are in the VIP segment?"}
    )
    assert output["question"] == "How many customers are in the VIP segment?"
    assert output["lang"] == "en" and output["intent"] and output["intent"] != "out_of_scope"
    assert output["answer"].strip() and output.get("error") is None


def test_crm_message_run(langgraph_dev: LangGraphDev) -> None:
    request = {"persona": 1, "brand": "dewylab", "product": "dew-01", "stage_index": 1, "style_index": 2,
               "is_event": 0, "channel": "sms", "lang": "en"}  # fmt: skip
    output, _ = run_on_thread(langgraph_dev, "crm_message", request, {"max_refine_rounds": 0})
    # A tiny model writes weak copy: a checked message that passed or failed, never a crash.
    assert output["status"] in ("passed", "failed"), output.get("error")
    result = output["result"]
    assert result["status"] == output["status"] and result["message"].strip()
    assert result["draft"]["points"] and {e["kind"] for e in result["evidence"]} >= {"product", "review"}


EMBEDDED_PARENT = textwrap.dedent(
    """
    import time
    from personagraph.serving.local_server import ensure_local_server
    server = ensure_local_server()
    print(server.base_url, flush=True)
    time.sleep(600)
    """
)


def test_sigterm_to_the_parent_stops_the_embedded_model_server(shared_home: Path) -> None:
    """Python's default SIGTERM action runs no atexit handler: the model server must still go."""
    env = {**os.environ, "LOCAL_MODEL": "smollm2-135m", "PERSONAGRAPH_HOME": str(shared_home)}
    parent = subprocess.Popen([sys.executable, "-c", EMBEDDED_PARENT], env=env, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        base_url = parent.stdout.readline().decode().strip()
        # Up, and refusing a client without its generated key.
        assert httpx.get(f"{base_url}/models", timeout=10).status_code == 401
        servers = model_server_pids(parent.pid)
        assert servers, descendants(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=10) == -signal.SIGTERM
        assert not wait_gone(servers), "the model server outlived its parent"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base_url}/models", timeout=2)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_studio_memory_search_is_semantic(langgraph_dev: LangGraphDev) -> None:
    """langgraph.json's store.index: the server's store embeds `text` with the packaged e5 model."""
    namespace = ["memories", "studio-search-fan", "stella_yuna"]
    memories = {
        "cats": "나는 고양이 두 마리를 키워요. 이름은 보리와 콩이에요.",
        "food": "My favourite food is kimchi stew.",
        "work": "I work night shifts as a nurse in Busan.",
    }
    for key, text in memories.items():
        response = httpx.put(
            f"{langgraph_dev.url}/store/items",
            json={"namespace": namespace, "key": key, "value": {"text": text}},
        )
        assert response.status_code < 300, response.text
    for query, expected in [("우리 집 반려동물 이름 기억나?", "cats"), ("What do I like to eat?", "food")]:
        response = httpx.post(
            f"{langgraph_dev.url}/store/items/search",
            json={"namespace_prefix": namespace, "query": query, "limit": 3},
        )
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert items[0]["key"] == expected and items[0]["score"] is not None, items
