"""safety: the input filter alone (rules, classifier, optionally the judge) on labelled messages.

Reads JSONL lines `{"text": str, "unsafe": bool, "category": str (optional)}` and reports the block
rate on unsafe messages, the false-block rate on safe ones, counts per category and per deciding
layer. Each misclassified message is printed as one JSON line before the final JSON object. With
the default layers it needs no model server and runs in seconds.

    python -m evals safety                                   # the blind held-out sets
    python -m evals safety --dataset a.jsonl --dataset b.jsonl   # or --dataset a.jsonl,b.jsonl
    python -m evals safety --rules-only                      # layer 1 alone, for comparison
    python -m evals safety --judge                           # add the judge role (needs a model)

The shipped sets are held out: never used to train the classifier, and no rule copies their
strings (lines equal to a training line are removed). evals/datasets/safety_redteam.jsonl and
safety_benign.jsonl are the development sets. safety_blind3.jsonl .. safety_blind11.jsonl (about 540
messages each, half Korean, half English) were written by nine authors who saw neither the training
data, the rules nor the other sets. Each was scored once as a blind test; after that a set may
guide decisions (blind3-9 chose the classifier's settings and threshold; misses of blind3-9 guided
general rules and data), so only the newest two, blind10 and blind11, are the default (with the
crime set below). Earlier
blind sets became training data (data/safety/train_blind1.jsonl, train_blind2.jsonl).
safety_disclosure.jsonl (300 messages, a tenth author) holds fans telling the persona about
themselves (name, birthday, school, family, "remember that I ..."), the messages long-term memory
lives on, with unsafe look-alikes; safety_short.jsonl (299, an eleventh author) holds messages of
one to eight words ("you there?", "자?", "글쎄..").

safety_blind_crime1.jsonl holds requests for help with violence, weapons, drugs, fraud and other
crime, with hard negatives (concert "bombs", "killing it on stage", 칼군무, story-world battles),
written by an author who saw neither the training data (data/safety/train_crime_author1.jsonl, by
another author) nor the rules; it was scored once as a blind test when those categories were added
and is a default set since, so a later change that loses them shows. safety_blind_crime2.jsonl (170
messages, a thirteenth author, same blindness) adds harder look-alikes: victims and witnesses asking
what to do, scam checks, legal questions; it was scored once before and once after the look-alike
training lines of data/safety/train_lookalike17.jsonl (by another author who saw no eval set).

The result gives the figures over all cases, per dataset (`by_dataset`), per labelled category
(`by_category`: cases, blocked, and blocked under the labelled category) and per deciding layer.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from evals.jsonl import read_jsonl

DATASETS = Path(__file__).parent / "datasets"
# The newest blind sets: their authors saw neither the training data, the rules nor the other sets,
# and they guided no decision. The older blind sets are dev sets now (see the module docstring).
# The crime set covers the categories that blind3-11 lack (violence, weapons, drugs, fraud, crime).
DEFAULT_DATASETS = [
    DATASETS / "safety_blind10.jsonl",
    DATASETS / "safety_blind11.jsonl",
    DATASETS / "safety_blind_crime1.jsonl",
    DATASETS / "safety_blind_crime2.jsonl",
]
BLIND_DATASETS = sorted(DATASETS.glob("safety_blind*.jsonl"))


def load_cases(path: Path) -> list[dict[str, Any]]:
    """Cases of one JSONL file; raises ValueError naming the file and line of a bad case."""
    cases = []
    for where, row in read_jsonl(path):
        if not isinstance(row.get("text"), str):
            raise ValueError(f"{where}: needs a string 'text'")
        if not isinstance(row.get("unsafe"), bool):
            raise ValueError(f"{where}: needs a boolean 'unsafe'")
        category = row.get("category") or ("unsafe" if row["unsafe"] else "safe")
        cases.append(
            {"text": row["text"], "unsafe": row["unsafe"], "category": str(category), "dataset": path.name}
        )
    return cases


def dataset_paths(values: list[str] | None) -> list[Path]:
    if not values:
        return list(DEFAULT_DATASETS)
    return [Path(part.strip()) for value in values for part in value.split(",") if part.strip()]


def score(cases: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates and counts for cases and the filter's verdicts on them (same order). A case may name
    its `dataset`; the rates are then also given per dataset."""
    by_category: dict[str, dict[str, int]] = {}
    by_layer: dict[str, dict[str, int]] = {}
    for case, verdict in zip(cases, verdicts, strict=True):
        blocked = not verdict["safe"]
        counts = by_category.setdefault(case["category"], {"n": 0, "blocked": 0})
        counts["n"] += 1
        counts["blocked"] += blocked
        if case["unsafe"]:
            # Blocked under the labelled category: the refusal fits the request (violence gets the
            # harm-to-others answer, self_harm the help line).
            counts["same_category"] = counts.get("same_category", 0) + (
                blocked and verdict["category"] == case["category"]
            )
        if blocked:
            layer = by_layer.setdefault(verdict["layer"], {"blocked_unsafe": 0, "blocked_safe": 0})
            layer["blocked_unsafe" if case["unsafe"] else "blocked_safe"] += 1
    result = {**_rates(cases, verdicts), "by_category": dict(sorted(by_category.items()))}
    datasets = sorted({c["dataset"] for c in cases if "dataset" in c})
    if len(datasets) > 1:
        result["by_dataset"] = {name: _rates(*_of_dataset(cases, verdicts, name)) for name in datasets}
    return {**result, "by_layer": dict(sorted(by_layer.items()))}


def _rates(cases: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    n_unsafe = sum(c["unsafe"] for c in cases)
    n_safe = len(cases) - n_unsafe
    blocked_unsafe = sum(c["unsafe"] and not v["safe"] for c, v in zip(cases, verdicts, strict=True))
    blocked_safe = sum(not c["unsafe"] and not v["safe"] for c, v in zip(cases, verdicts, strict=True))
    return {
        "n": len(cases),
        "n_unsafe": n_unsafe,
        "n_safe": n_safe,
        "block_rate": round(blocked_unsafe / n_unsafe, 4) if n_unsafe else 0.0,
        "false_block_rate": round(blocked_safe / n_safe, 4) if n_safe else 0.0,
    }


def _of_dataset(
    cases: list[dict[str, Any]], verdicts: list[dict[str, Any]], name: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pairs = [(c, v) for c, v in zip(cases, verdicts, strict=True) if c.get("dataset") == name]
    return [c for c, _ in pairs], [v for _, v in pairs]


def run(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m evals safety")
    parser.add_argument(
        "--dataset",
        action="append",
        metavar="PATH",
        help="JSONL file(s), repeatable or comma-separated (default: the shipped blind sets)",
    )
    parser.add_argument("--judge", action="store_true", help="also ask the judge role (needs a model)")
    parser.add_argument("--rules-only", action="store_true", help="only layer 1 (the rules)")
    parser.add_argument("--threshold", type=float, default=None, help="classifier threshold")
    args = parser.parse_args(argv)
    if args.judge and args.rules_only:
        parser.error("--judge and --rules-only exclude each other")

    cases: list[dict[str, Any]] = []
    paths = dataset_paths(args.dataset)
    for path in paths:
        try:
            cases.extend(load_cases(path))
        except OSError as exc:
            parser.error(f"cannot read dataset {path}: {exc.strerror or exc}")
        except ValueError as exc:
            parser.error(str(exc))
    if not cases:
        parser.error("the datasets hold no cases")

    from personagraph.safety.classifier import threshold_setting
    from personagraph.safety.input_filter import screen_input

    started = time.perf_counter()
    verdicts = [
        screen_input(c["text"], use_judge=args.judge, threshold=args.threshold, rules_only=args.rules_only)
        for c in cases
    ]
    seconds = time.perf_counter() - started
    for case, verdict in zip(cases, verdicts, strict=True):
        if case["unsafe"] == verdict["safe"]:
            error = "missed" if case["unsafe"] else "false_block"
            print(json.dumps({"error": error, **case, "verdict": verdict}, ensure_ascii=False))
    layers = "rules" if args.rules_only else "rules+classifier" + ("+judge" if args.judge else "")
    return {
        "eval": "safety",
        **score(cases, verdicts),
        "layers": layers,
        "threshold": None if args.rules_only else (args.threshold or threshold_setting()),
        "datasets": [str(p) for p in paths],
        "seconds": round(seconds, 2),
    }
