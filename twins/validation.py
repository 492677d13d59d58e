"""How close twins come to the real people: the Twin-2K-500 accuracy and companion figures.

Scoring follows the validation pack's README (the paper's official evaluation):

- per answer: `1 - |pred - true| / (accuracy_max - accuracy_min)`, after the item's
  `accuracy_transform` (the decile mapping of the numeric anchoring estimate) is applied to both;
  predictions are not clipped; binary items have range 1, so this is an exact match;
- item accuracy: the mean over people with both answers; `item_mean`: the mean over items;
- paper headline: per person, the mean within each task (`paper_task`), then across that person's
  tasks, then over people. Tasks labelled "(not scored in paper)" are left out of the headline only.

Companions, because a constant central answer already scores well on accuracy: the mean per-item
Pearson r across people (individuation), the twin/human variance ratio, and a per-item distribution
distance (Wasserstein-1 on the scored scale divided by the range, 0 = identical distributions; for
binary items it equals the difference in proportions). Baselines: the population mean (mode for
binary items) fitted on people who are NOT evaluated, and a uniform random answer (exact expectations).

The real answers come from a CSV in the pack's format (`load_answers`): `twin_id` plus one column
per item id, empty where the person was not asked.
"""

from __future__ import annotations

import bisect
import math
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from personagraph.twins.surveys import Question

Answers = Mapping[str, Mapping[str, float]]  # person id -> question id -> value
NOT_SCORED_MARK = "not scored in paper"


class AnswersFileError(ValueError):
    """The real answers file cannot be used; the caller names the file's field (e.g. `--answers`)."""


def load_answers(path: Path, question_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """twin_id -> item id -> value, for the given items (other columns are ignored, empty cells skipped)."""
    import pandas as pd  # only validation reads CSV files

    if not path.is_file():
        raise AnswersFileError(f"file not found: {path}")
    frame = pd.read_csv(path, dtype={"twin_id": str})
    if "twin_id" not in frame.columns:
        raise AnswersFileError(f"{path} has no 'twin_id' column")
    if not any(q in frame.columns for q in question_ids):
        raise AnswersFileError(f"none of the question ids are columns of {path}")
    out: dict[str, dict[str, float]] = {}
    for row in frame.to_dict(orient="records"):
        values = {}
        for qid in question_ids:
            value = row.get(qid)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            values[qid] = float(value)
        out[str(row["twin_id"]).strip()] = values
    return out


def transform(q: Question, value: float) -> float:
    """The value on the scored scale (decile mapping when the item has one)."""
    spec = q.accuracy_transform
    if spec and spec.get("type") == "decile":
        thresholds = [float(t) for t in spec["thresholds_upper_inclusive"]]
        return float(bisect.bisect_left(thresholds, float(value)) + 1)
    if spec:
        raise ValueError(f"question {q.id!r} field 'accuracy_transform': unknown type {spec.get('type')!r}")
    return float(value)


def score_range(q: Question) -> tuple[float, float]:
    low = q.accuracy_min if q.accuracy_min is not None else q.scale_min
    high = q.accuracy_max if q.accuracy_max is not None else q.scale_max
    if low is None or high is None or high <= low:
        raise ValueError(
            f"question {q.id!r}: no accuracy range (accuracy_min/accuracy_max or scale_min/scale_max)"
        )
    return float(low), float(high)


def answer_accuracy(q: Question, pred: float, true: float) -> float:
    """1 - |pred - true| / range on the scored scale (not clipped)."""
    low, high = score_range(q)
    return 1.0 - abs(transform(q, pred) - transform(q, true)) / (high - low)


def is_binary(q: Question) -> bool:
    return q.type == "binary_choice" or (q.options is not None and len(q.options) == 2)


def task_of(q: Question) -> str:
    return q.paper_task or q.block or q.id


def in_headline(q: Question) -> bool:
    return NOT_SCORED_MARK not in task_of(q)


def scorable(questions: Iterable[Question]) -> list[Question]:
    out = []
    for q in questions:
        if not q.scored:
            continue
        try:
            score_range(q)
        except ValueError:
            continue
        out.append(q)
    return out


# --- statistics ----------------------------------------------------------------------------------


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson r (scipy), or None when undefined (fewer than 2 pairs or a constant side)."""
    if len(xs) < 2 or variance(xs) <= 1e-12 or variance(ys) <= 1e-12:
        return None
    return float(stats.pearsonr(xs, ys).statistic)


def variance(values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Population variance (ddof 0), weighted when weights are given."""
    if not values or (weights is not None and sum(weights) <= 0):
        return 0.0
    mean = float(np.average(values, weights=weights))
    return float(np.average((np.asarray(values, dtype=float) - mean) ** 2, weights=weights))


def wasserstein1(
    xs: Sequence[float],
    ys: Sequence[float],
    wx: Sequence[float] | None = None,
    wy: Sequence[float] | None = None,
) -> float:
    """Wasserstein-1 distance between two (weighted) 1-D empirical distributions (scipy)."""
    if not xs or not ys:
        return float("nan")
    return float(stats.wasserstein_distance(xs, ys, wx, wy))


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def _r4(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, 4)


# --- scoring ---------------------------------------------------------------------------------------


def scored_values(questions: Sequence[Question], answers: Answers) -> dict[str, dict[str, float]]:
    """Answers on the scored scale (transform applied), for the scorable questions only."""
    by_id = {q.id: q for q in scorable(questions)}
    out: dict[str, dict[str, float]] = {}
    for person, row in answers.items():
        for qid, value in row.items():
            q = by_id.get(qid)
            if q is None or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            out.setdefault(person, {})[qid] = transform(q, float(value))
    return out


def score(
    questions: Sequence[Question],
    truth: Mapping[str, Mapping[str, float]],
    predictions: Mapping[str, Mapping[str, float]],
    *,
    uniform: bool = False,
) -> dict[str, Any]:
    """Accuracy, r, variance ratio and distribution distance of predictions against the truth.

    Both inputs are on the scored scale (see `scored_values`). With `uniform=True` the predictions
    are ignored and the exact expectation of a uniform random integer answer is scored instead.
    """
    qs = scorable(questions)
    items: dict[str, dict[str, Any]] = {}
    per_person: dict[str, dict[str, list[float]]] = {}  # person -> task -> answer accuracies
    answer_accs: list[float] = []
    for q in qs:
        low, high = score_range(q)
        support = _uniform_support(q) if uniform else []
        people = [p for p in truth if q.id in truth[p] and (uniform or q.id in predictions.get(p, {}))]
        if not people:
            continue
        trues = [truth[p][q.id] for p in people]
        if uniform:
            accs = [sum(1 - abs(u - t) / (high - low) for u in support) / len(support) for t in trues]
            preds: list[float] = []
            r: float | None = 0.0
            var_pred = variance(support)
            distance = wasserstein1(support, trues) / (high - low)
        else:
            preds = [predictions[p][q.id] for p in people]
            accs = [1 - abs(pv - t) / (high - low) for pv, t in zip(preds, trues, strict=True)]
            r = pearson(preds, trues)
            var_pred = variance(preds)
            distance = wasserstein1(preds, trues) / (high - low)
        var_true = variance(trues)
        items[q.id] = {
            "n": len(people), "accuracy": _r4(sum(accs) / len(accs)), "pearson_r": _r4(r),
            "variance_ratio": _r4(var_pred / var_true) if var_true > 0 else None,
            "distance": _r4(distance), "mean_true": _r4(statistics.fmean(trues)),
            "mean_pred": _r4(statistics.fmean(preds)) if preds else _r4(statistics.fmean(support)) if support else None,
            "block": q.block, "task": task_of(q), "in_headline": in_headline(q),
        }  # fmt: skip
        answer_accs += accs
        if in_headline(q):
            for p, acc in zip(people, accs, strict=True):
                per_person.setdefault(p, {}).setdefault(task_of(q), []).append(acc)
    headline_people = [
        sum(sum(v) / len(v) for v in tasks.values()) / len(tasks) for tasks in per_person.values() if tasks
    ]
    return {
        "accuracy": {
            "paper_headline": _r4(_mean(headline_people)),
            "item_mean": _r4(_mean(i["accuracy"] for i in items.values())),
            "answer_mean": _r4(_mean(answer_accs)),
            "items": len(items),
            "answers": len(answer_accs),
            "people": len(headline_people),
        },
        "pearson_r": {
            "mean": _r4(_mean(i["pearson_r"] for i in items.values())),
            "items_defined": sum(i["pearson_r"] is not None for i in items.values()),
        },
        "variance_ratio": {
            "mean": _r4(_mean(i["variance_ratio"] for i in items.values())),
            "median": _r4(_median(i["variance_ratio"] for i in items.values())),
            "items_defined": sum(i["variance_ratio"] is not None for i in items.values()),
        },
        "distribution_distance": {
            "metric": "Wasserstein-1 / accuracy range (0 = same distribution)",
            "mean": _r4(_mean(i["distance"] for i in items.values())),
            "per_item": {qid: i["distance"] for qid, i in items.items()},
        },
        "items": items,
    }


def _median(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def _uniform_support(q: Question) -> list[float]:
    """The scored-scale values a uniform random integer answer takes (with equal probability)."""
    if q.options:
        return [transform(q, c) for c in q.codes]
    if q.accuracy_transform and q.accuracy_transform.get("type") == "decile":
        return [float(d) for d in range(1, len(q.accuracy_transform["thresholds_upper_inclusive"]) + 2)]
    low, high = score_range(q)
    return [float(v) for v in range(math.ceil(low), math.floor(high) + 1)]


def population_baseline(
    questions: Sequence[Question], reference: Answers, people: Iterable[str]
) -> dict[str, dict[str, float]]:
    """Predict, for each person, the reference population's mean (mode for binary items).

    `reference` must be on the scored scale and must not contain the evaluated people.
    """
    constants: dict[str, float] = {}
    for q in scorable(questions):
        values = [row[q.id] for row in reference.values() if q.id in row]
        if not values:
            continue
        if is_binary(q):
            counts: dict[float, int] = {}
            for v in values:
                counts[v] = counts.get(v, 0) + 1
            constants[q.id] = max(sorted(counts), key=lambda v: counts[v])
        else:
            constants[q.id] = statistics.fmean(values)
    return {p: dict(constants) for p in people}


def population_hints(questions: Sequence[Question], reference_raw: Answers) -> dict[str, str]:
    """Short population answer distributions for calibration prompts (from non-evaluated people)."""
    hints: dict[str, str] = {}
    for q in questions:
        values = [float(row[q.id]) for row in reference_raw.values() if row.get(q.id) is not None]
        if len(values) < 20:
            continue
        if q.options:
            shares = {o.code: sum(v == o.code for v in values) / len(values) for o in q.options}
            hints[q.id] = ", ".join(f"{code}: {round(100 * s)}%" for code, s in shares.items())
        elif q.type != "open":
            qs = statistics.quantiles(values, n=4)
            hints[q.id] = f"median {qs[1]:g}, middle half {qs[0]:g}-{qs[2]:g}"
    return hints


def per_block(questions: Sequence[Question], result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Item figures averaged by block."""
    blocks: dict[str, list[dict[str, Any]]] = {}
    by_id = {q.id: q for q in questions}
    for qid, item in result["items"].items():
        blocks.setdefault(by_id[qid].block or "(none)", []).append(item)
    return {
        block: {
            "items": len(items),
            "accuracy": _r4(_mean(i["accuracy"] for i in items)),
            "pearson_r": _r4(_mean(i["pearson_r"] for i in items)),
            "variance_ratio": _r4(_mean(i["variance_ratio"] for i in items)),
            "distance": _r4(_mean(i["distance"] for i in items)),
        }
        for block, items in blocks.items()
    }


def headline(result: Mapping[str, Any]) -> dict[str, Any]:
    """The summary figures of a `score` result."""
    return {
        "accuracy": {k: result["accuracy"][k] for k in ("paper_headline", "item_mean", "answer_mean")},
        "pearson_r": result["pearson_r"]["mean"],
        "pearson_r_items_defined": result["pearson_r"]["items_defined"],
        "variance_ratio": result["variance_ratio"]["mean"],
        "variance_ratio_median": result["variance_ratio"]["median"],
        "distribution_distance": result["distribution_distance"]["mean"],
        **({"ci95": result["intervals"]} if "intervals" in result else {}),
    }


def compare_with_answers(
    questions: Sequence[Question],
    predictions_raw: Answers,
    answers_raw: Answers,
    people: Iterable[str],
    *,
    resamples: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Score twins' answers against the real ones, with both baselines on the same (person, item) pairs.

    `people` are the evaluated people (the twins); the population baseline is fitted on everyone else
    in `answers_raw`, so no evaluated person's answer informs their own baseline. With `resamples`,
    each result gets bootstrap 95% intervals over people (`intervals`, see `bootstrap_intervals`).
    """
    scored_questions = scorable(questions)
    evaluated = set(people)
    reference_raw = {pid: row for pid, row in answers_raw.items() if pid not in evaluated}
    truth = scored_values(scored_questions, {p: answers_raw.get(p, {}) for p in evaluated})
    predictions = scored_values(scored_questions, predictions_raw)
    reference = scored_values(scored_questions, reference_raw)
    answered_truth = {
        p: {q: v for q, v in row.items() if q in predictions.get(p, {})} for p, row in truth.items()
    }
    twins_result = score(scored_questions, truth, predictions)
    population = score(
        scored_questions, answered_truth, population_baseline(scored_questions, reference, answered_truth)
    )
    uniform = score(scored_questions, answered_truth, {}, uniform=True)
    if resamples > 0:
        baseline = population_baseline(scored_questions, reference, answered_truth)
        twins_result["intervals"] = bootstrap_intervals(
            scored_questions, truth, predictions, resamples=resamples, seed=seed
        )
        population["intervals"] = bootstrap_intervals(
            scored_questions, answered_truth, baseline, resamples=resamples, seed=seed
        )
        uniform["intervals"] = bootstrap_intervals(
            scored_questions, answered_truth, None, uniform=True, resamples=resamples, seed=seed
        )
    expected_pairs = sum(len(row) for row in truth.values())
    scored_pairs = sum(len(row) for row in answered_truth.values())
    return {
        "people": len(evaluated),
        "items": len(scored_questions),
        "coverage": round(scored_pairs / expected_pairs, 4) if expected_pairs else 0.0,
        "twins": twins_result,
        "population": population,
        "uniform": uniform,
    }


# --- intervals -------------------------------------------------------------------------------------

BOOTSTRAP_FIGURES = ("paper_headline", "item_mean", "pearson_r")


def _figures(result: Mapping[str, Any]) -> list[float]:
    values = [
        result["accuracy"]["paper_headline"],
        result["accuracy"]["item_mean"],
        result["pearson_r"]["mean"],
    ]
    return [math.nan if v is None else float(v) for v in values]


def bootstrap_intervals(
    questions: Sequence[Question],
    truth: Answers,
    predictions: Answers | None,
    *,
    uniform: bool = False,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float | None]]:
    """Percentile bootstrap intervals over people (scipy.stats.bootstrap) for the paper headline,
    the item-mean accuracy and the mean per-item r: people are drawn with replacement and every
    figure is recomputed on the same draw. Inputs are on the scored scale, as for `score`."""
    people = sorted(truth)
    if len(people) < 2:
        return {name: [None, None] for name in BOOTSTRAP_FIGURES}
    preds = predictions or {}

    def statistic(index: Any) -> Any:
        drawn = [people[int(i)] for i in index]
        t = {f"{p}#{k}": truth[p] for k, p in enumerate(drawn)}
        pr = {f"{p}#{k}": preds.get(p, {}) for k, p in enumerate(drawn)}
        return np.array(_figures(score(questions, t, pr, uniform=uniform)))

    with np.errstate(all="ignore"), warnings.catch_warnings():
        # A figure undefined on some draws (r with a constant side) is reported as missing, not warned.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (np.arange(len(people)),), statistic, vectorized=False, n_resamples=resamples,
            confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
        )  # fmt: skip
    low, high = result.confidence_interval
    return {
        name: [_r4(float(lo)), _r4(float(hi))]
        for name, lo, hi in zip(BOOTSTRAP_FIGURES, low, high, strict=True)
    }
