"""memory: does the persona remember what the fan told it, later in the thread or in a new one?

Each scenario (evals/memory_*.jsonl) is one fan with a fresh user id: the fan states a fact in an
early turn, chats a little, then asks a probe question in the same session (thread) or in a new
session (a new thread of the same fan, so only the long-term store can carry the fact). The probe
is recalled when its reply contains any of `expect_any`, compared case-insensitively after Unicode
normalisation, both as written and with spaces and punctuation removed ("5월3일" = "5월 3일").
A turn that fails (model server down) makes the scenario a failure and is counted in `errors`.

Recall alone counts "Yes, I'm Arin." as remembering the fan's name. `attributed` also asks that the
fact is said to or about the fan and never as the persona's own (personas/drift.attributed_mentions:
"your", "너/네", "you said", "(이)라고 했", the fan's name or address as addressee); the report gives
`attributed_recall` beside `recall_rate`, and `claimed_as_own` lists the scenarios whose probe reply
gave the fan's fact as the persona's own.

    python -m evals memory [--dataset evals/memory_scenarios.jsonl] [--limit N]

Ctrl-C or `kill PID` stops a long run after the current model call and reports the scenarios
finished so far (marked "interrupted").

Scenario: {"id", "persona_id", "lang", "turns": [{"session": 1, "message": ...}, ...],
           "probe": {"session": 1|2, "message": ...}, "expect_any": ["Minji", "민지"]}
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import unicodedata
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.jsonl import load_jsonl
from evals.persona import describe_endpoint, elapsed, rate, stop_signals
from personagraph.accounts.identity import Caller
from personagraph.personas.drift import attributed_mentions, claims_as_own
from personagraph.personas.model import load_persona
from personagraph.services.chat import ChatService, validate_request

DATASET_DIR = Path(__file__).parent
DATASET_GLOB = "memory_*.jsonl"
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> tuple[str, str]:
    """(spaced, compact): NFKC, case-folded, whitespace collapsed; compact also drops punctuation."""
    spaced = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return spaced, _NON_WORD.sub("", spaced)


def recalled(reply: str, expect_any: Sequence[str]) -> bool:
    spaced, compact = normalise(reply)
    for expected in expect_any:
        exp_spaced, exp_compact = normalise(expected)
        if exp_spaced and exp_spaced in spaced:
            return True
        if exp_compact and exp_compact in compact:
            return True
    return False


# Which fact a scenario is about, from its id ("mem-08-pet-ko" -> "pet"); None when the id says nothing.
_SCENARIO_KIND = re.compile(r"^mem-\d+-([a-z]+)-")
_NAMING_KINDS = ("name", "nickname")


def fact_kind(scenario: dict[str, Any]) -> str | None:
    found = _SCENARIO_KIND.match(str(scenario.get("id", "")))
    return found.group(1) if found else None


def said_as_fan_name(reply: str, expect_any: Sequence[str]) -> bool:
    """Whether the reply gives a fact as the fan's name ("your name is Kongi", "네 이름은 콩이야"):
    for a pet, a city or a song that is a wrong answer, not a recall, whatever words it uses."""
    spaced, _ = normalise(reply)
    for expected in expect_any:
        fact = re.escape(normalise(expected)[0])
        if fact and re.search(
            rf"\byour name(?:'s| is)\s+{fact}|\byou(?:'re| are)\s+{fact}"
            rf"|(?<![가-힣])(?:네|너|니|너의|당신|당신의)\s*이름(?:은|이|는)\s*{fact}|(?<![가-힣])(?:넌|너는)\s*{fact}",
            spaced,
        ):
            return True
    return False


def attributed(reply: str, scenario: dict[str, Any]) -> bool:
    """The probe reply recalls the fact and says it to or about the fan, never as the persona's own,
    and not as the fan's name when the fact is something else (the fan's pet, city, song ...)."""
    if not recalled(reply, scenario["expect_any"]):
        return False
    if fact_kind(scenario) not in (None, *_NAMING_KINDS) and said_as_fan_name(reply, scenario["expect_any"]):
        return False
    return attributed_mentions(reply, scenario["expect_any"], load_persona(scenario["persona_id"]))


def validate_scenario(scenario: dict[str, Any]) -> None:
    name = scenario.get("id", "?")
    for key in ("id", "persona_id", "lang", "turns", "probe", "expect_any"):
        if key not in scenario:
            raise ValueError(f"scenario {name}: missing {key}")
    if not scenario["turns"] or not scenario["expect_any"]:
        raise ValueError(f"scenario {name}: needs at least one turn and one expected string")
    for turn in [*scenario["turns"], scenario["probe"]]:
        if not isinstance(turn.get("session"), int) or not str(turn.get("message", "")).strip():
            raise ValueError(f"scenario {name}: every turn needs an integer session and a message")


def is_same_session(scenario: dict[str, Any]) -> bool:
    """True when the probe is asked in a session (thread) where the earlier turns were told."""
    return scenario["probe"]["session"] in {t["session"] for t in scenario["turns"]}


def evaluate(
    scenarios: Sequence[dict[str, Any]],
    service: ChatService | None = None,
    *,
    verbose: bool = False,
    stop_on_interrupt: bool = False,
) -> list[dict[str, Any]]:
    """Run each scenario with its own fresh fan and threads; one row per scenario.

    With `stop_on_interrupt`, Ctrl-C ends the run early and returns the rows finished so far.
    """
    for scenario in scenarios:
        validate_scenario(scenario)
    service = service or ChatService()
    rows: list[dict[str, Any]] = []
    try:
        for scenario in scenarios:
            rows.append(run_scenario(service, scenario))
            if verbose:
                keys = (
                    "id",
                    "same_session",
                    "recalled",
                    "attributed",
                    "probe_reply",
                    "probe_blocks",
                    "error",
                    "seconds",
                )
                print(json.dumps({k: rows[-1][k] for k in keys}, ensure_ascii=False), flush=True)
    except KeyboardInterrupt:
        if not stop_on_interrupt:
            raise
        print(f"interrupted: reporting the {len(rows)} of {len(scenarios)} scenarios done", file=sys.stderr)
    return rows


def run_scenario(service: ChatService, scenario: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    # A distinct fan (account) per scenario, so memories never leak from one scenario to the next.
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", str(scenario["id"]))[:40]
    user_id = f"eval-mem-{label}-{uuid.uuid4().hex[:8]}"
    fan = Caller(user_id)
    threads: dict[int, str] = {}
    transcript: list[dict[str, Any]] = []
    error = None
    for turn in [*scenario["turns"], scenario["probe"]]:
        thread_id = threads.setdefault(turn["session"], uuid.uuid4().hex)
        result = service.send(
            fan,
            validate_request(message=turn["message"], persona_id=scenario["persona_id"], thread_id=thread_id),
        )
        transcript.append({
            "session": turn["session"], "fan": turn["message"], "reply": result.reply,
            # What the checks stopped on the way (a neutral line says nothing of why without these).
            "blocks": [{k: b.get(k) for k in ("stage", "category", "reason")} for b in result.blocks],
        })  # fmt: skip
        if result.error is not None:
            error = result.error
            break
    probe_reply = transcript[-1]["reply"] if error is None else ""
    return {
        "id": scenario["id"],
        "persona_id": scenario["persona_id"],
        "lang": scenario["lang"],
        "user_id": user_id,
        "same_session": is_same_session(scenario),
        "recalled": error is None and recalled(probe_reply, scenario["expect_any"]),
        "attributed": error is None and attributed(probe_reply, scenario),
        "claimed_as_own": error is None and claims_as_own(probe_reply, scenario["expect_any"]),
        "expect_any": scenario["expect_any"],
        "probe_reply": probe_reply,
        "probe_blocks": transcript[-1]["blocks"] if error is None else [],
        "error": error,
        "transcript": transcript,
        "seconds": elapsed(started),
    }


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    same = [r for r in rows if r["same_session"]]
    cross = [r for r in rows if not r["same_session"]]
    return {
        "n": len(rows),
        "attributed_recall": rate(sum(r["attributed"] for r in rows), len(rows)),
        "recall_rate": rate(sum(r["recalled"] for r in rows), len(rows)),
        "same_session_attributed": rate(sum(r["attributed"] for r in same), len(same)),
        "cross_session_attributed": rate(sum(r["attributed"] for r in cross), len(cross)),
        "same_session_recall": rate(sum(r["recalled"] for r in same), len(same)),
        "cross_session_recall": rate(sum(r["recalled"] for r in cross), len(cross)),
        "failures": [r["id"] for r in rows if not r["attributed"]],
        # Recalled, but given as the persona's own fact ("Yes, I'm Arin."): what a fan would notice.
        "claimed_as_own": [r["id"] for r in rows if r["recalled"] and r["claimed_as_own"]],
        "errors": sum(r["error"] is not None for r in rows),
    }


def run(argv: list[str], service: ChatService | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m evals memory")
    parser.add_argument(
        "--dataset", type=Path, default=None, help=f"default: every {DATASET_GLOB} in {DATASET_DIR}"
    )
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    paths = [args.dataset] if args.dataset else sorted(DATASET_DIR.glob(DATASET_GLOB))
    scenarios = load_jsonl(paths)
    scenarios = scenarios[: args.limit] if args.limit else scenarios
    started = time.perf_counter()
    with stop_signals():
        rows = evaluate(scenarios, service, verbose=True, stop_on_interrupt=True)
    seconds = elapsed(started)
    chat = describe_endpoint("chat")
    return {
        "eval": "memory",
        **summarise(rows),
        **({"interrupted": True, "planned": len(scenarios)} if len(rows) < len(scenarios) else {}),
        "model": chat["model"],
        "memory_model": describe_endpoint("router")["model"],
        "base_url": chat["base_url"],
        "seconds": seconds,
    }
