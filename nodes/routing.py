"""Intent routing: a trained classifier picks the intent; the router model only when it is unsure.

Why not always the model: a router call before the draft cost every turn seconds on a laptop before
the first word. personas/intent_classifier.py decides about nine in ten messages in about 10 ms; the
router role (structured output, not free tool calling) is asked about the rest. CHAT_INTENT_ROUTER
chooses: hybrid (default), classifier (never the model) or router (always the model).
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from personagraph.nodes.context import ChatContext
from personagraph.nodes.safety import last_human_text
from personagraph.nodes.state import ConversationState
from personagraph.personas.intent_classifier import CONFIDENT_PROBABILITY, ChatIntent, classify
from personagraph.personas.model import load_persona
from personagraph.prompts import persona_chat as prompts
from personagraph.serving.models import structured
from personagraph.serving.settings import get_settings


class IntentDecision(BaseModel):
    """The router's decision for one fan message."""

    intent: ChatIntent = Field(description="Which kind of message this is.")
    search_query: str = Field(default="", max_length=200, description="Keywords to search for.")


# A fan asking what they told the persona, or about themselves: "personal" without asking the model.
# The small router model often calls these "knowledge" (the memory eval's probes), and then the fan's
# memories are not searched.
_ASKS_ABOUT_THE_FAN = re.compile(
    r"\b(?:what(?:'s| is| was| were)? my \w+|did i (?:tell|say|mention)|(?:i|i've) (?:told|said to|mentioned to) you"
    r"|do you (?:still )?(?:remember|know|recall) (?:my|me|what|where|when|who|how|which)\b[^?]{0,40}\b(?:i|my|me)"
    r"|what did i (?:say|tell|mention)|who am i|remember (?:my|me|what i|where i|when i)|where do i live"
    r"|when is my|how old am i|what do (?:\w+ ){0,2}call me)\b"
    r"|(?:^|[^가-힣])(?:내|제)\s?(?:[가-힣]{1,5}\s)?(?:이름|생일|최애|별명|닉네임|고향|직업|나이|취미)[^?？]{0,12}"
    r"(?:뭐|뭘|누구|언제|어디|몇|기억|알아|아세요|알지)"
    r"|(?:내가|제가)\s?[^?？]{0,16}(?:라고|다고|냐고)\s?(?:했|말했|얘기했|말씀드렸)"
    r"|(?:나|내|제|저)\s?[^?？]{0,12}기억(?:해|나|하니|하세요|하시나요|하고\s?있)",
    re.IGNORECASE,
)


def asks_about_the_fan(text: str) -> bool:
    """Whether the fan asks about themselves or about what they told the persona."""
    return bool(_ASKS_ABOUT_THE_FAN.search(text))


def classify_intent(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Classify the fan's message to decide which stores retrieval searches.

    The search query is the message itself when the classifier decides (the e5 query embedding reads
    a whole sentence well); the router model also writes keywords."""
    text = last_human_text(state)
    if asks_about_the_fan(text):
        return {"intent": "personal", "search_query": text}
    mode = get_settings().chat_intent_router
    if mode != "router" and (predicted := classify(text)) is not None:
        intent, probability = predicted
        if mode == "classifier" or probability >= CONFIDENT_PROBABILITY:
            return {"intent": intent, "search_query": text}
    persona = load_persona(runtime.context.persona_id)
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
