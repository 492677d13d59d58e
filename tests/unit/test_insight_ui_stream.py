"""The insight tab shows an answer as it is built (the template with the figures first, the narrative
below it, the final answer last) and imports an order export (admins), which the data picker then
offers for questions."""

from __future__ import annotations

import json

from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import Caller
from personagraph.insight.importer import template_path
from personagraph.insight.source import FixedSource
from personagraph.nodes.insight import InsightContext
from personagraph.services.insight import InsightService
from personagraph.serving.models import use_models
from personagraph.ui import insight_tab
from tests.fakes import scripted
from tests.unit.insight_support import small_snapshot

MINA = Caller("mina")
BOSS = Caller("boss", "admin")


def panel() -> insight_tab.InsightPanel:
    service = InsightService.for_source(
        FixedSource(small_snapshot()), InsightContext(use_profiles=False), InMemoryStore()
    )
    return insight_tab.InsightPanel(service)


def test_the_figures_show_first_and_the_narrative_grows_below_them() -> None:
    with use_models({"drafter": scripted("VIP 고객은 자주 구매해요. 가까이 챙겨 주세요.")}):
        steps = list(panel().stream_answer(MINA, "VIP 고객은 어떤 특징이 있어?", [], "keywords"))
    first_bubble = steps[0][0][-1]["content"]
    assert first_bubble.startswith("데이터 기준") and "Writing the analysis" in first_bubble
    assert json.loads(steps[0][1])["tool_results"]["segment_stats[vip]"]["customers"] > 0
    bubbles = [s[0][-1]["content"] for s in steps]
    assert any(b.endswith("VIP 고객은 자주 구매해요.") for b in bubbles)  # a sentence before the end
    history, details, cleared, thread = steps[-1]
    assert history[-1]["content"].endswith("VIP 고객은 자주 구매해요. 가까이 챙겨 주세요.") and cleared == ""
    assert thread and json.loads(details)["numeric_check"]["ok"]


def test_a_refusal_and_a_bad_question_show_in_the_chat() -> None:
    p = panel()
    steps = list(p.stream_answer(MINA, "What's the weather in Seoul tomorrow?", [], "keywords"))
    assert "customers, segments" in steps[-1][0][-1]["content"] and "---" not in steps[-1][0][-1]["content"]
    bad = list(p.stream_answer(MINA, "VIP?", [], "psychic"))
    assert "router_mode" in bad[-1][0][-1]["content"]
    missing = list(p.stream_answer(MINA, "VIP?", [], "keywords", None, "nope"))
    assert "dataset" in missing[-1][0][-1]["content"]


def test_an_admin_imports_an_export_and_the_data_picker_offers_it() -> None:
    p = panel()
    path = str(template_path())
    refused, _ = p.import_orders(MINA, path, "web", False, False)
    assert refused.startswith("⚠") and "admin" in refused
    assert p.import_orders(BOSS, None, "web", False, False)[0].startswith("⚠ file")
    text, picker = p.import_orders(BOSS, path, "web", False, False)
    assert text.startswith("**Imported web:**") and picker["value"] == "web"
    assert ("Shop data (live)", "") in picker["choices"] and any(v == "web" for _, v in picker["choices"])
    with use_models({"drafter": scripted("VIP customers buy often.")}):
        steps = list(p.stream_answer(MINA, "Compare VIP and loyal customers", [], "keywords", None, "web"))
    assert json.loads(steps[-1][1])["dataset"] == "web"
