"""Memory write: long-term memory of the fan (profile + searchable memories) and the running summary."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from personagraph.memory.history import render, split_history
from personagraph.nodes.context import ChatContext
from personagraph.nodes.retrieval import memories_namespace, profile_namespace, read_profile
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
PROFILE_FIELDS = ("name", "nickname", "birthday", "favourite_member", "favourite_song")


class ProfileUpdate(BaseModel):
    """Facts the fan stated about themselves in one message."""

    name: str | None = Field(default=None, max_length=60)
    nickname: str | None = Field(default=None, max_length=60)
    birthday: str | None = Field(default=None, max_length=40)
    favourite_member: str | None = Field(default=None, max_length=60)
    favourite_song: str | None = Field(default=None, max_length=80)
    facts: list[str] = Field(default_factory=list, max_length=5)


# Placeholders small models write instead of leaving a field null ("name": "None"): not facts.
_NO_VALUE = {"", "none", "null", "n/a", "na", "unknown", "not provided", "not mentioned", "없음", "모름"}


def _stated(value: str | None) -> str | None:
    text = (value or "").strip()
    return None if text.lower().strip(".") in _NO_VALUE else text


def merge_profile(profile: dict[str, Any], update: ProfileUpdate) -> dict[str, Any]:
    """The stored profile with the update's stated values; placeholders stored by an earlier
    version ("name": "None") are dropped on the way."""
    merged = {
        key: value
        for key, value in profile.items()
        if not (key in PROFILE_FIELDS and isinstance(value, str) and _stated(value) is None)
    }
    merged["facts"] = [f for f in profile.get("facts", []) if _stated(f)]
    for field in PROFILE_FIELDS:
        value = _stated(getattr(update, field))
        if value:
            merged[field] = value
    facts = list(merged.get("facts", []))
    for fact in update.facts:
        fact = _stated(fact) or ""
        if fact and fact not in facts:
            facts.append(fact)
    merged["facts"] = facts[-30:]
    return merged


def memory_write(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Store what the fan told (profile + memory item) and fold old turns into the summary."""
    ctx = runtime.context
    persona = load_persona(ctx.persona_id)
    text = last_human_text(state)
    update: dict[str, Any] = {}
    if runtime.store is not None and text:
        now = datetime.now(UTC).isoformat()
        if _SELF_REFERENCE.search(text):
            # The fan's own words, searchable later ("what did I tell you about ...").
            runtime.store.put(
                memories_namespace(ctx.user_id, ctx.persona_id),
                uuid.uuid4().hex,
                {"text": text, "at": now, "kind": "fan_message"},
            )
            if ctx.extract_profile:
                extracted = structured(
                    ctx.memory_role,
                    ProfileUpdate,
                    [SystemMessage(content=prompts.PROFILE_SYSTEM.format(name=persona.name)),
                     HumanMessage(content=text)],
                    max_tokens=200,
                )  # fmt: skip
                profile = merge_profile(read_profile(runtime), extracted)
                profile["updated_at"] = now
                runtime.store.put(
                    profile_namespace(ctx.user_id, ctx.persona_id), "profile", profile, index=False
                )
                update["profile"] = profile
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
            runtime.store.put(
                ("summaries", ctx.user_id, ctx.persona_id), uuid.uuid4().hex,
                {"text": update["summary"], "at": datetime.now(UTC).isoformat()},
            )  # fmt: skip
    return update
