"""Memory write: long-term memory of the fan (profile + searchable memories) and the running summary."""

from __future__ import annotations

import re
import uuid
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from personagraph.memory.fan_memory import (
    ProfileUpdate,
    add_memory,
    add_summary,
    merge_profile,
    read_profile,
    write_profile,
)
from personagraph.memory.history import render, split_history
from personagraph.nodes.context import ChatContext
from personagraph.nodes.routing import asks_about_the_fan
from personagraph.nodes.safety import last_human
from personagraph.nodes.state import ConversationState
from personagraph.personas.model import load_persona
from personagraph.prompts import persona_chat as prompts
from personagraph.serving.models import ModelError, invoke_text, structured

# Cheap gate before the extraction call: only messages where the fan talks about themselves.
_SELF_REFERENCE = re.compile(
    r"\b(?:i|i'm|im|my|me|mine|call me)\b|(?:^|\s)(?:나|난|내|저|전|제|저는|나는|내가|제가|우리)(?:\s|$|[는가의를도])",
    re.IGNORECASE,
)


def memory_write(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Store what the fan told (memory item + profile) and fold old turns into the summary.

    Every model call comes first and the store writes last, so a failed call writes nothing; the
    items are keyed by the fan message's id, so a retried or regenerated turn overwrites its own
    items (and the service can restore exactly them when a turn fails).
    """
    ctx = runtime.context
    persona = load_persona(ctx.persona_id)
    fan = last_human(state)
    text = str(fan.content) if fan is not None else ""
    # A refused message is never remembered: what the input checks blocked must not come back later.
    refused = state.get("safety", {}).get("safe") is False
    remember = runtime.store is not None and not refused and bool(_SELF_REFERENCE.search(text))
    try:
        extract = remember and ctx.extract_profile and states_something(text)
        extracted = extract_profile(text, persona.name, ctx) if extract else None
        summary = summarize(state, persona.name, ctx)
    except ModelError as exc:
        raise ModelError(f"{persona.name} could not update what they remember of this chat: {exc}") from exc
    update: dict[str, Any] = dict(summary or {})
    if runtime.store is not None and fan is not None:
        turn_id = fan.id or uuid.uuid4().hex  # the graph gives every message an id; a bare call may not
        memory = text if remember else None
        update |= store_turn(runtime.store, ctx, turn_id, memory, extracted, update.get("summary"))
    return update


_SENTENCE_END = re.compile(r"[.!?？！。\n]+")


def states_something(text: str) -> bool:
    """Whether a self-referring message may state a fact worth extracting: not a lone question about
    the fan ("Do you remember my name?", "내 생일 언제게?"), which states nothing new and only costs a
    model call after the reply (the memory item is still stored)."""
    sentences = [part for part in _SENTENCE_END.split(text) if part.strip()]
    return len(sentences) > 1 or not asks_about_the_fan(text)


def store_turn(
    store: BaseStore,
    ctx: ChatContext,
    turn_id: str,
    memory: str | None,
    extracted: ProfileUpdate | None,
    summary: str | None,
) -> dict[str, Any]:
    """The turn's store writes, every item keyed by the turn (no model call here)."""
    update: dict[str, Any] = {}
    if memory:
        add_memory(store, ctx.user_id, ctx.persona_id, memory, turn_id)
    if extracted is not None:
        profile = merge_profile(read_profile(store, ctx.user_id, ctx.persona_id), extracted)
        update["profile"] = write_profile(store, ctx.user_id, ctx.persona_id, profile)
    if summary:
        add_summary(store, ctx.user_id, ctx.persona_id, summary, turn_id)
    return update


def extract_profile(text: str, persona_name: str, ctx: ChatContext) -> ProfileUpdate:
    """The facts the fan stated about themselves in one message (a model call; writes nothing)."""
    return structured(
        ctx.memory_role,
        ProfileUpdate,
        [SystemMessage(content=prompts.PROFILE_SYSTEM.format(name=persona_name)), HumanMessage(content=text)],
        max_tokens=200,
    )


def summarize(state: ConversationState, persona_name: str, ctx: ChatContext) -> dict[str, Any] | None:
    """The running summary with the turns that left the history window folded in (a model call),
    as a state update; None when no turn left the window."""
    older, _ = split_history(state.get("messages", []), ctx.history_turns, state.get("summarized_count", 0))
    if not older:
        return None
    lang = state.get("lang", "en")
    summary_prompt = prompts.SUMMARY_SYSTEM.format(
        name=persona_name, language_name=prompts.LANGUAGE_NAMES[lang], summary=state.get("summary") or "-"
    )
    summary = invoke_text(
        ctx.memory_role, [SystemMessage(content=summary_prompt), HumanMessage(content=render(older))]
    )
    return {
        "summary": str(summary.content).strip(),
        "summarized_count": state.get("summarized_count", 0) + len(older),
    }
