"""persona_chat: a fan chats with a persona that keeps its voice, refuses safely and remembers the fan.

input_safety -> (unsafe) refuse -> memory_write
             -> classify_intent -> (smalltalk) draft | retrieve -> draft -> output_safety
                                   retrieve -> (a recall question) recall -> output_safety | draft
                                 output_safety -> (failed, once) draft | respond -> memory_write

Only checked text reaches a reader (stream_mode="custom"): `draft` streams the model itself and
releases each sentence once the output checks pass on the text so far ({"checked": ...}); a failing
sentence releases nothing more. A revision, a refusal or a rewritten reply replaces what was shown
({"reset": True}, then its checked text); `respond` and `refuse` show the published reply, so what
was streamed after the last reset is the reply. `memory_write` makes its model calls before any
store write, and keys what it stores by the fan message's id, so a turn commits or rolls back whole.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from personagraph.nodes.context import ChatContext
from personagraph.nodes.draft import draft, respond
from personagraph.nodes.memory_write import memory_write
from personagraph.nodes.recall import recall, wants_recall
from personagraph.nodes.retrieval import retrieve
from personagraph.nodes.routing import classify_intent
from personagraph.nodes.safety import (
    input_safety,
    output_safety,
    refuse,
)
from personagraph.nodes.state import ConversationInput, ConversationOutput, ConversationState

builder = StateGraph(
    ConversationState,
    context_schema=ChatContext,
    input_schema=ConversationInput,
    output_schema=ConversationOutput,
)
builder.add_node("input_safety", input_safety)
builder.add_node("refuse", refuse)
builder.add_node("classify_intent", classify_intent)
builder.add_node("retrieve", retrieve)
builder.add_node("recall", recall)
builder.add_node("draft", draft)
builder.add_node("output_safety", output_safety)
builder.add_node("respond", respond)
builder.add_node("memory_write", memory_write)

builder.add_edge(START, "input_safety")


def route_after_input_safety(state: ConversationState) -> Literal["classify_intent", "refuse"]:
    return "classify_intent" if state.get("safety", {}).get("safe", False) else "refuse"


builder.add_conditional_edges("input_safety", route_after_input_safety)


def route_after_intent(state: ConversationState) -> Literal["retrieve", "draft"]:
    """Small talk needs no retrieval; every other intent searches its stores."""
    return "draft" if state.get("intent") == "smalltalk" else "retrieve"


builder.add_conditional_edges("classify_intent", route_after_intent)


def route_after_retrieve(state: ConversationState) -> Literal["recall", "draft"]:
    """A fan asking what they told the persona is answered from the notes first (nodes/recall.py)."""
    return "recall" if wants_recall(state) else "draft"


builder.add_conditional_edges("retrieve", route_after_retrieve)


def route_after_recall(state: ConversationState) -> Literal["output_safety", "draft"]:
    return "output_safety" if state.get("draft") else "draft"


builder.add_conditional_edges("recall", route_after_recall)
builder.add_edge("draft", "output_safety")


def route_after_output_safety(state: ConversationState) -> Literal["draft", "respond"]:
    return "draft" if state.get("revision_reason") else "respond"


builder.add_conditional_edges("output_safety", route_after_output_safety)
builder.add_edge("respond", "memory_write")
builder.add_edge("refuse", "memory_write")
builder.add_edge("memory_write", END)


def build(
    checkpointer: BaseCheckpointSaver[Any] | None = None, store: BaseStore | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The graph with the service's persistence."""
    return builder.compile(checkpointer=checkpointer, store=store, name="persona_chat")


# Compiled without persistence for LangGraph Studio / `langgraph dev`, which supplies its own.
graph = builder.compile(name="persona_chat")
