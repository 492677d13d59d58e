"""The multi-turn insight eval: each exchange is one thread, each turn asked as a follow-up in it and
scored on its own labels (intent and scope per turn, by turn position, whole exchanges); a
single-turn set still reads as before. Runs on a small fixed snapshot with the keyword router and
the template drafter (no model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore

from evals import insight as insight_eval
from personagraph.insight.source import FixedSource
from personagraph.nodes.insight import InsightContext
from personagraph.services.insight import InsightService
from tests.unit.insight_support import small_snapshot

EXCHANGES: list[dict[str, Any]] = [
    {"id": "t1", "turns": [
        {"question": "VIP 고객은 어떤 특징이 있어?", "intent": "segment_profile", "segments": ["vip"], "customers": []},
        {"question": "그럼 휴면 고객은?", "intent": "segment_profile", "segments": ["dormant"], "customers": []},
    ]},
    {"id": "t2", "turns": [
        {"question": "What are our VIP customers like?", "intent": "segment_profile", "segments": ["vip"],
         "customers": []},
        {"question": "and in Korean?", "intent": "segment_profile", "segments": ["vip"], "customers": []},
        {"question": "What's the weather in Seoul tomorrow?", "intent": "out_of_scope", "segments": [],
         "customers": []},
    ]},
    {"id": "t3", "turns": [
        {"question": "이탈 위험 고객을 붙잡으려면 어떤 전략이 좋을까?", "intent": "strategy", "segments": ["at_risk"],
         "customers": []},
        # A wrong label on purpose: the eval must count it as a miss at turn 2.
        {"question": "그 중 VIP는?", "intent": "summary", "segments": "all", "customers": []},
    ]},
]  # fmt: skip


@pytest.fixture(autouse=True)
def fixed_data(monkeypatch: pytest.MonkeyPatch) -> None:
    def from_settings(redis_url: str | None = None, store: Any = None) -> InsightService:
        return InsightService.for_source(
            FixedSource(small_snapshot()), InsightContext(use_profiles=False), store or InMemoryStore()
        )

    monkeypatch.setattr(insight_eval.InsightService, "from_settings", staticmethod(from_settings))


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run(tmp_path: Path, dataset: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "report.json"
    args = [
        "--dataset",
        str(dataset),
        "--router",
        "keywords",
        "--drafter",
        "template",
        "--out",
        str(out),
        *extra,
    ]
    return insight_eval.run(args)


def test_each_turn_is_a_follow_up_in_its_exchanges_thread_and_scored_on_its_own_labels(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, write(tmp_path / "mt.jsonl", EXCHANGES))
    assert result["n"] == 7 and result["exchanges"] == 3
    assert result["by_turn"]["1"] == {"n": 3, "intent_accuracy": 1.0, "scope_accuracy": 1.0}
    assert result["by_turn"]["2"]["n"] == 3 and result["by_turn"]["2"]["intent_accuracy"] == round(2 / 3, 4)
    assert result["by_turn"]["3"] == {"n": 1, "intent_accuracy": 1.0, "scope_accuracy": 0.0}
    assert result["exchange_accuracy"] == round(2 / 3, 4) and result["first_miss"] == {"2": 1}
    rows = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["rows"]
    by_question = {r["question"]: r for r in rows}
    assert by_question["그럼 휴면 고객은?"]["follow_up"] and by_question["and in Korean?"]["follow_up"]
    assert not by_question["What's the weather in Seoul tomorrow?"][
        "follow_up"
    ]  # a new question inherits nothing
    assert {(r["exchange"], r["turn"]) for r in rows} >= {("t1", 2), ("t2", 3)}


def test_limit_counts_exchanges_and_a_single_turn_set_has_no_turn_breakdown(tmp_path: Path) -> None:
    assert run(tmp_path, write(tmp_path / "mt.jsonl", EXCHANGES), "--limit", "1")["n"] == 2
    single = write(tmp_path / "single.jsonl", [EXCHANGES[0]["turns"][0], EXCHANGES[1]["turns"][2]])
    result = run(tmp_path, single)
    assert result["n"] == 2 and result["intent_accuracy"] == 1.0 and "by_turn" not in result


def test_a_bad_line_is_refused_with_where_it_is(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.jsonl", [{"id": "x", "turns": [{"question": "VIP?", "intent": "gossip"}]}])
    with pytest.raises(ValueError, match="turn 1.*intent"):
        insight_eval.load_exchanges(bad)
    with pytest.raises(ValueError, match="turns"):
        insight_eval.load_exchanges(write(tmp_path / "empty.jsonl", [{"id": "x", "turns": []}]))
