"""Benchmark: a survey batch (about 500 answers) against the stub model server, by batch concurrency.

Why: a twin survey batch should be limited by the model server, not by our code. With a stub whose
per-call latency is known, the batch's best possible rate is `concurrency / per-answer stub latency`
(the stub's capacity at that concurrency); the ratio of the measured answers/s to it shows what the
executor, validation and storage cost. Goal: >= 0.9 at the configured concurrency
(`--concurrency` of `personagraph survey`, default 2).

Each batch is a new run made and executed as `personagraph survey` does (`create_survey_run`,
`run_survey`, per_question mode, one model call per answer), in a temporary PERSONAGRAPH_HOME.

    python bench/survey_throughput.py                                  # concurrency 1,2,4,8,16,32
    python bench/survey_throughput.py --concurrency 2,8 --answers 100 --json
    python bench/survey_throughput.py --first-token-delay 0.1 --tokens-per-s 100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personagraph.serving.stub_model import StubModelServer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false", "ANONYMIZED_TELEMETRY": "False"}
DEFAULT_CONCURRENCY = 2  # `personagraph survey --concurrency` default (cli/twins.py)


def run_batch(
    stub: StubModelServer, survey_path: Path, answers: int, concurrency: int, seed: int
) -> dict[str, Any]:
    """One survey run of about `answers` answers at `concurrency`; its rate and the stub's capacity."""
    from personagraph.accounts.identity import CLI_CALLER
    from personagraph.services.twins.executor import BatchOptions
    from personagraph.services.twins.selections import parse_selection, respondent_pool, select_respondents
    from personagraph.services.twins.surveys import create_survey_run, run_survey
    from personagraph.twins.surveys import load_survey

    survey = load_survey(survey_path)
    people_needed = math.ceil(answers / len(survey.questions))
    selection = parse_selection(CLI_CALLER, [f"random:{people_needed}:{seed}"])
    people = select_respondents(CLI_CALLER, selection, respondent_pool(CLI_CALLER, selection.source))
    options = BatchOptions(mode="per_question", concurrency=concurrency)
    run_id = create_survey_run(
        CLI_CALLER, survey, people, options, selection=selection, source=selection.source
    ).run_id
    since = int(stub.stats()["requests"])
    started = time.perf_counter()
    summary = run_survey(CLI_CALLER, run_id, options, progress=False)
    seconds = time.perf_counter() - started
    records = stub.stats(since=since)["records"]
    per_call = [r["total_s"] for r in records]
    stub_call_s = statistics.mean(per_call) if per_call else float("nan")
    rate = summary.ok / seconds if seconds > 0 else 0.0
    capacity = concurrency / stub_call_s if per_call else float("nan")
    return {
        "concurrency": concurrency,
        "answers": summary.stored,
        "ok": summary.ok,
        "failed": summary.failed,
        "model_calls": len(records),
        "seconds": round(seconds, 3),
        "answers_per_s": round(rate, 3),
        "stub_s_per_answer_mean": round(stub_call_s, 4),
        "stub_s_per_answer_planned": round(statistics.mean(r["planned_s"] for r in records), 4)
        if records
        else None,
        "stub_capacity_per_s": round(capacity, 3),
        "ratio": round(rate / capacity, 3) if capacity else None,
        "stub_max_in_flight": stub.stats(since=10**12)["max_in_flight"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,2,4,8,16,32", help="comma-separated batch concurrencies")
    parser.add_argument(
        "--answers", type=int, default=500, help="answers per batch (rounded up to whole people)"
    )
    parser.add_argument("--survey", type=Path, default=REPO_ROOT / "data" / "surveys" / "tam_en.yaml")
    parser.add_argument(
        "--first-token-delay", type=float, default=0.2, help="stub: seconds to the first token"
    )
    parser.add_argument("--tokens-per-s", type=float, default=50.0, help="stub: tokens per second after it")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    results: list[dict[str, Any]] = []
    with (
        StubModelServer(first_token_delay_s=args.first_token_delay, tokens_per_s=args.tokens_per_s) as stub,
        tempfile.TemporaryDirectory(prefix="personagraph-bench-") as home,
    ):
        os.environ.update({**OFFLINE_ENV, **stub.env(), "PERSONAGRAPH_HOME": home})
        from personagraph.serving.settings import get_settings

        get_settings.cache_clear()
        run_batch(stub, args.survey, 10, 2, args.seed + 1)  # warm-up: imports, respondent pool, run store
        for level in levels:
            stub.clear_stats()
            results.append(run_batch(stub, args.survey, args.answers, level, args.seed))
            if not args.json:
                r = results[-1]
                print(
                    f"concurrency {r['concurrency']:>3}: {r['answers']} answers ({r['failed']} failed) in "
                    f"{r['seconds']:.1f} s = {r['answers_per_s']:.2f}/s; stub {r['stub_s_per_answer_mean']:.3f} s "
                    f"per answer -> capacity {r['stub_capacity_per_s']:.2f}/s; ratio {r['ratio']:.3f}",
                    flush=True,
                )
    configured = next((r for r in results if r["concurrency"] == DEFAULT_CONCURRENCY), None)
    report = {
        "bench": "survey_throughput",
        "survey": args.survey.name,
        "stub": {"first_token_delay_s": args.first_token_delay, "tokens_per_s": args.tokens_per_s},
        "cpu_count": os.cpu_count(),
        "configured_concurrency": DEFAULT_CONCURRENCY,
        "ratio_at_configured": configured["ratio"] if configured else None,
        "goal": ">= 0.9 at the configured concurrency",
        "results": results,
    }
    if args.json:
        print(json.dumps(report))
    elif configured:
        verdict = "met" if (configured["ratio"] or 0) >= 0.9 else "MISSED"
        print(
            f"goal >= 0.9 at the configured concurrency {DEFAULT_CONCURRENCY}: {configured['ratio']} ({verdict})"
        )


if __name__ == "__main__":
    main()
