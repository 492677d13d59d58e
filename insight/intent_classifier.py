"""A small intent classifier for insight questions, trained in-process from data/insight/intent_train*.jsonl.

Word lists (insight/lexicon.py) are precise but miss phrasings nobody listed; a TF-IDF model over
character and word n-grams of labelled questions generalises to new wording in Korean and English.
The router combines both (see `combine`). Training takes about a second and is cached in-process by
the training files' content; it is deterministic.

    predict("큰손 고객들한테 보낼 카톡 문구 좀 뽑아줘")  # -> ("message_drafting", 0.9...)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from insight.lexicon import INTENTS, KeywordGuess
from serving.settings import get_settings

RANDOM_STATE = 0
# The classifier overrides a confident keyword guess only when it is at least this sure.
OVERRIDE_PROBABILITY = 0.8
# Below this the classifier's answer is not trusted on its own (hybrid mode then asks the model).
CONFIDENT_PROBABILITY = 0.5


def train_paths() -> list[Path]:
    return sorted((get_settings().data_dir / "insight").glob("intent_train*.jsonl"))


def parse_rows(content: str, source: str) -> list[tuple[str, str]]:
    rows = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, intent = row["question"], row["intent"]
            if not isinstance(question, str) or intent not in INTENTS:
                raise ValueError(f"intent must be one of {', '.join(INTENTS)}")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{source}:{number}: bad training question: {exc}") from exc
        rows.append((question, intent))
    return rows


@dataclass
class IntentClassifier:
    char_vectoriser: Any
    word_vectoriser: Any
    model: Any

    def _matrix(self, texts: Sequence[str], fit: bool = False) -> Any:
        import scipy.sparse as sp

        lowered = [t.lower() for t in texts]
        if fit:
            parts = [self.char_vectoriser.fit_transform(lowered), self.word_vectoriser.fit_transform(lowered)]
        else:
            parts = [self.char_vectoriser.transform(lowered), self.word_vectoriser.transform(lowered)]
        return sp.hstack(parts).tocsr()

    def fit(self, rows: Sequence[tuple[str, str]]) -> IntentClassifier:
        self.model.fit(self._matrix([q for q, _ in rows], fit=True), [i for _, i in rows])
        return self

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(intent, probability) per text."""
        probabilities = self.model.predict_proba(self._matrix(texts))
        classes = list(self.model.classes_)
        return [(str(classes[row.argmax()]), float(row.max())) for row in probabilities]


def build() -> IntentClassifier:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    return IntentClassifier(
        char_vectoriser=TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True),
        word_vectoriser=TfidfVectorizer(
            analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+"
        ),
        model=CalibratedClassifierCV(LinearSVC(C=1.0, random_state=RANDOM_STATE), method="sigmoid", cv=3),
    )


@lru_cache(maxsize=2)
def _trained(content: str) -> IntentClassifier:
    return build().fit(parse_rows(content, "<training set>"))


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


def predict(question: str) -> tuple[str, float] | None:
    model = trained()
    return model.predict([question])[0] if model is not None else None


def combine(question: str, guess: KeywordGuess) -> KeywordGuess:
    """Keyword guess and classifier together; scope (segments, customers) always comes from the words.

    Customer ids decide `customer_lookup` outright. A confident keyword guess stands unless the
    classifier disagrees with at least OVERRIDE_PROBABILITY; an unsure keyword guess yields to a
    classifier that is at least CONFIDENT_PROBABILITY sure. An intent that needs a segment, in a
    question that names none, is never confident: hybrid mode then asks the router model for the scope.
    """
    if guess.customers:
        return guess
    predicted = predict(question)
    if predicted is None:
        return guess
    intent, probability = predicted
    needs_segment = intent in ("segment_profile", "strategy", "message_drafting", "segment_comparison")
    # Without a named segment the scope is unknown: stay unsure so hybrid mode asks the router model.
    scoped = not needs_segment or bool(guess.segments)
    if not scoped and guess.intent in ("summary", "out_of_scope"):
        return guess  # the words found no segment and no segment question: trust them
    if intent == "customer_lookup":  # no id in the text: the words decide
        return guess
    if guess.confident:
        if intent != guess.intent and probability >= OVERRIDE_PROBABILITY:
            return KeywordGuess(intent, scoped, guess.segments, guess.customers)
        return guess
    if probability >= CONFIDENT_PROBABILITY:
        return KeywordGuess(intent, scoped, guess.segments, guess.customers)
    return guess
