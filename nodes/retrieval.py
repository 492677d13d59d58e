"""Retrieval: intent decides which stores are searched.

knowledge -> the persona's world knowledge (Chroma); story -> story events up to the current point
of the story (Chroma, filtered by index); personal -> the fan's own memories (LangGraph store).
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from personagraph.memory.fan_memory import memories_namespace
from personagraph.memory.vectors import search, vector_client
from personagraph.nodes.context import ChatContext
from personagraph.nodes.state import ConversationState
from personagraph.personas.index import ensure_persona_index
from personagraph.personas.model import load_story

# Intents whose turn searches a store: documents (Chroma) for these, the fan's memories for personal.
DOCUMENT_INTENTS = ("knowledge", "story")
RETRIEVING_INTENTS = (*DOCUMENT_INTENTS, "personal")


def retrieve(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Search the stores the intent calls for; record the sources used."""
    ctx = runtime.context
    query = state.get("search_query") or ""
    intent = state.get("intent", "knowledge")
    found: list[dict[str, Any]] = []
    if intent in DOCUMENT_INTENTS:
        knowledge, story = ensure_persona_index(vector_client(), ctx.persona_id)
        if intent == "story" and story.count():
            current = load_story(ctx.persona_id).current_index
            where = {"index": {"$lte": current}} if current is not None else None
            hits = search(story, query, k=ctx.top_k, where=where)
        else:
            hits = search(knowledge, query, k=ctx.top_k)
        found += [
            {"text": h.text, "source": str(h.metadata.get("source", "")),
             "category": str(h.metadata.get("category", "")), "score": round(h.score, 4)}
            for h in hits
        ]  # fmt: skip
    if intent == "personal" and runtime.store is not None:
        for item in runtime.store.search(
            memories_namespace(ctx.user_id, ctx.persona_id), query=query, limit=ctx.top_k
        ):
            found.append({"text": item.value.get("text", ""), "source": f"memory:{item.key}",
                          "category": "fan_memory", "score": round(item.score or 0.0, 4)})  # fmt: skip
    return {"retrieved": found, "sources": [d["source"] for d in found]}
