"""Memory write: long-term memory of the fan (profile + searchable memories) and the running summary."""

from __future__ import annotations

import re
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime

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
from personagraph.nodes.safety import last_human_text
from personagraph.nodes.state import ConversationState
from personagraph.personas.model import load_persona
from personagraph.prompts import persona_chat as prompts
from personagraph.serving.models import invoke_text, structured

# Cheap gate before the extraction call: only messages where the fan talks about themselves.
_SELF_REFERENCE = re.compile(
    r"\b(?:i|i'm|im|my|me|mine|call me)\b|(?:^|\s)(?:나|난|내|저|전|제|저는|나는|내가|제가|우리)(?:\s|$|[는가의를도])",
    re.IGNORECASE,
)


def memory_write(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Store what the fan told (profile + memory item) and fold old turns into the summary."""
    ctx = runtime.context
    persona = load_persona(ctx.persona_id)
    text = last_human_text(state)
    update: dict[str, Any] = {}
    if runtime.store is not None and text and _SELF_REFERENCE.search(text):
        add_memory(runtime.store, ctx.user_id, ctx.persona_id, text)
        if ctx.extract_profile:
            extracted = structured(
                ctx.memory_role,
                ProfileUpdate,
                [SystemMessage(content=prompts.PROFILE_SYSTEM.format(name=persona.name)),
                 HumanMessage(content=text)],
                max_tokens=200,
            )  # fmt: skip
            stored = read_profile(runtime.store, ctx.user_id, ctx.persona_id)
            profile = merge_profile(stored, extracted)
            update["profile"] = write_profile(runtime.store, ctx.user_id, ctx.persona_id, profile)
    older, _ = split_history(state.get("messages", []), ctx.history_turns, state.get("summarized_count", 0))
    if older:
        lang = state.get("lang", "en")
        summary_prompt = prompts.SUMMARY_SYSTEM.format(
            name=persona.name, language_name=prompts.LANGUAGE_NAMES[lang], summary=state.get("summary") or "-"
        )
        summary = invoke_text(
            ctx.memory_role, [SystemMessage(content=summary_prompt), HumanMessage(content=render(older))]
        )
        update["summary"] = str(summary.content).strip()
        update["summarized_count"] = state.get("summarized_count", 0) + len(older)
        if runtime.store is not None:
            add_summary(runtime.store, ctx.user_id, ctx.persona_id, update["summary"])
    return update
