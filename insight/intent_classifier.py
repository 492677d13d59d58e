"""A small intent classifier for insight questions, trained in-process from data/insight/intent_train*.jsonl.

Word lists (insight/lexicon.py) are precise but miss phrasings nobody listed; a TF-IDF model over
character and word n-grams of labelled questions generalises to new wording in Korean and English.
The router combines both (see `combine`). Training takes 10 s or more on two cores; the trained model is
cached in-process and on disk, keyed by the training files' content and the feature code (`personagraph
prepare` builds it at setup); training is deterministic.

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
from personagraph.serving.cache_files import keyed_cache_path, load_or_build
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
    return load_or_build(
        _stored_model_path(content),
        lambda: build().fit(parse_rows(content, "<training set>")),
        IntentClassifier,
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
    return keyed_cache_path("insight", "intent", ".pkl", key_parts)


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
    if guess.customers or model is None:
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
