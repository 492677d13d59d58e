"""The insight tab builds inside a Blocks context; its chart and chat helpers work on a small snapshot."""

from __future__ import annotations

import json

import gradio as gr

from personagraph.insight.segments import SEGMENTS, label
from personagraph.insight.source import FixedSource
from personagraph.services.insight import InsightService
from personagraph.serving.models import use_models
from personagraph.ui import insight_tab
from tests.fakes import scripted
from tests.unit.insight_support import small_snapshot


def test_tab_builds_inside_blocks() -> None:
    with gr.Blocks() as app, gr.Tab("Insight"):
        insight_tab.build_insight_tab()  # as the app does: the live source opens on first refresh
    assert app is not None


def test_charts_and_chat_use_the_services_data() -> None:
    snap = small_snapshot()
    panel = insight_tab.InsightPanel(InsightService.for_source(FixedSource(snap)))
    with use_models({"drafter": scripted("The data says so.")}):
        status, sizes, scatter, _report = panel.refresh()
        assert "fixed" in status
        names = {trace.name for trace in scatter.data}
        assert names == {label(s) for s in SEGMENTS}
        assert sum(t.y[-1] for t in sizes.data) == len(snap.customers)
        history, details, cleared = panel.answer_question("VIP 고객은 어떤 특징이 있어?", [], "keywords")
    assert history[-1]["role"] == "assistant" and cleared == ""
    data = json.loads(details)
    assert data["intent"] == "segment_profile" and "segment_stats[vip]" in data["figures_used"]


def test_a_bad_question_is_answered_with_the_field_in_the_chat() -> None:
    panel = insight_tab.InsightPanel(InsightService.for_source(FixedSource(small_snapshot())))
    history, details, _ = panel.answer_question("VIP?", [], "psychic")
    assert "router_mode" in history[-1]["content"] and details == ""
