"""The Gradio app and `langgraph dev`, each started as a real server and driven over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from serving.local_server import free_port
from tests.integration.conftest import REPO_ROOT, stop_process, wait_http

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


@pytest.fixture
def gradio_app(real_model_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "app.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "personagraph"), "app", "--port", str(port)],
        env={**os.environ, **real_model_env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/", 240, process)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop_process(process)
        log.close()


def test_chat_tab_streams_a_reply_and_rejects_bad_input(gradio_app: str) -> None:
    client = Client(gradio_app, verbose=False)
    history, box, thread_id, details, status = client.predict(
        "Hi Yuna! What's your favourite food?", [], "stella_yuna", "ui-fan", "", api_name="/send"
    )
    assert box == "" and thread_id
    assert history[-1]["role"] == "assistant" and str(history[-1]["content"]).strip()
    assert "intent" in details

    job = client.submit(
        "Tell me about your tour.", history, "stella_yuna", "ui-fan", thread_id, api_name="/send"
    )
    updates = list(job)  # every streamed update
    assert len(updates) >= 2, "the reply streams in several updates"
    final_history = job.outputs()[-1][0]
    assert len(final_history) == 4

    history, box, _, _, status = client.predict("   ", [], "stella_yuna", "ui-fan", "", api_name="/send")
    assert history == [] and "message" in status


@pytest.fixture
def langgraph_dev(real_model_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "langgraph.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "langgraph"), "dev", "--no-browser", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env={**os.environ, **real_model_env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ok", 180, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
        log.close()


def test_langgraph_dev_serves_persona_chat(langgraph_dev: str) -> None:
    assistants = httpx.post(
        f"{langgraph_dev}/assistants/search", json={"graph_id": "persona_chat"}, timeout=30
    )
    assert assistants.status_code == 200 and assistants.json()
    thread = httpx.post(f"{langgraph_dev}/threads", json={}, timeout=30).json()
    run = httpx.post(
        f"{langgraph_dev}/threads/{thread['thread_id']}/runs/wait",
        json={
            "assistant_id": "persona_chat",
            "input": {"messages": [{"type": "human", "content": "Hi! How was your day?"}]},
            "context": {"persona_id": "stella_yuna", "user_id": "studio-fan"},
        },
        timeout=300,
    )
    assert run.status_code == 200, run.text
    messages = run.json()["messages"]
    assert messages[-1]["type"] == "ai" and messages[-1]["content"].strip()
