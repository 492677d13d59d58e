"""Vector store: Chroma `PersistentClient` under the data directory, or `HttpClient` when CHROMA_URL is set.

Documents are chunked by the embedding model's own token count (CHUNK_TOKENS with CHUNK_OVERLAP
repeated between neighbours, on paragraph, line, sentence and word boundaries) and embedded with the
packaged multilingual model. Every chunk keeps its metadata (source, category, ...), so answers can
cite their sources. A chunk longer than the e5 window (512 tokens) would be embedded as an average
of windows and match nothing well, and a long chunk is cut short in the draft prompt anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast
from urllib.parse import urlparse

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings

from personagraph.memory.embeddings import (
    E5EmbeddingFunction,
    embed_passages_cached,
    embed_query,
    token_count,
)
from personagraph.serving.settings import Settings, get_settings

CHUNK_TOKENS = 200  # about a retrieved document's share of the draft prompt's context budget
CHUNK_OVERLAP = 40
# Boundaries tried in order: paragraph, line, sentence (English and Korean endings), word, character.
_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "다. ", "요. ", "。", " ", ""]
# What the chunks of an index depend on: a change here re-indexes (personas/index.py fingerprint).
CHUNKING = f"e5-tokens/{CHUNK_TOKENS}/{CHUNK_OVERLAP}/{'|'.join(_SEPARATORS)}"


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


def chunk_text(text: str, max_tokens: int = CHUNK_TOKENS, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """Chunks of at most `max_tokens` e5 tokens (`token_count`), each starting with the last pieces of
    the one before (up to `overlap` tokens), cut out of the text as it is (paragraph breaks kept).

    The text is first cut into pieces of at most `overlap` tokens on the largest boundary that fits
    (paragraph, line, sentence, word; characters only for a longer word) by LangChain's recursive
    splitter, then the pieces are packed: small pieces are what make the overlap real (a splitter
    packing whole paragraphs carries none when a paragraph is longer than the overlap).
    """
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    if overlap >= max_tokens:
        raise ValueError("overlap must be smaller than max_tokens")
    if not text.strip():
        return []
    if token_count(text) <= max_tokens:
        return [text.strip()]
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=overlap,
        chunk_overlap=0,
        length_function=token_count,
        separators=_SEPARATORS,
        keep_separator="end",  # a sentence keeps its full stop
        add_start_index=True,
    )
    spans = [
        (int(piece.metadata["start_index"]), int(piece.metadata["start_index"]) + len(piece.page_content))
        for piece in splitter.create_documents([text])
    ]
    chunks: list[str] = []
    first = 0
    while first < len(spans):
        last = first + 1  # one past the last piece of this chunk
        while last < len(spans) and token_count(text[spans[first][0] : spans[last][1]]) <= max_tokens:
            last += 1
        chunks.append(text[spans[first][0] : spans[last - 1][1]].strip())
        if last == len(spans):
            break
        # The next chunk starts with this one's trailing pieces, as many as fit in `overlap` tokens.
        start = last
        while start - 1 > first and token_count(text[spans[start - 1][0] : spans[last - 1][1]]) <= overlap:
            start -= 1
        first = start
    return chunks


def index_documents(
    collection: Collection,
    documents: Iterable[Document],
    *,
    max_tokens: int = CHUNK_TOKENS,
    overlap: int = CHUNK_OVERLAP,
    cache_embeddings: bool = False,
) -> int:
    """Chunk and upsert documents; ids are content hashes, so re-indexing is idempotent. With
    `cache_embeddings` the chunks' embeddings are kept on disk (`embed_passages_cached`)."""
    ids: list[str] = []
    texts: list[str] = []
    metadatas: list[dict[str, Any]] = []
    for doc in documents:
        source = str(doc.metadata.get("source", ""))
        for i, chunk in enumerate(chunk_text(doc.text, max_tokens, overlap)):
            ids.append(hashlib.sha1(f"{source}\x00{i}\x00{chunk}".encode()).hexdigest())
            texts.append(chunk)
            metadatas.append({**doc.metadata, "chunk": i})
    vectors = embed_passages_cached(texts) if cache_embeddings and texts else None
    for start in range(0, len(ids), 64):
        collection.upsert(
            ids=ids[start : start + 64],
            documents=texts[start : start + 64],
            metadatas=metadatas[start : start + 64],  # type: ignore[arg-type]
            embeddings=None if vectors is None else vectors[start : start + 64],
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
