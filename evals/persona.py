"""persona: does the persona stay in character? Rules (personas/rules) plus the `judge` role.

Each prompt is sent in a fresh thread by a fresh fan through `ChatService`. Every reply is scored by
the speech rules (`check_speech`), checked for role drift (`drift`) and scored 1-5 by the `judge`
role against the rubric in prompts/evals.py. A judge call that fails is recorded as a failure (never
a made-up score) and left out of `judge_mean`. A turn that fails (model server down) is counted in
`errors` and left out of every rate.

- `drift_rate`: share of replies with something a fan would notice (personas/drift.py, the same
  detectors as the chat's output check): wrong language, the fan's facts claimed as the persona's,
  assistant-style refusals, admitting to be an AI or a character, mixed scripts, copied documents,
  talking as another character. `drift_by_category` counts each; `output_check_caught` counts what
  the chat's output check stopped before the fan saw it (regenerated or replaced).
- `rule_compliance`: share of replies with no hard rule problem (the fan address is a soft rule,
  reported as `fan_address_rate`).
- `refusal_rate`: share of turns answered by the input-safety refusal (no draft).

Cases: {"persona_id", "message", "kind", "lang"} with kind ordinary | break | language_switch |
self_intro; an optional "before": [fan messages] is sent first in the same thread (a language switch:
earlier turns in the other language; the reply must follow the current message's `lang`).

Judge calibration: the judge also scores the labelled replies of `--labels` (written by someone other
than the prompt's author); `judge_agreement` (exact, within 1, Spearman, n) is reported next to
every judge mean, for the raw judge and for the calibrated one (`calibrated_score`: the judge's
score capped by the drift detectors, and the product's own refusal lines floored at 4), and
`detector_agreement` gives each detector's precision and recall against the labels' flags.

    python -m evals persona [--dataset evals/datasets/persona_prompts.jsonl] [--limit N]
                            [--report-dir reports] [--no-judge] [--labels FILE]
                            [--calibration-limit N] [--no-calibration]

Writes reports/persona_<UTC timestamp>.md and .json (score distribution, rule failures, the worst
examples, the models used) and returns one JSON object. Ctrl-C or `kill PID` stops a long run after
the current model call and reports the cases finished so far (marked "interrupted").
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field
from scipy.stats import spearmanr

from evals.jsonl import load_jsonl
from personagraph.accounts.identity import Caller
from personagraph.memory.feedback import feedback_counts
from personagraph.personas import drift
from personagraph.personas.model import Persona, list_personas, load_knowledge, load_persona, load_world
from personagraph.personas.rules import (
    FAN_ADDRESS_MIN_RATE,
    addresses_fan,
    check_speech,
    hard_problems,
    other_character_names,
    speech_levels,
)
from personagraph.prompts import evals as prompts
from personagraph.prompts.persona_chat import LANGUAGE_NAMES
from personagraph.services.chat import ChatService, validate_request
from personagraph.serving.models import chat_model, endpoint_of, structured
from personagraph.serving.settings import Role

DEFAULT_DATASET = Path(__file__).parent / "datasets" / "persona_prompts.jsonl"
DEFAULT_LABELS = Path(__file__).parent / "datasets" / "persona_judge_labels.jsonl"
KINDS = ("ordinary", "break", "language_switch", "self_intro")
# The calibrated judge: the judge's score, capped when a drift detector fires (what a fan notices
# cannot be "in character"), and the product's own refusal lines (vetted in-character refusals of
# unsafe or character-break messages) floored at REFUSAL_FLOOR.
DRIFT_CAPS = {
    "wrong_language": 1,
    "admits_fiction": 1,
    "other_character": 1,
    "assistant_refusal": 2,
    "claims_fan_fact": 2,
    "names_fan_as_persona": 2,
    "mixed_script": 2,
    "copied_context": 2,
    "repeats_message": 2,
}
REFUSAL_FLOOR = 4
# The labels' flags and the detector that should raise each (personas/drift.py categories).
LABEL_FLAGS = {
    "wrong_language": "wrong_language",
    "claims_fan_fact": "claims_fan_fact",
    "assistant_refusal": "assistant_refusal",
    "admits_ai_or_fictional": "admits_fiction",
    "mixed_script": "mixed_script",
    "copied_context": "copied_context",
}
SAMPLE_N = 20
WORST_N = 10
# Production targets (7-10B model on a GPU), shown next to the measured numbers in the report.
TARGETS = {"judge_mean": (">=", 4.0), "drift_rate": ("<", 0.05), "rule_compliance": (">=", 0.90)}


class JudgeScore(BaseModel):
    """The judge's verdict on one reply (reason first, so the score follows the evidence)."""

    reason: str = Field(description="One short sentence naming the deciding evidence.")
    score: int = Field(ge=1, le=5, description="1 = breaks character ... 5 = fully in character.")


# --- shared helpers (also used by evals/memory.py) --------------------------------------------------------


def describe_endpoint(role: Role) -> dict[str, str]:
    """{"model", "base_url"} of a role; in-process test models are named by their class."""
    model = chat_model(role)
    if isinstance(model, ChatOpenAI):
        base_url, name = endpoint_of(role)
        return {"model": name, "base_url": base_url}
    return {"model": type(model).__name__, "base_url": "(in-process model)"}


@contextmanager
def stop_signals() -> Iterator[None]:
    """While running, SIGTERM (and SIGINT, even where a background shell ignores it) raise
    KeyboardInterrupt, so `kill PID` stops a long eval early with a report of what it finished."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def elapsed(started: float) -> float:
    return round(time.perf_counter() - started, 2)


# --- scoring ----------------------------------------------------------------------------------------------


def validate_case(case: dict[str, Any], number: int) -> None:
    missing = [k for k in ("persona_id", "message", "kind", "lang") if k not in case]
    if missing:
        raise ValueError(f"case {number}: missing {', '.join(missing)}")
    if case["kind"] not in KINDS or case["lang"] not in ("ko", "en"):
        raise ValueError(f"case {number}: kind must be one of {'|'.join(KINDS)} and lang ko|en")
    before = case.get("before", [])
    if not isinstance(before, list) or not all(isinstance(m, str) and m.strip() for m in before):
        raise ValueError(f"case {number}: before must be a list of non-empty fan messages")


def judge_reply(persona: Persona, case: dict[str, Any], reply: str) -> tuple[int | None, str]:
    """(score, reason) from the judge role, or (None, the failure) when it gave no valid verdict."""
    speech = persona.speech
    system = prompts.PERSONA_JUDGE_SYSTEM.format(
        name=persona.name,
        name_ko=persona.name_ko or persona.name,
        position=persona.position or persona.kind,
        group_part=f" of {persona.group}" if persona.group and persona.group not in persona.position else "",
        personality="; ".join(persona.personality) or "-",
        speech_rules="\n".join(f"- {rule}" for rule in speech.rules) or "-",
        fan_address_ko=speech.fan_address_ko or "-",
        fan_address_en=speech.fan_address_en or "-",
        emoji=speech.emoji_per_message,
        emoji_set=" ".join(speech.emoji_set) or "any",
        banmal_pct=round(speech.banmal_ratio * 100),
        forbidden=", ".join(t.topic for t in persona.forbidden_topics) or "none",
    )
    user = prompts.PERSONA_JUDGE_USER.format(
        language_name=LANGUAGE_NAMES[case["lang"]], message=case["message"], name=persona.name, reply=reply
    )
    try:
        verdict = structured(
            "judge", JudgeScore, [SystemMessage(content=system), HumanMessage(content=user)], max_tokens=200
        )
    except Exception as exc:  # noqa: BLE001 - a failed verdict is recorded, never replaced by a score
        return None, f"judge failed: {type(exc).__name__}: {exc}"[:500]
    return verdict.score, verdict.reason


def drift_findings(
    case: dict[str, Any],
    reply: str,
    persona: Persona,
    other_names: Sequence[str] = (),
    documents: Sequence[str] = (),
) -> list[tuple[str, str]]:
    """The drift detectors on one reply, with the facts the fan stated in the case's messages and
    the documents the turn retrieved (the same detectors as the chat's output check)."""
    said = [*case.get("before", []), case["message"]]
    facts = [fact for text in said for fact in drift.facts_from_text(text)] + drift.mentioned_kinds(said[-1])
    persona_words = drift.persona_vocabulary(persona, load_world(persona.id))
    allowed = persona_words | drift.vocabulary(*said) | drift.vocabulary(*documents, names_only=True)
    return drift.findings(
        reply,
        persona,
        case["lang"],
        fan_facts=facts,
        fan_statements=drift.fan_statements(said, ignore=persona_words),
        documents=documents,
        allowed=allowed,
        other_names=other_names,
        echoes=[case["message"]],
    )


def calibrated_score(
    score: int | None, categories: Sequence[str], reply: str, persona: Persona
) -> int | None:
    """The judge's score capped by the drift found (DRIFT_CAPS); one of the persona's own refusal
    lines without drift is floored at REFUSAL_FLOOR. None stays None (a failed verdict)."""
    if score is None:
        return None
    caps = [DRIFT_CAPS[c] for c in categories if c in DRIFT_CAPS]
    if caps:
        return min(score, *caps)
    lines = {line.strip() for lines in persona.refusal_lines.values() for line in lines}
    return max(score, REFUSAL_FLOOR) if reply.strip() in lines else score


def score_reply(
    case: dict[str, Any],
    reply: str,
    persona: Persona,
    other_names: Sequence[str],
    judge: bool = True,
    documents: Sequence[str] = (),
) -> dict[str, Any]:
    """Rule problems, drift and the judge's (raw and calibrated) score of one reply."""
    problems = check_speech(reply, persona, case["lang"])
    found = drift_findings(case, reply, persona, other_names, documents)
    score, judge_reason = judge_reply(persona, case, reply) if judge else (None, "not judged")
    categories = sorted({category for category, _ in found})
    return {
        "problems": problems,
        "hard_problems": len(hard_problems(problems)),
        "addresses_fan": addresses_fan(reply, persona),
        "drift": bool(found),
        "drift_reasons": [reason for _, reason in found],
        "drift_categories": categories,
        "judge_score": score,
        "judge_calibrated": calibrated_score(score, categories, reply, persona),
        "judge_reason": judge_reason,
        "judge_failed": judge and score is None,
    }


def evaluate(
    cases: Sequence[dict[str, Any]],
    service: ChatService | None = None,
    *,
    judge: bool = True,
    verbose: bool = False,
    stop_on_interrupt: bool = False,
) -> list[dict[str, Any]]:
    """Send each case in a fresh thread by a fresh fan and score the reply; one row per case.

    With `stop_on_interrupt`, Ctrl-C ends the run early and returns the rows finished so far.
    """
    for number, case in enumerate(cases, 1):
        validate_case(case, number)
    service = service or ChatService()
    everyone = [load_persona(p) for p in list_personas()]
    names: dict[str, list[str]] = {}
    rows: list[dict[str, Any]] = []
    try:
        for number, case in enumerate(cases, 1):
            if case["persona_id"] not in names:
                names[case["persona_id"]] = other_character_names(
                    load_persona(case["persona_id"]), load_world(case["persona_id"]), everyone
                )
            rows.append(run_case(service, number, case, names[case["persona_id"]], judge))
            if verbose:
                keys = (
                    "case",
                    "persona_id",
                    "kind",
                    "reply",
                    "judge_score",
                    "drift",
                    "turn_seconds",
                    "score_seconds",
                )
                shown = {k: rows[-1].get(k) for k in keys}
                shown["problems"] = [p["rule"] for p in rows[-1].get("problems", [])]
                print(json.dumps(shown, ensure_ascii=False), flush=True)
    except KeyboardInterrupt:
        if not stop_on_interrupt:
            raise
        print(f"interrupted: reporting the {len(rows)} of {len(cases)} cases done", file=sys.stderr)
    return rows


def run_case(
    service: ChatService, number: int, case: dict[str, Any], other_names: Sequence[str], judge: bool
) -> dict[str, Any]:
    persona = load_persona(case["persona_id"])
    started = time.perf_counter()
    thread_id = uuid.uuid4().hex
    # A fresh fan per case: an account of its own, so no case sees another's memories.
    fan = Caller(f"eval-persona-{uuid.uuid4().hex[:12]}")
    for earlier in case.get("before", []):  # the same thread's earlier turns (a language switch)
        before = service.send(
            fan, validate_request(message=earlier, persona_id=case["persona_id"], thread_id=thread_id)
        )
        if before.error is not None:
            result = before
            break
    else:
        request = validate_request(
            message=case["message"], persona_id=case["persona_id"], thread_id=thread_id
        )
        result = service.send(fan, request)
    row: dict[str, Any] = {
        "case": number,
        **{k: case[k] for k in ("persona_id", "kind", "lang", "message")},
        "reply": result.reply,
        "intent": result.intent,
        "refused": result.intent == "refused",
        "output_blocks": [b.get("category") for b in result.blocks if b.get("stage") == "output"],
        "error": result.error,
        "turn_seconds": elapsed(started),
    }
    if result.error is None:
        started = time.perf_counter()
        documents = [str(doc.get("text", "")) for doc in result.retrieved]
        row.update(score_reply(case, result.reply, persona, other_names, judge, documents))
        row["score_seconds"] = elapsed(started)
    return row


# --- summary and report -----------------------------------------------------------------------------------


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers of a set of rows (see the module docstring for the definitions)."""
    scored = [r for r in rows if r.get("error") is None]
    scores = [r["judge_score"] for r in scored if r.get("judge_score") is not None]
    calibrated = [r["judge_calibrated"] for r in scored if r.get("judge_calibrated") is not None]
    addressed = [r for r in scored if r.get("addresses_fan") is not None]
    return {
        "n": len(rows),
        "judge_mean": round(float(mean(scores)), 2) if scores else None,
        "judge_mean_calibrated": round(float(mean(calibrated)), 2) if calibrated else None,
        "drift_rate": rate(sum(r["drift"] for r in scored), len(scored)),
        "rule_compliance": rate(sum(r["hard_problems"] == 0 for r in scored), len(scored)),
        "refusal_rate": rate(sum(r["refused"] for r in scored), len(scored)),
        "judge_failures": sum(bool(r.get("judge_failed")) for r in scored),
        "errors": len(rows) - len(scored),
        "fan_address_rate": rate(sum(bool(r["addresses_fan"]) for r in addressed), len(addressed)),
    }


def drift_by_category(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Replies with each kind of drift (a reply counts once per category)."""
    counts: Counter[str] = Counter()
    for row in rows:
        counts.update(set(row.get("drift_categories", [])))
    return {category: counts[category] for category in drift.CATEGORIES}


def output_check_caught(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """What the chat's output check stopped before the fan saw it, per category (a turn counts once
    per category): the drafts it sent back for regeneration or replaced."""
    counts: Counter[str] = Counter()
    for row in rows:
        counts.update(set(row.get("output_blocks", [])))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# --- judge calibration ----------------------------------------------------------------------------------


def validate_label(label: dict[str, Any], number: int) -> None:
    missing = [k for k in ("persona_id", "fan_message", "reply", "lang", "score") if k not in label]
    if missing:
        raise ValueError(f"label {number} ({label.get('id', '?')}): missing {', '.join(missing)}")
    if label["lang"] not in ("ko", "en") or label["score"] not in (1, 2, 3, 4, 5):
        raise ValueError(f"label {number} ({label.get('id', '?')}): lang must be ko|en and score 1-5")


def agreement(predicted: Sequence[int | None], labels: Sequence[int]) -> dict[str, Any]:
    """How well scores agree with the labels: exact and within-1 shares, Spearman's rho, mean
    absolute error, over the pairs with a score (n)."""
    pairs = [(p, t) for p, t in zip(predicted, labels, strict=True) if p is not None]
    if not pairs:
        return {"n": 0, "exact": None, "within_1": None, "spearman": None, "mae": None}
    ours, theirs = [p for p, _ in pairs], [t for _, t in pairs]
    rho = float(spearmanr(ours, theirs).statistic) if len(set(ours)) > 1 and len(set(theirs)) > 1 else None
    return {
        "n": len(pairs),
        "exact": rate(sum(p == t for p, t in pairs), len(pairs)),
        "within_1": rate(sum(abs(p - t) <= 1 for p, t in pairs), len(pairs)),
        "spearman": round(rho, 3) if rho is not None else None,
        "mae": round(float(mean(abs(p - t) for p, t in pairs)), 2),
    }


def detector_agreement(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per labelled flag: how many labels carry it, and the matching detector's precision and recall."""
    out: dict[str, dict[str, Any]] = {}
    for flag, category in LABEL_FLAGS.items():
        labelled = [flag in r["flags"] for r in rows]
        found = [category in r["drift_categories"] for r in rows]
        hits = sum(a and b for a, b in zip(labelled, found, strict=True))
        out[flag] = {
            "labelled": sum(labelled),
            "detected": sum(found),
            "precision": rate(hits, sum(found)),
            "recall": rate(hits, sum(labelled)),
        }
    return out


def calibrate(
    labels: Sequence[dict[str, Any]], judge: bool = True, *, verbose: bool = False
) -> dict[str, Any]:
    """Score the labelled replies with the detectors and (with `judge`) the judge role; report the
    raw and calibrated judge's agreement with the labels and each detector's against the flags."""
    for number, label in enumerate(labels, 1):
        validate_label(label, number)
    everyone = [load_persona(p) for p in list_personas()]
    rows = []
    for label in labels:
        persona = load_persona(label["persona_id"])
        others = other_character_names(persona, load_world(persona.id), everyone)
        case = {"message": label["fan_message"], "lang": label["lang"]}
        # A labelled reply has no retrieval record: any of the persona's documents could have been.
        documents = [doc.text for doc in load_knowledge(persona.id)]
        found = drift_findings(case, label["reply"], persona, others, documents)
        categories = sorted({c for c, _ in found})
        score, reason = judge_reply(persona, case, label["reply"]) if judge else (None, "not judged")
        rows.append(
            {
                "id": label.get("id"),
                "label": label["score"],
                "flags": list(label.get("flags") or []),
                "judge_score": score,
                "judge_calibrated": calibrated_score(score, categories, label["reply"], persona),
                "judge_reason": reason,
                "drift_categories": categories,
            }
        )
        if verbose:
            shown = {
                k: rows[-1][k] for k in ("id", "label", "judge_score", "judge_calibrated", "drift_categories")
            }
            print(json.dumps(shown, ensure_ascii=False), flush=True)
    truth = [r["label"] for r in rows]
    return {
        "n": len(rows),
        "judge": agreement([r["judge_score"] for r in rows], truth) if judge else None,
        "calibrated": agreement([r["judge_calibrated"] for r in rows], truth) if judge else None,
        "detectors": detector_agreement(rows),
        "judge_failures": sum(judge and r["judge_score"] is None for r in rows),
        "rows": rows,
    }


def describe_agreement(found: dict[str, Any] | None) -> str:
    """One line for a report cell: "exact 0.42, within 1 0.81, Spearman 0.55 (n 60)"."""
    if not found or not found.get("n"):
        return "no labelled replies scored"
    return (
        f"exact {show(found['exact'])}, within 1 {show(found['within_1'])}, "
        f"Spearman {show(found['spearman'])} (n {found['n']})"
    )


def sample(rows: Sequence[dict[str, Any]], n: int = SAMPLE_N) -> list[dict[str, Any]]:
    """Replies to read by hand: every n-th scored row, so both personas, kinds and languages show."""
    scored = [r for r in rows if r.get("error") is None]
    step = max(1, len(scored) // n) if scored else 1
    return scored[::step][:n]


def score_distribution(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    scored = [r for r in rows if r.get("error") is None]
    dist = {str(s): sum(r.get("judge_score") == s for r in scored) for s in range(1, 6)}
    dist["failed"] = sum(bool(r.get("judge_failed")) for r in scored)
    return dist


def rule_failures(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Replies failing each rule (a reply counts once per rule), soft rules marked '(soft)'."""
    counts: Counter[str] = Counter()
    for row in rows:
        seen = {
            p["rule"] + (" (soft)" if p.get("severity") == "soft" else "") for p in row.get("problems", [])
        }
        counts.update(seen)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def worst(rows: Sequence[dict[str, Any]], n: int = WORST_N) -> list[dict[str, Any]]:
    """The n worst replies: drift first, then the lowest judge score (unjudged after 1-5), then the
    most hard rule problems."""
    scored = [r for r in rows if r.get("error") is None]
    ranked = sorted(
        scored,
        key=lambda r: (
            not r["drift"],
            r["judge_score"] if r.get("judge_score") is not None else 6,
            -r["hard_problems"],
            r["case"],
        ),
    )
    return ranked[:n]


def banmal_shares(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per persona: 반말 share over all classified Korean sentences of its replies vs the target."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("error") is not None or row["lang"] != "ko":
            continue
        banmal, jondae = speech_levels(row["reply"])
        entry = out.setdefault(row["persona_id"], {"banmal": 0, "jondaemal": 0})
        entry["banmal"] += banmal
        entry["jondaemal"] += jondae
    for persona_id, entry in out.items():
        total = entry["banmal"] + entry["jondaemal"]
        entry["share"] = rate(entry["banmal"], total)
        entry["target"] = load_persona(persona_id).speech.banmal_ratio
    return out


def breakdown(rows: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row[key]), []).append(row)
    return {name: summarise(group) for name, group in sorted(groups.items())}


def meets(value: float | None, op: str, target: float) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if op == ">=" else value < target
    return "yes" if ok else "no"


def show(value: Any) -> str:
    return "n/a" if value is None else str(value)


def render_markdown(report: dict[str, Any]) -> str:
    s = {key: show(value) for key, value in report["summary"].items()}
    models = report["models"]
    lines = [
        f"# Persona consistency eval: {report['created_at']}",
        "",
        f"- dataset: `{report['dataset']}` ({s['n']} prompts"
        + (f" of {report['planned']} planned: interrupted)" if report.get("interrupted") else ")"),
        *(f"- {role} role: `{m['model']}` at {m['base_url']}" for role, m in models.items()),
        f"- time: {report['seconds']} s",
        "",
        "## Results",
        "",
        "| metric | value | production target | met |",
        "|---|---|---|---|",
    ]
    calibration = report.get("calibration") or {}
    raw_agreement = describe_agreement(calibration.get("judge"))
    calibrated_agreement = describe_agreement(calibration.get("calibrated"))
    for metric, (op, target) in TARGETS.items():
        value = report["summary"][metric]
        shown = s[metric] + (f" (agreement with labels: {raw_agreement})" if metric == "judge_mean" else "")
        lines.append(f"| {metric} | {shown} | {op} {target} | {meets(value, op, target)} |")
        if metric == "judge_mean":
            value = report["summary"]["judge_mean_calibrated"]
            lines.append(
                f"| judge_mean_calibrated | {s['judge_mean_calibrated']} (agreement with labels: "
                f"{calibrated_agreement}) | {op} {target} | {meets(value, op, target)} |"
            )
    lines += [
        f"| refusal_rate | {s['refusal_rate']} | | |",
        f"| fan_address_rate (soft) | {s['fan_address_rate']} | >= {FAN_ADDRESS_MIN_RATE} "
        f"| {meets(report['summary']['fan_address_rate'], '>=', FAN_ADDRESS_MIN_RATE)} |",
        f"| judge_failures | {s['judge_failures']} | | |",
        f"| errors | {s['errors']} | | |",
        "",
        "Targets are for the production setup (7-10B model on a GPU); the embedded 1.5B model is "
        "not expected to meet them.",
        "",
        "## Drift (replies per kind) and what the output check caught",
        "",
        "| drift | replies |",
        "|---|---|",
        *(f"| {category} | {count} |" for category, count in report["drift_by_category"].items()),
        "",
        "Caught by the chat's output check before the fan saw it (turns per category): "
        + (", ".join(f"{c} {n}" for c, n in report["output_check_caught"].items()) or "none"),
        "",
        "## Judge calibration",
        "",
        f"Labelled replies: `{report.get('labels') or 'none'}`. Raw judge: {raw_agreement}. "
        f"Calibrated judge: {calibrated_agreement}.",
        "",
        "| label flag | labelled | detected | precision | recall |",
        "|---|---|---|---|---|",
        *(
            f"| {flag} | {d['labelled']} | {d['detected']} | {show(d['precision'])} | {show(d['recall'])} |"
            for flag, d in (calibration.get("detectors") or {}).items()
        ),
        "",
        "## By group",
        "",
        f"Judge means below are on this run's replies; agreement with labels: raw {raw_agreement}, "
        f"calibrated {calibrated_agreement}.",
        "",
        "| group | n | judge_mean | judge_mean_calibrated | drift_rate | rule_compliance | refusal_rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ("kind", "persona_id", "lang"):
        for name, group in report["breakdown"][key].items():
            g = {k: show(v) for k, v in group.items()}
            lines.append(
                f"| {key}={name} | {g['n']} | {g['judge_mean']} | {g['judge_mean_calibrated']} | {g['drift_rate']} "
                f"| {g['rule_compliance']} | {g['refusal_rate']} |"
            )
    dist = report["score_distribution"]
    lines += [
        "",
        "## Judge score distribution",
        "",
        "| " + " | ".join(dist) + " |",
        "|" + "---|" * len(dist),
        "| " + " | ".join(str(v) for v in dist.values()) + " |",
        "",
        "## Rule failures (replies per rule)",
        "",
    ]
    lines += [f"- {rule}: {count}" for rule, count in report["rule_failures"].items()] or ["- none"]
    lines += ["", "## Korean speech level (반말 share of classified sentences)", ""]
    for persona_id, entry in report["banmal_shares"].items():
        lines.append(
            f"- {persona_id}: {show(entry['share'])} ({entry['banmal']} 반말 / {entry['jondaemal']} 존댓말), "
            f"persona target {entry['target']}"
        )
    if not report["banmal_shares"]:
        lines.append("- no Korean replies")
    lines += ["", "## Fan feedback in the app (every account)", ""]
    for persona_id, counts in (report.get("feedback") or {}).items():
        lines.append(
            f"- {persona_id}: {counts['up']} up, {counts['down']} down ({counts['with_reason']} with a reason, "
            f"{counts['pairs']} preference pairs, {counts['accounts']} accounts)"
        )
    lines += ["", f"## {len(report['worst'])} worst examples", ""]
    for row in report["worst"]:
        lines += [
            f"### case {row['case']}: {row['persona_id']}, {row['kind']}, {row['lang']}",
            "",
            f"- fan: {row['message']}",
            f"- reply: {row['reply']!r}",
            f"- judge: {row['judge_score']}, calibrated {row.get('judge_calibrated')} ({row['judge_reason']})",
            f"- drift: {'; '.join(row['drift_reasons']) or 'no'}",
            "- rule problems: "
            + ("; ".join(f"{p['rule']}: {p['reason']}" for p in row["problems"]) or "none"),
            "",
        ]
    lines += ["", f"## {len(report.get('sample', []))} replies to read by hand", ""]
    lines += ["| case | persona | kind | lang | fan | reply | judge | calibrated | drift |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in report.get("sample", []):
        cells = [str(row["case"]), row["persona_id"], row["kind"], row["lang"], row["message"], row["reply"],
                 show(row.get("judge_score")), show(row.get("judge_calibrated")), ", ".join(row.get("drift_categories", [])) or "-"]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], report_dir: Path) -> tuple[Path, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    stem = f"persona_{report['created_at'].replace(':', '').replace('-', '')}"
    json_path, md_path = report_dir / f"{stem}.json", report_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return md_path, json_path


def run(argv: list[str], service: ChatService | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m evals persona")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--report-dir", type=Path, default=Path("reports"))
    parser.add_argument("--no-judge", action="store_true", help="skip the judge role (rules only)")
    parser.add_argument(
        "--labels", type=Path, default=DEFAULT_LABELS, help="labelled replies for calibration"
    )
    parser.add_argument("--calibration-limit", type=int, default=None, help="labelled replies judged")
    parser.add_argument("--no-calibration", action="store_true", help="skip the labelled replies")
    args = parser.parse_args(argv)
    cases = load_jsonl(args.dataset)
    cases = cases[: args.limit] if args.limit else cases
    labels = [] if args.no_calibration or not args.labels.is_file() else load_jsonl(args.labels)
    labels = labels[: args.calibration_limit] if args.calibration_limit else labels
    service = service or ChatService()
    started = time.perf_counter()
    calibration: dict[str, Any] | None = None
    with stop_signals():
        rows = evaluate(cases, service, judge=not args.no_judge, verbose=True, stop_on_interrupt=True)
        if labels and len(rows) == len(cases):
            try:
                calibration = calibrate(labels, judge=not args.no_judge, verbose=True)
            except KeyboardInterrupt:
                print("interrupted: judge calibration left out", file=sys.stderr)
    seconds = elapsed(started)
    models = {role: describe_endpoint(role) for role in ("chat", "judge", "router")}
    summary = summarise(rows)
    interrupted = len(rows) < len(cases)
    report = {
        "eval": "persona",
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dataset": str(args.dataset),
        "planned": len(cases),
        "interrupted": interrupted,
        "seconds": seconds,
        "models": models,
        "summary": summary,
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "score_distribution": score_distribution(rows),
        "rule_failures": rule_failures(rows),
        "banmal_shares": banmal_shares(rows),
        "breakdown": {key: breakdown(rows, key) for key in ("kind", "persona_id", "lang")},
        "drift_by_category": drift_by_category(rows),
        "output_check_caught": output_check_caught(rows),
        "labels": str(args.labels) if labels else None,
        "calibration": calibration,
        # Fans' thumbs up/down on these personas' replies in the app (every account, no text).
        "feedback": {
            pid: feedback_counts(service.store, pid) for pid in sorted({c["persona_id"] for c in cases})
        },
        "worst": worst(rows),
        "sample": sample(rows),
        "rows": rows,
    }
    md_path, json_path = write_report(report, args.report_dir)
    return {
        "eval": "persona",
        **{k: summary[k] for k in ("n", "judge_mean", "drift_rate", "rule_compliance", "refusal_rate")},
        "judge_agreement": (calibration or {}).get("judge"),
        "judge_mean_calibrated": summary["judge_mean_calibrated"],
        "judge_agreement_calibrated": (calibration or {}).get("calibrated"),
        "drift_by_category": report["drift_by_category"],
        "output_check_caught": report["output_check_caught"],
        "judge_failures": summary["judge_failures"],
        "errors": summary["errors"],
        "fan_address_rate": summary["fan_address_rate"],
        **({"interrupted": True, "planned": len(cases)} if interrupted else {}),
        "model": models["chat"]["model"],
        "judge_model": models["judge"]["model"],
        "base_url": models["chat"]["base_url"],
        "seconds": seconds,
        "report": str(md_path),
        "report_json": str(json_path),
    }
