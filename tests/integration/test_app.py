"""The Gradio app, started as a real server and driven over HTTP (`langgraph dev`: test_langgraph_dev.py)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.integration.conftest import REPO_ROOT, running_app

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
EXAMPLE_CARD = REPO_ROOT / "data" / "cards" / "example_card_v2.json"


@pytest.fixture
def gradio_app(real_model_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    # A copy of the shipped data, so personas imported through the app never land in the repository.
    data_dir = tmp_path / "data"
    shutil.copytree(REPO_ROOT / "data", data_dir)
    with running_app([], {**real_model_env, "DATA_DIR": str(data_dir)}, tmp_path / "app.log") as url:
        yield url


def test_chat_tab_streams_a_reply_and_rejects_bad_input(gradio_app: str) -> None:
    client = Client(gradio_app, verbose=False)
    history, box, thread_id, details, status = client.predict(
        "Hi Yuna! What's your favourite food?", [], "stella_yuna", "", api_name="/send"
    )
    assert box == "" and thread_id
    assert history[-1]["role"] == "assistant" and str(history[-1]["content"]).strip()
    assert "intent" in details

    job = client.submit("Tell me about your tour.", history, "stella_yuna", thread_id, api_name="/send")
    updates = list(job)  # every streamed update
    assert len(updates) >= 2, "the reply streams in several updates"
    final_history = job.outputs()[-1][0]
    assert len(final_history) == 4

    history, box, _, _, status = client.predict("   ", [], "stella_yuna", "", api_name="/send")
    assert history == [] and "message" in status
    assert client.predict(thread_id, api_name="/stop") == "nothing to stop"  # the turn has ended


def test_card_import_then_chat_and_regenerate(gradio_app: str, tmp_path: Path) -> None:
    client = Client(gradio_app, verbose=False)
    broken = json.loads(EXAMPLE_CARD.read_text(encoding="utf-8"))
    del broken["data"]["character_book"]["entries"][2]["content"]
    bad_file = tmp_path / "broken_card.json"
    bad_file.write_text(json.dumps(broken), encoding="utf-8")
    note = client.predict(handle_file(str(bad_file)), False, "en", api_name="/import_card")[1]
    assert "data.character_book.entries[2].content: field required" in note

    persona, note, chat, *_ = client.predict(
        handle_file(str(EXAMPLE_CARD)), False, "en", api_name="/import_card"
    )
    assert persona["value"] == "seren_moss" and "seren_moss" in note  # the picker switches to it
    assert "Copper Kettle" in str(chat[0]["content"])  # the card's greeting opens the session

    history, box, thread_id, details, status = client.predict(
        "Hi Seren! What tea do you recommend?", [], "seren_moss", "", api_name="/send"
    )
    assert status == "✓" and box == "" and thread_id
    assert history[-1]["role"] == "assistant" and str(history[-1]["content"]).strip()
    assert json.loads(details)["intent"]

    history, _, same_thread, _, status = client.predict(
        history, "seren_moss", thread_id, api_name="/regenerate"
    )
    assert status == "✓" and same_thread == thread_id
    assert len(history) == 2 and str(history[-1]["content"]).strip()

    again = client.predict(handle_file(str(EXAMPLE_CARD)), False, "en", api_name="/import_card")
    assert "already exists" in again[1]
