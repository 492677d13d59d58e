"""crm_message: a brand-tone CRM message that states only facts the product data supports.

validate -> (invalid) finalize
         -> retrieve_evidence -> draft_message -> (model error) finalize
                                               -> tone_refine -> check_message -> (passed) finalize
                                    tone_refine <- (failed, at most max_refine_rounds times, with reasons)
                                                   check_message -> (still failed) finalize (status=failed)
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from personagraph.nodes.crm import (
    CrmContext,
    CrmInput,
    CrmOutput,
    CrmState,
    check_message,
    draft_message,
    finalize,
    retrieve_evidence,
    route_after_check,
    route_after_draft,
    route_after_refine,
    route_after_validate,
    validate,
)
from personagraph.nodes.tone import tone_refine

context_schema = CrmContext

builder = StateGraph(CrmState, context_schema=CrmContext, input_schema=CrmInput, output_schema=CrmOutput)
builder.add_node("validate", validate)
builder.add_node("retrieve_evidence", retrieve_evidence)
builder.add_node("draft_message", draft_message)
builder.add_node("tone_refine", tone_refine)
builder.add_node("check_message", check_message)
builder.add_node("finalize", finalize)

builder.add_edge(START, "validate")
builder.add_conditional_edges("validate", route_after_validate)
builder.add_edge("retrieve_evidence", "draft_message")
builder.add_conditional_edges("draft_message", route_after_draft)
builder.add_conditional_edges("tone_refine", route_after_refine)
builder.add_conditional_edges("check_message", route_after_check)
builder.add_edge("finalize", END)


def build(
    checkpointer: BaseCheckpointSaver[Any] | None = None, store: BaseStore | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The graph with the service's persistence."""
    return builder.compile(checkpointer=checkpointer, store=store, name="crm_message")


# Compiled without persistence for LangGraph Studio / `langgraph dev`, which supplies its own.
graph = builder.compile(name="crm_message")
