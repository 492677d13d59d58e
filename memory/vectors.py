"""Vector store: Chroma `PersistentClient` under the data directory, or `HttpClient` when CHROMA_URL is set.

Documents are chunked (about 512 tokens with 64 overlap) and embedded with the packaged multilingual
model. Every chunk keeps its metadata (source, category, ...), so answers can cite their sources.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast
from urllib.parse import urlparse

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings

from personagraph.memory.embeddings import E5EmbeddingFunction, embed_query
from personagraph.serving.settings import Settings, get_settings

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass
class Document:
    """A text with metadata (scalar values only, as Chroma requires)."""

    text: str
    metadata: dict[str, str | int | float | bool] = field(default_factory=dict)


@dataclass
class Hit:
    text: str
    metadata: Mapping[str, Any]
    score: float  # cosine similarity, higher is closer


def chroma_client(settings: Settings | None = None) -> ClientAPI:
    settings = settings or get_settings()
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or 8000,
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)


@lru_cache(maxsize=1)
def vector_client() -> ClientAPI:
    """One Chroma client per process, shared by every job (`vector_client.cache_clear()` after
    changing the settings)."""
    return chroma_client()


def get_collection(client: ClientAPI, name: str) -> Collection:
    return client.get_or_create_collection(
        name=name,
        embedding_function=cast(Any, E5EmbeddingFunction()),  # chroma's generic bound is narrower than needed
        metadata={"hnsw:space": "cosine"},
    )


def chunk_text(text: str, max_tokens: int = 512, overlap: int = 64) -> list[str]:
    """Split on paragraph boundaries into chunks of at most ~max_tokens word/punctuation tokens.

    A paragraph longer than a chunk is cut on token windows with `overlap` tokens repeated.
    """
    if overlap >= max_tokens:
        raise ValueError("overlap must be smaller than max_tokens")
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    chunks: list[str] = []
    current: list[str] = []
    current_len = 0
    for paragraph in paragraphs:
        n = len(_TOKEN.findall(paragraph))
        if n > max_tokens:
            if current:
                chunks.append("\n\n".join(current))
                current, current_len = [], 0
            words = paragraph.split()
            step = max(1, int(len(words) * (max_tokens - overlap) / n))
            window = max(1, int(len(words) * max_tokens / n))
            for start in range(0, len(words), step):
                chunks.append(" ".join(words[start : start + window]))
                if start + window >= len(words):
                    break
            continue
        if current and current_len + n > max_tokens:
            chunks.append("\n\n".join(current))
            # Overlap: carry the previous paragraph when it is short enough.
            tail = current[-1]
            tail_len = len(_TOKEN.findall(tail))
            fits = tail_len <= overlap and tail_len + n <= max_tokens
            current, current_len = ([tail], tail_len) if fits else ([], 0)
        current.append(paragraph)
        current_len += n
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def index_documents(
    collection: Collection, documents: Iterable[Document], *, max_tokens: int = 512, overlap: int = 64
) -> int:
    """Chunk and upsert documents; ids are content hashes, so re-indexing is idempotent."""
    ids: list[str] = []
    texts: list[str] = []
    metadatas: list[dict[str, Any]] = []
    for doc in documents:
        source = str(doc.metadata.get("source", ""))
        for i, chunk in enumerate(chunk_text(doc.text, max_tokens, overlap)):
            ids.append(hashlib.sha1(f"{source}\x00{i}\x00{chunk}".encode()).hexdigest())
            texts.append(chunk)
            metadatas.append({**doc.metadata, "chunk": i})
    for start in range(0, len(ids), 64):
        collection.upsert(
            ids=ids[start : start + 64],
            documents=texts[start : start + 64],
            metadatas=metadatas[start : start + 64],  # type: ignore[arg-type]
        )
    return len(ids)


def search(
    collection: Collection, query: str, *, k: int = 4, where: Mapping[str, Any] | None = None
) -> list[Hit]:
    """Top-k chunks for a query (query embedded with the e5 `query:` prefix)."""
    if collection.count() == 0:
        return []
    result = collection.query(
        query_embeddings=[embed_query(query).tolist()],
        n_results=min(k, collection.count()),
        where=dict(where) if where else None,
        include=["documents", "metadatas", "distances"],
    )
    docs: Sequence[str] = (result.get("documents") or [[]])[0]
    metas: Sequence[Mapping[str, Any]] = (result.get("metadatas") or [[]])[0]
    dists: Sequence[float] = (result.get("distances") or [[]])[0]
    return [
        Hit(text=d, metadata=m or {}, score=1.0 - float(s))
        for d, m, s in zip(docs, metas, dists, strict=False)
    ]
