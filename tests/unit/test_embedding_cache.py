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


def test_documents_indexed_again_elsewhere_reuse_their_vectors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A persona's knowledge indexed into a second Chroma (a new home, a Chroma server) is not embedded
    again, and searches there find the same chunks as in the first."""
    import chromadb

    from personagraph.memory.vectors import Document, get_collection, index_documents, search

    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache" / "models"))
    get_settings.cache_clear()
    embedded: list[int] = []
    real = embeddings.embed_passages

    def counting(texts: list[str]) -> np.ndarray:
        embedded.append(len(texts))
        return real(texts)

    monkeypatch.setattr(embeddings, "embed_passages", counting)
    docs = [Document("Yuna's lightstick is a silver star.", {"source": "a"}),
            Document("유나의 데뷔곡은 '별빛'이다.", {"source": "b"})]  # fmt: skip
    found = []
    for place in ("first", "second"):
        collection = get_collection(chromadb.PersistentClient(path=str(tmp_path / place)), "kb_demo")
        assert index_documents(collection, docs, cache_embeddings=True) == 2
        found.append([hit.metadata["source"] for hit in search(collection, "데뷔곡이 뭐야?", k=2)])
    assert embedded == [2]  # the second index read the vectors from disk
    assert found[0] == found[1] and found[0][0] == "b"
