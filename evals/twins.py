"""twins: ask digital twins items that real people answered, and score them the Twin-2K-500 way.

    python -m evals twins --questions data/twin2k/questions.json \\
        --answers ../shared/twin2k/answers_wave1_3.csv --personas 20 --seed 1 [--mode per_person]
        [--persona-file data/twin2k/personas.csv] [--concurrency 2] [--calibrate] [--resume RUN_ID]
        [--mode distribution --policy mean] [--pilot-share 0.1 [--pilot-twins]] [--bootstrap 1000]

Any item set in the format of `../shared/twin2k/` works: a questions file (`{"items": [...]}` or
a native survey with accuracy ranges) and an answers CSV (`twin_id` + one column per item id;
empty = not asked). Each twin sees only the between-subject arm its person saw (the non-empty
column of each condition group). Twin inputs are the persona profiles only; no answer of an
evaluated person reaches a twin. Baselines come from the answers file: the population mean (mode
for binary items) fitted on the people NOT evaluated, and a uniform random answer (exact
expectation). `--calibrate` shows each twin the answer distribution of the non-evaluated people.

`--mode distribution` reads each closed question's answer distribution from token log-probabilities
(`--policy` picks the stored answer). `--pilot-share S` draws a pilot of S x the non-evaluated people
(seeded; never an evaluated person) and scores a second, calibrated set of answers fitted on the
pilot's real answers (twins/calibration.py) next to the zero-shot twins, in one command; with
`--pilot-twins` the pilot's twins are asked too and their answers become a calibration feature.
Every headline figure carries a bootstrap 95% interval over people (`--bootstrap` resamples).

Prints one JSON object; per-item and per-block figures go to reports/twins_<UTC timestamp>.json/.md.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from personagraph.serving.settings import REPO_ROOT

DEFAULT_QUESTIONS = REPO_ROOT / "data" / "twin2k" / "questions.json"
DEFAULT_ANSWERS = (REPO_ROOT / ".." / "shared" / "twin2k" / "answers_wave1_3.csv").resolve()

# Published anchors on the 58 shipped items (item-mean accuracy, mean per-item r), README of the pack.
ANCHORS = {
    "human_retest_wave4": {"accuracy_item_mean": 0.809, "pearson_r": 0.446},
    "text_persona_gpt41_mini": {"accuracy_item_mean": 0.739, "pearson_r": 0.151},
    "demographics_only_gpt41_mini": {"accuracy_item_mean": 0.710, "pearson_r": 0.096},
    "persona_summary_gpt41_mini": {"accuracy_item_mean": 0.703, "pearson_r": 0.129},
    "population_mean_in_sample": {"accuracy_item_mean": 0.77, "pearson_r": None},
    "uniform_random": {"accuracy_item_mean": 0.583, "pearson_r": 0.0},
}


class EvalInputError(ValueError):
    """An input of the eval cannot be used; the message names the flag."""


def arms_from_answers(survey: Any, answers: dict[str, dict[str, float]]) -> dict[str, dict[str, str]]:
    """The arm each person saw: the arm of their non-empty item(s) in each condition group."""
    arms: dict[str, dict[str, str]] = {}
    for person, row in answers.items():
        for q in survey.questions:
            if q.design == "between" and q.id in row and q.condition_group and q.condition_arm:
                arms.setdefault(person, {}).setdefault(q.condition_group, q.condition_arm)
    return arms


def run(argv: list[str]) -> dict[str, Any]:
    from personagraph.accounts.identity import CLI_CALLER
    from personagraph.services.twins.answering import MODES
    from personagraph.services.twins.calibration import twin_feature_values
    from personagraph.services.twins.executor import BatchOptions
    from personagraph.services.twins.store import new_run_id, open_run
    from personagraph.services.twins.surveys import create_survey_run, run_survey
    from personagraph.serving import models
    from personagraph.serving.models import endpoint_of
    from personagraph.twins.answer_policy import POLICIES
    from personagraph.twins.respondents import Selection, load_user_personas, select, shipped_personas_path
    from personagraph.twins.surveys import load_survey
    from personagraph.twins.validation import (
        AnswersFileError,
        compare_with_answers,
        headline,
        load_answers,
        per_block,
        population_hints,
        scorable,
    )

    parser = argparse.ArgumentParser(prog="python -m evals twins")
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument(
        "--answers", type=Path, default=DEFAULT_ANSWERS if DEFAULT_ANSWERS.is_file() else None
    )
    parser.add_argument(
        "--personas", type=int, default=10, help="How many people to evaluate (random, seeded)."
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=MODES, default="per_person")
    parser.add_argument(
        "--persona-file", type=Path, default=None, help="Profiles (default: the shipped copy)."
    )
    parser.add_argument("--ids", default=None, help="Comma-separated ids instead of a random sample.")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--reason-chars", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=None, help="per_person: most questions per call.")
    parser.add_argument(
        "--calibrate", action="store_true", help="Show population answer shares (non-evaluated people)."
    )
    parser.add_argument("--resume", default=None, help="Continue an earlier eval run (its run id).")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="Time budget: no new model calls after it; scores what was answered (resume to finish).",
    )
    parser.add_argument(
        "--policy", choices=POLICIES, default="mean",
        help="The stored answer of a distribution (zero-shot and calibrated): mean (expected value; the best "
        "r), median, mode or draw.",
    )  # fmt: skip
    parser.add_argument(
        "--pilot-share", type=float, default=0.0,
        help="Share of the NON-evaluated people whose real answers calibrate the twins (0 = zero-shot only).",
    )  # fmt: skip
    parser.add_argument(
        "--pilot-twins",
        action="store_true",
        help="Ask the pilot's twins too (a calibration feature; more calls).",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples (0 = no intervals).")
    parser.add_argument("--report-dir", type=Path, default=Path("reports"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.answers is None:
        parser.error(
            "--answers: give the real answers CSV (../shared/twin2k/answers_wave1_3.csv was not found)"
        )
    if args.personas < 1:
        parser.error("--personas: must be at least 1")
    if not 0.0 <= args.pilot_share < 1.0:
        parser.error(
            f"--pilot-share: {args.pilot_share} is not allowed; give a share from 0 up to (not including) 1"
        )
    if args.bootstrap < 0:
        parser.error("--bootstrap: must be 0 (no intervals) or more")

    survey = load_survey(args.questions)
    questions = scorable(survey.questions)
    try:
        answers_raw = load_answers(args.answers, [q.id for q in survey.questions])
    except AnswersFileError as exc:
        raise EvalInputError(f"--answers: {exc}") from exc
    pool = load_user_personas(args.persona_file or shipped_personas_path(), source="twin2k")
    eligible = [pid for pid in answers_raw if pid in pool.by_id and answers_raw[pid]]
    if not eligible:
        raise EvalInputError("--answers: no twin_id of the answers file has a persona profile")
    if args.ids:
        selection = Selection(ids=[i.strip() for i in args.ids.split(",") if i.strip()])
    else:
        selection = Selection(ids=eligible, n=args.personas, seed=args.seed)
    people = select(selection, pool)
    evaluated = {p.id for p in people}
    # Everything fitted from answers uses only the people who are NOT evaluated.
    reference_raw = {pid: row for pid, row in answers_raw.items() if pid not in evaluated}
    hints = population_hints(survey.questions, reference_raw) if args.calibrate else {}
    pilot_people = draw_pilot(
        pool, [pid for pid in eligible if pid not in evaluated], args.pilot_share, args.seed
    )
    asked = people + (pilot_people if args.pilot_twins else [])
    arms = arms_from_answers(survey, {p.id: answers_raw[p.id] for p in asked})

    options = BatchOptions(
        mode=args.mode, concurrency=args.concurrency, reason_chars=args.reason_chars, chunk_size=args.chunk_size,
        seed=args.seed, answer_policy=args.policy,
    )  # fmt: skip
    started = time.perf_counter()
    if args.resume:
        run_id = args.resume
    else:
        run_id = new_run_id("eval-twins")
        create_survey_run(CLI_CALLER, survey, asked, options, run_id=run_id, selection=selection, arms=arms,
                          hints=hints, source=str(args.persona_file or "twin2k"))  # fmt: skip
    budget = args.max_minutes * 60 if args.max_minutes is not None else None
    summary = run_survey(CLI_CALLER, run_id, options, progress=not args.no_progress, time_budget_s=budget)
    with open_run(CLI_CALLER, run_id) as store:
        predictions_raw = store.numeric_answers()
        twin_values = twin_feature_values(store.answers())
        stored_people = {p.id for p in store.people()} & evaluated
    compared = compare_with_answers(
        survey.questions,
        predictions_raw,
        answers_raw,
        stored_people,
        resamples=args.bootstrap,
        seed=args.seed,
    )
    twins_result, population, uniform = compared["twins"], compared["population"], compared["uniform"]
    if options.role in models._overrides:  # a test or notebook model, not a server
        base_url, model = "(override)", type(models._overrides[options.role]).__name__
    else:
        base_url, model = endpoint_of(options.role)
    created = datetime.now(UTC)

    output: dict[str, Any] = {
        "eval": "twins",
        "questions": str(args.questions),
        "answers": str(args.answers),
        "mode": args.mode,
        "calibrate": args.calibrate,
        "people": len(stored_people),
        "seed": args.seed,
        "items": len(questions),
        "run_id": run_id,
        "model": model,
        "base_url": base_url,
        "coverage": compared["coverage"],
        "failed_answers": summary.failed,
        "stopped": summary.stopped,
        **headline(twins_result),
        "distribution_distance_per_item": twins_result["distribution_distance"]["per_item"],
        "baselines": {
            "population_mean_mode (fitted on the non-evaluated people)": {
                **headline(population),
                "distribution_distance_per_item": population["distribution_distance"]["per_item"],
            },
            "uniform_random (exact expectation)": {
                **headline(uniform),
                "distribution_distance_per_item": uniform["distribution_distance"]["per_item"],
            },
        },
        "result_mode": "zero-shot",
        "answer_policy": args.policy if args.mode == "distribution" else None,
        "anchors_published": ANCHORS,
        "notes": [
            "accuracy.paper_headline = per person mean within task, then across tasks, then over people; "
            "tasks marked '(not scored in paper)' are excluded from it.",
            "baselines are scored on the same (person, item) pairs as the twins.",
            "with few people, r / variance ratio / distance are noisy and undefined for many items.",
        ],
        "seconds": round(time.perf_counter() - started, 1),
    }
    if pilot_people:
        output["calibrated"] = calibrated_section(
            survey, pilot_people, people, answers_raw, predictions_raw, twin_values, stored_people,
            policy=args.policy, seed=args.seed, resamples=args.bootstrap, use_twins=args.pilot_twins,
        )  # fmt: skip
        output["seconds"] = round(time.perf_counter() - started, 1)
    report = {
        **output,
        "created_at": created.isoformat(timespec="seconds"),
        "per_block": {
            "twins": per_block(survey.questions, twins_result),
            "population": per_block(survey.questions, population),
            "uniform": per_block(survey.questions, uniform),
        },
        "per_item": {
            "twins": twins_result["items"],
            "population": population["items"],
            "uniform": uniform["items"],
        },
    }
    stamp = created.strftime("%Y%m%dT%H%M%SZ")
    args.report_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.report_dir / f"twins_{stamp}.json"
    md_path = args.report_dir / f"twins_{stamp}.md"
    import json

    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    output["report"] = str(json_path)
    output["report_md"] = str(md_path)
    return output


def draw_pilot(pool: Any, candidates: list[str], share: float, seed: int) -> list[Any]:
    """A seeded pilot of `share` x the candidates (people NOT evaluated), at least 1 when share > 0."""
    import random

    if share <= 0 or not candidates:
        return []
    size = max(1, round(share * len(candidates)))
    chosen = random.Random(f"pilot-{seed}").sample(
        sorted(candidates, key=_id_key), min(size, len(candidates))
    )
    return list(pool.get(chosen))


def _id_key(pid: str) -> tuple[int, str]:
    return (int(pid), pid) if pid.isdigit() else (1 << 62, pid)


def calibrated_section(
    survey: Any,
    pilot: list[Any],
    evaluated: list[Any],
    answers_raw: dict[str, dict[str, float]],
    zero_shot_raw: dict[str, dict[str, float]],
    twin_values: dict[str, dict[str, float]],
    scored_people: set[str],
    *,
    policy: str,
    seed: int,
    resamples: int,
    use_twins: bool,
) -> dict[str, Any]:
    """Fit the calibration on the pilot's real answers only, answer for the evaluated people from
    their features (and their twins' answers), and score on the same (person, item) pairs as the
    zero-shot twins."""
    from personagraph.twins.calibration import Calibrator
    from personagraph.twins.validation import compare_with_answers, headline, scorable

    pilot_answers = {p.id: answers_raw.get(p.id, {}) for p in pilot}
    assert not {p.id for p in pilot} & {p.id for p in evaluated}, "a pilot person is evaluated"
    started = time.perf_counter()
    calibrator = Calibrator(scorable(survey.questions)).fit(
        pilot, pilot_answers, {p.id: twin_values.get(p.id, {}) for p in pilot} if use_twins else None
    )
    predictions: dict[str, dict[str, float]] = {}
    for person in evaluated:
        for qid in zero_shot_raw.get(person.id, {}):
            q = survey.question(qid)
            twin = twin_values.get(person.id, {}).get(qid)
            value, _ = calibrator.answer(q, person, twin, policy, seed)  # type: ignore[arg-type]
            if value is not None:
                predictions.setdefault(person.id, {})[qid] = value
    compared = compare_with_answers(
        survey.questions, predictions, answers_raw, scored_people, resamples=resamples, seed=seed
    )
    fits = calibrator.report()
    return {
        "result_mode": "calibrated",
        "pilot_people": len(pilot),
        "pilot_twins_asked": use_twins,
        "answer_policy": policy,
        "coverage": compared["coverage"],
        **headline(compared["twins"]),
        "questions_answered_by_model": sum(f["kind"] == "model" for f in fits.values()),
        "questions_answered_by_prior": sum(f["kind"] == "prior" for f in fits.values()),
        "per_item": compared["twins"]["items"],
        "calibration": fits,
        "fit_seconds": round(time.perf_counter() - started, 1),
    }


def _ci(interval: list[float | None] | None, pct: bool = False) -> str:
    if not interval or interval[0] is None or interval[1] is None:
        return ""
    return f" [{_fmt(interval[0], pct)}, {_fmt(interval[1], pct)}]"


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


def render_markdown(report: dict[str, Any]) -> str:
    rows = [("twins (zero-shot)", report)]
    if "calibrated" in report:
        rows.append(("twins (calibrated)", report["calibrated"]))
    rows += list(report["baselines"].items())
    lines = [
        f"# Twin validation: {report['created_at']}",
        "",
        f"- questions `{report['questions']}`, answers `{report['answers']}`",
        f"- {report['people']} people (seed {report['seed']}), {report['items']} items, mode `{report['mode']}`, "
        f"calibrate {report['calibrate']}, model `{report['model']}`, run `{report['run_id']}`",
        f"- coverage {_fmt(report['coverage'], True)}, failed answers {report['failed_answers']}, {report['seconds']} s",
        "",
        "Intervals: bootstrap 95% over people.",
        "",
        "| who | paper headline | item mean accuracy | mean r (items) | variance ratio | distance |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        ci = r.get("ci95", {})
        lines.append(
            f"| {name} | {_fmt(r['accuracy']['paper_headline'], True)}{_ci(ci.get('paper_headline'), True)} "
            f"| {_fmt(r['accuracy']['item_mean'], True)}{_ci(ci.get('item_mean'), True)} "
            f"| {_fmt(r['pearson_r'])}{_ci(ci.get('pearson_r'))} ({r['pearson_r_items_defined']}) "
            f"| {_fmt(r['variance_ratio'])} | {_fmt(r['distribution_distance'])} |"
        )
    if "calibrated" in report:
        c = report["calibrated"]
        lines += ["", f"Calibrated: pilot of {c['pilot_people']} people not evaluated (pilot twins asked: "
                  f"{c['pilot_twins_asked']}), policy `{c['answer_policy']}`; {c['questions_answered_by_model']} "
                  f"questions from a model, {c['questions_answered_by_prior']} from the pilot's distribution."]  # fmt: skip
    lines += ["", "Published anchors (58 items, item mean accuracy / r):", ""]
    for name, a in report["anchors_published"].items():
        lines.append(f"- {name}: {_fmt(a['accuracy_item_mean'], True)} / {_fmt(a['pearson_r'])}")
    lines += [
        "",
        "## Per block",
        "",
        "| block | who | items | accuracy | r | variance ratio | distance |",
        "|---|---|---|---|---|---|---|",
    ]
    for who, blocks in report["per_block"].items():
        for block, b in blocks.items():
            lines.append(
                f"| {block} | {who} | {b['items']} | {_fmt(b['accuracy'], True)} | {_fmt(b['pearson_r'])} "
                f"| {_fmt(b['variance_ratio'])} | {_fmt(b['distance'])} |"
            )
    lines += ["", "## Per item (twins)", "", "| item | n | accuracy | r | variance ratio | distance | mean true | mean pred |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for qid, i in report["per_item"]["twins"].items():
        lines.append(
            f"| {qid} | {i['n']} | {_fmt(i['accuracy'], True)} | {_fmt(i['pearson_r'])} | {_fmt(i['variance_ratio'])} "
            f"| {_fmt(i['distance'])} | {_fmt(i['mean_true'])} | {_fmt(i['mean_pred'])} |"
        )
    lines += ["", *[f"- {n}" for n in report["notes"]]]
    return "\n".join(lines) + "\n"
