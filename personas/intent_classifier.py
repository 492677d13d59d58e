"""What a fan's chat message is about (smalltalk, knowledge, story, personal), without a model call.

Why: asking the router model first cost every turn a whole model call (seconds on a laptop) before
the reply could start. A logistic regression over character and word n-grams and the packaged e5
embedding of labelled fan messages (data/chat/intent_train.jsonl, Korean and English, both shipped
personas) answers in about 10 ms; the embedding carries meaning the n-grams miss (held-out accuracy
0.78 with n-grams alone, 0.90 with both);
nodes/routing.py asks the router model only when this one is unsure (probability below
CONFIDENT_PROBABILITY, or the setting CHAT_INTENT_MODEL=router).

Trained in-process (about a second on two cores), deterministic, cached in-process and on disk keyed
by the training file, this module and the scikit-learn version (`personagraph prepare` builds it at
setup). The disk copy is plain arrays read without pickle (the cache folder is shared: its files are
data, never code), as insight/intent_classifier.py does.

    python -m personagraph.personas.intent_classifier --cv "Who wrote Orbit?" "오늘 뭐 했어?"
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from personagraph.memory.embeddings import DIMS, E5EmbeddingFunction, embed_queries, embed_queries_cached
from personagraph.serving.cache_files import (
    array_json,
    checked_array,
    json_array,
    keyed_cache_path,
    load_or_build_arrays,
    string_list,
)
from personagraph.serving.settings import get_settings

ChatIntent = Literal["smalltalk", "knowledge", "story", "personal"]
INTENTS: tuple[str, ...] = get_args(ChatIntent)
RANDOM_STATE = 0
# At or above this probability the classifier's intent is used as is; below it the router model is
# asked. Chosen with --cv: about nine in ten messages are decided here, and those are right about
# 95% of the time; most of the rest of its mistakes are knowledge vs story (both search the persona's
# stores).
CONFIDENT_PROBABILITY = 0.5
EMBEDDING_WEIGHT = 2.0  # scale of the e5 embedding next to the TF-IDF n-grams (chosen with --cv)
STORED_FORMAT = 1  # the cache file's layout; a file of another version is rebuilt


def train_path() -> Path:
    return get_settings().data_dir / "chat" / "intent_train.jsonl"


@dataclass(frozen=True)
class LabelledMessage:
    message: str
    intent: str


def parse_rows(content: str, source: str) -> list[LabelledMessage]:
    """Training rows `{"message": ..., "intent": ...}`; ValueError naming the file and line otherwise."""
    rows = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            message, intent = row["message"], row["intent"]
            if not isinstance(message, str) or not message.strip():
                raise ValueError("message must be a non-empty string")
            if intent not in INTENTS:
                raise ValueError(f"intent must be one of {', '.join(INTENTS)}; got {intent!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{source}:{number}: bad training message: {exc}") from exc
        rows.append(LabelledMessage(message, intent))
    return rows


@dataclass
class ChatIntentClassifier:
    """Character and word n-gram TF-IDF and the e5 embedding, then multinomial logistic regression."""

    char_vectoriser: Any
    word_vectoriser: Any
    model: Any

    def _matrix(self, texts: Sequence[str], fit: bool = False) -> Any:
        import scipy.sparse as sp

        lowered = [" ".join(t.lower().split()) for t in texts]
        if fit:
            parts = [self.char_vectoriser.fit_transform(lowered), self.word_vectoriser.fit_transform(lowered)]
        else:
            parts = [self.char_vectoriser.transform(lowered), self.word_vectoriser.transform(lowered)]
        # A training set is embedded once and kept on disk; a single message costs one embedding.
        embedded = embed_queries_cached(texts) if fit else embed_queries(texts)
        return sp.hstack([*parts, EMBEDDING_WEIGHT * sp.csr_matrix(embedded)]).tocsr()

    def fit(self, rows: Sequence[LabelledMessage]) -> ChatIntentClassifier:
        self.model.fit(self._matrix([r.message for r in rows], fit=True), [r.intent for r in rows])
        return self

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(intent, probability) per text."""
        probabilities = self.model.predict_proba(self._matrix(texts))
        classes = list(self.model.classes_)
        return [(str(classes[row.argmax()]), float(row.max())) for row in probabilities]

    def to_arrays(self) -> dict[str, Any]:
        import numpy as np

        return {
            "meta": json_array(
                {
                    "format": STORED_FORMAT,
                    "char_terms": _terms_of(self.char_vectoriser),
                    "word_terms": _terms_of(self.word_vectoriser),
                    "classes": [str(c) for c in self.model.classes_],
                }
            ),  # fmt: skip
            "char_idf": np.asarray(self.char_vectoriser.idf_, float),
            "word_idf": np.asarray(self.word_vectoriser.idf_, float),
            "coef": np.asarray(getattr(self.model, "coef_", getattr(self.model, "coef", None)), float),
            "intercept": np.asarray(
                getattr(self.model, "intercept_", getattr(self.model, "intercept", None)), float
            ),
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> ChatIntentClassifier:
        """The classifier `to_arrays` stored; ValueError when anything is missing or does not fit."""
        meta = array_json(arrays, "meta")
        if not isinstance(meta, dict) or meta.get("format") != STORED_FORMAT:
            raise ValueError("not a stored chat intent classifier of this version")
        char_terms = string_list(meta.get("char_terms"), "char_terms")
        word_terms = string_list(meta.get("word_terms"), "word_terms")
        classes = string_list(meta.get("classes"), "classes")
        if sorted(classes) != sorted(INTENTS):
            raise ValueError(f"classes must be {', '.join(INTENTS)}")
        fresh = build()
        for vectoriser, terms, key in (
            (fresh.char_vectoriser, char_terms, "char_idf"),
            (fresh.word_vectoriser, word_terms, "word_idf"),
        ):
            vectoriser.set_params(vocabulary={t: i for i, t in enumerate(terms)})
            vectoriser.idf_ = checked_array(arrays, key, 1, rows=len(terms))
        n_features = len(char_terms) + len(word_terms) + DIMS
        return cls(
            char_vectoriser=fresh.char_vectoriser,
            word_vectoriser=fresh.word_vectoriser,
            model=_Softmax(
                classes=classes,
                coef=checked_array(arrays, "coef", 2, rows=len(classes), columns=n_features),
                intercept=checked_array(arrays, "intercept", 1, rows=len(classes)),
            ),
        )


@dataclass(frozen=True)
class _Softmax:
    """Multinomial logistic regression from its parameters (what scikit-learn's predict_proba computes)."""

    classes: list[str]
    coef: Any  # (classes, features)
    intercept: Any  # (classes,)

    @property
    def classes_(self) -> list[str]:
        return self.classes

    def predict_proba(self, x: Any) -> Any:
        import numpy as np

        scores = np.asarray(x @ self.coef.T) + self.intercept
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)


def _terms_of(vectoriser: Any) -> list[str]:
    terms = [""] * len(vectoriser.vocabulary_)
    for term, column in vectoriser.vocabulary_.items():
        terms[column] = term
    return terms


def build() -> ChatIntentClassifier:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    return ChatIntentClassifier(
        char_vectoriser=TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True),
        word_vectoriser=TfidfVectorizer(
            analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+"
        ),
        model=LogisticRegression(C=5.0, max_iter=3000, random_state=RANDOM_STATE),
    )


@lru_cache(maxsize=2)
def _trained(content: str) -> ChatIntentClassifier:
    return load_or_build_arrays(
        _stored_model_path(content),
        # Scored through the stored form at once, so a fresh model and a loaded one answer alike.
        lambda: ChatIntentClassifier.from_arrays(
            build().fit(parse_rows(content, "<training set>")).to_arrays()
        ),
        decode=ChatIntentClassifier.from_arrays,
        encode=ChatIntentClassifier.to_arrays,
    )


def _stored_model_path(content: str) -> Path:
    """Keyed by everything training reads, so a change to the examples or this module retrains."""
    import sklearn

    key_parts = [
        content,
        Path(__file__).read_text(encoding="utf-8"),
        sklearn.__version__,
        E5EmbeddingFunction.name(),
    ]
    return keyed_cache_path("chat", "intent", ".npz", key_parts)


def trained() -> ChatIntentClassifier | None:
    """The classifier trained on the shipped file, or None when there is none."""
    path = train_path()
    if not path.is_file():
        return None
    content = path.read_text(encoding="utf-8")
    try:
        return _trained(content)
    except ValueError:
        parse_rows(content, str(path))  # names the file and line of a bad row
        raise


def trained_model_file() -> Path | None:
    """Train (or load) the classifier; where it is kept on disk (None: no training file)."""
    if trained() is None:
        return None
    return _stored_model_path(train_path().read_text(encoding="utf-8"))


def classify(text: str) -> tuple[str, float] | None:
    """(intent, probability) for one fan message; None when no classifier is shipped."""
    model = trained()
    return None if model is None else model.predict([text])[0]


def cross_validate(
    rows: Sequence[LabelledMessage], folds: int = 5, threshold: float = CONFIDENT_PROBABILITY
) -> dict[str, Any]:
    """Held-out accuracy overall, the share of messages at or above `threshold` (decided without the
    router model) and the accuracy on those."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    labels = [r.intent for r in rows]
    right: list[bool] = []
    sure: list[bool] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=RANDOM_STATE)
    for train, test in splitter.split(np.zeros(len(rows)), labels):
        model = build().fit([rows[i] for i in train])
        held = [rows[i] for i in test]
        for row, (intent, probability) in zip(held, model.predict([r.message for r in held]), strict=True):
            right.append(intent == row.intent)
            sure.append(probability >= threshold)
    confident = [r for r, s in zip(right, sure, strict=True) if s]
    return {
        "n": len(rows), "folds": folds, "threshold": threshold,
        "accuracy": round(float(np.mean(right)), 4),
        "confident_share": round(float(np.mean(sure)), 4),
        "confident_accuracy": round(float(np.mean(confident)), 4) if confident else None,
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m personagraph.personas.intent_classifier")
    parser.add_argument("--cv", action="store_true", help="cross-validate on the training file")
    parser.add_argument("--threshold", type=float, default=CONFIDENT_PROBABILITY)
    parser.add_argument("message", nargs="*", help="fan messages to classify")
    args = parser.parse_args(argv)
    if args.cv:
        rows = parse_rows(train_path().read_text(encoding="utf-8"), str(train_path()))
        print(json.dumps(cross_validate(rows, threshold=args.threshold)))
    model = trained() if args.message else None
    for message in args.message:
        if model is not None:
            intent, probability = model.predict([message])[0]
            print(json.dumps({"message": message, "intent": intent, "probability": round(probability, 3)},
                             ensure_ascii=False))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
