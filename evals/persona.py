"""persona: does the persona stay in character? Rules (personas/rules) plus the `judge` role.

Each prompt is sent in a fresh thread by a fresh fan through `ChatService`. Every reply is scored by
the speech rules (`check_speech`), checked for role drift (`drift`) and scored 1-5 by the `judge`
role against the rubric in prompts/evals.py. A judge call that fails is recorded as a failure (never
a made-up score) and left out of `judge_mean`. A turn that fails (model server down) is counted in
`errors` and left out of every rate.

- `drift_rate`: share of replies that leave the role (AI/model claims, another character, wrong
  language).
- `rule_compliance`: share of replies with no hard rule problem (the fan address is a soft rule,
  reported as `fan_address_rate`).
- `refusal_rate`: share of turns answered by the input-safety refusal (no draft).

    python -m evals persona [--dataset evals/datasets/persona_prompts.jsonl] [--limit N]
                            [--report-dir reports] [--no-judge]

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

from evals.jsonl import load_jsonl
from personagraph.accounts.identity import Caller
from personagraph.personas.model import Persona, list_personas, load_persona, load_world
from personagraph.personas.rules import (
    FAN_ADDRESS_MIN_RATE,
    addresses_fan,
    check_speech,
    drift_reasons,
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
KINDS = ("ordinary", "break")
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
        raise ValueError(f"case {number}: kind must be ordinary|break and lang ko|en")


def judge_reply(persona: Persona, case: dict[str, Any], reply: str) -> tuple[int | None, str]:
    """(score, reason) from the judge role, or (None, the failure) when it gave no valid verdict."""
    speech = persona.speech
    system = prompts.PERSONA_JUDGE_SYSTEM.format(
        name=persona.name,
        name_ko=persona.name_ko or persona.name,
        position=persona.position or persona.kind,
        group_part=f" of {persona.group}" if persona.group else "",
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


def score_reply(
    case: dict[str, Any], reply: str, persona: Persona, other_names: Sequence[str], judge: bool = True
) -> dict[str, Any]:
    """Rule problems, drift and the judge's score of one reply."""
    problems = check_speech(reply, persona, case["lang"])
    reasons = drift_reasons(reply, persona, case["lang"], other_names)
    score, judge_reason = judge_reply(persona, case, reply) if judge else (None, "not judged")
    return {
        "problems": problems,
        "hard_problems": len(hard_problems(problems)),
        "addresses_fan": addresses_fan(reply, persona),
        "drift": bool(reasons),
        "drift_reasons": reasons,
        "judge_score": score,
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
    request = validate_request(
        message=case["message"], persona_id=case["persona_id"], thread_id=uuid.uuid4().hex
    )
    # A fresh fan per case: an account of its own, so no case sees another's memories.
    result = service.send(Caller(f"eval-persona-{uuid.uuid4().hex[:12]}"), request)
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
        row.update(score_reply(case, result.reply, persona, other_names, judge))
        row["score_seconds"] = elapsed(started)
    return row


# --- summary and report -----------------------------------------------------------------------------------


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers of a set of rows (see the module docstring for the definitions)."""
    scored = [r for r in rows if r.get("error") is None]
    scores = [r["judge_score"] for r in scored if r.get("judge_score") is not None]
    addressed = [r for r in scored if r.get("addresses_fan") is not None]
    return {
        "n": len(rows),
        "judge_mean": round(float(mean(scores)), 2) if scores else None,
        "drift_rate": rate(sum(r["drift"] for r in scored), len(scored)),
        "rule_compliance": rate(sum(r["hard_problems"] == 0 for r in scored), len(scored)),
        "refusal_rate": rate(sum(r["refused"] for r in scored), len(scored)),
        "judge_failures": sum(bool(r.get("judge_failed")) for r in scored),
        "errors": len(rows) - len(scored),
        "fan_address_rate": rate(sum(bool(r["addresses_fan"]) for r in addressed), len(addressed)),
    }


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
    for metric, (op, target) in TARGETS.items():
        value = report["summary"][metric]
        lines.append(f"| {metric} | {s[metric]} | {op} {target} | {meets(value, op, target)} |")
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
        "## By group",
        "",
        "| group | n | judge_mean | drift_rate | rule_compliance | refusal_rate |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("kind", "persona_id", "lang"):
        for name, group in report["breakdown"][key].items():
            g = {k: show(v) for k, v in group.items()}
            lines.append(
                f"| {key}={name} | {g['n']} | {g['judge_mean']} | {g['drift_rate']} "
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
    lines += ["", f"## {len(report['worst'])} worst examples", ""]
    for row in report["worst"]:
        lines += [
            f"### case {row['case']}: {row['persona_id']}, {row['kind']}, {row['lang']}",
            "",
            f"- fan: {row['message']}",
            f"- reply: {row['reply']!r}",
            f"- judge: {row['judge_score']} ({row['judge_reason']})",
            f"- drift: {'; '.join(row['drift_reasons']) or 'no'}",
            "- rule problems: "
            + ("; ".join(f"{p['rule']}: {p['reason']}" for p in row["problems"]) or "none"),
            "",
        ]
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
    args = parser.parse_args(argv)
    cases = load_jsonl(args.dataset)
    cases = cases[: args.limit] if args.limit else cases
    started = time.perf_counter()
    with stop_signals():
        rows = evaluate(cases, service, judge=not args.no_judge, verbose=True, stop_on_interrupt=True)
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
        "worst": worst(rows),
        "rows": rows,
    }
    md_path, json_path = write_report(report, args.report_dir)
    return {
        "eval": "persona",
        **{k: summary[k] for k in ("n", "judge_mean", "drift_rate", "rule_compliance", "refusal_rate")},
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
