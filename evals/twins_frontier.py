"""How far calibrated point answers can go on accuracy and spread at once (issue 19), with no model.

    python -m evals.twins_frontier [--personas 50] [--seeds 1,2,3] [--pilot-share 0.1]

For each seed: the eval's evaluated people (`--personas`, seeded as in `python -m evals twins`), a
pilot of `--pilot-share` of the OTHER people, a calibration fitted on the pilot's real answers from
the persona features alone, and the evaluated people's answers under each answer policy plus
`matched`: the expected value mapped by rank onto the pilot's real answers (a person predicted higher
than k% of the pilot gets the pilot's answer at that quantile), the usual way to give point answers
the population's spread. Prints item accuracy, mean r and variance ratio per policy next to the
population baseline. No evaluated person's answer is used for anything but the score.
"""

from __future__ import annotations

import argparse
import bisect
import json
from typing import Any

from evals.twins import DEFAULT_ANSWERS, DEFAULT_QUESTIONS, draw_pilot
from personagraph.twins.answer_policy import Policy
from personagraph.twins.calibration import Calibrator
from personagraph.twins.respondents import (
    Respondent,
    Selection,
    load_user_personas,
    select,
    shipped_personas_path,
)
from personagraph.twins.surveys import Question, load_survey
from personagraph.twins.validation import compare_with_answers, headline, load_answers, scorable

POLICIES: tuple[Policy, ...] = ("mean", "median", "mode", "draw")


def _value(cal: Calibrator, q: Question, person: Respondent, policy: Policy, seed: int) -> float | None:
    return cal.answer(q, person, None, policy, seed)[0]


def _matched(value: float, pilot_predicted: list[float], pilot_true: list[float]) -> float:
    """The pilot's real answer at the quantile where `value` falls among the pilot's predictions."""
    if not pilot_predicted or not pilot_true:
        return value
    low, high = bisect.bisect_left(pilot_predicted, value), bisect.bisect_right(pilot_predicted, value)
    share = (low + high) / 2 / len(pilot_predicted)
    return pilot_true[min(len(pilot_true) - 1, int(share * len(pilot_true)))]


def frontier(personas: int, seed: int, pilot_share: float) -> dict[str, Any]:
    survey = load_survey(DEFAULT_QUESTIONS)
    questions = scorable(survey.questions)
    answers = load_answers(DEFAULT_ANSWERS, [q.id for q in survey.questions])
    pool = load_user_personas(shipped_personas_path(), source="twin2k")
    eligible = [pid for pid in answers if pid in pool.by_id and answers[pid]]
    people = select(Selection(ids=eligible, n=personas, seed=seed), pool)
    evaluated = {p.id for p in people}
    pilot = draw_pilot(pool, [pid for pid in eligible if pid not in evaluated], pilot_share, seed)
    cal = Calibrator(questions).fit(pilot, {p.id: answers.get(p.id, {}) for p in pilot})
    predictions: dict[str, dict[str, dict[str, float]]] = {name: {} for name in (*POLICIES, "matched")}
    for q in questions:
        pilot_predicted = sorted(v for p in pilot if (v := _value(cal, q, p, "mean", seed)) is not None)
        pilot_true = sorted(answers[p.id][q.id] for p in pilot if q.id in answers.get(p.id, {}))
        for person in people:
            if q.id not in answers.get(person.id, {}):
                continue
            for policy in POLICIES:
                value = _value(cal, q, person, policy, seed)
                if value is not None:
                    predictions[policy].setdefault(person.id, {})[q.id] = value
            expected = predictions["mean"].get(person.id, {}).get(q.id)
            if expected is not None:
                predictions["matched"].setdefault(person.id, {})[q.id] = _matched(
                    expected, pilot_predicted, pilot_true
                )
    rows: dict[str, Any] = {}
    for name, preds in predictions.items():
        compared = compare_with_answers(survey.questions, preds, answers, evaluated, resamples=0, seed=seed)
        rows[name] = _row(headline(compared["twins"]))
        rows["population"] = _row(headline(compared["population"]))
    return {"seed": seed, "people": len(people), "pilot": len(pilot), "policies": rows}


def _row(h: dict[str, Any]) -> dict[str, Any]:
    return {
        "item_accuracy": h["accuracy"]["item_mean"],
        "r": h["pearson_r"],
        "variance_ratio": h["variance_ratio"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.twins_frontier", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--personas", type=int, default=50)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--pilot-share", type=float, default=0.1)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    results = [frontier(args.personas, seed, args.pilot_share) for seed in seeds]
    print("| seed | policy | item accuracy | mean r | variance ratio |")
    print("|---|---|---|---|---|")
    for result in results:
        for name, row in result["policies"].items():
            acc, r, ratio = row["item_accuracy"], row["r"], row["variance_ratio"]
            print(f"| {result['seed']} | {name} | {acc:.1%} | {r if r is not None else '-'} | {ratio} |")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
