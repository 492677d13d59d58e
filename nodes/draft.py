"""Draft: the persona's reply from the prompt blocks (persona, then fenced data, then the safety rules).

`draft` streams the model through the output checks (nodes/output_checks.SentenceGate), so a reader
only ever sees checked sentences; `respond` publishes the reply output_safety settled on.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from personagraph.memory.embeddings import token_count
from personagraph.memory.fan_memory import read_profile
from personagraph.memory.history import split_history
from personagraph.nodes.context import ChatContext
from personagraph.nodes.output_checks import SentenceGate, show, turn_facts
from personagraph.nodes.retrieval import DOCUMENT_INTENTS, RETRIEVING_INTENTS
from personagraph.nodes.state import ConversationState
from personagraph.personas.model import Persona, load_persona
from personagraph.prompts import persona_chat as prompts
from personagraph.prompts import untrusted
from personagraph.serving.language import Lang, language_drift
from personagraph.serving.models import stream_text


def persona_block(persona: Persona, lang: str) -> str:
    """Who the persona is and how it speaks: instructions only. A card's values that appear here
    (its name) are flattened to one line without markup; its descriptive fields go to
    `character_block`, as data."""
    speech = persona.speech
    name = untrusted.one_line(persona.name, 100)
    return prompts.PERSONA_BLOCK.format(
        name=name,
        name_ko=untrusted.one_line(persona.name_ko, 100) or name,
        position=untrusted.one_line(persona.position or persona.kind, 120),
        # "Leader, main vocalist of STELLA of STELLA" was copied into replies: the group once.
        group_part=f" of {untrusted.one_line(persona.group, 100)}"
        if persona.group and persona.group not in persona.position
        else "",
        age=untrusted.one_line(persona.age, 20) or "unknown",
        fan_address_en=untrusted.one_line(persona.fan_address("en"), 40) or "friend",
        fan_address_ko=untrusted.one_line(persona.fan_address("ko"), 40) or "친구",
        banmal_pct=round(speech.banmal_ratio * 100),
        emoji=speech.emoji_per_message,
        emoji_set=untrusted.one_line(" ".join(speech.emoji_set), 80) or "any",
        speech_rules="\n".join(f"- {untrusted.one_line(rule, 300)}" for rule in speech.rules),
    )


def character_block(persona: Persona) -> str:
    """The character's facts (personality, biography, habits, opinions, signature expressions) as
    fenced data: an imported card writes them, so nothing in them is read as an instruction."""
    facts = prompts.CHARACTER_FACTS.format(
        personality=", ".join(persona.personality) or "-",
        biography=persona.biography or "-",
        habits="; ".join(persona.habits) or "-",
        opinions="; ".join(persona.opinions) or "-",
        signature="; ".join(persona.speech.signature_expressions) or "-",
    )
    what = prompts.WHAT_CHARACTER.format(name=untrusted.one_line(persona.name, 100))
    return prompts.CHARACTER_BLOCK.format(facts=untrusted.fence(facts, f"persona:{persona.id}", what))


def speech_hint(persona: Persona, lang: str) -> str:
    """The persona's usual Korean speech level, spelled out (nothing for English replies)."""
    if lang != "ko":
        return ""
    return prompts.SPEECH_HINT_BANMAL if persona.speech.banmal_ratio >= 0.5 else prompts.SPEECH_HINT_JONDAE


def context_block(state: ConversationState, max_tokens: int = 300) -> str:
    """Retrieved documents (knowledge, story, the fan's own memories), best first, within a token
    budget (the e5 tokenizer's count, close to the chat model's), each in its own data block labelled
    with its source (the data note is the caller's: `turn_block`). The best documents go in whole;
    the last one that fits only in part is cut on a word boundary; the rest are left out (every
    token here is read anew each turn)."""
    docs = state.get("retrieved") or []
    items = []
    left = max_tokens
    for doc in docs:
        text = doc["text"]
        if token_count(text) > left:
            text = _cut_to_tokens(text, left)
        if not text:
            break
        items.append(untrusted.data_block(text, str(doc.get("source") or "document")))
        left -= token_count(text)
    return prompts.CONTEXT_BLOCK.format(context="\n".join(items) if items else prompts.NO_CONTEXT)


def _cut_to_tokens(text: str, budget: int) -> str:
    """The longest run of `text`'s first words within `budget` tokens, marked as cut ("" if under 40)."""
    if budget < 40:
        return ""
    words = text.split(" ")
    low, high = 0, len(words)  # words[:low] fits; words[:high + 1] does not
    while low < high:
        middle = (low + high + 1) // 2
        if token_count(" ".join(words[:middle]) + " …") <= budget:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low]) + " …" if low else ""


def safety_block(persona: Persona) -> str:
    forbidden = ", ".join(untrusted.one_line(t.topic, 120) for t in persona.forbidden_topics) or "none"
    return prompts.SAFETY_BLOCK.format(
        name=untrusted.one_line(persona.name, 100), forbidden=forbidden, data_rule=untrusted.DATA_RULE
    )


def build_system_prompt(
    state: ConversationState, ctx: ChatContext, profile: dict[str, Any] | None = None
) -> str:
    """The stable system prompt: persona, character, style examples, safety rules, then the summary.

    The same text every turn of a thread (whatever the language of the message), so a server's
    prompt cache reuses it and the conversation after it; the per-turn data comes after the
    conversation (`turn_block`). `profile` is accepted for callers of the earlier layout."""
    persona = load_persona(ctx.persona_id)
    blocks = [persona_block(persona, state.get("lang", "en")), character_block(persona)]
    if examples := style_block(persona):
        blocks.append(examples)
    blocks.append(safety_block(persona))
    if state.get("summary"):
        summary = untrusted.fence(state["summary"], "conversation summary", prompts.WHAT_SUMMARY)
        blocks.append(prompts.CONVERSATION_BLOCK.format(summary=summary))
    return "\n\n".join(blocks)


def style_block(persona: Persona) -> str:
    """The persona's example dialogue (an imported card's) or its greetings, as fenced style examples."""
    examples = persona.example_dialogue.strip() or "\n".join(
        persona.greeting[lang] for lang in ("ko", "en") if persona.greeting.get(lang)
    )
    if not examples:
        return ""
    name = untrusted.one_line(persona.name, 100)
    fenced = untrusted.fence(examples, f"persona:{persona.id}:examples", prompts.WHAT_STYLE.format(name=name))
    return prompts.STYLE_BLOCK.format(name=name, examples=fenced)


def turn_block(
    state: ConversationState, ctx: ChatContext, persona: Persona, profile: dict[str, Any] | None = None
) -> str:
    """What changes every turn, after the conversation: the fan's profile (small talk and personal
    turns: a knowledge answer does not need it) or the retrieved context, as labelled data blocks.
    Short on purpose: the model server reads all of it anew every turn. The data rule is not
    repeated here: the system prompt states it and the closing rules that follow repeat it."""
    blocks = []
    intent = state.get("intent")
    if profile and intent not in DOCUMENT_INTENTS and (lines := format_profile(profile)):
        blocks.append(prompts.FAN_BLOCK.format(profile=untrusted.data_block(lines, "fan profile")))
    # Small talk searches nothing: no block to read (a turn that did search says it found nothing).
    if state.get("retrieved") or intent in RETRIEVING_INTENTS:
        blocks.append(context_block(state, ctx.max_context_tokens))
    return "\n\n".join(blocks)


def closing_rules(persona: Persona) -> str:
    return prompts.CLOSING_RULES.format(
        name=untrusted.one_line(persona.name, 100), data_rule=untrusted.DATA_RULE
    )


def instruction_text(persona: Persona, lang: str) -> str:
    """The instructions of the system prompt, for leak detection: the persona block, the data note
    and the safety rules. The character's facts and retrieved context are data, fine to repeat."""
    instruction = prompts.DRAFT_INSTRUCTION.format(
        name=untrusted.one_line(persona.name, 100),
        language_name=prompts.LANGUAGE_NAMES[lang],
        speech_hint=speech_hint(persona, lang),
    )
    parts = [persona_block(persona, lang), untrusted.data_note("data"), safety_block(persona), instruction]
    # The data blocks' own headings are ours too (a reply that began "[ABOUT THIS FAN]" went on with them).
    headings = [block.format(profile="", context="", summary="") for block in prompts.DATA_HEADINGS]
    return "\n".join([*parts, *headings, closing_rules(persona)])


def format_profile(profile: dict[str, Any]) -> str:
    """The fan's profile as lines (each value on one line, so a value cannot pose as another line)."""
    lines = [
        f"- {prompts.PROFILE_LABELS.get(key, key.replace('_', ' '))}: {_flat(value)}"
        for key, value in profile.items()
        if value and key not in ("facts", "updated_at")  # updated_at: the store's stamp, not a fact
    ]
    lines += [f"- {prompts.FACT_LABEL}: {_flat(fact)}" for fact in profile.get("facts", []) if _flat(fact)]
    return "\n".join(lines)


def _flat(value: Any) -> str:
    return " ".join(str(value).split())


def _profile(runtime: Runtime[ChatContext]) -> dict[str, Any]:
    if runtime.store is None:
        return {}
    return read_profile(runtime.store, runtime.context.user_id, runtime.context.persona_id)


def draft(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Write the reply, releasing it to the reader sentence by sentence as it passes the output
    checks; retry once if it drifted out of the fan's language."""
    ctx = runtime.context
    persona = load_persona(ctx.persona_id)
    lang: Lang = "ko" if state.get("lang") == "ko" else "en"
    messages = draft_messages(state, runtime, persona, lang)
    facts = turn_facts(state, persona, _profile(runtime))  # what the drift checks need to know

    def gate(shown: str) -> SentenceGate:
        # A style rewrite is checked but held: respond shows it if output_safety accepts it.
        hold = bool(state.get("style_original"))
        return SentenceGate(
            persona, instruction_text(persona, lang), runtime.stream_writer, shown, hold, facts
        )

    first = _write_through(gate(state.get("shown", "")), ctx, messages)
    text, shown = first.finish(), first.shown
    if language_drift(text, lang):
        hint = "한국어로만 답해 주세요." if lang == "ko" else "Use English only."
        retry = [*messages, AIMessage(content=text),
                 HumanMessage(content=prompts.LANGUAGE_RETRY.format(language_name=prompts.LANGUAGE_NAMES[lang], hint=hint))]  # fmt: skip
        second = _write_through(gate(shown), ctx, retry)
        text, shown = second.finish(), second.shown
    return {"draft": text, "shown": shown}


def draft_messages(
    state: ConversationState, runtime: Runtime[ChatContext], persona: Persona, lang: Lang
) -> list[BaseMessage]:
    """The drafting call: system prompt, the recent turns, and the instruction last."""
    ctx = runtime.context
    instruction = prompts.DRAFT_INSTRUCTION.format(
        name=untrusted.one_line(persona.name, 100),
        language_name=prompts.LANGUAGE_NAMES[lang],
        speech_hint=speech_hint(persona, lang),
    )
    if state.get("intent") == "personal":
        instruction += prompts.PERSONAL_HINT
    if state.get("revision_reason"):
        instruction += "\n" + prompts.REVISION_INSTRUCTION.format(reason=state["revision_reason"])
    per_turn = turn_block(state, ctx, persona, _profile(runtime))
    return [
        *stable_prefix(state, ctx),
        # Per-turn data, then the instruction and the rules' reminder last: small models follow what
        # they read most recently, and nothing after the conversation is cached anyway.
        SystemMessage(content="\n\n".join(p for p in [per_turn, instruction, closing_rules(persona)] if p)),
    ]


def stable_prefix(state: ConversationState, ctx: ChatContext) -> list[BaseMessage]:
    """The part of the draft prompt that stays the same from one turn to the next: the system prompt
    and the recent turns (the window moves in steps, memory/history.py)."""
    _, recent = split_history(state.get("messages", []), ctx.history_turns, state.get("summarized_count", 0))
    return [SystemMessage(content=build_system_prompt(state, ctx)), *recent]


def next_turn_prefix(state: ConversationState, ctx: ChatContext) -> list[BaseMessage]:
    """What the next turn's draft prompt will start with, from a finished turn's state: the stable
    prefix with the window counted as it will be once the fan's next message arrives. A server can
    read it while the fan types (serving.models.warm_prompt)."""
    upcoming: ConversationState = {
        **state,
        "messages": [*state.get("messages", []), HumanMessage(content="")],
    }
    return stable_prefix(upcoming, ctx)[:-1]


def _write_through(gate: SentenceGate, ctx: ChatContext, messages: list[BaseMessage]) -> SentenceGate:
    """Stream the model's reply into the gate; stop reading the model once the gate closes.
    The request's generation settings (temperature, top_p, max_tokens) apply to this call only."""
    settings: dict[str, Any] = {
        "temperature": ctx.temperature,
        "top_p": ctx.top_p,
        "max_tokens": ctx.max_tokens,
    }
    with closing(stream_text(ctx.chat_role, messages, **settings)) as pieces:
        for piece in pieces:
            if not gate.feed(piece):
                break
    return gate


def respond(state: ConversationState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Publish the draft output_safety settled on (it checked every text it chose) as the persona's
    message, showing the reader what they have not seen of it, or a reset and all of it."""
    reply = state.get("draft", "")
    shown = show(runtime.stream_writer, state.get("shown", ""), reply)
    return {"messages": [AIMessage(content=reply)], "shown": shown}
