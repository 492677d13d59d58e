"""The chat tab's handlers as two signed-in accounts: the fan is the session's account, never a field.

Handlers are called the way Gradio calls them (also for private ones, which stay reachable by
`fn_index`), with a `gr.Request` naming the signed-in user. The other tabs are left out here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from gradio.utils import get_type_hints
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.store import AccountStore
from personagraph.services.chat import ChatService
from personagraph.serving.models import use_models
from personagraph.ui import app as ui_app
from tests.fakes import scripted

SMALLTALK = {"intent": "smalltalk", "search_query": ""}
MINA, JUN, NOBODY = gr.Request(username="mina"), gr.Request(username="jun"), gr.Request()


@pytest.fixture
def app(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> gr.Blocks:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setattr(ui_app, "build_twins_tabs", lambda accounts: None)
    monkeypatch.setattr(ui_app, "build_insight_tab", lambda accounts, service=None: gr.Timer(active=False))
    monkeypatch.setattr(ui_app, "build_crm_tab", lambda accounts, service=None: None)
    accounts = AccountStore(tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    accounts.add("mina", "password-mina")
    accounts.add("jun", "password-jun")
    return ui_app.build_app(ChatService(checkpointer=InMemorySaver(), store=InMemoryStore()), accounts)


def handler(app: gr.Blocks, name: str) -> Callable[..., Any]:
    """The event handler with this api_name or function name."""
    for block_fn in app.fns.values():
        fn = block_fn.fn
        if block_fn.api_name == name or getattr(fn, "__name__", "") == name:
            assert fn is not None
            return fn
    raise AssertionError(f"no handler {name!r}")


def last(outputs: Any) -> Any:
    return list(outputs)[-1]


def card_upload(tmp_path: Path, name: str = "Mira Vale") -> str:
    folder = tmp_path / "gradio" / "abc123"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "card.json"
    data = {"name": name, "description": "Bakes bread.", "personality": "cheerful", "scenario": "",
            "first_mes": "Morning!", "mes_example": ""}  # fmt: skip
    path.write_text(
        json.dumps({"spec": "chara_card_v2", "spec_version": "2.0", "data": data}), encoding="utf-8"
    )
    return str(path)


def test_there_is_no_fan_id_box_and_every_chat_handler_takes_the_request(app: gr.Blocks) -> None:
    labels = [str(getattr(block, "label", "") or "") for block in app.blocks.values()]
    assert not any("user id" in label.lower() or label.startswith("Fan") for label in labels)
    ours = [f.fn for f in app.fns.values() if getattr(f.fn, "__module__", "") == ui_app.__name__]
    assert len(ours) >= 15
    for fn in ours:  # Gradio hands the request only to a parameter whose type hint resolves to gr.Request
        assert get_type_hints(fn).get("request") is gr.Request, getattr(fn, "__name__", fn)


def test_the_banner_names_the_signed_in_account(app: gr.Blocks) -> None:
    banner = handler(app, "on_load")("tiny", "en", JUN)[0]
    assert "Signed in as **jun** (user)" in banner


def test_another_accounts_thread_stays_theirs(app: gr.Blocks) -> None:
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Hi Mina!")}):
        history, box, thread_id, details, status = last(handler(app, "send")("hello", [], "tiny", "", MINA))
    assert status == "✓" and history[-1]["content"] == "Hi Mina!"
    sessions = lambda request: handler(app, "on_load")("tiny", "en", request)[2]["choices"]  # noqa: E731
    assert [c[1] for c in sessions(MINA)] == [thread_id]
    assert sessions(JUN) == []
    chat, shown_thread, _, note = handler(app, "load_thread")(thread_id, JUN)
    assert chat == [] and shown_thread == "" and "no thread" in note
    *_, status = last(handler(app, "regenerate")(history, "tiny", thread_id, JUN))
    assert status.startswith("⚠️") and "no thread" in status
    assert "no thread" in handler(app, "stop")(thread_id, JUN)
    assert handler(app, "load_thread")(thread_id, MINA)[0][-1]["content"] == "Hi Mina!"


def test_profile_and_forget_are_the_callers_own(app: gr.Blocks) -> None:
    handler(app, "save_profile")("tiny", '{"name": "Mina", "facts": ["lives in Busan"]}', MINA)
    assert "Busan" in handler(app, "profile_view")("tiny", MINA)[0]
    view, profile_json = handler(app, "profile_view")("tiny", JUN)
    assert "Busan" not in view and json.loads(profile_json) == {}
    assert "nothing was stored" in handler(app, "forget_me")("tiny", True, JUN)[2]
    assert "Busan" in handler(app, "profile_view")("tiny", MINA)[0]


def test_without_a_session_nothing_is_served(app: gr.Blocks) -> None:
    *_, status = last(handler(app, "send")("hello", [], "tiny", "", NOBODY))
    assert status == "⚠️ sign in first"
    assert handler(app, "profile_view")("tiny", NOBODY) == ("⚠️ sign in first", "{}")


def test_an_imported_card_is_only_its_importers(app: gr.Blocks, tmp_path: Path) -> None:
    persona, note, *_ = handler(app, "import_uploaded")(card_upload(tmp_path), False, "en", JUN)
    assert persona["value"] == "mira_vale" and "mira_vale" in note
    assert [c[1] for c in handler(app, "on_load")("tiny", "en", MINA)[1]["choices"]] == ["tiny"]
    chat, _, status, *_ = handler(app, "start_session")("mira_vale", "en", MINA)
    assert chat == [] and "unknown persona 'mira_vale'" in status
    *_, status = last(handler(app, "send")("hi", [], "mira_vale", "", MINA))
    assert "unknown persona 'mira_vale'" in status
    # Only files from Gradio's upload folder are read.
    outside = tmp_path / "outside.json"
    outside.write_text(Path(card_upload(tmp_path)).read_text(encoding="utf-8"), encoding="utf-8")
    _, note, *_ = handler(app, "import_uploaded")(str(outside), False, "en", MINA)
    assert note.startswith("⚠️ file:")
