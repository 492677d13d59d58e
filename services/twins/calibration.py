"""Calibrating a survey run with a pilot panel: real answers of some of the run's own respondents
teach the twins how this population answers (`calibrate_run`), in the product as in the eval.

The pilot is the rows of an answers CSV (`twin_id` + one column per item id, the format
`validate_run` reads) whose twin_id is a respondent of the run and that answer at least one of its
questions. `twins.calibration.Calibrator` is fitted on the pilot only (their profiles, their real
answers and their twins' answers as a feature); every other respondent of the run then gets, per
closed question, a calibrated distribution (choice questions) or value (numbers) from their own
profile and their twin's answer, and the stored answer under the answer policy (`pick`, seeded by
the run's seed as the eval does). No answer of a person outside the pilot is read: rows of other
people in the file are ignored, and the people calibrated have no row in it.

The result is kept in the run's meta key "calibration" (one key, so a re-calibration replaces it
and a restart keeps it); the zero-shot answers are never changed. `summary_of` and the exports show
both, each naming its mode.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from personagraph.accounts.identity import Caller
from personagraph.services.twins.answering import AnswerRecord
from personagraph.services.twins.selections import confine
from personagraph.services.twins.store import RunError, RunStore, open_run, utc_now
from personagraph.twins.answer_policy import POLICIES, Policy
from personagraph.twins.calibration import MIN_PILOT, CalibrationError, Calibrator
from personagraph.twins.surveys import Question
from personagraph.twins.validation import AnswersFileError, load_answers

CALIBRATION_KEY = "calibration"  # the run's meta key
FIELD = "pilot_file"


def twin_feature_values(records: Iterable[AnswerRecord]) -> dict[str, dict[str, float]]:
    """person -> question -> the twin's answer as a number: its distribution's expected value when
    one was read, else its stored number (a calibration feature)."""
    out: dict[str, dict[str, float]] = {}
    for r in records:
        if r.status != "ok":
            continue
        if r.distribution:
            value = sum(float(code) * p for code, p in r.distribution.items())
        elif isinstance(r.value, int | float):
            value = float(r.value)
        else:
            continue
        out.setdefault(r.person_id, {})[r.question_id] = value
    return out


def calibrate_run(
    caller: Caller, run_id: str, pilot_path: str | Path, policy: str = "mean"
) -> dict[str, Any]:
    """Fit the calibration on the pilot's real answers, answer for every other respondent of the
    survey run, store it in the run (replacing an earlier calibration) and return the summary.

    Owner or admin only (else NotFoundError); the pilot file must be in the caller's folders (the
    CLI: anywhere). Errors name the field: `policy`, `pilot_file`.
    """
    if policy not in POLICIES:
        raise RunError(f"policy: {policy!r} is not allowed; allowed: {', '.join(POLICIES)}")
    path = confine(caller, pilot_path, FIELD)
    with open_run(caller, run_id, "survey") as store:
        result = _calibrate(store, path, cast(Policy, policy))
        store.set_meta(CALIBRATION_KEY, result)
    return {"run_id": run_id, **calibration_summary(result)}


def _calibrate(store: RunStore, path: Path, policy: Policy) -> dict[str, Any]:
    survey = store.survey()
    people = store.people()
    arms = store.arms()
    records = store.answers()
    closed = [q for q in survey.questions if q.scored]
    try:
        rows = load_answers(path, [q.id for q in closed])
    except (AnswersFileError, ValueError) as exc:  # pandas' parse errors are ValueErrors too
        raise RunError(f"{FIELD}: {str(exc).replace(str(path), path.name)}") from None
    # The pilot: the run's own respondents with a row that answers something. Nothing else of the
    # file is read past this line.
    pilot = [p for p in people if rows.get(p.id)]
    if not pilot:
        raise RunError(f"{FIELD}: no row (twin_id) answering a question belongs to a respondent of this run")
    pilot_answers = {p.id: rows[p.id] for p in pilot}
    del rows
    others = [p for p in people if p.id not in pilot_answers]
    if not others:
        raise RunError(f"{FIELD}: every respondent of this run is in the pilot; nobody is left to calibrate")
    counts = {q.id: sum(q.id in a for a in pilot_answers.values()) for q in closed}
    if max(counts.values(), default=0) < MIN_PILOT:
        raise RunError(
            f"{FIELD}: the pilot has {len(pilot)} people and at most {max(counts.values(), default=0)} answers "
            f"to a question; the calibrator needs at least {MIN_PILOT} pilot answers to a question"
        )
    twin_values = twin_feature_values(records)
    try:
        calibrator = Calibrator(closed).fit(
            pilot, pilot_answers, {p.id: twin_values.get(p.id, {}) for p in pilot}
        )
    except CalibrationError as exc:
        raise RunError(f"{FIELD}: {str(exc).removeprefix('pilot: ')}") from None
    seed = int((store.meta("options") or {}).get("seed", 0))
    answers: dict[str, dict[str, dict[str, Any]]] = {}
    for person in others:
        for q in survey.questions_for(arms.get(person.id, {})):
            if q.id not in calibrator.fits:
                continue  # no pilot answer to learn it from
            twin = twin_values.get(person.id, {}).get(q.id)
            value, distribution = calibrator.answer(q, person, twin, policy, seed)
            if value is None:
                continue
            shares = None if distribution is None else {str(c): round(p, 4) for c, p in distribution.items()}
            answers.setdefault(person.id, {})[q.id] = {"value": round(value, 4), "distribution": shares}
    fits = calibrator.report()
    return {
        "mode": "calibrated",
        "policy": policy,
        "seed": seed,
        "created_at": utc_now(),
        "pilot_file": path.name,
        "pilot_ids": [p.id for p in pilot],
        "people_calibrated": len(answers),
        "questions": [
            {
                "question_id": q.id,
                "type": q.type,
                "text": q.text,
                "fit": fits[q.id]["kind"],
                "n_pilot": fits[q.id]["n_pilot"],
                "uses_twin": fits[q.id]["uses_twin"],
                "cv": fits[q.id]["cv"],
                **_compared(q, records, answers, pilot_answers),
            }
            for q in closed
            if q.id in fits
        ],
        "uncalibrated_questions": [q.id for q in closed if q.id not in fits],
        "answers": answers,
    }


def _compared(
    q: Question,
    records: Sequence[AnswerRecord],
    calibrated: Mapping[str, Mapping[str, Mapping[str, Any]]],
    pilot_answers: Mapping[str, Mapping[str, float]],
) -> dict[str, Any]:
    """One question over the calibrated people (their twins' zero-shot answers and their calibrated
    answers) and over the pilot (its real answers): distributions ("code label" -> share, as
    `summary_of`) for choice questions, and means."""
    zero_shot = [
        r for r in records if r.question_id == q.id and r.status == "ok" and r.person_id in calibrated
    ]
    ours = [a[q.id] for a in calibrated.values() if q.id in a]
    real = [a[q.id] for a in pilot_answers.values() if q.id in a]
    out: dict[str, Any] = {
        "zero_shot_mean": _mean(r.value for r in zero_shot if isinstance(r.value, int | float)),
        "calibrated_mean": _mean(a["value"] for a in ours),
        "pilot_mean": _mean(real),
        "people": len(ours),
    }
    if q.options:
        twin_rows = [r.distribution or _one_hot(r.value) for r in zero_shot]
        out["zero_shot_distribution"] = _mean_distribution(q, twin_rows)
        out["calibrated_distribution"] = _mean_distribution(q, [a["distribution"] or {} for a in ours])
        out["pilot_distribution"] = _mean_distribution(q, [_one_hot(v) for v in real])
    return out


def _one_hot(value: Any) -> dict[str, float]:
    """A stored answer as a distribution: all of it on its code (a whole number), else nothing."""
    if isinstance(value, int | float) and float(value).is_integer():
        return {str(int(value)): 1.0}
    return {}


def _mean_distribution(q: Question, rows: Sequence[Mapping[str, float]]) -> dict[str, float] | None:
    """The mean of per-person distributions (code as text -> probability), keyed "code label"."""
    if not rows:
        return None
    assert q.options is not None
    return {
        f"{o.code} {o.label}": round(sum(r.get(str(o.code), 0.0) for r in rows) / len(rows), 4)
        for o in q.options
    }


def _mean(values: Iterable[float]) -> float | None:
    kept = [float(v) for v in values if not math.isnan(float(v))]
    return round(sum(kept) / len(kept), 4) if kept else None


def calibration_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The stored calibration without its per-person answers (what the service, CLI and API return)."""
    return {
        "result_mode": result["mode"],
        **{k: v for k, v in result.items() if k not in ("answers", "pilot_ids", "mode")},
        "pilot_people": len(result["pilot_ids"]),
    }


def calibrated_records(store: RunStore) -> list[AnswerRecord]:
    """The run's calibrated answers as answer records (mode "calibrated:<policy>"), in people order;
    none for a run that was not calibrated."""
    result = store.meta(CALIBRATION_KEY)
    if not result:
        return []
    survey = store.survey()
    out = []
    for person in store.people():
        for qid, answer in result["answers"].get(person.id, {}).items():
            q = survey.question(qid)
            out.append(
                AnswerRecord(
                    person_id=person.id,
                    question_id=qid,
                    status="ok",
                    value=answer["value"],
                    arm=q.condition_arm,
                    mode=f"calibrated:{result['policy']}",
                    distribution=answer["distribution"],
                )
            )
    return out
