"""Calibrating twins with a pilot panel: real answers of a few respondents teach the twins how this
population answers and who answers differently.

Per question, fitted on the pilot only (scikit-learn, cross-validated on the pilot):

- the population's answer distribution (the prior; add-one smoothed over the allowed codes);
- a model of the answer from the persona's own features (demographics one-hot, the numeric scores
  standardised, missing values imputed) and, when the pilot's twins were asked too, the twin's own
  answer (the expected value of its distribution, or its number): a multinomial logistic
  regression for choice questions (C chosen by cross-validation on the pilot), a ridge regression
  for numbers (alpha chosen the same way).

A question whose pilot has too few answers, or whose model does not beat the prior in the pilot's
own cross-validation, is answered from the prior alone. No evaluated person's answer is ever used:
the caller passes the pilot's answers only, and `predict` sees only features.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from personagraph.twins.answer_policy import Policy, draw_rng, pick
from personagraph.twins.respondents import Respondent
from personagraph.twins.surveys import CHOICE_TYPES, Question

MIN_PILOT = 20  # fewer pilot answers to a question: the prior alone
FOLDS = 5
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)
ALPHA_GRID = (1.0, 10.0, 100.0, 1000.0)

Answers = Mapping[str, Mapping[str, float]]  # person -> question id -> raw answer


class CalibrationError(ValueError):
    """The pilot cannot calibrate anything (e.g. no pilot answer for any question)."""


@dataclass
class QuestionFit:
    """What was learned for one question (and how it did in the pilot's cross-validation)."""

    question_id: str
    n_pilot: int
    prior: dict[int, float] | None = None  # choice questions: code -> share
    prior_value: float | None = None  # numeric questions: the pilot's mean
    model: Any = None  # a fitted LogisticRegression or Ridge on the encoded features
    uses_twin: bool = False
    twin_scale: tuple[float, float] = (0.0, 1.0)  # the pilot twins' mean and sd of the twin feature
    cv: dict[str, float] = field(default_factory=dict)  # cross-validated error of the model and the prior

    @property
    def kind(self) -> str:
        return "model" if self.model is not None else "prior"


def feature_names(people: Sequence[Respondent]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) attribute names present in the pilot's profiles, sorted."""
    numeric: set[str] = set()
    categorical: set[str] = set()
    for p in people:
        for key, value in p.attributes.items():
            if isinstance(value, bool) or value is None:
                continue
            (numeric if isinstance(value, int | float) else categorical).add(key)
    return sorted(numeric - categorical), sorted(categorical)


def _preprocessor(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    parts: list[tuple[str, Any, list[str]]] = []
    if numeric:
        parts.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
    if categorical:
        parts.append((
            "cat",
            make_pipeline(
                SimpleImputer(strategy="constant", fill_value="(missing)"),
                OneHotEncoder(handle_unknown="ignore", min_frequency=3),
            ),
            categorical,
        ))  # fmt: skip
    return ColumnTransformer(parts, remainder="drop")


class Calibrator:
    """Fit on a pilot (`fit`), then answer for anyone from their features (`predict_*`).

    The persona features are encoded once, fitted on the pilot (imputation, scaling, one-hot), so
    each question's model is a plain scikit-learn estimator on that matrix (fast enough for many
    questions on two cores)."""

    def __init__(self, questions: Sequence[Question]):
        self.questions = {q.id: q for q in questions if q.scored}
        self.fits: dict[str, QuestionFit] = {}
        self.numeric: list[str] = []
        self.categorical: list[str] = []
        self.encoder: ColumnTransformer | None = None

    def _frame(self, people: Sequence[Respondent]) -> Any:
        import pandas as pd

        rows = []
        for p in people:
            row: dict[str, Any] = {k: _num(p.attributes.get(k)) for k in self.numeric}
            row.update({k: _text(p.attributes.get(k)) for k in self.categorical})
            rows.append(row)
        return pd.DataFrame(rows, columns=[*self.numeric, *self.categorical])

    def _features(self, people: Sequence[Respondent]) -> Any:
        assert self.encoder is not None, "fit the calibrator first"
        matrix = self.encoder.transform(self._frame(people))
        return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=float)

    def fit(
        self,
        pilot: Sequence[Respondent],
        answers: Answers,
        twin_answers: Answers | None = None,
    ) -> Calibrator:
        """Learn each question from the pilot's answers (and their twins' answers, when given)."""
        self.numeric, self.categorical = feature_names(pilot)
        if not self.numeric and not self.categorical:
            raise CalibrationError("pilot: the pilot's profiles carry no attributes to learn from")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.encoder = _preprocessor(self.numeric, self.categorical).fit(self._frame(pilot))
            features = self._features(pilot)
        row_of = {p.id: i for i, p in enumerate(pilot)}
        for qid, q in self.questions.items():
            ids = [p.id for p in pilot if answers.get(p.id, {}).get(qid) is not None]
            if not ids:
                continue
            y = [float(answers[pid][qid]) for pid in ids]
            twin = None
            if twin_answers is not None and all(qid in twin_answers.get(pid, {}) for pid in ids):
                twin = [float(twin_answers[pid][qid]) for pid in ids]
            self.fits[qid] = self._fit_question(q, features[[row_of[pid] for pid in ids]], y, twin)
        if not self.fits:
            raise CalibrationError("pilot: no pilot answer for any question of the survey")
        return self

    def _fit_question(self, q: Question, X: Any, y: list[float], twin: list[float] | None) -> QuestionFit:
        fit = QuestionFit(question_id=q.id, n_pilot=len(y))
        choice = q.type in CHOICE_TYPES and bool(q.options)
        if choice:
            counts = {c: 1.0 + sum(v == c for v in y) for c in q.codes}
            total = sum(counts.values())
            fit.prior = {c: n / total for c, n in counts.items()}
        else:
            fit.prior_value = statistics.fmean(y)
        if len(y) < MIN_PILOT or len(set(y)) < 2:
            return fit
        target = np.array(y)
        if twin is not None:
            values = np.array(twin)
            fit.twin_scale = (float(values.mean()), float(values.std()) or 1.0)
            X = np.column_stack([X, (values - fit.twin_scale[0]) / fit.twin_scale[1]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            if choice:
                folds = min(FOLDS, min(int(np.sum(target == c)) for c in set(y)))
                if folds < 2:
                    return fit
                cv: Any = StratifiedKFold(folds, shuffle=True, random_state=0)
                search = GridSearchCV(
                    LogisticRegression(max_iter=1000), {"C": list(C_GRID)}, cv=cv, scoring="neg_log_loss"
                )
                search.fit(X, target)
                assert fit.prior is not None
                prior_loss = _prior_log_loss(target, q.codes, cv)
                model_loss = -float(search.best_score_)
                fit.cv = {"log_loss_model": round(model_loss, 4), "log_loss_prior": round(prior_loss, 4)}
                better = model_loss < prior_loss
            else:
                cv = KFold(FOLDS, shuffle=True, random_state=0)
                search = GridSearchCV(
                    Ridge(), {"alpha": list(ALPHA_GRID)}, cv=cv, scoring="neg_mean_absolute_error"
                )
                search.fit(X, target)
                model_mae = -float(search.best_score_)
                prior_mae = _prior_mae(target, cv)
                fit.cv = {"mae_model": round(model_mae, 4), "mae_prior": round(prior_mae, 4)}
                better = model_mae < prior_mae
        if better:  # judged out of fold on the pilot only
            fit.model = search.best_estimator_
            fit.uses_twin = twin is not None
        return fit

    def _row(self, fit: QuestionFit, person: Respondent, twin_value: float | None) -> Any:
        row = self._features([person])
        if fit.uses_twin:
            mean, sd = fit.twin_scale
            value = mean if twin_value is None else twin_value
            row = np.column_stack([row, [(value - mean) / sd]])
        return row

    def predict_distribution(
        self, q: Question, person: Respondent, twin_value: float | None = None
    ) -> dict[int, float] | None:
        """A choice question's calibrated distribution over its codes (None: not a choice question
        or nothing learned for it)."""
        fit = self.fits.get(q.id)
        if fit is None or fit.prior is None:
            return None
        if fit.model is None:
            return dict(fit.prior)
        proba = fit.model.predict_proba(self._row(fit, person, twin_value))[0]
        learned = {int(c): float(p) for c, p in zip(fit.model.classes_, proba, strict=True)}
        # Codes absent from the pilot keep a little of the (smoothed) prior's mass.
        mixed = {c: 0.97 * learned.get(c, 0.0) + 0.03 * fit.prior[c] for c in fit.prior}
        total = sum(mixed.values())
        return {c: p / total for c, p in mixed.items()}

    def predict_value(self, q: Question, person: Respondent, twin_value: float | None = None) -> float | None:
        """A numeric question's calibrated answer (None: a choice question or nothing learned)."""
        fit = self.fits.get(q.id)
        if fit is None or fit.prior_value is None:
            return None
        if fit.model is None:
            return fit.prior_value
        value = float(fit.model.predict(self._row(fit, person, twin_value))[0])
        if q.scale_min is not None:
            value = max(value, q.scale_min)
        if q.scale_max is not None:
            value = min(value, q.scale_max)
        return value

    def answer(
        self, q: Question, person: Respondent, twin_value: float | None, policy: Policy, seed: int
    ) -> tuple[float | None, dict[int, float] | None]:
        """The stored answer (the distribution's under `policy`, a draw seeded by run seed, person and
        question) and the distribution it came from (None for a numeric question)."""
        distribution = self.predict_distribution(q, person, twin_value)
        if distribution is None:
            return self.predict_value(q, person, twin_value), None
        rng = draw_rng(seed, person.id, q.id)
        return float(pick(distribution, policy, ordinal=q.ordinal, rng=rng)), distribution

    def report(self) -> dict[str, Any]:
        """Per question: what answers it (model or prior), pilot size, and the pilot cross-validation."""
        return {
            qid: {"kind": f.kind, "n_pilot": f.n_pilot, "uses_twin": f.uses_twin, "cv": f.cv}
            for qid, f in self.fits.items()
        }


def _prior_log_loss(target: Any, codes: Sequence[int], cv: Any) -> float:
    """Log loss of the add-one smoothed training-fold shares on the held-out folds (the same folds)."""
    losses = []
    for train, test in cv.split(np.zeros(len(target)), target):
        counts = {c: 1.0 + float(np.sum(target[train] == c)) for c in codes}
        total = sum(counts.values())
        losses += [-math.log(counts[int(v)] / total) for v in target[test]]
    return float(np.mean(losses))


def _prior_mae(target: Any, cv: Any) -> float:
    """Mean absolute error of the training folds' median on the held-out folds."""
    errors: list[float] = []
    for train, test in cv.split(np.zeros(len(target))):
        errors += list(np.abs(target[test] - float(np.median(target[train]))))
    return float(np.mean(errors))


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else np.nan


def _text(value: Any) -> Any:
    return np.nan if value is None else str(value)
