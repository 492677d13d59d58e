"""State fields shared by the conversational graphs, with explicit reducers."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict


class ConversationInput(TypedDict):
    """What a caller sends: the new message(s)."""

    messages: Annotated[list[AnyMessage], add_messages]


class ConversationOutput(TypedDict, total=False):
    """What a caller reads back after a turn."""

    messages: Annotated[list[AnyMessage], add_messages]
    intent: str
    safety: dict[str, Any]
    sources: list[str]
    blocks: Annotated[list[dict[str, Any]], operator.add]
    last_error: str | None


class ConversationState(ConversationOutput, total=False):
    """Full internal state of a conversational turn."""

    lang: str  # "ko" | "en", detected from the fan's message
    search_query: str
    retrieved: list[dict[str, Any]]  # {"text", "source", "category", "score"}
    profile: dict[str, Any]
    draft: str
    shown: str  # the checked text the reader sees of this turn's reply (streamed since the last reset)
    revision_reason: str
    revisions: int
    style_original: str  # a safe draft sent back for a style rewrite; kept if the rewrite is worse
    summary: str  # running summary of turns older than the history window
    summarized_count: int  # how many leading messages the summary covers
