"""The insight intent classifier's disk cache is plain arrays: a tampered file is rejected and
rebuilt, never executed, and the stored form answers like the scikit-learn models it came from."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from personagraph.insight import intent_classifier as ic

QUESTIONS = [
    "VIP 고객한테 보낼 푸시 문구 써줘",
    "Draft an SMS for our lapsed customers",
    "what are our vip customers like?",
    "신규 고객이랑 충성 고객 비교해줘",
    "hello",
]


def _training_content() -> str:
    lines = [
        line for p in ic.train_paths() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    return "\n".join(lines[::4])  # a quarter keeps it quick; every intent is still there


class _RunsCode:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_stored_form_answers_like_the_fitted_models() -> None:
    fitted = ic.build().fit(ic.parse_rows(_training_content(), "<train>"))
    stored = ic.IntentClassifier.from_arrays(fitted.to_arrays())
    x = fitted._text_matrix(QUESTIONS)
    assert stored.segment_model.predict_proba(x) == pytest.approx(
        fitted.segment_model.predict_proba(x), abs=1e-12
    )
    intent_x = fitted._intent_matrix(x, QUESTIONS, fitted._segments(x))
    assert stored.model.predict_proba(intent_x) == pytest.approx(
        fitted.model.predict_proba(intent_x), abs=1e-12
    )
    assert [i for i, _ in stored.predict(QUESTIONS)] == [i for i, _ in fitted.predict(QUESTIONS)]


def test_tampered_cache_file_is_rejected_and_rebuilt_never_executed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache" / "models"))
    content = _training_content()
    ic._trained.cache_clear()
    first = ic._trained(content).predict(QUESTIONS)
    (stored,) = (tmp_path / "cache" / "insight").glob("intent-*")
    assert stored.suffix == ".npz"

    marker = tmp_path / "code-ran"
    planted = pickle.dumps(_RunsCode(marker))
    stored.write_bytes(planted)
    ic._trained.cache_clear()  # a new process reads the file
    assert ic._trained(content).predict(QUESTIONS) == first  # rebuilt
    assert not marker.exists()
    assert stored.read_bytes() != planted
    with np.load(stored, allow_pickle=False) as arrays:  # replaced by plain arrays again
        ic.IntentClassifier.from_arrays(arrays)

    arrays = dict(np.load(stored, allow_pickle=False))
    arrays["intent_coef"] = arrays["intent_coef"][:, :-1]  # a column short: refused (and so rebuilt)
    with pytest.raises(ValueError, match="intent_coef"):
        ic.IntentClassifier.from_arrays(arrays)
    ic._trained.cache_clear()
