"""A small intent classifier for insight questions, trained in-process from data/insight/intent_train*.jsonl.

Word lists (insight/lexicon.py) are precise but miss phrasings nobody listed; a TF-IDF model over
character and word n-grams of labelled questions generalises to new wording in Korean and English.
The router combines both (see `combine`). Training takes 10 s or more on two cores; the trained model is
cached in-process and on disk, keyed by the training files' content and the feature code (`personagraph
prepare` builds it at setup); training is deterministic. The disk copy is plain arrays (an .npz read
without pickle, `IntentClassifier.to_arrays`), so a file in the shared cache folder is never run.

    predict("큰손 고객들한테 보낼 카톡 문구 좀 뽑아줘")  # -> ("message_drafting", 0.9...)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from personagraph.insight.lexicon import (
    INTENTS,
    SEGMENT_SYNONYMS,
    KeywordGuess,
    find_customers,
    find_segments,
    guess_intent,
    has_domain_words,
    intent_cues,
    keyword_intent,
    names_other_company,
)
from personagraph.serving.cache_files import (
    array_json,
    checked_array,
    json_array,
    keyed_cache_path,
    load_or_build_arrays,
    string_list,
)
from personagraph.serving.settings import get_settings

RANDOM_STATE = 0
# Below this the classifier's answer is not trusted on its own (hybrid mode then asks the model).
CONFIDENT_PROBABILITY = 0.5
# A segment the words did not find counts as named when the segment model is at least this sure.
SEGMENT_PROBABILITY = 0.3
CUE_WEIGHT = 0.5  # scale of the word-list features next to the TF-IDF n-grams (chosen by --cv)
SEGMENTS: tuple[str, ...] = tuple(SEGMENT_SYNONYMS)


def train_paths() -> list[Path]:
    return sorted((get_settings().data_dir / "insight").glob("intent_train*.jsonl"))


@dataclass(frozen=True)
class LabelledQuestion:
    question: str
    intent: str
    segments: tuple[str, ...] | None  # None = "all" (the whole base)


def word_features(question: str, detected: Sequence[str] = ()) -> list[float]:
    """What the word lists see, as features: cue words per intent, how many segments (named in words
    or `detected` by the segment model) and ids, a domain word, and the keyword guess itself. The
    model learns how far to trust each."""
    cues, domain = intent_cues(question), has_domain_words(question)
    segments, customers = find_segments(question), find_customers(question)
    guess = guess_intent(segments, customers, cues, bool(segments or customers) or domain)
    named = len(set(segments) | set(detected))
    return [
        *(float(cues[i]) for i in cues),
        float(named == 0), float(named == 1), float(named >= 2), float(bool(customers)),
        float(domain), float(names_other_company(question)),
        *(float(guess.intent == i) for i in INTENTS), float(guess.confident),
    ]  # fmt: skip


def parse_rows(content: str, source: str) -> list[LabelledQuestion]:
    rows = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, intent, segments = row["question"], row["intent"], row.get("segments", [])
            if not isinstance(question, str) or intent not in INTENTS:
                raise ValueError(f"intent must be one of {', '.join(INTENTS)}")
            if segments != "all" and (
                not isinstance(segments, list) or any(s not in SEGMENT_SYNONYMS for s in segments)
            ):
                raise ValueError(f'segments must be "all" or a list of {", ".join(SEGMENT_SYNONYMS)}')
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{source}:{number}: bad training question: {exc}") from exc
        rows.append(LabelledQuestion(question, intent, None if segments == "all" else tuple(segments)))
    return rows


@dataclass
class IntentClassifier:
    """Intent (one of INTENTS, with a probability) and the segments a question is about."""

    char_vectoriser: Any
    word_vectoriser: Any
    model: Any
    segment_model: Any

    def _text_matrix(self, texts: Sequence[str], fit: bool = False) -> Any:
        import scipy.sparse as sp

        lowered = [t.lower() for t in texts]
        if fit:
            parts = [self.char_vectoriser.fit_transform(lowered), self.word_vectoriser.fit_transform(lowered)]
        else:
            parts = [self.char_vectoriser.transform(lowered), self.word_vectoriser.transform(lowered)]
        return sp.hstack(parts).tocsr()

    @staticmethod
    def _intent_matrix(text_matrix: Any, texts: Sequence[str], detected: Sequence[Sequence[str]]) -> Any:
        import scipy.sparse as sp

        cues = sp.csr_matrix([word_features(t, d) for t, d in zip(texts, detected, strict=True)])
        return sp.hstack([text_matrix, CUE_WEIGHT * cues]).tocsr()

    def fit(self, rows: Sequence[LabelledQuestion]) -> IntentClassifier:
        import numpy as np
        from sklearn.base import clone
        from sklearn.model_selection import cross_val_predict

        texts = [r.question for r in rows]
        x = self._text_matrix(texts, fit=True)
        # One yes/no model per segment: is the question about it? ("all" and no segment are "no".)
        y = np.array([[s in (r.segments or ()) for s in SEGMENTS] for r in rows], dtype=int)
        self.segment_model.fit(x, y)
        # The intent model sees the segments found as it will at run time: from models that did not
        # see the question (out-of-fold), not the labels.
        folds = cross_val_predict(clone(self.segment_model), x, y, cv=5, method="predict_proba")
        self.model.fit(self._intent_matrix(x, texts, _above(folds)), [r.intent for r in rows])
        return self

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(intent, probability) per text."""
        x = self._text_matrix(texts)
        probabilities = self.model.predict_proba(self._intent_matrix(x, texts, self._segments(x)))
        classes = list(self.model.classes_)
        return [(str(classes[row.argmax()]), float(row.max())) for row in probabilities]

    def segments(self, texts: Sequence[str]) -> list[list[str]]:
        """Segments each text is about with at least SEGMENT_PROBABILITY, most likely first."""
        return self._segments(self._text_matrix(texts))

    def _segments(self, text_matrix: Any) -> list[list[str]]:
        return _above(self.segment_model.predict_proba(text_matrix))

    def to_arrays(self) -> dict[str, Any]:
        """The fitted parameters as plain arrays for `numpy.savez` (the disk cache is read without
        pickle: a file in the shared cache folder is data, never code)."""
        import numpy as np

        calibrated = (
            self.model.calibrated_classifiers_ if hasattr(self.model, "calibrated_classifiers_") else None
        )
        if calibrated is None:  # already the array form
            intent = self.model
        else:
            (fold,) = calibrated
            svm = fold.estimator
            if list(svm.classes_) != list(self.model.classes_) or len(svm.classes_) < 3:
                raise ValueError("expected one multi-class calibrated model")
            intent = _CalibratedLinear(
                classes=[str(c) for c in self.model.classes_],
                coef=np.asarray(svm.coef_, float),
                intercept=np.asarray(svm.intercept_, float),
                sigmoid=np.array([[c.a_, c.b_] for c in fold.calibrators], float),
            )
        segments = self.segment_model
        if not isinstance(segments, _LogisticPerLabel):
            segments = _LogisticPerLabel.from_one_vs_rest(segments)
        return {
            "meta": json_array(
                {
                    "format": STORED_FORMAT,
                    "char_terms": _terms_of(self.char_vectoriser),
                    "word_terms": _terms_of(self.word_vectoriser),
                    "classes": intent.classes,
                }
            ),
            "char_idf": np.asarray(self.char_vectoriser.idf_, float),
            "word_idf": np.asarray(self.word_vectoriser.idf_, float),
            "intent_coef": intent.coef,
            "intent_intercept": intent.intercept,
            "intent_sigmoid": intent.sigmoid,
            "segment_coef": segments.coef,
            "segment_intercept": segments.intercept,
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> IntentClassifier:
        """The classifier `to_arrays` stored; ValueError when anything is missing or does not fit."""
        meta = array_json(arrays, "meta")
        if not isinstance(meta, dict) or meta.get("format") != STORED_FORMAT:
            raise ValueError("not a stored intent classifier of this version")
        char_terms = string_list(meta.get("char_terms"), "char_terms")
        word_terms = string_list(meta.get("word_terms"), "word_terms")
        classes = string_list(meta.get("classes"), "classes")
        if not set(classes) <= set(INTENTS) or len(classes) < 3:
            raise ValueError(f"classes must be three or more of {', '.join(INTENTS)}")
        n_text = len(char_terms) + len(word_terms)
        n_intent = n_text + len(word_features(""))
        fresh = build()
        for vectoriser, terms, key in (
            (fresh.char_vectoriser, char_terms, "char_idf"),
            (fresh.word_vectoriser, word_terms, "word_idf"),
        ):
            vectoriser.set_params(vocabulary={t: i for i, t in enumerate(terms)})
            vectoriser.idf_ = checked_array(arrays, key, 1, rows=len(terms))
        return cls(
            char_vectoriser=fresh.char_vectoriser,
            word_vectoriser=fresh.word_vectoriser,
            model=_CalibratedLinear(
                classes=classes,
                coef=checked_array(arrays, "intent_coef", 2, rows=len(classes), columns=n_intent),
                intercept=checked_array(arrays, "intent_intercept", 1, rows=len(classes)),
                sigmoid=checked_array(arrays, "intent_sigmoid", 2, rows=len(classes), columns=2),
            ),
            segment_model=_LogisticPerLabel(
                coef=checked_array(arrays, "segment_coef", 2, rows=len(SEGMENTS), columns=n_text),
                intercept=checked_array(arrays, "segment_intercept", 1, rows=len(SEGMENTS)),
            ),
        )


# The cache file's layout; a file of another version is rebuilt.
STORED_FORMAT = 1


def _terms_of(vectoriser: Any) -> list[str]:
    terms = [""] * len(vectoriser.vocabulary_)
    for term, column in vectoriser.vocabulary_.items():
        terms[column] = term
    return terms


@dataclass(frozen=True)
class _CalibratedLinear:
    """A sigmoid-calibrated multi-class linear SVM from its parameters: per class 1 / (1 + exp(a * f
    + b)) of its decision value f, normalised over the classes (as scikit-learn computes it)."""

    classes: list[str]
    coef: Any  # (classes, features)
    intercept: Any  # (classes,)
    sigmoid: Any  # (classes, 2): a, b

    @property
    def classes_(self) -> list[str]:
        return self.classes

    def predict_proba(self, x: Any) -> Any:
        import numpy as np

        decision = np.asarray(x @ self.coef.T) + self.intercept
        proba = 1.0 / (1.0 + np.exp(self.sigmoid[:, 0] * decision + self.sigmoid[:, 1]))
        total = proba.sum(axis=1, keepdims=True)
        uniform = np.full_like(proba, 1.0 / len(self.classes))
        return np.divide(proba, total, out=uniform, where=total != 0)


@dataclass(frozen=True)
class _LogisticPerLabel:
    """One logistic regression per segment (yes/no): P = 1 / (1 + exp(-(x . coef + intercept)))."""

    coef: Any  # (segments, features)
    intercept: Any  # (segments,)

    @classmethod
    def from_one_vs_rest(cls, model: Any) -> _LogisticPerLabel:
        import numpy as np

        rows, intercepts = [], []
        n_features = next(e.coef_.shape[1] for e in model.estimators_ if hasattr(e, "coef_"))
        for estimator in model.estimators_:
            if hasattr(estimator, "coef_"):
                rows.append(np.asarray(estimator.coef_, float)[0])
                intercepts.append(float(estimator.intercept_[0]))
            else:  # a segment that was always (or never) named: a constant answer
                rows.append(np.zeros(n_features))
                intercepts.append(50.0 if float(np.ravel(estimator.y_)[0]) else -50.0)
        return cls(coef=np.vstack(rows), intercept=np.array(intercepts))

    def predict_proba(self, x: Any) -> Any:
        import numpy as np

        return 1.0 / (1.0 + np.exp(-(np.asarray(x @ self.coef.T) + self.intercept)))


def _above(probabilities: Any) -> list[list[str]]:
    out = []
    for row in probabilities:
        ranked = sorted(zip(row, SEGMENTS, strict=True), reverse=True)
        out.append([s for p, s in ranked if p >= SEGMENT_PROBABILITY])
    return out


def build() -> IntentClassifier:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    return IntentClassifier(
        char_vectoriser=TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True),
        word_vectoriser=TfidfVectorizer(
            analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+"
        ),
        model=CalibratedClassifierCV(
            LinearSVC(C=1.0, random_state=RANDOM_STATE), method="sigmoid", cv=5, ensemble=False
        ),
        segment_model=OneVsRestClassifier(
            LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000, random_state=RANDOM_STATE)
        ),
    )


@lru_cache(maxsize=2)
def _trained(content: str) -> IntentClassifier:
    return load_or_build_arrays(
        _stored_model_path(content),
        # Scored through the stored form at once, so a fresh model and a loaded one answer alike.
        lambda: IntentClassifier.from_arrays(build().fit(parse_rows(content, "<training set>")).to_arrays()),
        decode=IntentClassifier.from_arrays,
        encode=IntentClassifier.to_arrays,
    )


def _stored_model_path(content: str) -> Path:
    """Keyed by everything training reads (the examples, this module and the word lists that make the
    features, the scikit-learn version), so any change there retrains; a new process loads it in
    well under a second instead of training again."""
    import sklearn

    from personagraph.insight import lexicon

    key_parts = [
        content,
        Path(__file__).read_text(encoding="utf-8"),
        Path(lexicon.__file__).read_text(encoding="utf-8"),
        sklearn.__version__,
    ]
    return keyed_cache_path("insight", "intent", ".npz", key_parts)


def trained_model_file() -> Path | None:
    """Train (or load) the classifier on the shipped files; where it is kept on disk (None: no files)."""
    if trained() is None:
        return None
    return _stored_model_path("\n".join(p.read_text(encoding="utf-8").rstrip("\n") for p in train_paths()))


def trained() -> IntentClassifier | None:
    """The classifier trained on the shipped files, or None when there are none."""
    paths = train_paths()
    if not paths:
        return None
    contents = [p.read_text(encoding="utf-8") for p in paths]
    try:
        return _trained("\n".join(c.rstrip("\n") for c in contents))
    except ValueError:
        for path, content in zip(paths, contents, strict=True):  # name the file and line of the bad row
            parse_rows(content, str(path))
        raise


SEGMENT_INTENTS = ("segment_profile", "strategy", "message_drafting", "segment_comparison")


def combine(question: str, guess: KeywordGuess) -> KeywordGuess:
    """Keyword guess and the trained classifier together (see `decide`)."""
    model = trained()
    if guess.customers or guess.boundary or model is None:  # ids and boundary scopes are the words' own
        return guess
    return decide(guess, model.predict([question])[0], model.segments([question])[0])


def decide(guess: KeywordGuess, predicted: tuple[str, float], detected: Sequence[str]) -> KeywordGuess:
    """The router's rule for the keyword guess and the classifier (which also sees the word lists).

    Customer ids decide `customer_lookup` outright; otherwise the classifier's intent stands (the
    words' guess when it says lookup without an id). Segments named in words always count; the
    segment model adds the ones the words missed (all of them when the words found none, the missing
    ones of a comparison). The result is confident when the classifier is at least
    CONFIDENT_PROBABILITY sure and a segment intent has its segments; hybrid mode asks the router
    model otherwise.
    """
    if guess.customers:
        return guess
    intent, probability = predicted
    if intent == "customer_lookup":  # no id in the text: nothing to look up, the words decide
        intent, probability = guess.intent, 0.0
    segments = list(guess.segments) or list(detected)
    if intent == "segment_comparison" and len(segments) < 2:
        segments += [s for s in detected if s not in segments]
    if intent not in SEGMENT_INTENTS:
        return KeywordGuess(intent, probability >= CONFIDENT_PROBABILITY, list(guess.segments), [])
    return KeywordGuess(intent, probability >= CONFIDENT_PROBABILITY and bool(segments), segments, [])


def cross_validate(rows: Sequence[LabelledQuestion], folds: int = 5) -> dict[str, float]:
    """Accuracy of the words alone, the classifier alone and the combined router, on held-out folds."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    labels = [r.intent for r in rows]
    hits: dict[str, list[bool]] = {k: [] for k in ("words", "classifier", "combined")}
    scope: dict[str, list[bool]] = {k: [] for k in ("words", "combined")}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=RANDOM_STATE)
    for train, test in splitter.split(np.zeros(len(rows)), labels):
        model = build().fit([rows[i] for i in train])
        held = [rows[i] for i in test]
        questions = [r.question for r in held]
        for row, predicted, detected in zip(
            held, model.predict(questions), model.segments(questions), strict=True
        ):
            guess = keyword_intent(row.question)
            final = decide(guess, predicted, detected)
            hits["words"].append(guess.intent == row.intent)
            hits["classifier"].append(predicted[0] == row.intent)
            hits["combined"].append(final.intent == row.intent)
            if row.intent in SEGMENT_INTENTS:
                expected = sorted(row.segments or ())
                scope["words"].append(sorted(guess.segments) == expected)
                scope["combined"].append(sorted(final.segments) == expected)
    result = {f"intent_{k}": round(float(np.mean(v)), 4) for k, v in hits.items()}
    result.update({f"scope_{k}": round(float(np.mean(v)), 4) for k, v in scope.items()})
    return {"n": len(rows), "folds": folds, **result}


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m personagraph.insight.intent_classifier")
    parser.add_argument("--cv", action="store_true", help="cross-validate on the training files")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("question", nargs="*", help="questions to classify")
    args = parser.parse_args(argv)
    rows = [r for p in train_paths() for r in parse_rows(p.read_text(encoding="utf-8"), str(p))]
    if args.cv:
        print(json.dumps(cross_validate(rows, args.folds)))
    model = trained() if args.question else None
    for question in args.question:
        if model is not None:
            print(json.dumps({"question": question, "intent": model.predict([question])[0],
                              "segments": model.segments([question])[0]}, ensure_ascii=False))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
