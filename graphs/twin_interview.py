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

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore

from personagraph.nodes.interview import (
    InterviewContext,
    InterviewInput,
    InterviewOutput,
    InterviewState,
    human_turn,
    interviewer,
    next_question,
    prepare,
    route_after_answer,
    route_after_followup,
    route_after_next,
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
builder.add_conditional_edges(
    "next_question", route_after_next, {"twin_answer": "twin_answer", "__end__": END}
)
builder.add_conditional_edges("twin_answer", route_after_answer)
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
