"""Draft: the persona's reply from four prompt blocks (persona, safety rules, context, conversation)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from personagraph.memory.fan_memory import read_profile
from personagraph.memory.history import split_history
from personagraph.nodes.context import ChatContext
from personagraph.nodes.state import ConversationState
from personagraph.personas.model import Persona, load_persona
from personagraph.prompts import persona_chat as prompts
from personagraph.serving.language import Lang, script_drift
from personagraph.serving.models import invoke_text


def persona_block(persona: Persona, lang: str) -> str:
    speech = persona.speech
    return prompts.PERSONA_BLOCK.format(
        name=persona.name,
        name_ko=persona.name_ko or persona.name,
        position=persona.position or persona.kind,
        group_part=f" of {persona.group}" if persona.group else "",
        age=persona.age or "unknown",
        personality=", ".join(persona.personality) or "-",
        biography=persona.biography or "-",
        habits="; ".join(persona.habits) or "-",
        opinions="; ".join(persona.opinions) or "-",
        language_name=prompts.LANGUAGE_NAMES[lang],
        fan_address=persona.fan_address(lang) or "friend",
        banmal_pct=round(speech.banmal_ratio * 100),
        emoji=speech.emoji_per_message,
        emoji_set=" ".join(speech.emoji_set) or "any",
        signature="; ".join(speech.signature_expressions) or "-",
        speech_rules="\n".join(f"- {rule}" for rule in speech.rules),
    )


def speech_hint(persona: Persona, lang: str) -> str:
    """The persona's usual Korean speech level, spelled out (nothing for English replies)."""
    if lang != "ko":
        return ""
    return prompts.SPEECH_HINT_BANMAL if persona.speech.banmal_ratio >= 0.5 else prompts.SPEECH_HINT_JONDAE


def context_block(state: ConversationState, max_chars: int = 1800) -> str:
    """Retrieved documents with their sources, best first, within a character budget."""
    docs = state.get("retrieved") or []
    if not docs:
        return prompts.CONTEXT_BLOCK.format(context=prompts.NO_CONTEXT)
    share = max(200, max_chars // len(docs))
    parts = []
    for doc in docs:
        text = doc["text"] if len(doc["text"]) <= share else doc["text"][:share].rsplit(" ", 1)[0] + " …"
        parts.append(f"(source: {doc['source']})\n{text}")
    return prompts.CONTEXT_BLOCK.format(context="\n\n".join(parts))


def build_system_prompt(
    state: ConversationState, ctx: ChatContext, profile: dict[str, Any] | None = None
) -> str:
    persona = load_persona(ctx.persona_id)
    lang = state.get("lang", "en")
    forbidden = ", ".join(t.topic for t in persona.forbidden_topics) or "none"
    blocks = [
        persona_block(persona, lang),
        prompts.SAFETY_BLOCK.format(name=persona.name, forbidden=forbidden),
        context_block(state, ctx.max_context_chars),
    ]
    if profile:
        blocks.append(prompts.FAN_BLOCK.format(profile=format_profile(profile)))
    if state.get("summary"):
        blocks.append(prompts.CONVERSATION_BLOCK.format(summary=state["summary"]))
    return "\n\n".join(blocks)


# Lines of the persona block that are facts the persona may repeat freely (not instructions).
_FACT_LINES = ("Personality:", "Biography:", "Habits:", "Opinions:", "- Signature expressions")


def instruction_text(persona: Persona, lang: str) -> str:
    """The instructions of the system prompt, for leak detection: the persona block without its
    facts, and the safety rules. Retrieved context and the persona's own biography are fine to
    repeat word for word; the instructions are not."""
    forbidden = ", ".join(t.topic for t in persona.forbidden_topics) or "none"
    persona_lines = [
        line for line in persona_block(persona, lang).splitlines() if not line.startswith(_FACT_LINES)
    ]
    return "\n".join([*persona_lines, prompts.SAFETY_BLOCK.format(name=persona.name, forbidden=forbidden)])


def format_profile(profile: dict[str, Any]) -> str:
    lines = [f"- {key}: {value}" for key, value in profile.items() if value and key != "facts"]
    lines += [f"- {fact}" for fact in profile.get("facts", [])]
    return "\n".join(lines)


def _profile(runtime: Runtime[ChatContext]) -> dict[str, Any]:
    if runtime.store is None:
        return {}
    return read_profile(runtime.store, runtime.context.user_id, runtime.context.persona_id)


def draft(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Write the reply; retry once if it drifted out of the fan's language."""
    ctx = runtime.context
    persona = load_persona(ctx.persona_id)
    lang: Lang = "ko" if state.get("lang") == "ko" else "en"
    _, recent = split_history(state.get("messages", []), ctx.history_turns, state.get("summarized_count", 0))
    instruction = prompts.DRAFT_INSTRUCTION.format(
        name=persona.name, language_name=prompts.LANGUAGE_NAMES[lang], speech_hint=speech_hint(persona, lang)
    )
    if state.get("intent") == "personal":
        instruction += prompts.PERSONAL_HINT
    if state.get("revision_reason"):
        instruction += "\n" + prompts.REVISION_INSTRUCTION.format(reason=state["revision_reason"])
    messages: list[BaseMessage] = [
        SystemMessage(content=build_system_prompt(state, ctx, _profile(runtime))),
        *recent,
        # The instruction comes last: small models follow what they read most recently.
        SystemMessage(content=instruction),
    ]
    reply = invoke_text(ctx.chat_role, messages)
    text = str(reply.content).strip()
    if script_drift(text, lang):
        hint = "한국어로만 답해 주세요." if lang == "ko" else "Use English only."
        retry = [*messages, AIMessage(content=text),
                 HumanMessage(content=prompts.LANGUAGE_RETRY.format(language_name=prompts.LANGUAGE_NAMES[lang], hint=hint))]  # fmt: skip
        text = str(invoke_text(ctx.chat_role, retry).content).strip()
    return {"draft": text}


def respond(state: ConversationState) -> dict[str, Any]:
    """Publish the checked draft as the persona's message."""
    return {"messages": [AIMessage(content=state.get("draft", ""))]}
