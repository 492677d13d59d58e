"""The insight tab builds inside a Blocks context; its chart and chat helpers work on a small snapshot;
the chat keeps one follow-up thread per session, of the signed-in account."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import Caller
from personagraph.accounts.store import AccountStore
from personagraph.insight.segments import SEGMENTS, label
from personagraph.insight.source import FixedSource
from personagraph.insight.store import Snapshot
from personagraph.services.insight import InsightService
from personagraph.serving.models import use_models
from personagraph.ui import insight_tab
from tests.fakes import scripted
from tests.unit.insight_support import small_snapshot

MINA = Caller("mina")


def panel_of(snap: Snapshot | None = None) -> insight_tab.InsightPanel:
    source = FixedSource(snap or small_snapshot())
    return insight_tab.InsightPanel(InsightService.for_source(source, store=InMemoryStore()))


def test_tab_builds_inside_blocks(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "accounts.sqlite", bcrypt_rounds=4)
    with gr.Blocks() as app, gr.Tab("Insight"):
        insight_tab.build_insight_tab(accounts)  # as the app does: the live source opens on first refresh
    names = {fn.api_name for fn in app.fns.values()}
    assert {"insight_refresh", "insight_ask", "insight_new_thread"} <= names


def test_charts_and_chat_use_the_services_data() -> None:
    snap = small_snapshot()
    panel = panel_of(snap)
    with use_models({"drafter": scripted("The data says so.")}):
        status, sizes, scatter, _report = panel.refresh(MINA)
        assert "fixed" in status
        names = {trace.name for trace in scatter.data}
        assert names == {label(s) for s in SEGMENTS}
        assert sum(t.y[-1] for t in sizes.data) == len(snap.customers)
        history, details, cleared, thread = panel.answer_question(
            MINA, "VIP 고객은 어떤 특징이 있어?", [], "keywords"
        )
    assert history[-1]["role"] == "assistant" and cleared == ""
    data = json.loads(details)
    assert data["intent"] == "segment_profile" and "segment_stats[vip]" in data["figures_used"]
    assert thread and data["thread_id"] == thread and not data["follow_up"]


def test_the_session_thread_carries_follow_ups_until_a_new_one() -> None:
    panel = panel_of()
    with use_models({"drafter": scripted("The data says.")}):
        history, _, _, thread = panel.answer_question(
            MINA, "What are our VIP customers like?", [], "keywords"
        )
        history, details, _, same = panel.answer_question(MINA, "and in Korean?", history, "keywords", thread)
        assert same == thread and len(history) == 4
        data = json.loads(details)
        assert data["follow_up"] and data["scope"]["segments"] == ["vip"]
        # "New question thread" clears the session's thread id: the same words are a new question
        _, details, _, other = panel.answer_question(MINA, "and in Korean?", [], "keywords", None)
    assert other != thread and not json.loads(details)["follow_up"]
    assert thread is not None and len(panel.service.thread(MINA, thread)) == 2


def test_a_bad_question_is_answered_with_the_field_in_the_chat() -> None:
    history, details, _, thread = panel_of().answer_question(MINA, "VIP?", [], "psychic")
    assert "router_mode" in history[-1]["content"] and details == "" and thread is None


def test_accepting_a_held_refit_is_for_admins_and_needs_live_refits() -> None:
    panel = panel_of()
    assert "only an admin" in panel.accept_drift(Caller("marketer"))
    # An admin on data without live refits (a fixed snapshot) is told why, not shown an error.
    answer = panel.accept_drift(Caller("boss", "admin"))
    assert answer.startswith("⚠") and "Redis" in answer
