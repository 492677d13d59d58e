"""insight: intent accuracy, scope, leakage and numeric faithfulness of insight_qa on labelled questions.

Reads JSONL lines `{"question", "intent", "segments": [..] | "all", "customers": [..]}` and reports
`n`, `intent_accuracy`, `scope_accuracy`, `leakage_rate` (answers naming a segment outside the asked
scope, or citing a figure that matches only another segment's stats) and `numeric_faithfulness`
(share of checked figures in answers that match the tool results). Answers are written by the
drafter role (a real model server); `--drafter template` writes them from the figures without a
model (checks the pipeline, not a model). Writes a report under reports/.

Multi-turn sets have lines `{"id", "turns": [{"question", "intent", "segments", "customers"}, ...]}`:
each exchange is one thread, each turn asked in it as the service asks a follow-up (resolved against
the thread's previous turn), and scored on its own labels (what it means in context). The summary
adds the accuracies by turn position (`by_turn`), `exchange_accuracy` (every turn right) and
`first_miss` (how many exchanges went wrong first at each turn). `--limit` counts exchanges.

    python -m evals insight [--limit N] [--router hybrid|model|keywords] [--drafter model|template]
    python -m evals insight --dataset evals/datasets/insight_multiturn.jsonl --router keywords --drafter template
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.store.memory import InMemoryStore

from evals.jsonl import read_jsonl
from personagraph.accounts.identity import CLI_CALLER
from personagraph.insight.lexicon import INTENTS, mentioned_segments
from personagraph.insight.numbers import check_numbers
from personagraph.insight.questions import ROUTER_MODES
from personagraph.insight.stats import known_segments, segment_stats
from personagraph.services.insight import InsightAnswer, InsightService

DATASET = Path(__file__).parent / "datasets" / "insight_questions.jsonl"
REPORTS = Path("reports")
# The row of a question whose run raised: no intent, scope, figures or answer.
UNANSWERED = InsightAnswer.from_output({})


def _case(row: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(row.get("question"), str) or row.get("intent") not in INTENTS:
        raise ValueError(f"{where}: needs a string 'question' and 'intent' in {', '.join(INTENTS)}")
    segments = row.get("segments", [])
    if segments != "all" and not (isinstance(segments, list) and all(isinstance(x, str) for x in segments)):
        raise ValueError(f"{where}: 'segments' must be a list of segment ids or \"all\"")
    return {"question": row["question"], "intent": row["intent"], "segments": segments,
            "customers": row.get("customers", [])}  # fmt: skip


def load_exchanges(path: Path) -> list[dict[str, Any]]:
    """Exchanges `{"id", "turns": [case, ...]}`; a single-turn line is an exchange of one turn."""
    exchanges = []
    for where, row in read_jsonl(path):
        if "turns" in row:
            turns = row["turns"]
            if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
                raise ValueError(f"{where}: 'turns' must be a non-empty list of objects")
            cases = [_case(t, f"{where} turn {i}") for i, t in enumerate(turns, start=1)]
            exchanges.append({"id": str(row.get("id", where)), "turns": cases})
        else:
            exchanges.append({"id": str(row.get("id", where)), "turns": [_case(row, where)]})
    return exchanges


def load_cases(path: Path) -> list[dict[str, Any]]:
    """Every turn of every exchange, in order (the single-turn view of a set)."""
    return [case for exchange in load_exchanges(path) for case in exchange["turns"]]


class TemplateDrafter(GenericFakeChatModel):
    """Writes an answer from the FIGURES block of the prompt, no model (pipeline checks only)."""

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:  # fmt: skip
        text = str(messages[-1].content)
        found = re.findall(r'"(customers|share_of_revenue_pct|avg_spend_per_customer_krw|avg_order_value_krw|'
                           r'recency_days|avg_recency_days|orders|spend_krw)": (-?[\d.]+)', text)[:6]  # fmt: skip
        body = "; ".join(f"{k.replace('_', ' ')}: {float(v):,.1f}" for k, v in found) or "no figures"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=f"Figures — {body}."))])


def other_segment_figures(snap: Any, allowed: list[str]) -> list[float]:
    """Figures that belong to segments outside the scope (for the leakage check)."""
    values: list[float] = []
    for s in known_segments(snap):
        if s not in allowed:
            stats = segment_stats(snap, s)
            values += [float(v) for k, v in stats.items() if isinstance(v, int | float) and not isinstance(v, bool)
                       and k not in ("customers",) and abs(float(v)) >= 10]  # fmt: skip
    return values


def run(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m evals insight")
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--limit", type=int, default=None, help="first N questions (exchanges) only")
    parser.add_argument("--router", default="hybrid", choices=ROUTER_MODES)
    parser.add_argument("--drafter", default="model", choices=["model", "template"])
    parser.add_argument(
        "--out", type=Path, default=None, help="report file (default reports/insight-<time>.json)"
    )
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")

    from personagraph.serving.models import use_models

    exchanges = load_exchanges(args.dataset)[: args.limit]
    service = InsightService.from_settings(store=InMemoryStore())  # threads are the eval's own: not kept
    snap = service.snapshot(CLI_CALLER)
    all_segments = known_segments(snap)
    models = {"drafter": TemplateDrafter(messages=iter(()))} if args.drafter == "template" else {}
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    with use_models(models):  # type: ignore[arg-type]
        for exchange in exchanges:
            thread_id: str | None = None  # each exchange is one thread; its turns are follow-ups
            for turn, case in enumerate(exchange["turns"], start=1):
                rows.append(ask_case(service, case, thread_id, args.router, snap, all_segments))
                rows[-1].update(exchange=exchange["id"], turn=turn)
                thread_id = rows[-1].pop("thread_id") or thread_id
    return summarise(rows, args, time.monotonic() - started, snap)


def ask_case(
    service: InsightService, case: dict[str, Any], thread_id: str | None, router: str, snap: Any,
    all_segments: list[str],
) -> dict[str, Any]:  # fmt: skip
    """One question asked (in the thread, when given) and scored against its labels."""
    t0 = time.monotonic()
    try:
        out = service.ask(CLI_CALLER, case["question"], thread_id, router_mode=router)
        error = out.error
    except Exception as exc:  # noqa: BLE001 - one failing question is reported, not fatal
        out, error = UNANSWERED, f"{type(exc).__name__}: {exc}"
    expected_segments = all_segments if case["segments"] == "all" else case["segments"]
    answer_text = out.answer if out.tool_results else ""
    allowed = list(expected_segments)
    for name, result in out.tool_results.items():
        if (
            name.startswith("customer_lookup") and isinstance(result, dict) and result.get("segment")
            and result.get("customer_id") in case["customers"]
        ):  # fmt: skip
            allowed.append(result["segment"])
    named_leak = [s for s in mentioned_segments(answer_text) if s not in allowed]
    check = check_numbers(answer_text, out.tool_results, case["question"])
    foreign = other_segment_figures(snap, allowed) if check.unsupported else []
    figure_leak = [u for u in check.unsupported
                   if any(abs(n - f) <= max(0.5, 0.005 * abs(f)) for n in _values(u) for f in foreign)]  # fmt: skip
    return {
        "question": case["question"], "expected_intent": case["intent"], "intent": out.intent,
        "router": out.router, "expected_scope": {"segments": expected_segments, "customers": case["customers"]},
        "scope": out.scope, "follow_up": out.follow_up, "answer": out.answer, "checked": check.checked,
        "supported": len(check.supported), "unsupported": check.unsupported,
        "leak": named_leak + figure_leak, "flagged": out.flagged, "error": error,
        "seconds": round(time.monotonic() - t0, 2), "thread_id": out.thread_id or None,
    }  # fmt: skip


def scope_ok(row: dict[str, Any]) -> bool:
    return sorted(row["scope"].get("segments", [])) == sorted(row["expected_scope"]["segments"]) and sorted(
        row["scope"].get("customers", [])
    ) == sorted(row["expected_scope"]["customers"])


def accuracies(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """n, intent accuracy and scope accuracy (scope: over the rows expected in scope)."""
    scoped = [r for r in rows if r["expected_intent"] != "out_of_scope"]
    return {
        "n": len(rows),
        "intent_accuracy": round(sum(r["intent"] == r["expected_intent"] for r in rows) / len(rows), 4) if rows else 0.0,
        "scope_accuracy": round(sum(map(scope_ok, scoped)) / len(scoped), 4) if scoped else 0.0,
    }  # fmt: skip


def turn_right(row: dict[str, Any]) -> bool:
    return row["intent"] == row["expected_intent"] and (
        row["expected_intent"] == "out_of_scope" or scope_ok(row)
    )


def multi_turn_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """By turn position, the exchanges with every turn right, and where the exchanges first went wrong."""
    by_turn: dict[str, list[dict[str, Any]]] = {}
    exchanges: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_turn.setdefault(str(r["turn"]), []).append(r)
        exchanges.setdefault(r["exchange"], []).append(r)
    first_miss: dict[str, int] = {}
    for turns in exchanges.values():
        missed = next((r["turn"] for r in turns if not turn_right(r)), None)
        if missed is not None:
            first_miss[str(missed)] = first_miss.get(str(missed), 0) + 1
    return {
        "exchanges": len(exchanges),
        "exchange_accuracy": round(sum(all(map(turn_right, t)) for t in exchanges.values()) / len(exchanges), 4),
        "by_turn": {k: accuracies(v) for k, v in sorted(by_turn.items())},
        "follow_up_turns": accuracies([r for r in rows if r["turn"] > 1]),
        "first_miss": dict(sorted(first_miss.items())),
    }  # fmt: skip


def _values(token: str) -> list[float]:
    from personagraph.insight.numbers import parse_numbers

    return [abs(n.value) for n in parse_numbers(token)]


def summarise(
    rows: list[dict[str, Any]], args: argparse.Namespace, seconds: float, snap: Any
) -> dict[str, Any]:
    answered = [r for r in rows if r["checked"] or r["answer"]]
    checked = sum(r["checked"] for r in rows)
    supported = sum(r["supported"] for r in rows)
    result = {
        "eval": "insight",
        **accuracies(rows),
        "leakage_rate": round(sum(bool(r["leak"]) for r in answered) / len(answered), 4) if answered else 0.0,
        "numeric_faithfulness": round(supported / checked, 4) if checked else 1.0,
        "figures_checked": checked,
        "flagged": sum(bool(r["flagged"]) for r in rows),
        "errors": sum(bool(r["error"]) for r in rows),
        "router": args.router,
        "drafter": "template (no model)" if args.drafter == "template" else "drafter role",
        "data": f"{snap.source}, {len(snap.customers):,} customers",
        "seconds": round(seconds, 1),
    }
    if any(r["turn"] > 1 for r in rows):
        result.update(multi_turn_summary(rows))
    REPORTS.mkdir(parents=True, exist_ok=True)
    out = args.out or REPORTS / f"insight-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps({"summary": result, "rows": rows}, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    result["report"] = str(out)
    for r in rows:
        if r["intent"] != r["expected_intent"] or r["leak"] or r["error"]:
            print(json.dumps({k: r[k] for k in ("exchange", "turn", "question", "expected_intent", "intent", "leak",
                                                "error")}, ensure_ascii=False))  # fmt: skip
        elif not turn_right(r):
            print(json.dumps({k: r[k] for k in ("exchange", "turn", "question", "expected_scope", "scope")},
                             ensure_ascii=False))  # fmt: skip
    return result
