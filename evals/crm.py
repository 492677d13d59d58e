"""crm: the crm_message graph over input combinations (evals/datasets/crm_inputs.jsonl, 60 rows).

    python -m evals crm [--limit N] [--dataset FILE] [--no-judge] [--out-dir reports]
                        [--variants K] [--concurrency N] [--max-minutes M] [--fresh]
    python -m evals crm --rescore reports/crm-<timestamp>.json   # an earlier run's messages, today's checks

Resumable: each result is appended to reports/crm-partial-<key>.jsonl as it finishes (the key names
the dataset, the limit, the variants and the prompt version), and a run started again with the same
arguments runs only the rows not there yet (`--fresh` starts over). `--max-minutes M` starts no row
after M minutes and prints `"complete": false` with the rows done; the summary of a complete run
covers every row, whichever invocation ran it.

Prints (as the last line, via the registry) one JSON object:
- n, valid_rate: results that are valid JSON with every field of the result schema (status passed or
  failed; an error or invalid row counts as not valid);
- grounded_rate: messages with no unsupported number, price, discount, date or ingredient;
- length_ok_rate: messages within their channel's limit; passed_rate: messages that passed every check;
- brand_id_accuracy: a TF-IDF character n-gram classifier trained on the brands' tone material only
  (introductions, official copy, words used) predicts the brand of each final message, with brand and
  product names removed first (so it scores the voice, not the name);
- judge_mean: the judge role's mean score (1-5) for persuasion and tone (null with --no-judge or when
  every judge call failed);
- seconds (this invocation's wall time), message_seconds_p50/mean (each row's own graph time,
  variants included);
and writes reports/crm-<timestamp>.json (all results, the worst cases with their reasons) and
reports/crm-preferences.jsonl (accepted/rejected pairs for DPO training of the stylist).
Needs a model server (LLM_BASE_URL, or the embedded model); results are not cached here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

DATASET = Path(__file__).parent / "datasets" / "crm_inputs.jsonl"
RESULT_FIELDS = ("status", "request", "stage", "style", "channel", "event", "draft", "message", "checks",
                 "evidence", "timings")  # fmt: skip


class JudgeScore(BaseModel):
    reads: int = Field(ge=1, le=5)
    persuasion: int = Field(ge=1, le=5)
    tone: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=300)


def brand_classifier() -> Any:
    """The product's brand-voice classifier (crm/tone_classifier.py), trained on the shipped catalog's
    tone material, never on eval outputs."""
    from personagraph.crm import tone_classifier
    from personagraph.crm.catalog import load_catalog

    return tone_classifier.classifier(load_catalog())


def is_valid(result: Mapping[str, Any]) -> bool:
    return result.get("status") in ("passed", "failed") and all(k in result for k in RESULT_FIELDS)


def judge_text(
    message: str, brand_name: str, tone: str, objective: str, persona: str, channel: str
) -> float | None:
    """The judge role's score 1-5: the mean of persuasion and tone, capped by `reads` (a message that
    is a keyword list, has no sentences or no call to action cannot score above its `reads`)."""
    from personagraph.prompts import crm as prompts
    from personagraph.serving.models import ModelError, structured

    messages = [
        SystemMessage(content=prompts.JUDGE_SYSTEM),
        HumanMessage(content=prompts.JUDGE_USER.format(
            brand_name=brand_name, tone=tone, stage_objective=objective or "-", persona_name=persona or "-",
            channel=channel, message=message,
        )),
    ]  # fmt: skip
    try:
        score = structured("judge", JudgeScore, messages, max_tokens=160)
    except ModelError:
        return None
    return min(float(score.reads), (score.persuasion + score.tone) / 2)


def judge(result: Mapping[str, Any]) -> float | None:
    from personagraph.crm.catalog import load_catalog

    brand = load_catalog().brands[result["request"]["brand"]]
    return judge_text(str(result["message"]), brand.name, brand.tone, result["stage"]["objective"],
                      result["persona"]["name"], str(result["request"].get("channel", "")))  # fmt: skip


def severity(result: Mapping[str, Any]) -> tuple[int, int]:
    """Worse first: errors, then failed checks (more reasons worse), then passed."""
    rank = {"error": 0, "invalid": 0, "failed": 1}.get(str(result.get("status")), 2)
    return rank, -len(result.get("reasons") or [])


def summarise(results: Sequence[Mapping[str, Any]], predictions: Sequence[str | None],
              scores: Sequence[float | None]) -> dict[str, Any]:  # fmt: skip
    n = len(results)
    valid = [r for r in results if is_valid(r)]
    with_message = [r for r in valid if r.get("message")]
    grounded = [r for r in with_message if r["checks"].get("grounding", {}).get("passed")]
    length_ok = [r for r in with_message if r["checks"].get("length", {}).get("passed")]
    reads = [r for r in with_message if r["checks"].get("reads", {}).get("passed")]
    repaired = [r for r in with_message if any(a.get("repairs") for a in r.get("attempts") or [])]
    brand_hits = [
        p == r.get("request", {}).get("brand") for r, p in zip(results, predictions, strict=True) if p
    ]
    judged = [s for s in scores if s is not None]
    seconds = [float(r["timings"]["total"]) for r in results if "total" in (r.get("timings") or {})]
    return {
        "n": n,
        "valid_rate": round(len(valid) / n, 4) if n else 0.0,
        "grounded_rate": round(len(grounded) / len(with_message), 4) if with_message else 0.0,
        "length_ok_rate": round(len(length_ok) / len(with_message), 4) if with_message else 0.0,
        "passed_rate": round(sum(r.get("status") == "passed" for r in results) / n, 4) if n else 0.0,
        "reads_rate": round(len(reads) / len(with_message), 4) if with_message else 0.0,
        "repaired_rate": round(len(repaired) / len(with_message), 4) if with_message else 0.0,
        "brand_id_accuracy": round(sum(brand_hits) / len(brand_hits), 4) if brand_hits else 0.0,
        "judge_mean": round(sum(judged) / len(judged), 3) if judged else None,
        "judged": len(judged),
        "message_seconds_p50": round(statistics.median(seconds), 1) if seconds else None,
        "message_seconds_mean": round(statistics.fmean(seconds), 1) if seconds else None,
    }


LABELS = Path(__file__).parent / "datasets" / "crm_message_labels.jsonl"
READS_FLAGS = {"keyword_list", "no_call_to_action", "broken_word", "not_sentences", "says_nothing"}


def label_evidence(catalog: Any, product_id: str) -> list[dict[str, Any]]:
    """What the graph would retrieve for a labelled message: the product's facts, its reviews and its
    event (so the checks judge the message as they would a generated one)."""
    from personagraph.crm.catalog import product_fact_texts, promotion_text

    product = catalog.products[product_id]
    evidence = [{"id": f"F{i}", "kind": "product", "text": t}
                for i, t in enumerate(product_fact_texts(catalog, product).values(), start=1)]  # fmt: skip
    evidence += [{"id": f"R{i}", "kind": "review", "text": r.text}
                 for i, r in enumerate(catalog.product_reviews(product_id), start=1)]  # fmt: skip
    promotion = catalog.promotion_for(product)
    if promotion is not None:
        names = [catalog.products[p].name for p in promotion.product_ids if p in catalog.products]
        evidence.append({"id": "E1", "kind": "event", "text": promotion_text(promotion, names)})
    return evidence


def calibrate(labels: list[dict[str, Any]], scores: Sequence[float | None]) -> dict[str, Any]:
    """Agreement of the product's checks and of the judge with hand labels: the checks' `passed` vs
    `sendable` (accuracy, and how many unsendable messages pass), the reads check vs the
    keyword/CTA/broken/sentence flags, and the judge's score vs the label's (exact, within 1,
    Spearman; the mean judge score of keyword lists, which must stay at most 2)."""
    from scipy.stats import spearmanr

    from personagraph.crm.catalog import load_catalog
    from personagraph.crm.checks import run_checks, subject_terms

    catalog = load_catalog()
    rows = []
    for label, score in zip(labels, scores, strict=True):
        lang = "en" if label.get("lang") == "en" or not re.search(r"[가-힣]", label["message"]) else "ko"
        report = run_checks(label["message"], evidence=label_evidence(catalog, label["product_id"]), catalog=catalog,
                            channel=label["channel"], lang=lang, subject=subject_terms(catalog, label["product_id"]))  # fmt: skip
        rows.append({"id": label["id"], "sendable": bool(label["sendable"]), "passed": report["passed"],
                     "reads_flagged": not report["checks"]["reads"]["passed"],
                     "reads_label": bool(READS_FLAGS & set(label.get("flags") or [])),
                     "score": int(label["score"]), "judge": score, "reasons": report["reasons"],
                     "keyword_list": "keyword_list" in (label.get("flags") or [])})  # fmt: skip
    n = len(rows)
    judged = [(r["score"], r["judge"]) for r in rows if r["judge"] is not None]
    listed = [r["judge"] for r in rows if r["keyword_list"] and r["judge"] is not None]
    summary: dict[str, Any] = {
        "labels": n,
        "checks_accuracy": round(sum(r["passed"] == r["sendable"] for r in rows) / n, 4) if n else None,
        "unsendable_passed": [r["id"] for r in rows if r["passed"] and not r["sendable"]],
        "sendable_failed": [{"id": r["id"], "reasons": r["reasons"]} for r in rows if r["sendable"] and not r["passed"]],
        "reads_agreement": round(sum(r["reads_flagged"] == r["reads_label"] for r in rows) / n, 4) if n else None,
        "judged": len(judged),
    }  # fmt: skip
    if judged:
        human, model = zip(*judged, strict=True)
        summary["judge_exact"] = round(sum(round(m) == h for h, m in judged) / len(judged), 4)
        summary["judge_within_1"] = round(sum(abs(m - h) <= 1 for h, m in judged) / len(judged), 4)
        rho = spearmanr(human, model).statistic if len(set(model)) > 1 else float("nan")
        summary["judge_spearman"] = None if rho != rho else round(float(rho), 4)
        summary["judge_mean_keyword_lists"] = round(sum(listed) / len(listed), 3) if listed else None
    return summary


def run_calibration(args: argparse.Namespace) -> dict[str, Any]:
    """`--calibrate`: the checks and (unless --no-judge) the judge against the labelled messages."""
    from personagraph.crm.catalog import load_catalog

    labels = [
        json.loads(line) for line in args.labels.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    labels = labels[: args.limit] if args.limit else labels
    catalog = load_catalog()
    scores: list[float | None] = []
    for label in labels:
        if args.no_judge:
            scores.append(None)
            continue
        brand = catalog.brands[label["brand_id"]]
        scores.append(judge_text(label["message"], brand.name, brand.tone, "", "", label["channel"]))
    summary = calibrate(labels, scores)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"crm-calibration-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return {**summary, "report": str(path)}


def run(argv: list[str]) -> dict[str, Any]:
    from personagraph.accounts.identity import CLI_CALLER
    from personagraph.crm.preferences import export_preferences
    from personagraph.crm.tone_classifier import mask_names
    from personagraph.services.crm import CrmService, read_partial

    parser = argparse.ArgumentParser(prog="python -m evals crm")
    parser.add_argument("--limit", type=int, default=None, help="first N combinations only")
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--no-judge", action="store_true", help="skip the judge role (judge_mean = null)")
    parser.add_argument("--out-dir", type=Path, default=Path("reports"))
    parser.add_argument("--calibrate", action="store_true", help="score the checks and the judge on --labels")
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--variants", type=int, default=1, help="candidates per combination, best one scored")
    parser.add_argument("--concurrency", type=int, default=1, help="combinations run at the same time")
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="start no row after M minutes (resume later)"
    )
    parser.add_argument("--fresh", action="store_true", help="discard the partial results of an earlier run")
    parser.add_argument("--rescore", type=Path, default=None,
                        help="a report (.json) or partial file (.jsonl): its final messages under today's checks")  # fmt: skip
    args = parser.parse_args(argv)
    if args.calibrate:
        return run_calibration(args)
    if args.rescore:
        return rescore(args.rescore)
    service = CrmService(use_cache=False)
    rows = service.read_batch(CLI_CALLER, args.dataset)
    rows = rows[: args.limit] if args.limit else rows
    started = time.time()
    partial = partial_path(args)
    done = {} if args.fresh else read_partial(partial)
    resumed = len(done)
    results = run_rows(service, rows, partial, done, args, started)
    if len(results) < len(rows):
        return {"complete": False, "rows_done": len(results), "rows": len(rows), "partial": str(partial),
                "seconds": round(time.time() - started, 1),
                "resume": "run the same command again (without --fresh)"}  # fmt: skip
    classifier = brand_classifier()
    predictions = [
        str(classifier.predict([mask_names(r["message"])])[0]) if r.get("message") else None for r in results
    ]
    scores = [None if args.no_judge or not r.get("message") else judge(r) for r in results]
    summary = summarise(results, predictions, scores)
    for result, predicted, score in zip(results, predictions, scores, strict=True):
        result["predicted_brand"], result["judge_score"] = predicted, score
    worst = sorted(results, key=severity)[:10]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report_path = args.out_dir / f"crm-{stamp}.json"
    preferences_path = args.out_dir / "crm-preferences.jsonl"
    pairs = export_preferences(results, preferences_path)
    unexplained = [
        r["row"] for r in results if r.get("status") != "passed" and not (r.get("reasons") or r.get("error"))
    ]
    summary.update(preference_pairs=pairs, unexplained_failures=unexplained, seconds=round(time.time() - started, 1),
                   report=str(report_path), preferences=str(preferences_path))  # fmt: skip
    worst_cases = [{"row": r["row"], "status": r.get("status"), "request": r.get("request"),
                    "message": r.get("message"), "reasons": r.get("reasons") or [r.get("error")]} for r in worst]  # fmt: skip
    report_path.write_text(
        json.dumps(
            {"summary": summary, "worst_cases": worst_cases, "results": results}, ensure_ascii=False, indent=1
        ),
        encoding="utf-8",
    )
    partial.unlink(missing_ok=True)
    return {"complete": True, "resumed_rows": resumed, **summary}


def rescore(path: Path) -> dict[str, Any]:
    """The final messages of an earlier run under today's checks (no model call): which passed then,
    which pass now, and why each newly failing one fails. What it cannot show is what the rewrite
    loop would have made of a message today's checks send back."""
    from personagraph.crm.catalog import load_catalog
    from personagraph.crm.checks import run_checks, subject_terms
    from personagraph.prompts.crm import INSTRUCTIONS

    text = path.read_text(encoding="utf-8")
    results = (
        json.loads(text)["results"]
        if path.suffix == ".json"
        else [json.loads(x) for x in text.splitlines() if x.strip()]
    )
    catalog = load_catalog()
    rows = []
    for result in results:
        request = result.get("request") or {}
        if not result.get("message") or request.get("product") not in catalog.products:
            continue
        report = run_checks(str(result["message"]), evidence=result.get("evidence") or [], catalog=catalog,
                            channel=request["channel"], lang=request.get("lang", "ko"), draft=result.get("draft"),
                            subject=subject_terms(catalog, request["product"]), instructions=INSTRUCTIONS)  # fmt: skip
        rows.append({"row": result.get("row"), "then": result.get("status") == "passed", "now": report["passed"],
                     "reasons": report["reasons"]})  # fmt: skip
    return {
        "rescored": len(rows),
        "passed_then": sum(r["then"] for r in rows),
        "passed_now": sum(r["now"] for r in rows),
        "newly_failing": [
            {"row": r["row"], "reasons": r["reasons"]} for r in rows if r["then"] and not r["now"]
        ],
        "newly_passing": [r["row"] for r in rows if r["now"] and not r["then"]],
    }


def partial_path(args: argparse.Namespace) -> Path:
    """Where a run's finished rows wait for the rest: one file per dataset, limit, variants and prompts."""
    from personagraph.prompts.crm import PROMPT_VERSION

    key = f"{args.dataset.resolve()}|{args.limit}|{args.variants}|{PROMPT_VERSION}"
    return args.out_dir / f"crm-partial-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl"


def run_rows(
    service: Any,
    rows: Sequence[Mapping[str, Any]],
    partial: Path,
    done: dict[int, dict[str, Any]],
    args: argparse.Namespace,
    started: float,
) -> list[dict[str, Any]]:
    """The rows not in `done`, `--concurrency` at a time, each appended to `partial` as it finishes;
    no new group starts after `--max-minutes`. Returns every finished row (earlier ones included)."""
    from personagraph.accounts.identity import CLI_CALLER

    partial.parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if done else "w"
    todo = [number for number in range(1, len(rows) + 1) if number not in done]
    with partial.open(mode, encoding="utf-8") as handle:

        def keep(result: dict[str, Any]) -> None:
            handle.write(json.dumps(result, ensure_ascii=False) + "\n")
            handle.flush()
            done[int(result["row"])] = result
            print(f"crm eval {len(done)}/{len(rows)}", flush=True)

        for first in range(0, len(todo), args.concurrency):
            if args.max_minutes is not None and time.time() - started > args.max_minutes * 60:
                break
            group = set(todo[first : first + args.concurrency])
            skip = {n for n in range(1, len(rows) + 1) if n not in group}
            service.run_batch(CLI_CALLER, rows, concurrency=args.concurrency, variants=args.variants,
                              skip=skip, on_result=keep)  # fmt: skip
    return [done[number] for number in sorted(done)]
