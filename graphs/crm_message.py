"""crm_message: a brand-tone CRM message that states only facts the product data supports.

validate -> (invalid) finalize
         -> retrieve_evidence -> draft_message -> (model error) finalize
                                               -> tone_refine -> repair_message -> check_message -> (passed) finalize
                                    tone_refine <- (failed, at most max_refine_rounds times, with reasons)
                                                   check_message -> (still failed) finalize (status=failed)
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from personagraph.nodes.crm import (
    CrmContext,
    CrmInput,
    CrmOutput,
    CrmState,
    check_message,
    draft_message,
    finalize,
    repair_message,
    retrieve_evidence,
    validate,
)
from personagraph.nodes.tone import tone_refine

context_schema = CrmContext

builder = StateGraph(CrmState, context_schema=CrmContext, input_schema=CrmInput, output_schema=CrmOutput)
builder.add_node("validate", validate)
builder.add_node("retrieve_evidence", retrieve_evidence)
builder.add_node("draft_message", draft_message)
builder.add_node("tone_refine", tone_refine)
builder.add_node("repair_message", repair_message)
builder.add_node("check_message", check_message)
builder.add_node("finalize", finalize)

builder.add_edge(START, "validate")


def route_after_validate(state: CrmState) -> Literal["retrieve_evidence", "finalize"]:
    return "finalize" if state.get("error") else "retrieve_evidence"


builder.add_conditional_edges("validate", route_after_validate)
builder.add_edge("retrieve_evidence", "draft_message")


def route_after_draft(state: CrmState) -> Literal["tone_refine", "finalize"]:
    return "finalize" if state.get("error") else "tone_refine"


builder.add_conditional_edges("draft_message", route_after_draft)


def route_after_refine(state: CrmState) -> Literal["repair_message", "finalize"]:
    return "finalize" if state.get("tone_error") else "repair_message"


builder.add_conditional_edges("tone_refine", route_after_refine)
builder.add_edge("repair_message", "check_message")


def route_after_check(state: CrmState, runtime: Runtime[CrmContext]) -> Literal["tone_refine", "finalize"]:
    if state.get("passed"):
        return "finalize"
    if int(state.get("tone_rounds") or 0) <= runtime.context.max_refine_rounds:
        return "tone_refine"
    return "finalize"


builder.add_conditional_edges("check_message", route_after_check)
builder.add_edge("finalize", END)


def build(
    checkpointer: BaseCheckpointSaver[Any] | None = None, store: BaseStore | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The graph with the service's persistence."""
    return builder.compile(checkpointer=checkpointer, store=store, name="crm_message")


# Compiled without persistence for LangGraph Studio / `langgraph dev`, which supplies its own.
graph = builder.compile(name="crm_message")
