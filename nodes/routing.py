"""Intent routing: the router role picks the intent with structured output (not free tool calling)."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from nodes.context import ChatContext
from nodes.safety import last_human_text
from nodes.state import ConversationState
from personas.model import load_persona
from prompts import persona_chat as prompts
from serving.models import structured

ChatIntent = Literal["smalltalk", "knowledge", "story", "personal"]


class IntentDecision(BaseModel):
    """The router's decision for one fan message."""

    intent: ChatIntent = Field(description="Which kind of message this is.")
    search_query: str = Field(default="", max_length=200, description="Keywords to search for.")


def route_intent(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Classify the fan's message to decide which stores retrieval searches."""
    persona = load_persona(runtime.context.persona_id)
    text = last_human_text(state)
    decision = structured(
        runtime.context.router_role,
        IntentDecision,
        [
            SystemMessage(content=prompts.ROUTER_SYSTEM.format(name=persona.name, position=persona.position)),
            HumanMessage(content=text),
        ],
        max_tokens=120,
    )
    return {"intent": decision.intent, "search_query": decision.search_query.strip() or text}


def route_after_intent(state: ConversationState) -> Literal["retrieve", "draft"]:
    """Small talk needs no retrieval; every other intent searches its stores."""
    return "draft" if state.get("intent") == "smalltalk" else "retrieve"
