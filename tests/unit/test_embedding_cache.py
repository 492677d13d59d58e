"""The on-disk cache of a training set's embeddings (used by the safety classifier)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from personagraph.memory import embeddings
from personagraph.serving.settings import get_settings


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int]:
    """A cache under tmp_path, an empty in-process memo, and a count of texts actually embedded."""
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache" / "models"))
    get_settings.cache_clear()
    monkeypatch.setattr(embeddings, "_memo", {})
    calls: list[int] = []

    def fake(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.array([[float(len(t))] * embeddings.DIMS for t in texts], dtype=np.float32)

    monkeypatch.setattr(embeddings, "embed_queries", fake)
    return calls


def test_a_set_is_embedded_once_then_read_from_disk(
    counted: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["hi", "안녕하세요", "hi"]
    first = embeddings.embed_queries_cached(texts)
    assert first.shape == (3, embeddings.DIMS) and counted == [2]  # duplicates embedded once
    files = list((get_settings().model_cache_dir.parent / "embeddings").glob("queries-*.npy"))
    assert len(files) == 1
    monkeypatch.setattr(embeddings, "_memo", {})  # a new process: only the file is left
    again = embeddings.embed_queries_cached(texts)
    assert counted == [2] and np.array_equal(first, again)


def test_a_damaged_cache_file_is_recomputed(counted: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    embeddings.embed_queries_cached(["one", "two"])
    (path,) = (get_settings().model_cache_dir.parent / "embeddings").glob("queries-*.npy")
    path.write_bytes(b"not a numpy file")
    monkeypatch.setattr(embeddings, "_memo", {})
    out = embeddings.embed_queries_cached(["one", "two"])
    assert counted == [2, 2] and out.shape == (2, embeddings.DIMS)
    assert np.load(path).shape == (2, embeddings.DIMS)  # replaced by a good file
