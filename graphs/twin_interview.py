"""twin_interview: a digital twin is interviewed from a guide, with follow-ups on vague,
contradictory or interesting answers.

prepare -> next_question -(done)-> END
               |
               v
          twin_answer -(follow-ups left)-> interviewer -(follow up)-> twin_answer
               |                                 \\-(move on)-> next_question
               +-(limit reached)-> next_question
               +-(interactive)-> human_turn -(typed follow-up)-> twin_answer | -(/next)-> next_question | -(/end)-> END

Batch mode: the interviewer node (the `router` role, structured output) decides; at most
`max_followups` per question. Interactive mode (`context.interactive=True`): `human_turn` pauses
with `interrupt()` after every answer; resume on the same thread with `Command(resume="...")`.
Interactive use needs a checkpointer: `build(checkpointer)`.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from personagraph.nodes.interview import (
    InterviewContext,
    InterviewInput,
    InterviewOutput,
    InterviewState,
    context_of,
    followup_limit,
    human_turn,
    interviewer,
    next_question,
    prepare,
    twin_answer,
)

builder = StateGraph(
    InterviewState,
    context_schema=InterviewContext,
    input_schema=InterviewInput,
    output_schema=InterviewOutput,
)
builder.add_node("prepare", prepare)
builder.add_node("next_question", next_question)
builder.add_node("twin_answer", twin_answer)
builder.add_node("interviewer", interviewer)
builder.add_node("human_turn", human_turn)

builder.add_edge(START, "prepare")
builder.add_edge("prepare", "next_question")


def route_after_next(state: InterviewState) -> Literal["twin_answer", "__end__"]:
    return "__end__" if state.get("done") else "twin_answer"


builder.add_conditional_edges(
    "next_question", route_after_next, {"twin_answer": "twin_answer", "__end__": END}
)


def route_after_answer(
    state: InterviewState, runtime: Runtime[InterviewContext]
) -> Literal["human_turn", "interviewer", "next_question"]:
    """Interactive: the person decides. Otherwise ask the interviewer while follow-ups are left."""
    ctx = context_of(runtime)
    if ctx.interactive:
        return "human_turn"
    if state.get("followups", 0) >= followup_limit(state, ctx):
        return "next_question"
    return "interviewer"


builder.add_conditional_edges("twin_answer", route_after_answer)


def route_after_followup(state: InterviewState) -> Literal["twin_answer", "next_question", "__end__"]:
    if state.get("done"):
        return "__end__"
    return "twin_answer" if state.get("pending") else "next_question"


builder.add_conditional_edges(
    "interviewer",
    route_after_followup,
    {"twin_answer": "twin_answer", "next_question": "next_question", "__end__": END},
)
builder.add_conditional_edges(
    "human_turn",
    route_after_followup,
    {"twin_answer": "twin_answer", "next_question": "next_question", "__end__": END},
)


def build(
    checkpointer: BaseCheckpointSaver[Any] | None = None, store: BaseStore | None = None
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The graph with the service's persistence (interactive interviews and resumable batches need a
    checkpointer)."""
    return builder.compile(checkpointer=checkpointer, store=store, name="twin_interview")


# Compiled without persistence for LangGraph Studio / `langgraph dev`, which supplies its own.
graph = builder.compile(name="twin_interview")
