"""Benchmark: how soon an insight answer is visible, and when its narrative is complete (issue 21).

Asks questions through `InsightService.ask_stream`, as the app's tab and the SSE endpoint do, on the
stored history with the configured model (by default the embedded llama.cpp model, started before
the clock runs). Per question it records:

- first_visible_s: the first event a reader can show (the figures with the template answer; for a
  refusal or a question back, the final answer);
- first_sentence_s: the first checked sentence of the model's narrative;
- complete_s: the final answer (narrative checked, and rewritten once if a number was wrong);
- revised: whether it was rewritten (the final answer is not the narrative streamed);
- list_lines: lines that are list items, headings or bold labels (the answers should be prose).

It prints one JSON object: p50/p95/max of each, the goals (first visible <= 2 s, narrative complete
p50 <= 20 s on two cores), and one row per question. Run it alone and niced on a shared machine:

    nice python -m bench.insight_answer [--limit 8] [--router hybrid|keywords|model] [--repeat 1]
    nice python -m bench.insight_answer --question "How do VIP customers compare with at-risk ones?" --repeat 3
    LOCAL_MODEL=smollm2-135m nice python -m bench.insight_answer --limit 4     (a tiny model: faster)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from typing import Any

from langgraph.store.memory import InMemoryStore

from personagraph.accounts.identity import CLI_CALLER
from personagraph.insight.questions import ROUTER_MODES
from personagraph.services.insight import InsightService
from personagraph.serving.models import endpoint_of

# Korean and English, every intent that writes a narrative, and one refusal (no model call).
QUESTIONS = [
    "VIP 고객은 어떤 특징이 있어?",
    "How do VIP customers compare with at-risk ones?",
    "이탈 위험 고객을 붙잡으려면 어떤 전략이 좋을까?",
    "Give me an overview of our customer segments.",
    "휴면 고객에게 보낼 푸시 메시지 써줘",
    "What are our loyal customers like?",
    "신규 고객과 충성 고객을 비교해줘",
    "What's the weather in Seoul tomorrow?",
]
# A line that is a list item, a heading or a bold label: the answers are meant as prose (issue 21).
LIST_LINE = re.compile(
    r"^\s*(?:[-*•]\s|\d{1,2}[.)]\s|#{1,4}\s|\*\*[^*\n]{1,60}\*\*:?\s*$|[^\n]{1,40}:\s*$)", re.M
)
GOAL_FIRST_VISIBLE_S = 2.0
GOAL_COMPLETE_P50_S = 20.0


def time_question(service: InsightService, question: str, router: str) -> dict[str, Any]:
    started = time.perf_counter()
    first_visible = first_sentence = None
    tokens = 0
    streamed = ""  # the narrative as it was shown, to tell a rewritten answer (a second model call)
    answer = None
    for event in service.ask_stream(CLI_CALLER, question, router_mode=router):
        now = time.perf_counter() - started
        first_visible = now if first_visible is None else first_visible
        if event.kind == "token":
            tokens += 1
            streamed += event.text
            first_sentence = now if first_sentence is None else first_sentence
        if event.kind == "final":
            answer = event.answer
    complete = time.perf_counter() - started
    assert answer is not None
    return {
        "question": question, "intent": answer.intent, "router": answer.router,
        "first_visible_s": round(first_visible or complete, 3),
        "first_sentence_s": None if first_sentence is None else round(first_sentence, 3),
        "complete_s": round(complete, 3), "sentences_streamed": tokens,
        "narrative_chars": len(answer.answer), "flagged": answer.flagged, "error": answer.error,
        "revised": bool(streamed) and answer.answer != streamed,
        "list_lines": len(LIST_LINE.findall(answer.answer)),
        "answer": answer.answer,  # read a sample: a fast answer is worth nothing if it says nothing
    }  # fmt: skip


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 2), "p95": round(p95, 2), "max": round(ordered[-1], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.insight_answer")
    parser.add_argument("--limit", type=int, default=None, help="first N questions")
    parser.add_argument("--repeat", type=int, default=1, help="ask each question this many times")
    parser.add_argument("--router", default="hybrid", choices=ROUTER_MODES)
    parser.add_argument("--question", action="append", default=None,
                        help="ask this question instead of the set (repeatable); --limit then applies to these")  # fmt: skip
    args = parser.parse_args(argv)
    questions = args.question or QUESTIONS
    if (args.limit is not None and args.limit < 1) or args.repeat < 1:
        parser.error("--limit and --repeat must be at least 1")

    service = InsightService.history(store=InMemoryStore())
    t0 = time.perf_counter()
    endpoint_of("drafter")  # starts the embedded model server when no base URL is configured
    service.snapshot(CLI_CALLER)  # the history is read (generated on first use) before the clock runs
    warm = time_question(service, "VIP 고객 특징 알려줘", args.router)  # loads the model, builds profiles
    setup_s = time.perf_counter() - t0
    print(json.dumps({"warmup": warm, "setup_s": round(setup_s, 1)}, ensure_ascii=False), file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        for question in questions[: args.limit]:
            rows.append(time_question(service, question, args.router))
            print(json.dumps(rows[-1], ensure_ascii=False), file=sys.stderr)  # kept if the run is cut short
    narrated = [r for r in rows if r["sentences_streamed"] or r["intent"] != "out_of_scope"]
    first_visible = _stats([r["first_visible_s"] for r in rows])
    complete = _stats([r["complete_s"] for r in narrated])
    result = {
        "bench": "insight_answer",
        "questions": len(rows),
        "router": args.router,
        "model": os.environ.get("LOCAL_MODEL")
        or os.environ.get("LLM_MODEL")
        or "default (see serving.settings)",
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "setup_s": round(setup_s, 1),
        "warmup": warm,
        "first_visible_s": first_visible,
        "first_sentence_s": _stats(
            [r["first_sentence_s"] for r in rows if r["first_sentence_s"] is not None]
        ),
        "complete_s": complete,
        "revised": sum(r["revised"] for r in rows),  # answers rewritten after a failed number check
        "answers_with_lists": sum(r["list_lines"] > 0 for r in narrated),
        "goal_first_visible_met": bool(first_visible and first_visible["max"] <= GOAL_FIRST_VISIBLE_S),
        "goal_complete_p50_met": bool(complete and complete["p50"] <= GOAL_COMPLETE_P50_S),
        "rows": rows,
    }
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
