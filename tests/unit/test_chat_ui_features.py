"""The chat tab's new handlers, called the way Gradio calls them: generation settings from the
advanced panel, Stop keeping the partial reply, 👍/👎 on a reply, editing a message, switching
branches, and the persona's profile card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.store import AccountStore
from personagraph.services.chat import ChatService
from personagraph.serving.models import use_models
from personagraph.ui import app as ui_app
from tests.fakes import ScriptedChatModel, scripted
from tests.unit.test_chat_ui import handler, last

SMALLTALK = {"intent": "smalltalk", "search_query": ""}
MINA, JUN = gr.Request(username="mina"), gr.Request(username="jun")


@pytest.fixture
def chat_service(data_dir: Path) -> ChatService:
    return ChatService(checkpointer=InMemorySaver(), store=InMemoryStore())


@pytest.fixture
def app(chat_service: ChatService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> gr.Blocks:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setattr(ui_app, "build_twins_tabs", lambda accounts: None)
    monkeypatch.setattr(ui_app, "build_insight_tab", lambda accounts, service=None: gr.Timer(active=False))
    monkeypatch.setattr(ui_app, "build_crm_tab", lambda accounts, service=None: None)
    accounts = AccountStore(tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    accounts.add("mina", "password-mina")
    accounts.add("jun", "password-jun")
    return ui_app.build_app(chat_service, accounts)


def like(index: int, liked: bool) -> gr.LikeData:
    return gr.LikeData(None, {"index": index, "value": "", "liked": liked})


def test_settings_feedback_edit_and_branches_in_the_chat_tab(
    app: gr.Blocks, chat_service: ChatService
) -> None:
    chat = ScriptedChatModel(script=["Cats are lovely!"])
    greeting = [{"role": "assistant", "content": "Hi!"}]
    with use_models({"router": scripted(SMALLTALK), "chat": chat}):
        history, _, thread_id, details, status = last(
            handler(app, "send")("I like cats", greeting, "tiny", "", MINA, 0.5, None, 32.0)
        )
    assert status == "✓" and chat.calls[-1]["kwargs"]["temperature"] == 0.5
    assert chat.calls[-1]["kwargs"]["max_tokens"] == 32 and "top_p" not in chat.calls[-1]["kwargs"]
    assert "Timings:" in ui_app.render_details(details) and "Tokens:" in ui_app.render_details(details)

    # Out of range: the field and its range, nothing sent.
    *_, status = last(handler(app, "send")("hello", history, "tiny", thread_id, MINA, 5.0, None, None))
    assert status.startswith("⚠️ temperature:") and "allowed: 0 to 2" in status

    # 👍 on the reply (index 2: after the greeting and the fan's message); the greeting cannot be rated.
    assert handler(app, "rate_reply")(history, thread_id, "so sweet", like(2, True), MINA) == "👍 thanks!"
    assert list(chat_service.ratings(_mina()).values()) == [{"rating": "up", "reason": "so sweet"}]
    assert handler(app, "rate_reply")(history, thread_id, "", like(0, False), MINA).startswith("⚠️ message_id")
    assert handler(app, "rate_reply")(history, thread_id, "", like(2, True), JUN).startswith("⚠️")

    edits, branches = handler(app, "thread_tools")(thread_id, MINA)
    assert [c[1] for c in edits["choices"]] == [str(chat_service.history(_mina(), thread_id)[0].id)]
    assert handler(app, "thread_tools")(thread_id, JUN)[0]["choices"] == []
    with use_models({"router": scripted(SMALLTALK), "chat": scripted("Birds sing so well!")}):
        history, _, _, _, status = last(
            handler(app, "edit_message")(edits["choices"][0][1], "I like birds", "tiny", thread_id, MINA)
        )
    assert status == "✓" and [m["content"] for m in history] == ["I like birds", "Birds sing so well!"]
    _, branches = handler(app, "thread_tools")(thread_id, MINA)
    assert len(branches["choices"]) == 2 and branches["choices"][0][0].startswith("● ")
    chat_view, status = handler(app, "switch_branch")(thread_id, branches["choices"][1][1], MINA)
    assert status == "✓ switched branch" and chat_view[-1]["content"] == "Cats are lovely!"
    assert handler(app, "switch_branch")(thread_id, branches["choices"][1][1], JUN)[1].startswith("⚠️")


def _mina() -> Any:
    from personagraph.accounts.identity import Caller

    return Caller("mina")


def test_stop_keeps_the_partial_reply_when_ticked(app: gr.Blocks) -> None:
    story = "Once upon a time there was a fox. It ran far away. Then it came home. The end."
    with use_models({"router": scripted(SMALLTALK), "chat": scripted(story)}):
        outputs = handler(app, "send")("tell me a story", [], "tiny", "t-stop", MINA)
        seen = []
        for output in outputs:
            seen.append(output)
            if output[0] and output[0][-1]["content"] and len(seen) == 2:
                assert handler(app, "stop")("t-stop", MINA, True) == "stopping…"
    history, _, _, _, status = seen[-1]
    assert status == "■ stopped: the partial reply was kept"
    assert history[-1]["content"] and history[-1]["content"] != story


def test_the_persona_card_is_shown_next_to_the_fans_own(app: gr.Blocks) -> None:
    card = handler(app, "show_persona")("tiny", "en", MINA)
    assert card.startswith("**") and "⚠️" not in card
    assert handler(app, "show_persona")("no_such_persona", "en", MINA).startswith("⚠️")
