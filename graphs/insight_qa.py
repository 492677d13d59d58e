"""insight_qa: marketers ask about live customer segments in Korean or English; answers cite exact figures.

extract_intent -> scope -> (out of scope) refuse
                        -> (scope missing) clarify
                        -> gather (exact figures, scoped) -> retrieve_profiles (scoped) -> answer
answer -> (model error) END | check_numbers -> (unsupported figure or other segment, once) answer | END
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from personagraph.nodes.insight import (
    InsightContext,
    InsightInput,
    InsightOutput,
    InsightState,
    answer,
    check_numbers,
    clarify,
    extract_intent,
    gather,
    refuse,
    retrieve_profiles,
    scope,
)

builder = StateGraph(
    InsightState, context_schema=InsightContext, input_schema=InsightInput, output_schema=InsightOutput
)
builder.add_node("extract_intent", extract_intent)
builder.add_node("scope", scope)
builder.add_node("refuse", refuse)
builder.add_node("clarify", clarify)
builder.add_node("gather", gather)
builder.add_node("retrieve_profiles", retrieve_profiles)
builder.add_node("answer", answer)
builder.add_node("check_numbers", check_numbers)

builder.add_edge(START, "extract_intent")
builder.add_edge("extract_intent", "scope")


def route_after_scope(state: InsightState) -> Literal["refuse", "clarify", "gather"]:
    if state.get("intent") == "out_of_scope":
        return "refuse"
    return "clarify" if state.get("clarify") else "gather"


builder.add_conditional_edges("scope", route_after_scope)
builder.add_edge("gather", "retrieve_profiles")
builder.add_edge("retrieve_profiles", "answer")


def route_after_answer(state: InsightState) -> Literal["check_numbers", "__end__"]:
    return "__end__" if state.get("error") else "check_numbers"


builder.add_conditional_edges("answer", route_after_answer)


def route_after_check(state: InsightState) -> Literal["answer", "__end__"]:
    return "answer" if state.get("revision_note") else "__end__"


builder.add_conditional_edges("check_numbers", route_after_check)
builder.add_edge("refuse", END)
builder.add_edge("clarify", END)


def build(
    checkpointer: BaseCheckpointSaver[Any] | None = None, store: BaseStore | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The graph with the service's persistence."""
    return builder.compile(checkpointer=checkpointer, store=store, name="insight_qa")


# Compiled without persistence for LangGraph Studio / `langgraph dev`, which supplies its own.
graph = builder.compile(name="insight_qa")
