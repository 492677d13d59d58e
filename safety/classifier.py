"""Layer 2 of input safety: a small text classifier trained from data/safety/train*.jsonl.

Features: TF-IDF character n-grams (1-5, within words) and word uni/bigrams of the normalised text
(the same `normalise` as the rules, so spacing, leet and jamo tricks look like the plain word), plus
one feature per non-blocking cue group of data/safety/rules.yaml that matches (and per pair of
groups), which lets the model weigh synonyms its training set never showed. A linear SVM with
sigmoid-calibrated probabilities gives P(unsafe) from these; an RBF-kernel SVM over multilingual
sentence embeddings gives a second P(unsafe) from meaning, and the two are averaged
(EMBEDDING_WEIGHT). A second linear SVM, trained on the unsafe examples only, names the category.
A message of several clauses is also scored clause by clause (`clauses`, CLAUSE_MARGIN), so unsafe
content hidden in friendly chat counts. It trains at first use (a few minutes on 2 cores, most of
it embedding the training set) and is cached in-process and on disk, keyed by everything training
reads; training is deterministic (fixed random state). The disk copy holds the fitted parameters as
plain arrays (an .npz loaded without pickle, `SafetyClassifier.to_arrays`): the cache folder is
shared, so a file there is data that is checked, never code that is run.

    classify("can I see what's under your dress")  # -> (True, "sexual", 0.9...)
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from personagraph.memory.embeddings import E5EmbeddingFunction, embed_queries, embed_queries_cached
from personagraph.safety.categories import CATEGORIES
from personagraph.safety.rules import match_cues, match_rules, normalise, rules_path
from personagraph.serving.cache_files import checked_array, keyed_cache_path, load_or_build_arrays
from personagraph.serving.settings import get_settings

# Block when P(unsafe) >= threshold; override with SAFETY_CLASSIFIER_THRESHOLD. Chosen on the
# scored blind sets 3-9 (3,771 messages from seven authors, none in training) to keep false blocks
# well under the goal of 3% for unseen data: 98.0% block / 1.9% false block there; lower thresholds
# bought a few tenths of block for more false blocks. Cross-validation on the training set (`python
# -m personagraph.safety.classifier --cv`) overstates false blocks: that data is weighted to hard negatives.
DEFAULT_THRESHOLD = 0.55
THRESHOLD_ENV = "SAFETY_CLASSIFIER_THRESHOLD"
RANDOM_STATE = 0
EMBEDDING_WEIGHT = 0.4  # share of the embedding model in P(unsafe) (chosen on the scored blind sets)
CUE_WEIGHT = 0.5  # scale of the cue-group features next to the TF-IDF character n-grams
# A clause of a longer message ("love the album!! btw what's the dorm door code lol") is also
# scored alone, but must clear the threshold by this margin: a message of n clauses gives n chances
# of a false alarm. Chosen with the threshold and EMBEDDING_WEIGHT on the scored blind sets
# (0.25-0.3 block the most at an equal false-block rate there), and `--cv --wrapped` shows what it
# buys on unsafe lines hidden in safe chat.
CLAUSE_MARGIN = 0.3
MIN_CLAUSE_CHARS = 4  # word characters; shorter pieces ("ㅋㅋ", "ok") carry no meaning alone
_CLAUSE_BREAK = re.compile(
    r"(?<=[.!?~…。])\s+|\n+|(?:[ㅋㅎㅠㅜ]{2,}|[!?]{2,}|\blol\b|\blmao\b)\s*"
    r"|\s+(?=(?:근데|그런데|그리고|암튼|아무튼|그나저나|아 맞다|btw|anyway|anyways|but|also|oh and|by the way)\b)",
    re.IGNORECASE,
)
_WORD_CHARS = re.compile(r"\w")


@dataclass(frozen=True)
class Example:
    text: str
    unsafe: bool
    category: str


def train_paths() -> list[Path]:
    """The training files: every `train*.jsonl` under data/safety (train.jsonl, train_more.jsonl, ...)."""
    return sorted((get_settings().data_dir / "safety").glob("train*.jsonl"))


def load_training_examples(paths: Sequence[Path] | None = None) -> list[Example]:
    return [e for path in (paths or train_paths()) for e in load_examples(path)]


def load_examples(path: Path) -> list[Example]:
    """Labelled examples from a JSONL file; a bad line is an error that names the line."""
    return parse_examples(path.read_text(encoding="utf-8"), source=str(path))


def parse_examples(content: str, source: str = "<examples>") -> list[Example]:
    examples = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            unsafe = row["unsafe"]
            if not isinstance(unsafe, bool) or not isinstance(row["text"], str):
                raise ValueError("'text' must be a string and 'unsafe' a boolean")
            category = str(row.get("category") or ("unsafe" if unsafe else "safe"))
            if unsafe == (category == "safe") or category not in CATEGORIES:
                raise ValueError(f"category {category!r} does not fit unsafe={unsafe}")
            examples.append(Example(text=row["text"], unsafe=unsafe, category=category))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{source}:{number}: bad training example: {exc}") from exc
    return examples


def features(text: str) -> tuple[str, str]:
    """What the vectorisers see: (normal form, cue groups as words).

    The normal form is the spaced one, plus the compact one when they differ (so "죽 고 싶 어" and
    "f.u.c.k" also show their joined-up n-grams).
    """
    spaced, compact = normalise(text)
    shown = spaced if compact == spaced.replace(" ", "") else f"{spaced} {compact}"
    return shown, " ".join(match_cues(text, forms=(spaced, compact)))


def clauses(text: str) -> list[str]:
    """The clauses of a message of two or more (split at sentence ends, laughter and connectors
    such as 근데 / btw / anyway); [] for a one-clause message."""
    parts = [p.strip(" ,") for p in _CLAUSE_BREAK.split(text) if p and p.strip(" ,")]
    parts = [p for p in parts if len(_WORD_CHARS.findall(p)) >= MIN_CLAUSE_CHARS]
    return parts if len(parts) >= 2 else []


# The cache file's layout; a file of another version is rebuilt.
STORED_FORMAT = 1


def text_vectoriser(vocabulary: dict[str, int] | None = None) -> Any:
    """TF-IDF of character n-grams (1-5, within words); with `vocabulary`, one already fitted."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True, vocabulary=vocabulary)


def word_vectoriser(vocabulary: dict[str, int] | None = None) -> Any:
    """Word uni- and bigrams carry phrasing that character n-grams split ("before i go")."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"\S+", vocabulary=vocabulary
    )


def cue_vectoriser(vocabulary: dict[str, int] | None = None) -> Any:
    """Single cue groups and pairs of them ("sh_method sh_finality"): the pairs carry intent."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(
        binary=True, token_pattern=r"\S+", lowercase=False, ngram_range=(1, 2), vocabulary=vocabulary
    )


def feature_matrix(vectorisers: Sequence[Any], rows: Sequence[tuple[str, str]], *, fit: bool = False) -> Any:
    """The classifiers' input: (character n-grams, word n-grams, weighted cue groups) side by side."""
    import scipy.sparse as sp

    texts, cues = [r[0] for r in rows], [r[1] for r in rows]
    chars, words, groups = vectorisers
    transform = "fit_transform" if fit else "transform"
    return sp.hstack(
        [
            getattr(chars, transform)(texts),
            getattr(words, transform)(texts),
            CUE_WEIGHT * getattr(groups, transform)(cues),
        ]
    ).tocsr()


@dataclass
class SafetyModels:
    """The scikit-learn estimators that training fits; `fit` turns them into a SafetyClassifier."""

    text_vectoriser: Any
    word_vectoriser: Any
    cue_vectoriser: Any
    unsafe_model: Any
    category_model: Any
    # P(unsafe) from multilingual sentence embeddings: they carry meaning that shares no n-gram with
    # the training lines ("I won't need my photocards anymore"); averaged with the n-gram model. An
    # RBF kernel, because unsafe meanings form many small neighbourhoods rather than one side of a
    # plane: on the scored blind sets it blocks about 3 points more than a logistic regression at
    # the same false-block rate.
    embedding_model: Any = None

    def fit(self, examples: Sequence[Example]) -> SafetyClassifier:
        import numpy as np

        vectorisers = (self.text_vectoriser, self.word_vectoriser, self.cue_vectoriser)
        matrix = feature_matrix(vectorisers, [features(e.text) for e in examples], fit=True)
        unsafe = np.array([e.unsafe for e in examples])
        self.unsafe_model.fit(matrix, unsafe)
        if self.embedding_model is not None:
            self.embedding_model.fit(embed_queries_cached([e.text for e in examples]), unsafe)
        self.category_model.fit(matrix[unsafe], [e.category for e in examples if e.unsafe])
        return SafetyClassifier.from_fitted(self)


def _vocabulary_terms(vectoriser: Any) -> list[str]:
    """A fitted vectoriser's terms in column order."""
    terms = [""] * len(vectoriser.vocabulary_)
    for term, column in vectoriser.vocabulary_.items():
        terms[column] = term
    return terms


def _calibrated_parts(model: Any) -> list[tuple[Any, float, float]]:
    """(binary estimator, a, b) per fold of a sigmoid-calibrated classifier: P(True) of a decision
    value f is 1 / (1 + exp(a * f + b)), averaged over the folds (as scikit-learn does)."""
    if list(model.classes_) != [False, True]:
        raise ValueError(f"expected classes [False, True], got {list(model.classes_)}")
    parts = []
    for calibrated in model.calibrated_classifiers_:
        (calibrator,) = calibrated.calibrators
        parts.append((calibrated.estimator, float(calibrator.a_), float(calibrator.b_)))
    return parts


def _sigmoid(values: Any, a: Any, b: Any) -> Any:
    import numpy as np

    return 1.0 / (1.0 + np.exp(a * values + b))


@dataclass
class SafetyClassifier:
    """The trained classifier as plain arrays: vocabularies, IDF weights, linear and kernel model
    parameters. Scoring needs nothing else, and the disk cache stores exactly these (an .npz read
    without pickle, see `to_arrays`), so a file in the shared cache folder is data, never code.

    Binary unsafe/safe models with calibrated probabilities (linear over n-grams, RBF kernel over
    sentence embeddings) and a linear category model over unsafe text.
    """

    text_terms: list[str]
    text_idf: Any  # (n_text,)
    word_terms: list[str]
    word_idf: Any  # (n_word,)
    cue_terms: list[str]
    # The n-gram model: one calibrated linear SVM per calibration fold.
    unsafe_coef: Any  # (folds, n_features)
    unsafe_intercept: Any  # (folds,)
    unsafe_sigmoid: Any  # (folds, 2): a, b
    category_names: list[str]
    category_coef: Any  # (categories, n_features)
    category_intercept: Any  # (categories,)
    # The meaning model: an RBF-kernel SVM over sentence embeddings (None: not used).
    support_vectors: Any = None  # (n_support, dim)
    dual_coef: Any = None  # (n_support,)
    kernel_intercept: float = 0.0
    kernel_gamma: float = 0.0
    kernel_sigmoid: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self._vectorisers: tuple[Any, Any, Any] | None = None

    @classmethod
    def from_fitted(cls, models: SafetyModels) -> SafetyClassifier:
        import numpy as np

        unsafe = _calibrated_parts(models.unsafe_model)
        category = models.category_model
        names = [str(c) for c in category.classes_]
        coef, intercept = np.asarray(category.coef_, float), np.asarray(category.intercept_, float)
        if len(names) == 2:  # a binary LinearSVC keeps one row: positive means the second class
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        kernel: dict[str, Any] = {}
        if models.embedding_model is not None:
            ((svm, a, b),) = _calibrated_parts(models.embedding_model)
            kernel = {
                "support_vectors": np.asarray(svm.support_vectors_, float),
                "dual_coef": np.asarray(svm.dual_coef_, float)[0],
                "kernel_intercept": float(svm.intercept_[0]),
                "kernel_gamma": float(svm._gamma),  # the value `gamma="scale"` came to at fit time
                "kernel_sigmoid": (a, b),
            }
        return cls(
            text_terms=_vocabulary_terms(models.text_vectoriser),
            text_idf=np.asarray(models.text_vectoriser.idf_, float),
            word_terms=_vocabulary_terms(models.word_vectoriser),
            word_idf=np.asarray(models.word_vectoriser.idf_, float),
            cue_terms=_vocabulary_terms(models.cue_vectoriser),
            unsafe_coef=np.vstack([np.asarray(e.coef_, float)[0] for e, _, _ in unsafe]),
            unsafe_intercept=np.array([float(e.intercept_[0]) for e, _, _ in unsafe]),
            unsafe_sigmoid=np.array([[a, b] for _, a, b in unsafe]),
            category_names=names,
            category_coef=coef,
            category_intercept=intercept,
            **kernel,
        )

    def to_arrays(self) -> dict[str, Any]:
        """Plain numeric arrays (the terms and names as UTF-8 JSON bytes) for `numpy.savez`."""
        import numpy as np

        meta = {
            "format": STORED_FORMAT,
            "text_terms": self.text_terms,
            "word_terms": self.word_terms,
            "cue_terms": self.cue_terms,
            "category_names": self.category_names,
            "kernel": None
            if self.support_vectors is None
            else {
                "intercept": self.kernel_intercept,
                "gamma": self.kernel_gamma,
                "sigmoid": list(self.kernel_sigmoid),
            },
        }
        arrays = {
            "meta": np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
            "text_idf": self.text_idf,
            "word_idf": self.word_idf,
            "unsafe_coef": self.unsafe_coef,
            "unsafe_intercept": self.unsafe_intercept,
            "unsafe_sigmoid": self.unsafe_sigmoid,
            "category_coef": self.category_coef,
            "category_intercept": self.category_intercept,
        }
        if self.support_vectors is not None:
            arrays |= {"support_vectors": self.support_vectors, "dual_coef": self.dual_coef}
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Any) -> SafetyClassifier:
        """The classifier `to_arrays` stored; ValueError when anything is missing or does not fit
        (a damaged, tampered or outdated file), so the caller rebuilds it."""
        try:
            meta = json.loads(bytes(checked_array(arrays, "meta", 1, kind="u")).decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != STORED_FORMAT:
                raise ValueError("not a stored safety classifier of this version")
            text_terms, word_terms, cue_terms, names = (
                _terms(meta.get(key)) for key in ("text_terms", "word_terms", "cue_terms", "category_names")
            )
            n_features = len(text_terms) + len(word_terms) + len(cue_terms)
            unsafe_coef = checked_array(arrays, "unsafe_coef", 2, columns=n_features)
            folds = len(unsafe_coef)
            category_coef = checked_array(arrays, "category_coef", 2, rows=len(names), columns=n_features)
            kernel: dict[str, Any] = {}
            if meta.get("kernel") is not None:
                support_vectors = checked_array(arrays, "support_vectors", 2)
                sigmoid = meta["kernel"]["sigmoid"]
                kernel = {
                    "support_vectors": support_vectors,
                    "dual_coef": checked_array(arrays, "dual_coef", 1, rows=len(support_vectors)),
                    "kernel_intercept": _number(meta["kernel"]["intercept"]),
                    "kernel_gamma": _number(meta["kernel"]["gamma"]),
                    "kernel_sigmoid": (_number(sigmoid[0]), _number(sigmoid[1])),
                }
            return cls(
                text_terms=text_terms,
                text_idf=checked_array(arrays, "text_idf", 1, rows=len(text_terms)),
                word_terms=word_terms,
                word_idf=checked_array(arrays, "word_idf", 1, rows=len(word_terms)),
                cue_terms=cue_terms,
                unsafe_coef=unsafe_coef,
                unsafe_intercept=checked_array(arrays, "unsafe_intercept", 1, rows=folds),
                unsafe_sigmoid=checked_array(arrays, "unsafe_sigmoid", 2, rows=folds, columns=2),
                category_names=names,
                category_coef=category_coef,
                category_intercept=checked_array(arrays, "category_intercept", 1, rows=len(names)),
                **kernel,
            )
        except (KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a stored safety classifier: {exc!r}") from exc

    def vectorisers(self) -> tuple[Any, Any, Any]:
        """The fitted vectorisers, rebuilt from the terms and IDF weights on first use."""
        if self._vectorisers is None:
            chars = text_vectoriser({t: i for i, t in enumerate(self.text_terms)})
            chars.idf_ = self.text_idf
            words = word_vectoriser({t: i for i, t in enumerate(self.word_terms)})
            words.idf_ = self.word_idf
            self._vectorisers = (chars, words, cue_vectoriser({t: i for i, t in enumerate(self.cue_terms)}))
        return self._vectorisers

    def matrix(self, texts: Sequence[str]) -> Any:
        return feature_matrix(self.vectorisers(), [features(t) for t in texts])

    def unsafe_probability(self, matrix: Any, texts: Sequence[str]) -> Any:
        """P(unsafe) per row: the calibrated n-gram model, averaged with the embedding model."""
        import numpy as np

        decisions = np.asarray(matrix @ self.unsafe_coef.T) + self.unsafe_intercept  # (n, folds)
        by_ngrams = _sigmoid(decisions, self.unsafe_sigmoid[:, 0], self.unsafe_sigmoid[:, 1]).mean(axis=1)
        if self.support_vectors is None:
            return by_ngrams
        vectors = np.asarray(embed_queries(list(texts)), float)
        distances = (
            (vectors**2).sum(axis=1)[:, None]
            + (self.support_vectors**2).sum(axis=1)[None, :]
            - 2.0 * vectors @ self.support_vectors.T
        )
        kernel = np.exp(-self.kernel_gamma * np.maximum(distances, 0.0))
        by_meaning = _sigmoid(kernel @ self.dual_coef + self.kernel_intercept, *self.kernel_sigmoid)
        return (1 - EMBEDDING_WEIGHT) * by_ngrams + EMBEDDING_WEIGHT * by_meaning

    def whole_scores(self, texts: Sequence[str]) -> list[tuple[float, str]]:
        """(P(unsafe), most likely unsafe category) for each text as a whole."""
        import numpy as np

        if not texts:
            return []
        matrix = self.matrix(texts)
        probabilities = self.unsafe_probability(matrix, texts)
        best = np.asarray(matrix @ self.category_coef.T + self.category_intercept).argmax(axis=1)
        return [(float(p), self.category_names[int(c)]) for p, c in zip(probabilities, best, strict=True)]

    def scores(self, texts: Sequence[str]) -> list[tuple[float, str]]:
        """(P(unsafe), category) for each text: the whole text's score, or its most unsafe clause's
        score less CLAUSE_MARGIN when that is higher (unsafe content hidden in friendly chat)."""
        split = [clauses(t) for t in texts]
        # One batch for the texts and their clauses, each distinct string once: a one-clause message
        # is its own clause, and the sentence embedding is most of a message's cost.
        unique = list(dict.fromkeys([*texts, *(c for cs in split for c in cs)]))
        scored = dict(zip(unique, self.whole_scores(unique), strict=True))
        out = []
        for text, cs in zip(texts, split, strict=True):
            whole = scored[text]
            best = max((scored[c] for c in cs), default=(0.0, "safe"))
            clause = (best[0] - CLAUSE_MARGIN, best[1])
            out.append(clause if clause[0] > whole[0] else whole)
        return out


def _terms(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValueError("expected a list of strings")
    if len(set(value)) != len(value):
        raise ValueError("repeated terms")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def build_model() -> SafetyModels:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import SVC, LinearSVC

    return SafetyModels(
        text_vectoriser=text_vectoriser(),
        word_vectoriser=word_vectoriser(),
        cue_vectoriser=cue_vectoriser(),
        unsafe_model=CalibratedClassifierCV(
            LinearSVC(C=1.0, class_weight="balanced", random_state=RANDOM_STATE),
            method="sigmoid",
            cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=RANDOM_STATE),
        ),
        category_model=LinearSVC(C=1.0, class_weight="balanced", random_state=RANDOM_STATE),
        embedding_model=CalibratedClassifierCV(
            # Training time is most of a fresh setup's: a kernel cache that holds the whole kernel
            # matrix (libsvm takes only what it uses, ~1.4 GB for 19k lines) and a looser stopping
            # tolerance (decision values within 0.01 of the default's): 377 s -> 145 s on 2 cores.
            SVC(C=30.0, class_weight="balanced", cache_size=2000, tol=1e-2),
            method="sigmoid",
            ensemble=False,
            cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=RANDOM_STATE),
        ),
    )


def fit(examples: Sequence[Example]) -> SafetyClassifier:
    return build_model().fit(examples)


_SOURCE = "<training set>"


@lru_cache(maxsize=4)
def _trained(content: str) -> SafetyClassifier:
    return load_or_build_arrays(
        _stored_model_path(content),
        lambda: fit(parse_examples(content, source=_SOURCE)),
        decode=SafetyClassifier.from_arrays,
        encode=SafetyClassifier.to_arrays,
    )


def _stored_model_path(content: str) -> Path:
    """Where the classifier trained on `content` is kept: keyed by everything training reads (the
    examples, rules.yaml for the cue groups, the code that turns text into features and builds the
    model, the scikit-learn version and the embedding model), so any change there retrains."""
    import sklearn

    from personagraph.safety import rules as safety_rules

    key_parts = [
        content,
        rules_path().read_text(encoding="utf-8"),
        Path(__file__).read_text(encoding="utf-8"),
        Path(safety_rules.__file__).read_text(encoding="utf-8"),
        sklearn.__version__,
        E5EmbeddingFunction.name(),
    ]
    return keyed_cache_path("safety", "classifier", ".npz", key_parts)


_read_cache: dict[tuple[tuple[str, int, int], ...], list[str]] = {}


def _read_training_files(paths: Sequence[Path]) -> list[str]:
    """The files' texts, read again only when one changed (size or mtime): every message asks for
    the model, and reading and hashing ~2 MB of training text each time cost more than its n-grams."""
    stamp = tuple((str(p), (st := p.stat()).st_mtime_ns, st.st_size) for p in paths)
    if stamp not in _read_cache:
        _read_cache.clear()
        _read_cache[stamp] = [p.read_text(encoding="utf-8") for p in paths]
    return _read_cache[stamp]


def trained_model(path: Path | None = None) -> SafetyClassifier:
    """The classifier trained on `path` (default: the shipped training files), cached in-process by
    content, so an edited file retrains and a copy of it does not."""
    paths = [path] if path is not None else train_paths()
    if not paths:
        raise ValueError(
            f"no training file: expected data/safety/train*.jsonl under {get_settings().data_dir}"
        )
    contents = _read_training_files(paths)
    try:
        return _trained("\n".join(c.rstrip("\n") for c in contents))
    except ValueError:
        for p, content in zip(paths, contents, strict=True):  # name the file and line of the bad example
            parse_examples(content, source=str(p))
        raise


def trained_model_file() -> Path:
    """Train (or load) the classifier on the shipped training files; where it is kept on disk."""
    trained_model()
    content = "\n".join(p.read_text(encoding="utf-8").rstrip("\n") for p in train_paths())
    return _stored_model_path(content)


def threshold_setting() -> float:
    raw = os.environ.get(THRESHOLD_ENV, "").strip()
    if not raw:
        return DEFAULT_THRESHOLD
    value = float(raw)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{THRESHOLD_ENV} must be in (0, 1], got {raw!r}")
    return value


def classify(
    text: str, *, threshold: float | None = None, model: SafetyClassifier | None = None
) -> tuple[bool, str, float]:
    """(unsafe, category, P(unsafe)); category is "safe" when P(unsafe) is below the threshold."""
    threshold = threshold_setting() if threshold is None else threshold
    ((probability, category),) = (model or trained_model()).scores([text])
    unsafe = probability >= threshold
    return unsafe, (category if unsafe else "safe"), round(probability, 4)


_JOINS = {
    "ko": (" ", "!! ", " 근데 ", " 암튼 ", ". ", " ㅋㅋ "),
    "en": (" ", "!! ", " btw ", " anyway ", ". ", " lol "),
}


def wrapped(examples: Sequence[Example], seed: int = 1) -> list[Example]:
    """Each example between short safe lines of the same language, taken from `examples` ("love the
    album!! btw <text> anyway good night"): unsafe content hidden in friendly chat keeps its label."""
    import random

    from personagraph.serving.language import detect_language

    rng = random.Random(seed)
    pool: dict[str, list[str]] = {"ko": [], "en": []}
    for e in examples:
        if not e.unsafe and len(e.text) < 60:
            pool[detect_language(e.text)].append(e.text)
    out = []
    for e in examples:
        lang = detect_language(e.text)
        if not pool[lang]:
            continue
        text = rng.choice(pool[lang]) + rng.choice(_JOINS[lang]) + e.text
        if rng.random() < 0.5:
            text += rng.choice(_JOINS[lang]) + rng.choice(pool[lang])
        out.append(Example(text=text, unsafe=e.unsafe, category=e.category))
    return out


def cross_validate(
    examples: Sequence[Example], folds: int = 5, threshold: float | None = None, wrap: bool = False
) -> dict:
    """Stratified k-fold estimate of block rate (on unsafe) and false-block rate (on safe), for the
    classifier alone and for the rules followed by the classifier (the input filter without judge).
    With `wrap`, also for the held-out examples wrapped in held-out safe lines (see `wrapped`)."""
    from sklearn.model_selection import StratifiedKFold

    threshold = threshold_setting() if threshold is None else threshold
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=RANDOM_STATE)
    labels = [e.category for e in examples]
    embed_queries_cached([e.text for e in examples])  # once: the folds' subsets reuse these vectors
    blocked = {"classifier": [0, 0], "layered": [0, 0], "wrapped": [0, 0]}  # [unsafe, safe] blocked
    right_category = 0
    n_wrapped = [0, 0]
    for train_index, test_index in splitter.split(labels, labels):
        model = fit([examples[i] for i in train_index])
        held = [examples[i] for i in test_index]
        for example, (p, category) in zip(held, model.scores([e.text for e in held]), strict=True):
            by_classifier = p >= threshold
            by_either = by_classifier or bool(match_rules(example.text))
            column = 0 if example.unsafe else 1
            blocked["classifier"][column] += by_classifier
            blocked["layered"][column] += by_either
            right_category += example.unsafe and by_classifier and category == example.category
        if wrap:
            hidden = wrapped(held)
            for example, (p, _) in zip(hidden, model.scores([e.text for e in hidden]), strict=True):
                column = 0 if example.unsafe else 1
                n_wrapped[column] += 1
                blocked["wrapped"][column] += p >= threshold or bool(match_rules(example.text))
    n_unsafe = sum(e.unsafe for e in examples)
    n_safe = len(examples) - n_unsafe

    def rate(count: int, total: int) -> float:
        return round(count / total, 4) if total else 0.0

    result = {
        "folds": folds,
        "threshold": threshold,
        "n": len(examples),
        "block_rate": rate(blocked["classifier"][0], n_unsafe),
        "false_block_rate": rate(blocked["classifier"][1], n_safe),
        "rules_then_classifier": {
            "block_rate": rate(blocked["layered"][0], n_unsafe),
            "false_block_rate": rate(blocked["layered"][1], n_safe),
        },
        "category_accuracy_on_blocked": rate(right_category, blocked["classifier"][0]),
    }
    if wrap:
        result["wrapped_in_safe_lines"] = {
            "block_rate": rate(blocked["wrapped"][0], n_wrapped[0]),
            "false_block_rate": rate(blocked["wrapped"][1], n_wrapped[1]),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m personagraph.safety.classifier --cv [--threshold T]`: cross-validation on the training set."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m personagraph.safety.classifier")
    parser.add_argument("--cv", action="store_true", help="5-fold cross-validation on train.jsonl")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threshold", type=float, action="append", default=None)
    parser.add_argument(
        "--wrapped", action="store_true", help="also score held-out lines hidden between safe lines"
    )
    parser.add_argument(
        "--train", type=Path, action="append", default=None, help="default: data/safety/train*.jsonl"
    )
    args = parser.parse_args(argv)
    examples = load_training_examples(args.train)
    for threshold in args.threshold or [threshold_setting()]:
        print(json.dumps(cross_validate(examples, args.folds, threshold, wrap=args.wrapped)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
