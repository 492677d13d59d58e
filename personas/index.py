"""Index a persona's knowledge and story into Chroma.

    python -m personagraph.personas.index [--persona ID ...]     (also: personagraph index)

Runs automatically on first use: a collection whose stored fingerprint differs from the persona's
files and the chunking (memory/vectors.py CHUNKING) is rebuilt, so edits to the shipped documents
and an upgrade that chunks differently are picked up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading

from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection

from personagraph.memory.embeddings import E5EmbeddingFunction
from personagraph.memory.vectors import CHUNKING, Document, chroma_client, get_collection, index_documents
from personagraph.personas.model import list_personas, load_knowledge, load_story, persona_dir

_lock = threading.Lock()


def knowledge_collection_name(persona_id: str) -> str:
    return f"kb_{persona_id}"


def story_collection_name(persona_id: str) -> str:
    return f"story_{persona_id}"


def fingerprint(persona_id: str) -> str:
    """The persona's files and how they are chunked and embedded: a change to either re-indexes."""
    digest = hashlib.sha256()
    digest.update(f"{CHUNKING}\x00{E5EmbeddingFunction.name()}\x00".encode())
    folder = persona_dir(persona_id)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in {".md", ".yaml", ".yml", ".json"}:
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def knowledge_documents(persona_id: str) -> list[Document]:
    return [
        Document(
            text=f"# {doc.title}\n\n{doc.text}",
            metadata={"source": doc.source, "title": doc.title, "category": doc.category, "lang": doc.lang},
        )
        for doc in load_knowledge(persona_id)
    ]


def story_documents(persona_id: str) -> list[Document]:
    docs = []
    for event in load_story(persona_id).events:
        text = f"[{event.index}] {event.date} {event.title}\n{event.summary}"
        if event.summary_ko:
            text += f"\n{event.title_ko} — {event.summary_ko}"
        docs.append(
            Document(
                text=text,
                metadata={"source": f"{persona_id}/story.yaml#{event.index}", "index": event.index,
                          "title": event.title, "category": "story"},
            )
        )  # fmt: skip
    return docs


def _rebuild(client: ClientAPI, name: str, documents: list[Document], stamp: str) -> Collection:
    existing = {c.name for c in client.list_collections()}
    if name in existing:
        collection = get_collection(client, name)
        if (collection.metadata or {}).get("fingerprint") == stamp:
            return collection
        client.delete_collection(name)
    collection = get_collection(client, name)
    index_documents(collection, documents, cache_embeddings=True)  # re-indexed elsewhere: vectors reused
    # Stamped only after indexing finished, so an interrupted build is redone next time.
    collection.modify(metadata={"fingerprint": stamp})
    return collection


def ensure_persona_index(client: ClientAPI, persona_id: str) -> tuple[Collection, Collection]:
    """Knowledge and story collections for a persona, built or rebuilt when its files changed."""
    with _lock:
        stamp = fingerprint(persona_id)
        kb = _rebuild(client, knowledge_collection_name(persona_id), knowledge_documents(persona_id), stamp)
        story = _rebuild(client, story_collection_name(persona_id), story_documents(persona_id), stamp)
        return kb, story


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Index persona knowledge and story into Chroma.")
    parser.add_argument("--persona", action="append", help="persona id (repeatable); default: all")
    args = parser.parse_args(argv)
    client = chroma_client()
    report = {}
    for persona_id in args.persona or list_personas():
        kb, story = ensure_persona_index(client, persona_id)
        report[persona_id] = {"knowledge_chunks": kb.count(), "story_events": story.count()}
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
