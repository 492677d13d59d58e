"""What a survey run's stored answers say: coverage, validity and distributions (`summarize`), the same
per segment of the people (`by_segment`), and how close the twins came to real answers (`validate_run`).

Each takes the caller first and opens only a run they may manage (their own; admins every run);
`summary_of` / `segments_of` do the work on a store already opened that way.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from personagraph.accounts.identity import Caller
from personagraph.services.twins.answering import AnswerRecord
from personagraph.services.twins.calibration import CALIBRATION_KEY
from personagraph.services.twins.selections import confine
from personagraph.services.twins.store import RunError, RunStore, open_run
from personagraph.serving.settings import get_settings
from personagraph.twins.validation import (
    AnswersFileError,
    compare_with_answers,
    headline,
    load_answers,
    per_block,
)


def summarize(caller: Caller, run_id: str) -> dict[str, Any]:
    """A survey run's coverage (stored / expected), validity (ok / stored) and per-question
    distributions. Owner or admin only (else NotFoundError)."""
    with open_run(caller, run_id, "survey") as store:
        return summary_of(store)


def by_segment(caller: Caller, run_id: str, attribute: str) -> dict[str, dict[str, dict[str, Any]]]:
    """`segments_of` a survey run the caller may manage."""
    with open_run(caller, run_id, "survey") as store:
        return segments_of(store, attribute)


def summary_of(store: RunStore) -> dict[str, Any]:
    """Coverage (stored / expected), validity (ok / stored) and per-question distributions of the
    twins' (zero-shot) answers.

    `result_mode` is "calibrated" once the run was calibrated with a pilot (`calibrate_run`): then
    `calibration` says how, and each calibrated question also carries `calibrated_distribution` /
    `calibrated_mean` (the people calibrated) and `pilot_distribution` / `pilot_mean` (the pilot's
    real answers); the other figures stay the zero-shot twins'. Else it is "zero-shot".
    """
    survey = store.survey()
    calibration = store.meta(CALIBRATION_KEY)
    calibrated = {c["question_id"]: c for c in calibration["questions"]} if calibration else {}
    arms = store.arms()
    people = store.people()
    answers = store.answers()
    by_question: dict[str, list[AnswerRecord]] = {}
    for a in answers:
        by_question.setdefault(a.question_id, []).append(a)
    expected = {q.id: 0 for q in survey.questions}
    for p in people:
        for q in survey.questions_for(arms.get(p.id, {})):
            expected[q.id] += 1
    questions = []
    for q in survey.questions:
        rows = by_question.get(q.id, [])
        ok = [a for a in rows if a.status == "ok"]
        values = [a.value for a in ok]
        entry: dict[str, Any] = {
            "question_id": q.id, "type": q.type, "text": q.text, "arm": q.condition_arm, "expected": expected[q.id],
            "stored": len(rows), "ok": len(ok), "failed": len(rows) - len(ok),
            "coverage": round(len(ok) / expected[q.id], 4) if expected[q.id] else None,
            "validity": round(len(ok) / len(rows), 4) if rows else None,
        }  # fmt: skip
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if numbers and q.type != "open":
            mean = sum(numbers) / len(numbers)
            entry["mean"] = round(mean, 4)
            entry["sd"] = round(math.sqrt(sum((x - mean) ** 2 for x in numbers) / len(numbers)), 4)
        if q.options:
            counts = {o.code: 0 for o in q.options}
            for v in values:
                if isinstance(v, int) and v in counts:
                    counts[v] += 1
            entry["distribution"] = {f"{o.code} {o.label}": counts[o.code] for o in q.options}
            read = [a.distribution for a in ok if a.distribution]
            if read:  # the twins' own probabilities (distribution mode), averaged over people
                entry["twin_distribution"] = {
                    f"{o.code} {o.label}": round(sum(d.get(str(o.code), 0.0) for d in read) / len(read), 4)
                    for o in q.options
                }
        entry["tokens"] = _tokens(rows)
        if q.id in calibrated:
            c = calibrated[q.id]
            entry.update({
                "calibration_fit": c["fit"], "calibrated_mean": c["calibrated_mean"], "pilot_mean": c["pilot_mean"],
                **{k: c[k] for k in ("calibrated_distribution", "pilot_distribution") if c.get(k)},
            })  # fmt: skip
        questions.append(entry)
    total_expected = sum(expected.values())
    ok_total = sum(a.status == "ok" for a in answers)
    summary: dict[str, Any] = {
        "run_id": store.meta("run_id"), "survey_id": survey.id, "title": survey.title, "people": len(people),
        "expected": total_expected, "stored": len(answers), "ok": ok_total, "failed": len(answers) - ok_total,
        "coverage": round(ok_total / total_expected, 4) if total_expected else None,
        "validity": round(ok_total / len(answers), 4) if answers else None,
        "result_mode": "calibrated" if calibration else "zero-shot", "usage": usage(answers), "questions": questions,
    }  # fmt: skip
    if calibration:
        summary["calibration"] = {
            "policy": calibration["policy"], "pilot_people": len(calibration["pilot_ids"]),
            "people_calibrated": calibration["people_calibrated"], "created_at": calibration["created_at"],
        }  # fmt: skip
    return summary


def _tokens(records: list[AnswerRecord]) -> dict[str, int]:
    return {
        "prompt": sum(r.prompt_tokens or 0 for r in records),
        "completion": sum(r.completion_tokens or 0 for r in records),
        "calls_counted": sum(r.prompt_tokens is not None for r in records),
    }


def usage(records: list[AnswerRecord]) -> dict[str, Any]:
    """Tokens of the calls that reported them, and their estimated cost at the configured prices
    (TWIN_PRICE_*_PER_MILLION). Calls whose server reported no usage are not counted."""
    settings = get_settings()
    tokens = _tokens(records)
    cost = (
        tokens["prompt"] * settings.twin_price_prompt_per_million
        + tokens["completion"] * settings.twin_price_completion_per_million
    ) / 1e6
    return {**tokens, "estimated_cost": round(cost, 6), "currency": settings.twin_price_currency}


def segments_of(store: RunStore, attribute: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per segment (the people's value of `attribute`, e.g. age_band): each question's n, mean and
    option counts, from the valid answers. For numeric attributes, group them first (e.g. by tertile)."""
    survey = store.survey()
    people = {p.id: p for p in store.people()}
    known = {key for p in people.values() for key in p.attributes}
    if attribute not in known:
        raise RunError(
            f"attribute: {attribute!r} is not an attribute of this run's people; allowed: {', '.join(sorted(known))}"
        )
    groups: dict[str, dict[str, list[Any]]] = {}
    for a in store.answers():
        if a.status != "ok" or a.person_id not in people:
            continue
        segment = people[a.person_id].attributes.get(attribute)
        groups.setdefault("(missing)" if segment is None else str(segment), {}).setdefault(
            a.question_id, []
        ).append(a.value)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for segment, questions in sorted(groups.items()):
        out[segment] = {}
        for q in survey.questions:
            values = questions.get(q.id, [])
            entry: dict[str, Any] = {"n": len(values)}
            numbers = [float(v) for v in values if isinstance(v, int | float)]
            if numbers and q.type != "open":
                entry["mean"] = round(sum(numbers) / len(numbers), 4)
            if q.options:
                entry["distribution"] = {o.code: sum(v == o.code for v in values) for o in q.options}
            out[segment][q.id] = entry
    return out


def validate_run(caller: Caller, run_id: str, answers_path: str | Path) -> dict[str, Any]:
    """Score a survey run against real answers (twin_id + one column per item id), with both baselines.

    People of the run without a row in the answers file are listed, not scored. Owner or admin only
    (else NotFoundError); the answers file must be in the caller's folders (the CLI: anywhere).
    """
    path = confine(caller, answers_path, "answers_file")
    with open_run(caller, run_id, "survey") as store:
        survey = store.survey()
        predictions = store.numeric_answers()
        people = {p.id for p in store.people()}
    try:
        answers = load_answers(path, [q.id for q in survey.questions])
    except AnswersFileError as exc:
        raise RunError(f"answers_file: {exc}") from exc
    missing = sorted(people - set(answers))
    if len(missing) == len(people):
        raise RunError("answers_file: none of this run's respondents has a row (twin_id) in it")
    compared = compare_with_answers(survey.questions, predictions, answers, people - set(missing))
    who = ("twins", "population", "uniform")
    return {
        "run_id": run_id, "people": compared["people"], "people_without_answers": missing,
        "items": compared["items"], "coverage": compared["coverage"],
        **{name: headline(compared[name]) for name in who},
        "per_block": {name: per_block(survey.questions, compared[name]) for name in who},
    }  # fmt: skip
